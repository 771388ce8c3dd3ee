"""GLM's autoregressive blank infilling (Du et al. 2022), as pure functions on token ids.

Sec. 2.1: sample spans of the text; replace each by ONE blank token, giving part A (the corrupted text); part B
is the spans, in a random order, each opened by <sop> (the paper's [START]) as input and closed by <eop>
([END]) as target. The model reads part A both ways and writes part B left to right, so a later span is
predicted seeing part A and the spans before it. 2-D positions (sec. 2.3): a part-A token's first id is its
position in part A and its second id 0; a span token's first id is the position of its blank and its
second id its place in the span, 1 for <sop>.

The paper's Figure 2, x1..x6 with spans {x3} and {x5, x6}, part B ordered x5 x6 then x3 (tests/data/test_blank.py):

    input       x1 x2 [M] x4 [M] <sop> x5 x6 <sop> x3
    target       -  -   -  -   -   x5  x6 <eop> x3 <eop>
    position 1   0  1   2  3   4    4   4   4    2   2      (the figure counts from 1: 1 2 3 4 5 5 5 5 3 3)
    position 2   0  0   0  0   0    1   2   3    1   2

Three objectives, one function (`kind`), differing only in the number and lengths of the spans:
- "mask" ([MASK], sec. 2.1): span lengths drawn from Poisson(lambda = 3) until at least 15% of the tokens are
  covered (the paper reports the 15% ratio matters for downstream NLU tasks).
- "smask" ([sMASK], sec. 2.2, sentence-level): the spans are whole sentences, sampled until they cover 15%.
- "gmask" ([gMASK], sec. 2.2, document-level): one span at the end, its length uniform in 50%-100% of the text.
The [sMASK] / [gMASK] token names are those of the authors' released models (THUDM/GLM).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# GLM's special tokens, in the order a tokenizer of the `blank` recipe gives them ids 0..5 (the defaults of
# lmforge.models.glm.config.GLMConfig: pad_id, mask_id, smask_id, gmask_id, sop_id, eop_id)
SPECIAL_TOKENS = ("<pad>", "[MASK]", "[sMASK]", "[gMASK]", "<sop>", "<eop>")
IGNORE = -100  # target of positions the loss skips (part A, padding)
KINDS = ("mask", "smask", "gmask")
RATIO = 0.15  # sec. 2.1: spans are sampled until at least 15% of the original tokens are masked
POISSON_LAMBDA = 3.0  # sec. 2.1: span lengths from a Poisson distribution with lambda = 3 (as SpanBERT/BART)
DOCUMENT_SPAN = (0.5, 1.0)  # sec. 2.2: the document-level span is 50%-100% of the original length
# How often each objective is drawn in multi-task pretraining: the authors' released GLM-10B pretraining
# script (THUDM/GLM, the GLM-10B script in config/: --bert-prob 0.5 --gap-sentence-prob 0.3, the remaining
# 0.2 the document-level objective); the paper's sec. 2.2 mixes the objectives without giving a ratio.
MIX = {"mask": 0.5, "smask": 0.3, "gmask": 0.2}


@dataclass(frozen=True)
class BlankTokens:
    """The special token ids the objective writes (SPECIAL_TOKENS)."""

    mask: int
    smask: int
    gmask: int
    sop: int
    eop: int

    def blank(self, kind: str) -> int:
        check_kind(kind)
        return {"mask": self.mask, "smask": self.smask, "gmask": self.gmask}[kind]

    @classmethod
    def from_vocab(cls, special_tokens: dict[str, int]) -> "BlankTokens":
        """From a tokenizer's special tokens; ValueError naming the ones it lacks."""
        names = {"mask": "[MASK]", "smask": "[sMASK]", "gmask": "[gMASK]", "sop": "<sop>", "eop": "<eop>"}
        missing = [t for t in names.values() if t not in special_tokens]
        if missing:
            raise ValueError(f"the tokenizer has no {', '.join(missing)}: GLM's blank infilling needs the special "
                             f"tokens {', '.join(names.values())} (the `blank` recipe's tokenizer has them)")
        return cls(**{k: special_tokens[t] for k, t in names.items()})


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; GLM's objectives are {', '.join(KINDS)} "
                         "([MASK] short spans, [sMASK] whole sentences, [gMASK] one long span at the end)")


@dataclass
class Blanked:
    """One row for GLM: part A then part B. `spans`: (start, end) in the original text, in part B's order."""

    ids: list[int]
    targets: list[int]
    positions: list[int]
    block_positions: list[int]
    prefix_len: int  # the length of part A
    spans: list[tuple[int, int]]
    kind: str

    def attention_mask(self):
        """(T, T) bool, True = may attend: part A sees part A; part B sees part A and itself causally (fig. 2(d))."""
        from lmforge.nn.masks import prefix_mask
        return prefix_mask(len(self.ids), self.prefix_len)


def build(ids: Sequence[int], spans: Sequence[tuple[int, int]], tokens: BlankTokens, *, kind: str = "mask",
          order: Sequence[int] | None = None) -> Blanked:
    """Lay out a text with the given spans blanked: spans (start, end), end exclusive, in the text's order or any;
    order: the order of the spans in part B, as indices into `spans` sorted by start (default: text order)."""
    ids = [int(t) for t in ids]
    n, blank = len(ids), tokens.blank(kind)
    spans = sorted((int(s), int(e)) for s, e in spans)
    if not spans:
        raise ValueError("no span to blank: give at least one (start, end) span")
    for (s, e), nxt in zip(spans, spans[1:] + [(n, n)]):
        if not 0 <= s < e <= n:
            raise ValueError(f"span ({s}, {e}) does not fit a text of {n} tokens: need 0 <= start < end <= {n}")
        if e > nxt[0]:
            raise ValueError(f"spans ({s}, {e}) and {nxt} overlap: each token can be in one span only")
    if sum(e - s for s, e in spans) >= n:
        raise ValueError(f"the spans cover all {n} tokens: a blank needs text around it, leave at least one token")
    order = list(range(len(spans))) if order is None else [int(i) for i in order]
    if sorted(order) != list(range(len(spans))):
        raise ValueError(f"order must be a permutation of 0..{len(spans) - 1}, got {order}")
    part_a, where, i = [], [], 0
    for s, e in spans:
        part_a += ids[i:s]
        where.append(len(part_a))  # the blank's position in part A
        part_a.append(blank)
        i = e
    part_a += ids[i:]
    out_ids, targets = list(part_a), [IGNORE] * len(part_a)
    positions, block = list(range(len(part_a))), [0] * len(part_a)
    for j in order:
        s, e = spans[j]
        span = ids[s:e]
        out_ids += [tokens.sop] + span
        targets += span + [tokens.eop]
        positions += [where[j]] * (len(span) + 1)
        block += list(range(1, len(span) + 2))
    return Blanked(out_ids, targets, positions, block, len(part_a), [spans[j] for j in order], kind)


def sample_spans(n: int, kind: str, rng: np.random.Generator, *, ratio: float = RATIO, lam: float = POISSON_LAMBDA,
                 sentences: Sequence[tuple[int, int]] = (), document_span: tuple[float, float] = DOCUMENT_SPAN
                 ) -> tuple[list[tuple[int, int]], str]:
    """Spans for a text of n tokens -> (spans sorted by start, the kind used). At least one token stays in
    part A. "smask" with fewer than two sentences (nothing would stay around a whole-text sentence) falls
    back to "mask"."""
    check_kind(kind)
    if n < 2:
        raise ValueError(f"a blank needs text around it: the text has {n} token(s), give at least 2")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    target = math.ceil(ratio * n)
    if kind == "gmask":
        lo, hi = document_span
        length = min(max(round(rng.uniform(lo, hi) * n), 1), n - 1)
        return [(n - length, n)], kind
    if kind == "smask" and len(sentences) >= 2:
        chosen, covered = [], 0
        for k in rng.permutation(len(sentences)):
            s, e = sentences[k]
            if covered >= target:
                break
            if covered + (e - s) < n:  # a sentence that would leave no context is skipped
                chosen.append((s, e))
                covered += e - s
        if chosen:
            return sorted(chosen), kind
    lengths: list[int] = []
    while sum(lengths) < target:
        room = n - sum(lengths) - len(lengths) - 1  # a token between spans, and one left in part A
        if room <= 0:
            break
        length = int(rng.poisson(lam))
        if length > 0:
            lengths.append(min(length, room))
    m, free = len(lengths), n - sum(lengths)
    extra = free - (m - 1)  # unmasked tokens beyond the one between each two spans
    bars = np.sort(rng.choice(extra + m, size=m, replace=False))  # stars and bars: m+1 gaps summing to extra
    gaps = np.diff(np.concatenate([[-1], bars, [extra + m]])) - 1
    spans, i = [], 0
    for j, length in enumerate(rng.permutation(lengths)):
        i += int(gaps[j]) + (1 if j else 0)
        spans.append((i, i + int(length)))
        i += int(length)
    return spans, "mask"


def sentence_spans(ids: Sequence[int], end_ids: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) of each sentence: a sentence ends after a token in end_ids, or at the end of the text.
    Example: ids [5, 6, 9, 7, 9, 8], end_ids [9] -> [(0, 3), (3, 5), (5, 6)]."""
    ends, out, start = set(end_ids), [], 0
    for i, t in enumerate(ids):
        if t in ends:
            out.append((start, i + 1))
            start = i + 1
    if start < len(ids):
        out.append((start, len(ids)))
    return out


def blank_infill(ids: Sequence[int], tokens: BlankTokens, rng: np.random.Generator, *, kind: str | None = None,
                 mix: dict[str, float] | None = None, ratio: float = RATIO, lam: float = POISSON_LAMBDA,
                 sentence_end_ids: Sequence[int] = (), document_span: tuple[float, float] = DOCUMENT_SPAN) -> Blanked:
    """One training row: the objective `kind` (or one drawn from `mix`, default MIX), its spans, part B in a
    random order (sec. 2.1: "we randomly permute the order of the spans")."""
    if kind is None:
        mix = check_mix(MIX if mix is None else mix)
        names = list(mix)
        kind = names[int(rng.choice(len(names), p=np.array([mix[k] for k in names]) / sum(mix.values())))]
    sentences = sentence_spans(ids, sentence_end_ids) if kind == "smask" else ()
    spans, used = sample_spans(len(ids), kind, rng, ratio=ratio, lam=lam, sentences=sentences,
                               document_span=document_span)
    return build(ids, spans, tokens, kind=used, order=rng.permutation(len(spans)).tolist())


def check_mix(mix: dict[str, float]) -> dict[str, float]:
    """The objectives' weights: known kinds, non-negative, not all zero."""
    if not isinstance(mix, dict) or not mix:
        raise ValueError(f"mix must map mask kinds to weights, e.g. {MIX}; got {mix!r}")
    for k, w in mix.items():
        check_kind(k)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ValueError(f"the weight of mask kind {k!r} must be a number >= 0, got {w!r}")
    if sum(mix.values()) <= 0:
        raise ValueError(f"the mask kinds' weights sum to 0: give at least one a positive weight ({mix})")
    return mix
