"""The poem task: "写一首五言绝句，题为《X》" -> a real poem of that form, from the bundled poems-zh.jsonl.

The corpus (corpora/poems-zh.jsonl.xz) holds 408 poems (唐诗三百首 and 宋诗一百首), each
{"collection", "title", "author", "lines"}, one couplet per line: "白日依山尽，黄河入海流。".

Split by poem, seeded and stable: poems that share a title (after cleaning) stay together, so a held-out
title is never a training prompt; the title groups are shuffled with SEED and dealt to test, then val,
until each holds 10% of the poems; the rest (80%) is train. Pretraining (configs/zh-base.yaml, corpus
"zh-base") sees only the train poems.

    >>> len(split("train")) + len(split("val")) + len(split("test"))
    408

An example is a poem of one of the four forms lmforge.eval.poems scores (form_of), a prompt and the
poem as the answer; `render` puts it in the chat template with SYSTEM_PROMPT:

    <|system|>你是一位诗人。按题目和体裁写一首古典诗，每联一行。<|end|>
    <|user|>写一首五言绝句，题为《登鹳雀楼》<|end|>
    <|assistant|>白日依山尽，黄河入海流。
    欲穷千里目，更上一层楼。<|end|>
"""
from __future__ import annotations

import json
import lzma
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import chat

CORPUS = Path(__file__).parent / "corpora" / "poems-zh.jsonl.xz"
SEED = 15  # the split's shuffle; changing it changes every held-out number
HELD_OUT = 0.10  # share of the poems in test, and again in val
SPLITS = ("train", "val", "test")
FORMS = {(4, 5): "五言绝句", (4, 7): "七言绝句", (8, 5): "五言律诗", (8, 7): "七言律诗"}  # (lines, chars) -> form
SYSTEM_PROMPT = "你是一位诗人。按题目和体裁写一首古典诗，每联一行。"
# The prompt phrasings SFT trains on (examples(split, phrasings=all)); the first is the evaluation's.
PHRASINGS = (
    "写一首{form}，题为《{title}》",
    "以《{title}》为题，写一首{form}。",
    "请作{form}一首，题目是《{title}》。",
    "题目：《{title}》\n体裁：{form}",
)
FREE_PROMPT = "写一首诗，题为《{title}》"  # the poems of no scored form (古体诗, 乐府, ...): SFT only
_HAN_LINE = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0003134f]+$")


@dataclass(frozen=True)
class Example:
    title: str
    form: str | None  # one of lmforge.eval.poems.FORMS; None for a FREE_PROMPT example
    prompt: str
    answer: str  # the poem, one couplet per line


def clean_title(title: str) -> str:
    """The title as a prompt names it: the Song collection's "题目:《塞上" -> "塞上"; 《》 removed."""
    title = re.sub(r"^题目[:：]", "", title.strip())
    return title.replace("《", "").replace("》", "").strip()


@lru_cache(maxsize=1)
def load() -> tuple[dict, ...]:
    """All 408 poems in file order (dicts as in poems-zh.jsonl)."""
    with lzma.open(CORPUS, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


@lru_cache(maxsize=1)
def _assignment() -> tuple[str, ...]:
    """The split of each poem, in file order."""
    poems = load()
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(poems):
        groups.setdefault(clean_title(p["title"]), []).append(i)
    order = list(groups.values())
    random.Random(SEED).shuffle(order)
    where = ["train"] * len(poems)
    quota = round(HELD_OUT * len(poems))
    filled = {"test": 0, "val": 0}
    for members in order:
        which = next((s for s in ("test", "val") if filled[s] < quota), None)
        if which is None:
            break
        for i in members:
            where[i] = which
        filled[which] += len(members)
    return tuple(where)


def split(which: str) -> list[dict]:
    """The poems of one split ("train", "val" or "test"), in file order."""
    if which not in SPLITS:
        raise ValueError(f"unknown split {which!r}; use one of {', '.join(SPLITS)}")
    return [p for p, s in zip(load(), _assignment()) if s == which]


def form_of(poem: dict) -> str | None:
    """"五言绝句", "七言绝句", "五言律诗" or "七言律诗" when the poem's lines (句, split at its punctuation) are
    4 or 8 lines of 5 or 7 Han characters each; None otherwise (古体诗 of other lengths, mixed lengths)."""
    verses = [v for line in poem["lines"] for v in re.split(r"[，。！？；：、,.!?;:]", line) if v]
    if not verses or not all(_HAN_LINE.match(v) for v in verses) or len({len(v) for v in verses}) != 1:
        return None
    return FORMS.get((len(verses), len(verses[0])))


def _answer(poem: dict) -> str:
    return "\n".join(line.strip() for line in poem["lines"])


def examples(which: str, phrasings: int = 1, free: bool = False) -> list[Example]:
    """The examples of one split: each poem of a scored form with the first `phrasings` prompt phrasings
    (PHRASINGS); with free=True also every other poem under FREE_PROMPT (more poetry for SFT to imitate,
    though no form to score). The default (one phrasing, forms only) is the evaluation set."""
    if not 1 <= phrasings <= len(PHRASINGS):
        raise ValueError(f"phrasings must be between 1 and {len(PHRASINGS)}, got {phrasings}")
    out = []
    for poem in split(which):
        title, form = clean_title(poem["title"]), form_of(poem)
        if form is not None:
            out += [Example(title, form, p.format(form=form, title=title), _answer(poem)) for p in PHRASINGS[:phrasings]]
        elif free:
            out.append(Example(title, None, FREE_PROMPT.format(title=title), _answer(poem)))
    return out


def messages(example: Example | str) -> list[dict]:
    """The conversation: system prompt, the user's prompt, and for an Example the poem as the answer."""
    prompt = example if isinstance(example, str) else example.prompt
    msgs = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
    if isinstance(example, Example):
        msgs.append({"role": "assistant", "content": example.answer})
    return msgs


def render(example: Example | str, tokenizer) -> str:
    """The chat text the SFT model sees: an Example with its answer (what SFT trains on), a prompt string
    ending where the assistant starts (what generation continues). The template is lmforge.data.chat's:
    role markers when the tokenizer has them as special tokens, else its plain "User: ..." layout."""
    return chat.render(messages(example), add_generation_prompt=isinstance(example, str),
                       markers=chat.has_markers(tokenizer))


def encode(example: Example, tokenizer) -> tuple[list[int], list[int]]:
    """(ids, loss_mask) of an Example in the chat template: 1 on the answer and its end marker only."""
    return chat.encode(tokenizer, messages(example), add_generation_prompt=False)


def pretraining_text(which: str) -> str:
    """The poems of a split as plain text for pretraining: title, author, couplets, a blank line."""
    return "".join(f"{clean_title(p['title'])}\n{p['author']}\n{_answer(p)}\n\n" for p in split(which))
