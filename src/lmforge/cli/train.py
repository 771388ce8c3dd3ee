"""`lmforge train CONFIG.yaml [--set section.key=value ...] [--out DIR] [--resume]`

Examples:
    lmforge train configs/kjv-char.yaml
    lmforge train configs/kjv-char.yaml --set train.max_steps=500 --set model.n_layers=2 --out runs/quick
    lmforge train configs/translate-en-de.yaml --set recipe.minutes=30   # encoder-decoder: the translation recipe
    lmforge train --resume --out runs/kjv-char          # after a crash or Ctrl-C: continues bit for bit
    torchrun --nproc_per_node 2 -m lmforge train configs/tiny.yaml   # data-parallel over 2 processes
"""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("config", nargs="?", help="run config (YAML, see configs/); optional with --resume")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.lr=3e-4 (repeatable)")
    parser.add_argument("--out", help="run directory (default: runs/<config file name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the checkpoint in the run directory (same final weights as an uninterrupted run)")


def run(args) -> int:
    from lmforge.train.recipes import resolve, train

    cfg, out = resolve(args.config, args.overrides, out=args.out, resume=args.resume)
    return train(cfg, out, resume=args.resume)
