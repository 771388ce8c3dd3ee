"""`lmforge pairs RUN --out FILE.jsonl` -- preference pairs from an SFT run, ranked by the poem scorer.

For each prompt of --split, samples --samples answers, scores them (lmforge.eval.poems), and writes (best,
worst) as (chosen, rejected), ties dropped, to a JSON Lines preference file (lmforge.data.preferences) that the
`reward` and `dpo` recipes read. A summary (pairs, ties, mean scores) goes to FILE.json beside it.

Examples:
    lmforge pairs runs/sft-poems --split train --out runs/pairs-train.jsonl
    lmforge pairs runs/sft-poems --split val --out runs/pairs-val.jsonl --samples 4
"""
from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("run", help="an SFT run directory (its model and tokenizer, with the chat markers)")
    p.add_argument("--out", required=True, help="the preference file to write (JSON Lines)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="whose prompts (default train)")
    p.add_argument("--samples", type=int, default=2, help="answers sampled per prompt; the best and the worst make "
                                                          "the pair (default 2)")
    p.add_argument("--pairing", default="extremes", choices=["extremes", "all"],
                   help="extremes: each prompt's best and worst answer (default); all: every pair of its answers "
                        "whose scores differ (K-choose-2, Ouyang et al. 2022)")
    p.add_argument("--phrasings", type=int, default=1, help="prompt phrasings per poem (lmforge.data.poems.PHRASINGS, 1-4)")
    p.add_argument("--limit", type=int, default=0, help="only the first N prompts (0 = all)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0: off)")
    p.add_argument("--batch-size", type=int, default=32, help="prompts generated together (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args) -> int:
    from lmforge.data.preferences import write_pairs
    from lmforge.eval.preferences import make_pairs
    from lmforge.io import atomic_write_json

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; pass --force to replace it, or choose another --out")
    pairs, stats = make_pairs(args.run, args.split, samples=args.samples, phrasings=args.phrasings, limit=args.limit,
                              temperature=args.temperature, top_p=args.top_p,
                              seed=args.seed, batch_size=args.batch_size, pairing=args.pairing, progress=sys.stderr.isatty())
    if not pairs:
        raise ValueError(f"every one of the {stats['prompts']} prompts' samples tied: no pair to write. Sample more "
                         f"answers per prompt (--samples) or at a higher --temperature")
    write_pairs(out, pairs)
    atomic_write_json(out.with_suffix(".json"), stats)
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"{stats['pairs']} pairs from {stats['prompts']} prompts ({stats['ties']} tied, dropped); mean score of "
          f"{stats['samples']} samples {fmt(stats['mean_score'])}; chosen {fmt(stats['chosen_score'])}, rejected "
          f"{fmt(stats['rejected_score'])}. Wrote {out}")
    return 0
