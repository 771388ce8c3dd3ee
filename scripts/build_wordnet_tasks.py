"""Build src/lmforge/data/corpora/wordnet.jsonl.xz and WORDNET-LICENSE from a WordNet 3.0 database.

    python scripts/build_wordnet_tasks.py [WORDNET_DIR]     # default: /usr/share/wordnet (Debian wordnet-base)

One JSON record per synset (see lmforge.data.wordnet): its lexicographer file number (the supersense), its lemmas,
its definition and its example sentences, each with the character span of the defined word (inflected forms
included) or nulls where none was found. The three tasks and their splits are read from this file by
lmforge.data.wordnet.load_task; this script prints how many examples each task and split gets.
The licence is copied verbatim from the header of data.noun (wndb(5WN): every data file begins with it).
"""
from __future__ import annotations

import argparse
import json
import lzma
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from lmforge.data import wordnet  # noqa: E402


def licence_text(wordnet_dir: Path) -> str:
    """The licence header of data.noun ('  1 This software ...' .. '  29 ...') without line numbers."""
    lines = []
    with open(wordnet_dir / "data.noun", encoding="utf-8") as f:
        for line in f:
            if not line.startswith("  "):
                break
            lines.append(re.sub(r"^  \d+ ?", "", line).rstrip())
    return "\n".join(lines).strip() + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wordnet_dir", nargs="?", default="/usr/share/wordnet", type=Path)
    ap.add_argument("--out", type=Path, default=wordnet.DATA_FILE)
    args = ap.parse_args(argv)

    records = wordnet.build(args.wordnet_dir)
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    args.out.write_bytes(lzma.compress(text.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    (args.out.parent / "WORDNET-LICENSE").write_text(licence_text(args.wordnet_dir), encoding="utf-8")

    n_examples = sum(len(r["examples"]) for r in records)
    n_found = sum(e[1] is not None for r in records for e in r["examples"])
    print(f"{len(records)} synsets -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    print(f"example sentences: {n_examples} in {sum(bool(r['examples']) for r in records)} synsets; "
          f"the defined word found in {n_found} ({100 * n_found / n_examples:.1f}%): these are the qa/tags examples")
    by_split = Counter(wordnet.split_of(r["id"]) for r in records)
    print("synsets per split: " + ", ".join(f"{s} {by_split[s]}" for s in wordnet.SPLITS))
    for pos, name in wordnet.POS_FILES.items():
        got = [e for r in records if r["id"].endswith(pos) for e in r["examples"]]
        print(f"  {name}: {sum(e[1] is not None for e in got)} / {len(got)} examples qualify")


if __name__ == "__main__":
    main()
