"""`lmforge translate RUN "text" ...` -- translate English with a transformer or lstm run.

Examples:
    lmforge translate runs/en-de "File not found"
    lmforge translate runs/en-de < messages.txt                 # one sentence per line, stdin
    lmforge translate runs/en-de --greedy "Save %s?" --heatmap attention.png
"""
from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("run", help="a translation run or model directory (family transformer or lstm)")
    parser.add_argument("text", nargs="*", help="sentences to translate; none: read stdin, one sentence per line")
    parser.add_argument("--beam", type=int, default=4, help="beam size (default 4, Vaswani et al. 2017 sec. 6.1)")
    parser.add_argument("--alpha", type=float, default=0.6, help="length penalty alpha (default 0.6, Wu et al. 2016)")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of beam search")
    parser.add_argument("--heatmap", metavar="PNG", help="save the cross-attention of the first sentence as a PNG")


def run(args) -> int:
    from lmforge.eval.translation import load_translator, plot_cross_attention, translate

    if args.beam < 1:
        raise ValueError(f"--beam must be >= 1, got {args.beam} (use --greedy for greedy decoding)")
    texts = list(args.text)
    if not texts:
        texts = [line.rstrip("\n") for line in sys.stdin]
        if not texts:
            raise ValueError("no input: give sentences as arguments or on stdin, one per line")
        empty = [i + 1 for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise ValueError(f"stdin line {empty[0]} is empty: give one non-empty sentence per line")
    model, tokenizer = load_translator(args.run)
    warn = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    out = translate(model, tokenizer, texts, beam=0 if args.greedy else args.beam, alpha=args.alpha, warn=warn)
    for line in out:
        print(line)
    if args.heatmap:
        plot_cross_attention(model, tokenizer, texts[0], out[0], args.heatmap)
        print(f"cross-attention heatmap saved to {args.heatmap}", file=sys.stderr)
    return 0
