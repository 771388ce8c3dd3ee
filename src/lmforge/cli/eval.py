"""`lmforge eval bleu RUN --data FILE.tsv [--beam 4]` -- BLEU, chrF and placeholder accuracy with sacrebleu.

--data takes any TSV in the bundled format (header domain, en, de|zh) or a bundled pair name
(en-de, en-zh), which means its fixed test split (lmforge.data.translation.TEST_DOMAINS).

Examples:
    lmforge eval bleu runs/en-de --data en-de
    lmforge eval bleu runs/en-zh --data my-messages.tsv --beam 1 --limit 200
"""
from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="metric", metavar="METRIC", required=True)
    p = sub.add_parser("bleu", help="translate a TSV's English column and score it against its de/zh column")
    p.add_argument("run", help="a translation run or model directory")
    p.add_argument("--data", required=True, help="TSV file (domain, en, de|zh) or a bundled pair: en-de, en-zh")
    p.add_argument("--beam", type=int, default=4, help="beam size; 0 = greedy (default 4, Vaswani et al. 2017)")
    p.add_argument("--alpha", type=float, default=0.6, help="length penalty alpha (default 0.6, Wu et al. 2016)")
    p.add_argument("--limit", type=int, default=0, help="score only the first N pairs (0 = all)")
    p.add_argument("--by-length", action="store_true", help="also print BLEU by source-length bucket")


def run(args) -> int:
    from lmforge.data.translation import BUNDLED, read_tsv, split_by_domain
    from lmforge.eval.translation import evaluate_pairs, load_translator

    if args.beam < 0:
        raise ValueError(f"--beam must be >= 0 (0 = greedy), got {args.beam}")
    lang, pairs = read_tsv(args.data)
    if args.data in BUNDLED:
        pairs = split_by_domain(pairs)["test"]
    if args.limit > 0:
        pairs = pairs[: args.limit]
    model, tokenizer = load_translator(args.run)
    r = evaluate_pairs(model, tokenizer, [p.src for p in pairs], [p.tgt for p in pairs], lang, beam=args.beam,
                       alpha=args.alpha, warn=lambda m: print(m, file=sys.stderr))
    ph = r["placeholders"]
    print(f"pairs: {r['n']} (en -> {lang}), {'greedy' if args.beam == 0 else f'beam {args.beam}, alpha {args.alpha}'}")
    print(f"BLEU  {r['bleu']:.2f}   {r['bleu_signature']}")
    print(f"chrF  {r['chrf']:.2f}   {r['chrf_signature']}")
    print(f"placeholder accuracy {100 * ph['accuracy']:.1f}% of {ph['n']} pairs with placeholders" if ph["n"]
          else "placeholder accuracy: no pair has placeholders")
    if args.by_length:
        for b in r["by_length"]:
            print(f"  source {b['bucket']:>6} words: {b['n']:5d} pairs, BLEU {b['bleu']:.2f}")
    return 0
