"""lmforge embed DIR TEXT... | lmforge embed DIR --search FILE QUERY...

Sentence vectors from an encoder directory (a sentence-transformers folder such as all-MiniLM-L6-v2, a Hugging
Face BERT / DistilBERT, or an lmforge one), pooled as its modules.json says (lmforge.embedding); or the lines of
FILE nearest to each query by cosine similarity.
"""
from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p):
    p.add_argument("model", help="an encoder directory with tokenizer.json (e.g. a sentence-transformers folder)")
    p.add_argument("texts", nargs="+", help="texts to embed, or with --search the queries")
    p.add_argument("--search", metavar="FILE", help="rank the non-empty lines of FILE by cosine similarity to each query")
    p.add_argument("--top", type=int, default=5, help="neighbours to show per query with --search (default 5)")
    p.add_argument("--json", action="store_true", help="print each whole vector as a JSON line")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")


def run(args) -> int:
    import torch

    from lmforge.embedding import embed, read_pipeline

    if args.top < 1 or args.batch_size < 1:
        raise ValueError("--top and --batch-size must be >= 1")
    if not Path(args.model).is_dir():
        raise FileNotFoundError(f"{args.model} is not a directory; pass an encoder directory with tokenizer.json")
    if args.search is None:
        vectors = embed(args.model, args.texts, batch_size=args.batch_size)
        pipe = read_pipeline(args.model)
        how = "+".join(pipe.modes) + " pooling" + (", normalised" if pipe.normalize else "")
        print(f"{tuple(vectors.shape)} vectors ({how})")
        for text, v in zip(args.texts, vectors):
            if args.json:
                print(json.dumps({"text": text, "vector": [round(x, 6) for x in v.tolist()]}, ensure_ascii=False))
            else:
                head = " ".join(f"{x:+.4f}" for x in v[:8].tolist())
                print(f"{text!r}: [{head}{' ...' if v.numel() > 8 else ''}] norm {v.norm().item():.4f}")
        return 0
    path = Path(args.search)
    if not path.is_file():
        raise FileNotFoundError(f"--search {path}: no such file")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"--search {path} has no non-empty lines to search")
    docs = torch.nn.functional.normalize(embed(args.model, lines, batch_size=args.batch_size), dim=1)
    queries = torch.nn.functional.normalize(embed(args.model, args.texts, batch_size=args.batch_size), dim=1)
    scores = queries @ docs.T  # (queries, lines): cosine similarities
    for text, row in zip(args.texts, scores):
        print(f"query: {text}")
        best = row.topk(min(args.top, len(lines)))
        for rank, (s, i) in enumerate(zip(best.values.tolist(), best.indices.tolist()), 1):
            print(f"  {rank}. {s:.4f}  {lines[i]}")
    return 0
