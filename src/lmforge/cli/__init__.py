"""`lmforge <command>`: one table of commands, each in its own module under lmforge.cli.

Every module in COMMANDS exposes `add_arguments(parser)` and `run(args) -> int`.
The CLI is a leaf: nothing in the package imports it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module under lmforge.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("convert", "Convert a checkpoint between lmforge and Hugging Face formats"),
    "train": ("train", "Train a model from a YAML run config"),
    "info": ("info", "Show a run or model directory: config, parameters, step, last metrics"),
    "tokenizer": ("tokenizer", "Train, inspect and compare tokenizers"),
    "translate": ("translate", "Translate English with an encoder-decoder run (transformer, lstm)"),
    "eval": ("eval", "Evaluate a model: eval bleu RUN --data FILE.tsv (BLEU, chrF); eval wordnet RUN (fine-tuned tasks)"),
    "sample": ("sample", "Continue a prompt with a trained model"),
    "generate": ("generate", "Generate text and show the distribution behind every token"),
    "chat": ("chat", "Chat in the terminal with a system prompt, streaming, /regen and /reset"),
    "embed": ("embed", "Sentence vectors from an encoder (BERT, MiniLM); --word: a word in context; --plot: PCA; --search"),
    "fill-mask": ("fill_mask", "Top-k tokens with probabilities at each [MASK] (BERT); --attention draws its maps"),
    "infill": ("infill", "Fill each [MASK] of a text, one after another, with a GLM; --show probs: every step"),
    "serve": ("serve", "Serve a model: OpenAI-compatible API with continuous batching, web explorer at /"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmforge", description="Build, train, inspect and serve Transformer language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(f"lmforge.cli.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    mod = importlib.import_module(f"lmforge.cli.{args._module}")
    try:
        return int(mod.run(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
