"""T5's span corruption (Raffel et al. 2020, sec. 3.1.4 and 3.3.4), as pure functions on token ids.

Choose ~15% of the tokens as noise, in spans of mean length 3. The input keeps the other tokens and puts
one sentinel where each noise span was; the target lists each noise span after the sentinel that replaced
it, then one final sentinel, then </s>. The paper's Figure 2, with {for inviting} and {last} chosen:

    original  Thank you for inviting me to your party last week .
    inputs    Thank you <extra_id_0> me to your party <extra_id_1> week . </s>
    targets   <extra_id_0> for inviting <extra_id_1> last <extra_id_2> </s>

Sentinels are numbered from the END of the vocabulary: <extra_id_0> = vocab_size - 1, <extra_id_1> =
vocab_size - 2, ... (T5's SentencePiece model plus 100 extra ids; HF T5Tokenizer `extra_ids`;
lmforge.tokenizers.UnigramTokenizer.train(extra_ids=N) builds that layout).

Where the spans come from (`noise_mask`) is T5's `random_spans_noise_mask` (text-to-text-transfer-transformer,
t5/data/preprocessors.py): round(length * 0.15) noise tokens, round(that / 3) spans; the noise count and the
non-noise count are each cut into that many non-empty spans at random (a uniformly random composition), and
the two kinds alternate, non-noise first. Shared by both kinds of count, the number of spans is fixed, so the
mean noise span length is 3 up to rounding, and no two noise spans touch.

The final sentinel: the paper's text and Figure 2 (and the training example in HF's T5 docs) end the target
with a sentinel after the last span; T5's own preprocessor does not add one (its sequences always end in a
noise span). We follow the paper: `final_sentinel=True` (pass False for T5's code). Both end with </s>.
"""
from __future__ import annotations

import random
from typing import Sequence

NOISE_DENSITY = 0.15  # sec. 3.1.4: "randomly samples and then drops out 15% of tokens"
MEAN_SPAN = 3.0  # sec. 3.3.4, Table 6: mean span length 3 (the baseline objective of the final T5)


def sentinel_id(k: int, vocab_size: int) -> int:
    """Id of <extra_id_k>: vocab_size - 1 - k. Example: vocab 32100 -> <extra_id_0> = 32099, <extra_id_1> = 32098."""
    return vocab_size - 1 - k


def random_segmentation(n_items: int, n_segments: int, rng: random.Random) -> list[int]:
    """Cut n_items into n_segments non-empty parts at random (each composition equally likely), as T5's
    `_random_segmentation`: choose n_segments - 1 of the n_items - 1 gaps to cut at. Example: 5 items, 2 segments ->
    one of [1, 4], [2, 3], [3, 2], [4, 1]."""
    if not 1 <= n_segments <= n_items:
        raise ValueError(f"cannot cut {n_items} items into {n_segments} non-empty segments")
    cuts = sorted(rng.sample(range(1, n_items), n_segments - 1))
    bounds = [0, *cuts, n_items]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def span_counts(length: int, density: float = NOISE_DENSITY, mean_span: float = MEAN_SPAN) -> tuple[int, int]:
    """(noise tokens, noise spans) T5 uses for a sequence of `length` tokens: round(length * density) clamped to
    [1, length - 1], and round(noise / mean_span), at least 1. Example: 100 tokens -> (15, 5)."""
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens (one kept, one noise), got {length}")
    if not 0.0 < density < 1.0:
        raise ValueError(f"noise density must be in (0, 1), got {density}")
    if mean_span < 1.0:
        raise ValueError(f"mean span length must be >= 1, got {mean_span}")
    noise = min(max(round(length * density), 1), length - 1)
    return noise, max(round(noise / mean_span), 1)


def noise_mask(length: int, rng: random.Random, density: float = NOISE_DENSITY,
               mean_span: float = MEAN_SPAN) -> list[bool]:
    """Which of `length` tokens are noise (True), in spans: T5's random_spans_noise_mask. The sequence starts with
    kept tokens and ends with a noise span; spans of the two kinds alternate."""
    noise, spans = span_counts(length, density, mean_span)
    noise_lengths = random_segmentation(noise, spans, rng)
    keep_lengths = random_segmentation(length - noise, spans, rng)
    mask: list[bool] = []
    for k, n in zip(keep_lengths, noise_lengths):
        mask += [False] * k + [True] * n
    return mask


def corrupt(ids: Sequence[int], mask: Sequence[bool], *, vocab_size: int, n_sentinels: int, eos_id: int,
            final_sentinel: bool = True) -> tuple[list[int], list[int]]:
    """(inputs, targets) for token ids and a noise mask (Figure 2; see the module docstring).

    inputs: the kept tokens, each noise span replaced by its sentinel, then eos_id. targets: for each span its
    sentinel and its tokens, then (final_sentinel) the next sentinel, then eos_id. `n_sentinels`: how many
    <extra_id_k> the vocabulary holds (at its end); more spans than that is a ValueError.
    """
    if len(ids) != len(mask):
        raise ValueError(f"{len(ids)} token ids but a mask of {len(mask)}: give one flag per token")
    starts = sum(1 for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))
    needed = starts + final_sentinel
    if needed > n_sentinels:
        raise ValueError(f"this sequence needs {needed} sentinels ({starts} noise spans"
                         f"{' + the final one' if final_sentinel else ''}) but the vocabulary has {n_sentinels} "
                         f"(<extra_id_0..{n_sentinels - 1}>); add more with extra_ids, or use shorter sequences")
    if n_sentinels > vocab_size:
        raise ValueError(f"{n_sentinels} sentinels do not fit in a vocabulary of {vocab_size} tokens")
    first = vocab_size - n_sentinels  # lowest sentinel id
    if any(i >= first for i in ids):
        bad = next(i for i in ids if i >= first)
        raise ValueError(f"token id {bad} is a sentinel id (ids >= {first} are <extra_id_k> in a vocabulary of "
                         f"{vocab_size}); the text must not contain sentinels")
    inputs: list[int] = []
    targets: list[int] = []
    k = 0
    for i, (t, m) in enumerate(zip(ids, mask)):
        if not m:
            inputs.append(t)
            continue
        if i == 0 or not mask[i - 1]:  # a span starts: one sentinel in both
            s = sentinel_id(k, vocab_size)
            inputs.append(s)
            targets.append(s)
            k += 1
        targets.append(t)
    if final_sentinel:
        targets.append(sentinel_id(k, vocab_size))
    return inputs + [eos_id], targets + [eos_id]


def span_corrupt(ids: Sequence[int], rng: random.Random, *, vocab_size: int, n_sentinels: int, eos_id: int,
                 density: float = NOISE_DENSITY, mean_span: float = MEAN_SPAN,
                 final_sentinel: bool = True) -> tuple[list[int], list[int]]:
    """noise_mask then corrupt: one training pair (inputs, targets) from the token ids of a text."""
    mask = noise_mask(len(ids), rng, density, mean_span)
    return corrupt(ids, mask, vocab_size=vocab_size, n_sentinels=n_sentinels, eos_id=eos_id,
                   final_sentinel=final_sentinel)


def uncorrupt(inputs: Sequence[int], targets: Sequence[int], *, vocab_size: int, n_sentinels: int,
              eos_id: int) -> list[int]:
    """The original ids back from (inputs, targets): each sentinel in the inputs replaced by the tokens that follow
    the same sentinel in the targets. The inverse of `corrupt` (tested as such)."""
    first = vocab_size - n_sentinels
    spans: dict[int, list[int]] = {}
    cur = None
    for t in targets:
        if t == eos_id:
            break
        if t >= first:
            cur = spans.setdefault(t, [])
        elif cur is None:
            raise ValueError("targets must start with a sentinel")
        else:
            cur.append(t)
    out = []
    for t in inputs:
        if t == eos_id:
            break
        if t >= first and t not in spans:
            raise ValueError(f"sentinel id {t} is in the inputs but not in the targets: not a pair from corrupt()")
        out += spans[t] if t >= first else [t]
    return out
