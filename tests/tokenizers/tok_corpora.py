"""Lines of the bundled corpora for tokenizer tests (read from the package, never a machine path)."""
from __future__ import annotations

import json
import lzma
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def corpus_lines(name: str) -> tuple[str, ...]:
    """All non-empty lines of a bundled corpus: kjv, zh-prose, poems-zh, gettext-en-de, gettext-en-zh.

    gettext files give every message (en and translation) as its own line, with `\\n` unescaped.
    """
    files = {"kjv": "kjv.txt.xz", "zh-prose": "zh-prose.txt.xz", "poems-zh": "poems-zh.jsonl.xz",
             "gettext-en-de": "gettext-en-de.tsv.xz", "gettext-en-zh": "gettext-en-zh.tsv.xz"}
    path = resources.files("lmforge") / "data" / "corpora" / files[name]
    with resources.as_file(path) as p, lzma.open(p, "rt", encoding="utf-8") as f:
        raw = f.read().splitlines()
    if name == "poems-zh":
        lines = [l for row in raw for l in json.loads(row)["lines"]]
    elif name.startswith("gettext"):
        lines = [cell.replace("\\n", "\n") for row in raw[1:] for cell in row.split("\t")[1:]]
    else:
        lines = raw
    return tuple(l for l in lines if l.strip())


CORPORA = ("kjv", "zh-prose", "poems-zh", "gettext-en-de", "gettext-en-zh")


def sample(name: str, n: int = 400) -> list[str]:
    """Every k-th line so the sample spans the whole corpus (deterministic)."""
    lines = corpus_lines(name)
    step = max(1, len(lines) // n)
    return list(lines[::step][:n])
