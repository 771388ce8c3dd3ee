"""`lmforge tokenizer train|encode|compare`: train a tokenizer, look inside one, compare kinds.

    lmforge tokenizer train --kind bpe --vocab-size 8000 corpus.txt --out runs/tok
    lmforge tokenizer encode runs/tok "In the beginning"
    lmforge tokenizer compare "wonderful"
"""
from __future__ import annotations

import argparse
from pathlib import Path

KINDS = ("bpe", "wordpiece", "unigram", "char")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a tokenizer on text files and write DIR/tokenizer.json")
    t.add_argument("--kind", required=True, help="one of: " + ", ".join(KINDS))
    t.add_argument("--vocab-size", type=int, default=8000, help="target vocabulary size (ignored for char)")
    t.add_argument("files", nargs="+", help="UTF-8 text files, one document or line per line")
    t.add_argument("--out", required=True, help="directory to write tokenizer.json into")
    e = sub.add_parser("encode", help="show tokens, ids and offsets of a text as a table")
    e.add_argument("dir", help="directory holding tokenizer.json (or the file)")
    e.add_argument("text")
    e.add_argument("--split-special", action="store_true", help="match special tokens written in the text")
    c = sub.add_parser("compare", help="the same text through every kind, trained on the bundled KJV corpus")
    c.add_argument("text")
    c.add_argument("--vocab-size", type=int, default=2000)
    c.add_argument("--lines", type=int, default=5000, help="KJV lines to train the throwaway tokenizers on")


def _read_lines(files: list[str]) -> list[str]:
    lines = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"training file {f} does not exist")
        try:
            lines += path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ValueError(f"{f} is not valid UTF-8 (byte {e.start}: {e.reason}); convert it, e.g. "
                             f"iconv -f latin1 -t utf-8 {f}") from None
    if not any(l.strip() for l in lines):
        raise ValueError(f"the training files {', '.join(files)} contain no text; pass non-empty files")
    return lines


def train_kind(kind: str, lines: list[str], vocab_size: int):
    from lmforge.tokenizers import BPETokenizer, CharTokenizer, UnigramTokenizer, WordPieceTokenizer
    if kind == "bpe":
        return BPETokenizer.train(lines, vocab_size, special_tokens=["<|endoftext|>"])
    if kind == "wordpiece":
        return WordPieceTokenizer.train(lines, vocab_size)
    if kind == "unigram":
        return UnigramTokenizer.train(lines, vocab_size)
    if kind == "char":
        return CharTokenizer.train(lines, unk_token="<unk>")
    raise ValueError(f"unknown tokenizer kind {kind!r}; use one of: {', '.join(KINDS)}")


def _table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple(str(x) for x in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(args: argparse.Namespace) -> int:
    from lmforge.tokenizers import load_tokenizer, save_tokenizer
    if args.action == "train":
        if args.kind not in KINDS:
            raise ValueError(f"unknown tokenizer kind {args.kind!r}; use one of: {', '.join(KINDS)}")
        tok = train_kind(args.kind, _read_lines(args.files), args.vocab_size)
        path = save_tokenizer(tok, args.out)
        print(f"wrote {path}: {type(tok).__name__}, vocab_size={tok.vocab_size}")
        return 0
    if args.action == "encode":
        tok = load_tokenizer(args.dir)
        enc = tok.encode_full(args.text, split_special=args.split_special)
        rows = [(i, t, id_, f"{a}:{b}", repr(args.text[a:b])) for i, (t, id_, (a, b)) in
                enumerate(zip(enc.tokens, enc.ids, enc.offsets))]
        print(_table(rows, ("#", "token", "id", "offsets", "text")))
        print(f"{len(enc.ids)} tokens, {len(args.text)} characters")
        return 0
    if args.action == "compare":
        lines = _kjv_lines(args.lines)
        rows = []
        for kind in KINDS:
            tok = train_kind(kind, lines, args.vocab_size)
            enc = tok.encode_full(args.text, add_special_tokens=False)
            n = len(enc.ids)
            rows.append((kind, tok.vocab_size, n, f"{len(args.text) / n:.2f}" if n else "-", " ".join(enc.tokens)))
        print(f"trained on {len(lines)} KJV lines, vocab size {args.vocab_size} (char: every character seen)")
        print(_table(rows, ("kind", "vocab", "tokens", "chars/token", "tokens")))
        return 0
    raise AssertionError(args.action)


def _kjv_lines(n: int) -> list[str]:
    import lzma
    from importlib import resources
    with resources.as_file(resources.files("lmforge") / "data" / "corpora" / "kjv.txt.xz") as p, \
            lzma.open(p, "rt", encoding="utf-8") as f:
        return [l for l in f.read().splitlines() if l.strip()][:n]
