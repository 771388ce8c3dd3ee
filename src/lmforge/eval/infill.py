"""Fill a missing line of a held-out Tang poem: the task that shows what GLM's two-sided context is worth.

A poem's line (句) is a run of Han characters ended by a mark ("床前明月光，" holds the line 床前明月光).
Take a poem the models never saw in training, remove one line (its characters; the mark after it stays),
and ask a model to write it back:

    left:   静夜思\\n李白\\n床前明月光，
    answer: 疑是地上霜
    right:  。\\n举头望明月，低头思故乡。\\n

Three ways to fill it, all greedy, on the same text window (`Blank.window`):

- left to right (a GPT, `fill_left`): it reads only `left` and writes until it emits a character that is
  not Han (the mark that ends a line, a line break, ...): the length is its own choice.
- masked (a BERT, `fill_masked`): `left + [MASK] * len(answer) + right` -- it is told the length. One pass
  (every masked position's argmax at once) or iterative (Ghazvininejad et al. 2019, Mask-Predict, one
  position per pass: fix the most confident masked position, then predict the others again).
- blank infilling (a GLM, `fill_blank`): part A is `left + [MASK] + right`, part B opens with <sop> and the
  model writes until <eop> or a non-Han character (Du et al. 2022, sec. 2.1): both sides, length its own.
  `blank="[sMASK]"` marks the hole with the sentence-level blank instead (sec. 2.2: a model trained with
  whole sentences cut out, where a poem's line counts as a sentence, has seen holes of this kind).

Scores (`score`), per filled line:
- char_acc: characters equal to the answer's at the same position, over the answer's length;
- exact_len: the fill has the answer's length;
- rhyme: for a line in a rhyming position (the 2nd, 4th, ... of a poem whose even lines rhyme in
  lmforge.eval.poems's table) whether the poem with the fill still rhymes; None elsewhere.

A second reading that does not depend on the greedy fill going right from its first character
(`line_likelihood`): each model's probability of the REAL line, teacher-forced, as nats per character and the
share of its characters that are the model's top choice: the GPT's log p(line | left), the GLM's part-B
log-probabilities of the line after `<sop>` (both sides; the `<eop>` after it left out), BERT's one-pass
log-probability at each [MASK] (told the length; each position on its own, a pseudo-likelihood).

Held-out poems are the Tang poems (collection "tang300") of lmforge.data.poems's val and test splits (split by
poem, titles kept together): nothing is tuned on val here, so both serve as unseen text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch

from lmforge.data import poems as poem_data
from lmforge.eval.poems import rhymes

HAN = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0003134f]+$")
_PIECE = re.compile(r"([^，。！？；：、,.!?;:]+)([，。！？；：、,.!?;:]?)")
MAX_LINE = 16  # characters a left-to-right or blank filler may write before it is cut off (longest Tang line: 11)


def render(poem: dict) -> str:
    """A poem as the training text holds it (lmforge.data.corpora renders poems-zh the same way)."""
    return f"{poem['title']}\n{poem['author']}\n" + "\n".join(poem["lines"]) + "\n\n"


def verses(poem: dict) -> list[tuple[int, str, str]]:
    """(offset in render(poem), line, mark after it) for each line of the poem, in order.

    >>> [(o, v, m) for o, v, m in verses({"title": "静夜思", "author": "李白",
    ...                                     "lines": ["床前明月光，疑是地上霜。"]})]
    [(7, '床前明月光', '，'), (13, '疑是地上霜', '。')]
    """
    out, at = [], len(poem["title"]) + len(poem["author"]) + 2
    for line in poem["lines"]:
        for m in _PIECE.finditer(line):
            out.append((at + m.start(1), m.group(1), m.group(2)))
        at += len(line) + 1
    return out


@dataclass(frozen=True)
class Blank:
    """One poem with one line removed. index: which line (0-based); rhyme_slot: the line ends a couplet
    (index 1, 3, ...) of a poem whose even lines rhyme, so its last character must keep the rhyme."""

    poem: dict
    index: int
    left: str
    answer: str
    right: str
    rhyme_slot: bool

    def window(self, budget: int) -> tuple[str, str]:
        """(left, right) cut to at most `budget` characters together, around the blank: each side gets
        half, and a side shorter than its half gives the rest to the other."""
        if budget < 1:
            raise ValueError(f"the context budget must be at least 1 character, got {budget}")
        half = budget // 2
        n_left = min(len(self.left), max(half, budget - len(self.right)))
        n_right = min(len(self.right), budget - n_left)
        return self.left[len(self.left) - n_left:], self.right[:n_right]

    def lines_with(self, fill: str) -> list[str]:
        """The poem's lines with this blank's line replaced by `fill`."""
        lines = [v for _, v, _ in verses(self.poem)]
        lines[self.index] = fill
        return lines


def held_out_poems(collection: str = "tang300") -> list[dict]:
    """The poems of `collection` in lmforge.data.poems's val and test splits."""
    return [p for split in ("val", "test") for p in poem_data.split(split) if p["collection"] == collection]


def blanks(poems: Sequence[dict]) -> list[Blank]:
    """Every line of Han characters of every poem, removed one at a time (a line with another character,
    e.g. a variant written as a digit, is not asked for)."""
    out = []
    for poem in poems:
        text, vs = render(poem), verses(poem)
        rhyming = rhymes([v for _, v, _ in vs])
        for i, (at, line, _) in enumerate(vs):
            if HAN.match(line):
                out.append(Blank(poem, i, text[:at], line, text[at + len(line):], rhyming and i % 2 == 1))
    return out


def score(blank: Blank, fill: str) -> dict:
    """{"char_acc", "exact_len", "rhyme"} of one fill (see the module docstring).

    >>> b = blanks([{"title": "静夜思", "author": "李白", "collection": "tang300",
    ...              "lines": ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]}])[1]
    >>> score(b, "疑是天上霜"), score(b, "疑似地上雪")["rhyme"], score(b, "地上霜")["exact_len"]
    ({'char_acc': 0.8, 'exact_len': True, 'rhyme': True}, False, False)
    """
    same = sum(a == b for a, b in zip(fill, blank.answer))
    rhyme = rhymes(blank.lines_with(fill)) if blank.rhyme_slot else None
    return {"char_acc": same / len(blank.answer), "exact_len": len(fill) == len(blank.answer), "rhyme": rhyme}


def summarize(blank_list: Sequence[Blank], fills: Sequence[str]) -> dict:
    """Means over the blanks: char_acc, exact_len, exact (the whole line right) and rhyme (over the rhyme
    slots only), with the counts n and n_rhyme."""
    if len(blank_list) != len(fills):
        raise ValueError(f"{len(fills)} fills for {len(blank_list)} blanks: give one fill per blank")
    if not blank_list:
        raise ValueError("no blanks to score")
    rows = [score(b, f) for b, f in zip(blank_list, fills)]
    rhyme = [r["rhyme"] for r in rows if r["rhyme"] is not None]
    n = len(rows)
    return {"char_acc": sum(r["char_acc"] for r in rows) / n,
            "exact_len": sum(r["exact_len"] for r in rows) / n,
            "exact": sum(f == b.answer for b, f in zip(blank_list, fills)) / n,
            "rhyme": sum(rhyme) / len(rhyme) if rhyme else float("nan"),
            "n": n, "n_rhyme": len(rhyme)}


def pretraining_text(poem_repeats: int = 1) -> str:
    """The Chinese text the compared models pretrain on: zh-prose's train split and the train poems
    (rendered, repeated `poem_repeats` times, so that poems are not a 4% sliver of the text).

    zh-prose (Debian's fortunes) quotes classical poems too: its items that hold a line of a held-out poem
    (any collection, 4+ Han characters) are left out, so that no held-out line is seen in training."""
    from lmforge.data.corpora import splits

    if poem_repeats < 0:
        raise ValueError(f"poem_repeats must be >= 0, got {poem_repeats}")
    held = {v for split in ("val", "test") for p in poem_data.split(split) for _, v, _ in verses(p)
            if len(v) >= 4 and HAN.match(v)}
    items = re.split(r"(?<=\n\n)", splits("zh-prose")["train"])
    prose = "".join(item for item in items if not any(v in item for v in held))
    return prose + "".join(render(p) for p in poem_data.split("train")) * poem_repeats


# ---------------------------------------------------------------------------------------------- fillers
def _line_end_ids(tok) -> list[int]:
    """Token ids that end a written line: every token that is not a single Han character."""
    return [i for t, i in tok.vocab.items() if not (len(t) == 1 and HAN.match(t))]


def _decode_line(tok, ids: list[int], ends: set[int]) -> str:
    cut = next((k for k, t in enumerate(ids) if t in ends), len(ids))
    return tok.decode(ids[:cut])


@torch.inference_mode()
def fill_left(model, tok, blank_list: Sequence[Blank], budget: int) -> list[str]:
    """A decoder-only model writes each missing line from the left context alone (greedy; see module)."""
    from lmforge.generate import generate

    ends = _line_end_ids(tok)
    prompts = [tok.encode(b.left[-budget:]) for b in blank_list]  # the whole budget on its one side
    written: list[list[int]] = [[] for _ in blank_list]
    for step in generate(model, prompts, max_new_tokens=MAX_LINE, temperature=0.0, eos_token_id=ends,
                         alternatives=0):
        written[step.row].append(step.token)
    return [_decode_line(tok, w, set(ends)) for w in written]


@torch.inference_mode()
def line_likelihood(kind: str, model, tok, blank_list: Sequence[Blank], budget: int, *, blank: str = "[MASK]") -> dict:
    """{"nats_per_char", "top1"}: the model's mean negative log-probability of the real line's characters and
    the share of them that are its most probable token, over every character of every blank (module docstring).
    kind: "gpt" (left context), "bert" (masked, told the length) or "glm" (blank infilling; blank "[MASK]" or
    "[sMASK]" marks the hole). One row at a time: the rows differ in length and this is a one-off measurement."""
    import torch.nn.functional as F

    from lmforge.data.blank import BlankTokens, build

    if kind not in ("gpt", "bert", "glm"):
        raise ValueError(f"kind must be gpt, bert or glm, got {kind!r}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1 character of context (a GPT's first prediction needs one), "
                         f"got {budget}")
    nll, top1, n = 0.0, 0, 0
    for b in blank_list:
        answer = tok.encode(b.answer)
        target = torch.tensor(answer)
        if kind == "gpt":
            left = tok.encode(b.left[-budget:])
            ids = torch.tensor([left + answer])
            logits = model(ids).logits[0, len(left) - 1:len(left) - 1 + len(answer)]
        elif kind == "bert":
            (row,), (where,) = _masked_rows(tok, [b], budget)
            ids = torch.tensor([row])
            logits = model(ids, attention_mask=torch.ones_like(ids)).logits[0, where.start:where.stop]
        else:
            left, right = b.window(budget)
            a, c = tok.encode(left), tok.encode(right)
            kind_of = {"[MASK]": "mask", "[sMASK]": "smask"}.get(blank)
            if kind_of is None:
                raise ValueError(f"blank must be [MASK] or [sMASK], got {blank!r}")
            row = build(a + answer + c, [(len(a), len(a) + len(answer))], BlankTokens.from_vocab(tok.special_tokens),
                        kind=kind_of)
            t = lambda xs: torch.tensor([xs])  # noqa: E731
            out = model(t(row.ids), positions=t(row.positions), block_positions=t(row.block_positions),
                        prefix_len=torch.tensor([row.prefix_len]))
            logits = out.logits[0, row.prefix_len:row.prefix_len + len(answer)]  # <sop> x1 ... predict x1 x2 ...
        logits = logits.float()
        nll += float(F.cross_entropy(logits, target, reduction="sum"))
        top1 += int((logits.argmax(-1) == target).sum())
        n += len(answer)
    return {"nats_per_char": nll / n, "top1": top1 / n, "chars": n}


def _masked_rows(tok, blank_list, budget):
    mask = tok.special_tokens["[MASK]"]
    rows, where = [], []
    for b in blank_list:
        left, right = b.window(budget)
        a = tok.encode(left)
        rows.append(a + [mask] * len(b.answer) + tok.encode(right))
        where.append(range(len(a), len(a) + len(b.answer)))
    return rows, where


def _pad_id(tok) -> int:
    for name in ("[PAD]", "<pad>"):
        if name in tok.special_tokens:
            return tok.special_tokens[name]
    raise ValueError("the tokenizer has no padding token ([PAD] or <pad>); a masked fill pads rows of different "
                     "lengths: train the tokenizer with one")


def _pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        attention[i, :len(r)] = 1
    return ids, attention


@torch.inference_mode()
def fill_masked(model, tok, blank_list: Sequence[Blank], budget: int, *, iterative: bool,
                batch_size: int = 64) -> list[str]:
    """A masked-LM encoder (head "mlm") fills each line's len(answer) [MASK]s: every argmax at once, or
    (iterative) one position per pass, the most confident first (Mask-Predict). Special tokens are never
    written."""
    special = torch.tensor(sorted(set(tok.special_tokens.values())))
    out: list[str] = []
    for s in range(0, len(blank_list), batch_size):
        rows, where = _masked_rows(tok, blank_list[s:s + batch_size], budget)
        ids, attention = _pad(rows, _pad_id(tok))
        masked = torch.zeros_like(ids, dtype=torch.bool)
        for i, w in enumerate(where):
            masked[i, w.start:w.stop] = True
        while masked.any():
            logits = model(ids, attention_mask=attention, predict=masked).logits.float()  # (N, vocab), N masked
            logits[:, special] = float("-inf")
            prob, best = logits.softmax(-1).max(-1)  # (N,) in row-major order of the masked positions
            if not iterative:
                ids[masked] = best
                break
            conf = torch.full(ids.shape, -1.0)
            conf[masked] = prob
            guess = torch.zeros_like(ids)
            guess[masked] = best
            rows_left = masked.any(-1).nonzero().squeeze(1)
            pick = conf[rows_left].argmax(-1)  # the most confident masked position of each unfinished row
            ids[rows_left, pick] = guess[rows_left, pick]
            masked[rows_left, pick] = False
        out += [tok.decode(ids[i, w.start:w.stop].tolist()) for i, w in enumerate(where)]
    return out


@torch.inference_mode()
def fill_blank(model, tok, blank_list: Sequence[Blank], budget: int, *, blank: str = "[MASK]") -> list[str]:
    """A blank-infilling model (family glm) reads `left [MASK] right` as part A and writes the blank until
    <eop> (or a non-Han character, as a left-to-right filler stops; greedy). blank: the token that marks the
    hole ("[MASK]" or "[sMASK]", a special token of the tokenizer)."""
    from lmforge.generate import generate

    if blank not in ("[MASK]", "[sMASK]") or blank not in tok.special_tokens:
        raise ValueError(f"blank must be [MASK] or [sMASK] and a special token of the tokenizer; got {blank!r} "
                         f"(the tokenizer has {', '.join(tok.special_tokens)})")
    mask = tok.special_tokens[blank]
    ends = _line_end_ids(tok)  # <eop> is a special token: not Han, so it ends the line too
    prompts = []
    for b in blank_list:
        left, right = b.window(budget)
        prompts.append(tok.encode(left) + [mask] + tok.encode(right))
    written: list[list[int]] = [[] for _ in blank_list]
    for step in generate(model, prompts, max_new_tokens=MAX_LINE, temperature=0.0, eos_token_id=ends,
                         alternatives=0):
        written[step.row].append(step.token)
    return [_decode_line(tok, w, set(ends)) for w in written]
