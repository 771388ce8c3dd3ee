"""lmforge embed DIR TEXT... [--word WORD] [--plot PNG] | lmforge embed DIR --search FILE QUERY...

Sentence vectors from an encoder directory (a sentence-transformers folder such as all-MiniLM-L6-v2, a Hugging
Face BERT / DistilBERT, or an lmforge one), pooled as its modules.json says (lmforge.embedding); or the lines of
FILE nearest to each query by cosine similarity. `--word bank` gives instead the contextual vector of "bank" in
each text (its last-layer hidden states, mean over its word pieces); `--plot PNG` draws the vectors in 2-D
(their first two principal components, lmforge.wordvec.pca), each point labelled with its text.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(p):
    p.add_argument("model", help="an encoder directory with tokenizer.json (e.g. a sentence-transformers folder)")
    p.add_argument("texts", nargs="+", help="texts to embed, or with --search the queries")
    p.add_argument("--search", metavar="FILE", help="rank the non-empty lines of FILE by cosine similarity to each query")
    p.add_argument("--top", type=int, default=5, help="neighbours to show per query with --search (default 5)")
    p.add_argument("--json", action="store_true", help="print each whole vector as a JSON line")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--word", help="the vector of this word in each text (contextual, mean over its word pieces) "
                                  "instead of the sentence vector")
    p.add_argument("--plot", metavar="PNG", help="draw the vectors' first two principal components, labelled")


def run(args) -> int:
    import torch

    from lmforge.embedding import embed, read_pipeline

    if args.top < 1 or args.batch_size < 1:
        raise ValueError("--top and --batch-size must be >= 1")
    if not Path(args.model).is_dir():
        raise FileNotFoundError(f"{args.model} is not a directory; pass an encoder directory with tokenizer.json")
    if args.search is None:
        if args.plot and len(args.texts) < 2:
            raise ValueError("--plot needs at least two texts to place on the picture")
        if args.word is not None:
            from lmforge.embedding import contextual_word_vectors
            vectors = contextual_word_vectors(args.model, args.texts, args.word, batch_size=args.batch_size)
            how = f"of {args.word!r} in each text: last layer, mean over its word pieces"
        else:
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
        if args.plot:
            plot_pca(vectors, [label(t, args.word) for t in args.texts], args.plot,
                     f"{args.word!r} in context" if args.word else "sentence vectors")
        return 0
    if args.word is not None or args.plot:
        raise ValueError("--word and --plot work on the texts given, not with --search")
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


def label(text: str, word: str | None, width: int = 44) -> str:
    """A short label for a point: the text, or the part of it around `word`, at most `width` characters, cut at
    spaces where the text has them (not in Chinese), marked with "...".

    Example: label("Then I Daniel looked, and, behold, there stood other two, the one on this side of the bank
    of the river", "bank", 30) -> "...side of the bank of the river"
    """
    from lmforge.embedding import find_word

    text = " ".join(text.split())
    if len(text) <= width:
        return text
    start, end = find_word(text, word) if word is not None else (0, 0)
    a = max(0, min(start - (width - (end - start)) // 2, len(text) - width))  # the word in the middle
    b = a + width
    if a > 0 and text[a - 1] != " " and (space := text.find(" ", a, start)) >= 0:
        a = space + 1  # do not start inside a word
    if b < len(text) and text[b] != " " and (space := text.rfind(" ", end, b)) >= 0:
        b = space  # nor end inside one
    return ("..." if a > 0 else "") + text[a:b].strip() + ("..." if b < len(text) else "")


def _place_labels(ax, fig, points, labels) -> None:
    """Write each label beside its point: try offsets (right of the point above / below, then left of it, then
    further up or down) and keep the first whose box stays inside the axes and overlaps no point and no label
    placed before (greedy, points in order of x); if none fits, the least bad (first) place."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    offsets = [(5, 3), (5, -3), (-5, 3), (-5, -3), (8, 12), (8, -12), (-8, 12), (-8, -12), (10, 22), (10, -22),
               (-10, 22), (-10, -22)]
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    xy = ax.transData.transform(points)  # (N, 2) in pixels
    taken = [Bbox.from_extents(x - 3, y - 3, x + 3, y + 3) for x, y in xy]  # the dots themselves
    for i in sorted(range(len(labels)), key=lambda j: tuple(points[j])):
        for n, (dx, dy) in enumerate(offsets + [offsets[0]]):
            t = ax.annotate(labels[i], points[i], xytext=(dx, dy), textcoords="offset points", fontsize=7.5,
                            ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top",
                            arrowprops=dict(arrowstyle="-", color="0.6", lw=0.5, shrinkA=0, shrinkB=2))
            t.update_positions(renderer)
            box = Text.get_window_extent(t, renderer)  # the text alone, without the leader line
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if n == len(offsets) or (inside and not any(box.overlaps(b) for b in taken)):
                taken.append(box)
                break
            t.remove()


def plot_pca(vectors, labels: list[str], path: str, title: str) -> None:
    """Scatter the first two principal components of the vectors, one label per point; prints the coordinates
    and the share of the variance the two components hold."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmforge.plots import token_fonts
    from lmforge.wordvec import pca

    points, _, ratio = pca(vectors, 2)
    print(f"PCA: the first two components hold {100 * ratio[0]:.1f}% and {100 * ratio[1]:.1f}% of the variance")
    for (x, y), text in zip(points.tolist(), labels):
        print(f"  {x:+.4f} {y:+.4f}  {text}")
    with matplotlib.rc_context(token_fonts()):  # labels may be Chinese: DejaVu Sans plus a CJK fallback
        fig, ax = plt.subplots(figsize=(9, 6.5))
        ax.scatter(points[:, 0], points[:, 1], s=18, color="tab:blue", zorder=2)
        ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f}% of the variance)")
        ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.0f}% of the variance)")
        ax.set_title(f"{title}: first two principal components", fontsize=10)
        ax.margins(x=0.35, y=0.12)  # room for the labels beside the outermost points
        ax.grid(alpha=0.3)
        fig.tight_layout()
        _place_labels(ax, fig, points.tolist(), labels)
        fig.savefig(path, dpi=130)
        plt.close(fig)
    print(f"wrote {path}", file=sys.stderr)
