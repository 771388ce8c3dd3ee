"""lmforge infill RUN "床前明月光，[MASK]。举头望明月，低头思故乡。" [--show text|probs] [--trace JSONL]

Fill each blank of a text with a blank-infilling model (the glm family, trained by the `blank` recipe): the
text is part A, read once both ways; the blanks are written one after another, each until the model writes
<eop>, a later blank seeing what was written into the earlier ones (Du et al. 2022, sec. 2.1). Blanks are
written [MASK] (a short span), [sMASK] (a sentence) or [gMASK] (the rest of the text), as in training.
`--show probs` prints the distribution behind every token, the same Step rows as `lmforge generate --show probs`.
"""
from __future__ import annotations

import json
import sys

BLANK_TOKENS = ("[MASK]", "[sMASK]", "[gMASK]")


def add_arguments(p) -> None:
    from lmforge.cli.generate import add_sampling_arguments

    p.add_argument("run", help="a glm run directory (lmforge train configs/glm-zh.yaml) with tokenizer.json")
    p.add_argument("text", help='text with one or more blanks, e.g. "床前明月光，[MASK]。举头望明月，低头思故乡。"')
    add_sampling_arguments(p, temperature=0.0, max_new_tokens=32)
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus: smallest set with this much probability (1 = off)")
    p.add_argument("--show", choices=["text", "probs"], default="text",
                   help="text: the filled text; probs: one row per token with p, rank, entropy, alternatives")
    p.add_argument("--alternatives", type=int, default=5, help="alternatives shown/recorded per step (default 5)")
    p.add_argument("--trace", metavar="JSONL", help="write every Step as one JSON line (with its blank)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole row at every step (slow; for checking)")


def encode_text(tok, text: str) -> list[int]:
    """The text's ids, each [MASK] / [sMASK] / [gMASK] written in it one blank token; errors for text that
    cannot be filled: no blank in it, or a blank kind the tokenizer lacks."""
    if not text.strip():
        raise ValueError("the text is empty; give text with a [MASK] where something is missing")
    missing = [t for t in BLANK_TOKENS if t in text and t not in tok.special_tokens]
    if missing:
        raise ValueError(f"the text uses {', '.join(missing)} but the tokenizer has no such token (it has "
                         f"{', '.join(t for t in BLANK_TOKENS if t in tok.special_tokens) or 'none'}): is this a glm run?")
    if not any(t in text for t in BLANK_TOKENS):
        raise ValueError("the text has no [MASK]: write [MASK] (or [sMASK], [gMASK]) where text should be filled in, "
                         "e.g. \"床前明月光，[MASK]。举头望明月，低头思故乡。\"")
    return tok.encode(text, split_special=True)


def run(args) -> int:
    from lmforge.cli.generate import format_step, load_run, step_record
    from lmforge.generate import filled, infill

    model, tok = load_run(args.run)
    if not hasattr(model, "blank_ids"):
        raise ValueError(f"{args.run} holds a {model.config.family} model; infill needs a blank-infilling model "
                         "(the glm family: lmforge train configs/glm-zh.yaml)")
    ids = encode_text(tok, args.text)
    fills = infill(model, ids, max_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, seed=args.seed, alternatives=args.alternatives, use_cache=not args.no_cache)
    if args.trace:
        with open(args.trace, "w", encoding="utf-8") as f:
            for fill in fills:
                for s in fill.steps:
                    f.write(json.dumps({"blank": fill.blank, **step_record(s, tok)}, ensure_ascii=False) + "\n")
    text = tok.decode(filled(ids, fills))
    if args.show == "probs":
        print(f"text: {args.text!r} ({len(ids)} tokens, {len(fills)} blank{'s' if len(fills) > 1 else ''})")
        for fill in fills:
            blank = tok.id_to_token(ids[fill.position])
            print(f"\nblank {fill.blank + 1}: {blank} at token {fill.position} -> {tok.decode(fill.tokens)!r} "
                  f"({len(fill.tokens)} tokens; {'closed by <eop>' if fill.finish_reason == 'eop' else 'cut: ' + fill.finish_reason})")
            print(f"{'#':>4}  {'token':<12} {'p':>6} {'p model':>8} {'rank':>5} {'H nats':>7}  "
                  "alternatives: token p model -> p final")
            for s in fill.steps:
                print(format_step(s, tok))
        print()
    print(text)
    cut = [f.blank + 1 for f in fills if f.finish_reason != "eop"]
    if cut:
        print(f"note: blank {', '.join(map(str, cut))} reached --max-new-tokens {args.max_new_tokens} or the model's "
              "context before <eop>", file=sys.stderr)
    return 0
