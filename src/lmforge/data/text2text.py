"""Every task as text in, text out (Raffel et al. 2020, sec. 2.4): three tasks on the bundled gettext pairs.

    en-de     "translate English to German: Copy %s to %s"  ->  "%s nach %s kopieren"
    en-zh     "translate English to Chinese: Copy %s to %s" ->  "复制 %s 到 %s"
    program   "which program: Copy %s to %s"                ->  "coreutils"

The prefixes of the two translation tasks are T5's (sec. 2.4, "translate English to German: "). The
translation tasks use lmforge.data.translation's split by program: test and val messages come from programs
never seen in training. The classification names a program, so it can only be asked about programs seen in
training: its test and val sets hold out MESSAGES of the training programs instead (a stable hash of the
English text puts 1 in 20 into val and 1 in 20 into test), and those messages are removed from every other
task's training data and from `pretraining_texts`, so no held-out message is ever trained on. Only programs
with at least `min_messages` distinct English messages are classes, and a message that two programs share
(gnulib's, say) is left out of the classification: its answer would be ambiguous.
"""
from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache

from . import translation

PREFIXES = {"en-de": "translate English to German: ", "en-zh": "translate English to Chinese: ",
            "program": "which program: "}
TASKS = tuple(PREFIXES)
LANG = {"en-de": "de", "en-zh": "zh"}  # the sacrebleu tokenizer of each translation task's target
HELD_OUT = 20  # 1 in 20 classification messages for val, 1 in 20 for test


@dataclass(frozen=True)
class Example:
    task: str
    src: str  # with the task's prefix
    tgt: str


def message_split(en: str) -> str:
    """Where a training program's message goes for the classification task: "train", "val" or "test",
    by a stable hash of its English text (crc32, the same on every machine and Python)."""
    h = zlib.crc32(en.encode("utf-8")) % HELD_OUT
    return "val" if h == 0 else "test" if h == 1 else "train"


@lru_cache(maxsize=2)
def _pairs(pair: str) -> dict[str, list[translation.Pair]]:
    return translation.split_by_domain(translation.read_tsv(pair)[1])


@lru_cache(maxsize=4)
def programs(min_messages: int = 200) -> tuple[str, ...]:
    """The classes of the `program` task: training programs with >= min_messages distinct English messages
    (over both bundled pairs), sorted."""
    if min_messages < 1:
        raise ValueError(f"min_messages must be >= 1, got {min_messages}")
    counts = Counter(d for d, _ in _labelled())
    return tuple(sorted(d for d, n in counts.items() if n >= min_messages))


@lru_cache(maxsize=1)
def _labelled() -> tuple[tuple[str, str], ...]:
    """(program, English) over both pairs' training programs, each message once, shared messages dropped."""
    owners: dict[str, set[str]] = defaultdict(set)
    for pair in ("en-de", "en-zh"):
        for p in _pairs(pair)["train"]:
            owners[p.src].add(p.domain)
    return tuple(sorted((next(iter(d)), en) for en, d in owners.items() if len(d) == 1))


def held_out_messages() -> frozenset[str]:
    """English messages of training programs kept for the classification's val and test sets."""
    return frozenset(en for _, en in _labelled() if message_split(en) != "train")


def examples(task: str, split: str, min_messages: int = 200) -> list[Example]:
    """One task's examples of a split ("train", "val", "test"), in the corpus's order."""
    if task not in PREFIXES:
        raise ValueError(f"unknown text-to-text task {task!r}; the tasks are: {', '.join(TASKS)}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    prefix = PREFIXES[task]
    if task == "program":
        classes = set(programs(min_messages))
        return [Example(task, prefix + en, d) for d, en in _labelled() if d in classes and message_split(en) == split]
    rows = _pairs(task)[split]
    if split == "train":
        held = held_out_messages()
        rows = [p for p in rows if p.src not in held]
    return [Example(task, prefix + p.src, p.tgt) for p in rows]


def pretraining_texts() -> list[str]:
    """Unlabelled text for span-corruption pretraining: every message (English, German, Chinese) of the training
    programs of both pairs, each once, the classification's held-out messages and their translations excluded."""
    held = held_out_messages()
    seen: dict[str, None] = {}
    for pair in ("en-de", "en-zh"):
        for p in _pairs(pair)["train"]:
            if p.src not in held:
                seen.setdefault(p.src, None)
                if p.tgt not in held:  # an untranslated message ("%s: %s") is its own translation
                    seen.setdefault(p.tgt, None)
    return list(seen)
