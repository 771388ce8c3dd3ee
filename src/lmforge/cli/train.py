"""`lmforge train CONFIG.yaml [--set section.key=value ...] [--out DIR] [--resume]`

Examples:
    lmforge train configs/kjv-char.yaml
    lmforge train configs/kjv-char.yaml --set train.max_steps=500 --set model.n_layers=2 --out runs/quick
    lmforge train configs/translate-en-de.yaml --set recipe.minutes=30   # encoder-decoder: translation recipe
    lmforge train --resume --out runs/kjv-char          # after a crash or Ctrl-C: continues bit for bit
    torchrun --nproc_per_node 2 -m lmforge train configs/tiny.yaml   # data-parallel over 2 processes
"""
from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("config", nargs="?", help="run config (YAML, see configs/); optional with --resume")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.lr=3e-4 (repeatable)")
    parser.add_argument("--out", help="run directory (default: runs/<config file name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the checkpoint in the run directory (same final weights as an uninterrupted run)")


TRANSLATION_FAMILIES = ("transformer", "lstm")  # encoder-decoders: trained by lmforge.train.recipes.translation


def config_class(d: dict):
    """RunConfig for language models; TranslationRunConfig when the model is an encoder-decoder."""
    from lmforge.config import RunConfig, TranslationRunConfig

    if not isinstance(d, dict):
        return RunConfig  # its from_dict says what is wrong
    model = d.get("model")
    family = model.get("family") if isinstance(model, dict) else None
    return TranslationRunConfig if family in TRANSLATION_FAMILIES or (family is None and "recipe" in d) else RunConfig


def load_run_config(path: str | Path, overrides: list[str]):
    from lmforge.config import read_file

    d = read_file(path)
    return config_class(d).from_dict(d).with_overrides(overrides)


def run(args) -> int:
    from lmforge.config import TranslationRunConfig

    if args.config is None and not (args.resume and args.out):
        raise ValueError("give a run config (e.g. configs/kjv-char.yaml), or --resume --out RUN_DIR")
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    saved = out / "run.json"
    if args.resume:
        if not saved.is_file():
            raise ValueError(f"nothing to resume in {out}: it has no run.json. Start it without --resume")
        try:
            d = json.loads(saved.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{saved} is not valid JSON ({e}); the run directory is damaged") from None
        cfg = config_class(d).from_dict(d).with_overrides(args.overrides)
        if args.config is not None:
            given = load_run_config(args.config, args.overrides)
            diff = _differences(cfg.to_dict(), given.to_dict())
            if diff:
                raise ValueError(f"{args.config} differs from the config saved in {saved} ({'; '.join(diff)}). "
                                 f"A resumed run uses its saved config: drop CONFIG, or change values with --set")
    else:
        cfg = load_run_config(args.config, args.overrides)
        if (out / "train_state.pt").exists() or (out / ".staging").exists():
            raise ValueError(f"{out} already holds a checkpoint: pass --resume to continue it, "
                             f"or --out to start a new run elsewhere")
    if isinstance(cfg, TranslationRunConfig):
        from lmforge.train.recipes.translation import train as train_translation

        train_translation(cfg, out, resume=args.resume)
        return 0
    return train(cfg, out, resume=args.resume)


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}: saved {x!r}, file {y!r}")
    return out


def train(cfg, out: Path, resume: bool = False) -> int:
    """Build data, tokenizer and model from a RunConfig and train into `out`."""
    import torch

    from lmforge.data.prepare import prepare
    from lmforge.data.sampler import RandomWindows
    from lmforge.models import build_model
    from lmforge.train.loop import Dist, Trainer

    dist = Dist()
    tokenizer = None
    if resume:
        from lmforge.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(out)
    tokenizer, tokens = prepare(cfg.data, out, tokenizer)
    model_cfg = cfg.model_config(vocab_size=tokenizer.vocab_size)
    if model_cfg.vocab_size < tokenizer.vocab_size:
        raise ValueError(f"model.vocab_size is {model_cfg.vocab_size} but the tokenizer has {tokenizer.vocab_size} "
                         f"tokens; leave model.vocab_size out to use the tokenizer's")
    max_len = getattr(model_cfg, "max_len", None)
    if max_len is not None and cfg.data.block_size > max_len:
        raise ValueError(f"data.block_size ({cfg.data.block_size}) is longer than the model's context "
                         f"max_len ({max_len}); lower data.block_size or raise model.max_len")
    for split, arr in tokens.items():
        if len(arr) < cfg.data.block_size + 1:
            raise ValueError(f"the {split} split of corpus {cfg.data.corpus!r} has {len(arr)} tokens, fewer than "
                             f"data.block_size + 1 = {cfg.data.block_size + 1}; use a smaller block_size or more text")
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank and every run
    model = build_model(type(model_cfg).family, model_cfg)
    t = cfg.train
    train_batches = RandomWindows(tokens["train"], cfg.data.block_size, t.batch_size, seed=t.seed,
                                  rank=dist.rank, world_size=dist.world_size)
    val_batches = RandomWindows(tokens["val"], cfg.data.block_size, t.batch_size, seed=t.seed + 1,
                                rank=dist.rank, world_size=dist.world_size)
    if dist.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model: {type(model_cfg).family}, {n_params / 1e6:.2f}M parameters; data: {cfg.data.corpus}, "
              f"{len(tokens['train']):,} train / {len(tokens['val']):,} val tokens, vocab {tokenizer.vocab_size}; "
              f"global batch {t.batch_size * t.grad_accum * dist.world_size} x {cfg.data.block_size} tokens"
              + (f" over {dist.world_size} processes" if dist.enabled else ""), flush=True)
    trainer = Trainer(model, t, train_batches, val_batches, out_dir=out, tokenizer=tokenizer, run_config=cfg.to_dict())
    try:
        last = trainer.fit(resume=resume)
    except (KeyboardInterrupt, FloatingPointError) as e:
        if dist.is_main:
            import sys

            from lmforge.train.checkpoint import STATE, load_train_state

            saved = load_train_state(out / STATE)["step"] if (out / STATE).exists() else None
            why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"stopped: {e}"
            where = (f"the last checkpoint (step {saved}) is intact; continue with: lmforge train --resume --out {out}"
                     if saved is not None else "no checkpoint was saved yet")
            print(f"\n{why} at step {trainer.step}; {where}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if dist.is_main:
        val = f", val loss {last['val_loss']:.4f}" if "val_loss" in last else ""
        print(f"done: step {trainer.step}{val}. Run directory: {out} (lmforge info {out})", flush=True)
    return 0
