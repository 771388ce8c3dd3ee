"""T5 span corruption (lmforge.data.span): the paper's Figure 2, T5's span statistics, the inverse, bad input."""
import random
import statistics

import pytest

from lmforge.data.span import (corrupt, noise_mask, random_segmentation, sentinel_id, span_corrupt, span_counts,
                               uncorrupt)

WORDS = "Thank you for inviting me to your party last week .".split()


def test_paper_figure_2():
    # Raffel et al. 2020, Figure 2: "for inviting" and "last" dropped; a word-level vocabulary of the sentence's
    # 11 words + </s>, then 3 sentinels at the end: <extra_id_0> = 14, <extra_id_1> = 13, <extra_id_2> = 12
    vocab = WORDS + ["</s>", "<extra_id_2>", "<extra_id_1>", "<extra_id_0>"]
    ids = [vocab.index(w) for w in WORDS]
    mask = [w in ("for", "inviting", "last") for w in WORDS]
    inputs, targets = corrupt(ids, mask, vocab_size=len(vocab), n_sentinels=3, eos_id=vocab.index("</s>"))
    assert " ".join(vocab[i] for i in inputs) == "Thank you <extra_id_0> me to your party <extra_id_1> week . </s>"
    assert " ".join(vocab[i] for i in targets) == "<extra_id_0> for inviting <extra_id_1> last <extra_id_2> </s>"
    assert sentinel_id(0, len(vocab)) == 14 == vocab.index("<extra_id_0>")
    # T5's own preprocessor leaves out the final sentinel
    _, t5_targets = corrupt(ids, mask, vocab_size=len(vocab), n_sentinels=3, eos_id=11, final_sentinel=False)
    assert " ".join(vocab[i] for i in t5_targets) == "<extra_id_0> for inviting <extra_id_1> last </s>"


def test_counts_as_t5():
    assert span_counts(100) == (15, 5)  # round(100 * 0.15) noise tokens in round(15 / 3) spans
    assert span_counts(11) == (2, 1)
    assert span_counts(2) == (1, 1)  # at least one noise token and one kept
    assert span_counts(512) == (77, 26)  # T5's 512-token inputs: 77 noise tokens in 26 spans


def test_random_segmentation_is_uniform_over_compositions():
    rng = random.Random(0)
    seen = {}
    for _ in range(4000):
        parts = tuple(random_segmentation(5, 2, rng))
        assert sum(parts) == 5 and min(parts) >= 1
        seen[parts] = seen.get(parts, 0) + 1
    assert sorted(seen) == [(1, 4), (2, 3), (3, 2), (4, 1)]
    assert min(seen.values()) > 850  # 1000 each expected


@pytest.mark.parametrize("length", [2, 7, 20, 100, 333])
def test_mask_invariants(length):
    rng = random.Random(length)
    noise, spans = span_counts(length)
    for _ in range(50):
        mask = noise_mask(length, rng)
        assert len(mask) == length and sum(mask) == noise
        assert not mask[0] and mask[-1]  # kept tokens first, a noise span last (T5)
        starts = sum(1 for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))
        assert starts == spans


def test_density_and_mean_span_length_over_many_sequences():
    rng = random.Random(1)
    lengths, noise, total = [], 0, 0
    for _ in range(300):
        mask = noise_mask(200, rng)
        noise += sum(mask)
        total += len(mask)
        run = 0
        for m in mask + [False]:
            if m:
                run += 1
            elif run:
                lengths.append(run)
                run = 0
    assert noise / total == pytest.approx(0.15)
    assert statistics.mean(lengths) == pytest.approx(3.0, abs=0.01)


def test_reconstruction_and_determinism():
    vocab_size, n = 1000, 100
    rng = random.Random(7)
    for length in (5, 30, 257):
        ids = [rng.randrange(3, vocab_size - n) for _ in range(length)]
        a = span_corrupt(ids, random.Random(42), vocab_size=vocab_size, n_sentinels=n, eos_id=1)
        assert a == span_corrupt(ids, random.Random(42), vocab_size=vocab_size, n_sentinels=n, eos_id=1)
        inputs, targets = a
        assert uncorrupt(inputs, targets, vocab_size=vocab_size, n_sentinels=n, eos_id=1) == ids
        sentinels = [t for t in inputs if t >= vocab_size - n]
        assert sentinels == [sentinel_id(k, vocab_size) for k in range(len(sentinels))]
        assert targets[-2] == sentinel_id(len(sentinels), vocab_size) and targets[-1] == inputs[-1] == 1
        # every token is in exactly one of the two, once
        assert len(inputs) + len(targets) == length + 2 * len(sentinels) + 1 + 2
    assert span_corrupt(list(range(3, 103)), random.Random(1), vocab_size=500, n_sentinels=10, eos_id=1) != \
        span_corrupt(list(range(3, 103)), random.Random(2), vocab_size=500, n_sentinels=10, eos_id=1)


def test_too_few_sentinels_is_a_clear_error():
    ids = list(range(3, 103))  # 100 tokens: 5 spans + the final sentinel = 6 sentinels
    with pytest.raises(ValueError, match="needs 6 sentinels .* has 5"):
        span_corrupt(ids, random.Random(0), vocab_size=200, n_sentinels=5, eos_id=1)
    assert span_corrupt(ids, random.Random(0), vocab_size=200, n_sentinels=5, eos_id=1, final_sentinel=False)
    with pytest.raises(ValueError, match="do not fit"):
        corrupt([3, 4], [False, True], vocab_size=4, n_sentinels=5, eos_id=1)


def test_bad_input():
    with pytest.raises(ValueError, match="is a sentinel id"):
        corrupt([3, 99], [False, True], vocab_size=100, n_sentinels=2, eos_id=1)
    with pytest.raises(ValueError, match="one flag per token"):
        corrupt([3, 4], [True], vocab_size=100, n_sentinels=2, eos_id=1)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        noise_mask(1, random.Random(0))
    with pytest.raises(ValueError, match="density"):
        noise_mask(10, random.Random(0), density=1.5)
    with pytest.raises(ValueError, match="not in the targets"):
        uncorrupt([3, 99, 1], [98, 5, 1], vocab_size=100, n_sentinels=2, eos_id=1)
    with pytest.raises(ValueError, match="start with a sentinel"):
        uncorrupt([3, 99, 1], [5, 99, 1], vocab_size=100, n_sentinels=2, eos_id=1)
