"""Bundled real-text corpora (src/lmforge/data/corpora/, xz-compressed) and their fixed splits.

Splits never change between versions, so val/test losses are comparable across runs:

- kjv: the King James Bible, split by book. Val: Ruth, Ecclesiastes, Mark. Test: Jonah,
  Lamentations, James. Every other book is train (~94% of the text). Whole books are held out
  so that val text is not a near-copy of a neighbouring verse seen in training.
- zh-prose: Chinese quotations and prose, items separated by blank lines. Item i goes to val
  if i % 20 == 18, test if i % 20 == 19, else train (5% / 5% / 90%).
- poems-zh: Tang and Song poems, one per line of JSON; rendered as "title\\nauthor\\nline...\\n".
  Same rule by poem index as zh-prose.
- zh-base: the Chinese pretraining mix of the poem task (configs/zh-base.yaml): zh-prose's split, then the
  poems of lmforge.data.poems' split of the same name (split by poem, seeded: not the index rule above, so no
  held-out poem of the task is pretrained on), the train poems repeated ZH_BASE_POEM_REPEAT times.
- gettext-en-de, gettext-en-zh: message pairs rendered as "en\\tde\\n" lines, split by program
  (the `domain` column) so test messages come from programs never seen in training: sorted
  domains, domain j goes to val if j % 20 == 18, test if j % 20 == 19.
- A path to any UTF-8 text file: first 90% of characters train, next 5% val, last 5% test.

    >>> s = splits("kjv")
    >>> s["val"].splitlines()[0]
    'Ruth 1'
"""
from __future__ import annotations

import json
import lzma
import re
from functools import lru_cache
from pathlib import Path

CORPUS_DIR = Path(__file__).parent / "corpora"

CORPORA = {
    "kjv": "kjv.txt.xz",
    "zh-prose": "zh-prose.txt.xz",
    "poems-zh": "poems-zh.jsonl.xz",
    "gettext-en-de": "gettext-en-de.tsv.xz",
    "gettext-en-zh": "gettext-en-zh.tsv.xz",
}

# Corpora made of the bundled ones. zh-base: zh-prose + the poems' split (see the module docstring).
COMPOSED = ("zh-base",)
# The train poems are 25k characters beside 860k of prose: repeated 4 times they are about a tenth of the
# pretraining text, so the base model has seen the shape of a poem before SFT asks for one.
ZH_BASE_POEM_REPEAT = 4

KJV_VAL_BOOKS = ("Ruth", "Ecclesiastes", "Mark")
KJV_TEST_BOOKS = ("Jonah", "Lamentations", "James")

# A chapter heading is a book name (optionally "1 ", "2 ", "3 " first) and a chapter number:
# "Genesis 1", "1 Samuel 3", "Song of Solomon 8". Verse lines are "N text" and never match.
_KJV_HEADING = re.compile(r"^((?:[123] )?[A-Z][A-Za-z ]+) (\d+)$")


@lru_cache(maxsize=8)
def load_text(name: str) -> str:
    """The full text of a bundled corpus, decompressed."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}. Bundled corpora: {', '.join(CORPORA)} (or give a path to a .txt file)")
    with lzma.open(CORPUS_DIR / CORPORA[name], "rt", encoding="utf-8", newline="") as f:  # keep \r as is
        return f.read()


def kjv_books(text: str) -> list[tuple[str, str]]:
    """[(book, text of the book including its chapter headings)] in canonical order (66 books)."""
    books: list[tuple[str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        m = _KJV_HEADING.match(line.rstrip("\n"))
        if m and (not books or books[-1][0] != m.group(1)):
            books.append((m.group(1), []))
        if books:
            books[-1][1].append(line)
    return [(b, "".join(lines)) for b, lines in books]


def _by_index(items: list[str]) -> dict[str, str]:
    out = {"train": [], "val": [], "test": []}
    for i, item in enumerate(items):
        out["val" if i % 20 == 18 else "test" if i % 20 == 19 else "train"].append(item)
    return {k: "".join(v) for k, v in out.items()}


def splits(corpus: str) -> dict[str, str]:
    """{"train": text, "val": text, "test": text} for a bundled corpus name or a text-file path."""
    if corpus == "zh-base":
        from .poems import pretraining_text

        prose = splits("zh-prose")
        return {s: prose[s] + pretraining_text(s) * (ZH_BASE_POEM_REPEAT if s == "train" else 1)
                for s in ("train", "val", "test")}
    if corpus not in CORPORA:
        path = Path(corpus)
        if not path.is_file():
            raise ValueError(f"unknown corpus {corpus!r}: not a bundled corpus ({', '.join((*CORPORA, *COMPOSED))}) "
                             "and not a file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"corpus file {path} is not UTF-8 text ({e})") from None
        a, b = int(len(text) * 0.90), int(len(text) * 0.95)
        return {"train": text[:a], "val": text[a:b], "test": text[b:]}
    text = load_text(corpus)
    if corpus == "kjv":
        out = {"train": [], "val": [], "test": []}
        for book, body in kjv_books(text):
            out["val" if book in KJV_VAL_BOOKS else "test" if book in KJV_TEST_BOOKS else "train"].append(body)
        return {k: "".join(v) for k, v in out.items()}
    if corpus == "zh-prose":
        items = [p.strip("\n") + "\n\n" for p in re.split(r"\n\s*\n", text) if p.strip()]
        return _by_index(items)
    if corpus == "poems-zh":
        poems = [json.loads(line) for line in text.split("\n") if line.strip()]
        return _by_index([f"{p['title']}\n{p['author']}\n" + "\n".join(p["lines"]) + "\n\n" for p in poems])
    # gettext: split by program (domain)
    rows = [line.split("\t") for line in text.split("\n")[1:] if line]  # not splitlines: messages hold \x0b etc.
    domains = sorted({r[0] for r in rows})
    where = {d: "val" if j % 20 == 18 else "test" if j % 20 == 19 else "train" for j, d in enumerate(domains)}
    out = {"train": [], "val": [], "test": []}
    for domain, src, tgt in rows:
        out[where[domain]].append(f"{src}\t{tgt}\n")
    return {k: "".join(v) for k, v in out.items()}


_ZH_SENTENCE_END = re.compile(r"(?<=[。！？；!?])")


def documents(corpus: str, split: str) -> list[list[str]]:
    """A bundled corpus's split as documents of sentences, for next-sentence prediction (BERT's NSP draws
    IsNext pairs from adjacent sentences of one document). kjv: a chapter is a document and each verse
    (its number dropped) a sentence; zh-prose: an item (blank-line separated) is a document, cut into
    sentences after 。！？； (line breaks inside a sentence removed).

        >>> documents("kjv", "val")[0][1][:38]
        'And the name of the man was Elimelech,'
    """
    text = splits(corpus)[split]
    if corpus == "kjv":
        docs: list[list[str]] = []
        for line in text.split("\n"):
            if _KJV_HEADING.match(line):
                docs.append([])
            elif line.strip() and docs:
                docs[-1].append(line.split(" ", 1)[1] if line.split(" ", 1)[0].isdigit() else line)
        return [d for d in docs if d]
    if corpus == "zh-prose":
        docs = []
        for item in re.split(r"\n\s*\n", text):
            flat = "".join(part.strip() for part in item.split("\n"))
            sentences = [s for s in _ZH_SENTENCE_END.split(flat) if s.strip()]
            if sentences:
                docs.append(sentences)
        return docs
    raise ValueError(f"corpus {corpus!r} has no document structure lmforge knows; documents() reads kjv and zh-prose")
