"""GLM's blank infilling (lmforge.data.blank): the paper's Figure 2 rebuilt exactly, the three objectives'
spans, and the errors."""
import numpy as np
import pytest
import torch

from lmforge.data.blank import (IGNORE, KINDS, MIX, BlankTokens, blank_infill, build, check_mix, sample_spans,
                                sentence_spans)

TOK = BlankTokens(mask=1, smask=2, gmask=3, sop=4, eop=5)
X = [11, 12, 13, 14, 15, 16]  # x1 .. x6


def test_figure_2_six_tokens_two_spans_exactly():
    """Du et al. 2022, fig. 2: x1..x6, spans {x3} and {x5, x6}, part B ordered [x5 x6] then [x3]."""
    x1, x2, x3, x4, x5, x6 = X
    M, S, E = TOK.mask, TOK.sop, TOK.eop
    row = build(X, [(2, 3), (4, 6)], TOK, order=[1, 0])
    # (b) part A = x1 x2 [M] x4 [M]; part B = [S] x5 x6 [S] x3
    assert row.ids == [x1, x2, M, x4, M, S, x5, x6, S, x3]
    assert row.prefix_len == 5
    # (c) targets: part B's next tokens, each span closed by [E]
    assert row.targets == [IGNORE] * 5 + [x5, x6, E, x3, E]
    # (c) position 1: the figure counts from 1 (1 2 3 4 5 5 5 5 3 3); lmforge's tables count from 0
    assert [p + 1 for p in row.positions] == [1, 2, 3, 4, 5, 5, 5, 5, 3, 3]
    assert row.positions == [0, 1, 2, 3, 4, 4, 4, 4, 2, 2]
    # (c) position 2
    assert row.block_positions == [0, 0, 0, 0, 0, 1, 2, 3, 1, 2]
    # (d) the attention mask, rows = queries: part A sees part A; part B sees part A and itself causally
    A, B = 1, 0
    figure = [
        [A, A, A, A, A, B, B, B, B, B],  # x1
        [A, A, A, A, A, B, B, B, B, B],  # x2
        [A, A, A, A, A, B, B, B, B, B],  # [M]
        [A, A, A, A, A, B, B, B, B, B],  # x4
        [A, A, A, A, A, B, B, B, B, B],  # [M]
        [A, A, A, A, A, 1, B, B, B, B],  # [S]
        [A, A, A, A, A, 1, 1, B, B, B],  # x5
        [A, A, A, A, A, 1, 1, 1, B, B],  # x6
        [A, A, A, A, A, 1, 1, 1, 1, B],  # [S]
        [A, A, A, A, A, 1, 1, 1, 1, 1],  # x3
    ]
    assert torch.equal(row.attention_mask(), torch.tensor(figure, dtype=torch.bool))
    assert row.spans == [(4, 6), (2, 3)]


def test_text_order_and_other_blank_tokens():
    row = build(X, [(4, 6), (2, 3)], TOK, kind="smask")  # spans in any order; part B in text order by default
    assert row.ids == [11, 12, 2, 14, 2, 4, 13, 4, 15, 16]
    assert row.positions[5:] == [2, 2, 4, 4, 4] and row.block_positions[5:] == [1, 2, 1, 2, 3]


def test_mask_spans_cover_15_percent_with_poisson_lengths():
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(300):
        spans, kind = sample_spans(100, "mask", rng)
        covered = sum(e - s for s, e in spans)
        assert kind == "mask" and 15 <= covered < 100
        assert all(e < s2 for (_, e), (s2, _) in zip(spans, spans[1:])), "spans are apart, never adjacent"
        lengths += [e - s for s, e in spans[:-1]]  # the last one may be cut to the room left
    assert abs(np.mean(lengths) - 3.0 / (1 - np.exp(-3.0))) < 0.25  # Poisson(3) without zeros: mean 3.16


def test_sentence_spans_are_whole_sentences_and_document_span_is_the_end():
    ids = [7, 7, 9, 7, 7, 7, 9, 7, 9, 7, 7, 7, 7, 9, 7, 9, 7, 7, 7, 9]
    sentences = sentence_spans(ids, [9])
    assert sentences[:2] == [(0, 3), (3, 7)]
    rng = np.random.default_rng(1)
    for _ in range(20):
        row = blank_infill(ids, TOK, rng, kind="smask", sentence_end_ids=[9])
        assert row.kind == "smask" and all(s in sentences for s in row.spans)
        assert sum(e - s for s, e in row.spans) >= 3 and TOK.smask in row.ids[:row.prefix_len]
        row = blank_infill(ids, TOK, rng, kind="gmask")
        (s, e), = row.spans
        assert e == 20 and 10 <= e - s <= 19 and row.ids[row.prefix_len - 1] == TOK.gmask
    # one sentence only: nothing would stay around it, so short spans instead
    assert blank_infill([7] * 20, TOK, rng, kind="smask", sentence_end_ids=[9]).kind == "mask"


def test_mix_draws_every_kind_and_part_b_is_shuffled():
    rng = np.random.default_rng(2)
    rows = [blank_infill(list(range(20, 60)), TOK, rng, sentence_end_ids=[30, 45]) for _ in range(200)]
    kinds = {k: sum(r.kind == k for r in rows) for k in KINDS}
    assert all(kinds[k] > 0.5 * MIX[k] * 200 for k in KINDS), kinds
    assert any([s for s, _ in r.spans] != sorted(s for s, _ in r.spans) for r in rows), "part B order is shuffled"
    for r in rows:  # every row is the original text again: part A with its blanks filled by part B
        filled, spans_in_b = list(r.ids[:r.prefix_len]), {}
        i = r.prefix_len
        for s, e in r.spans:
            spans_in_b[r.positions[i]] = r.ids[i + 1:i + 1 + e - s]
            i += e - s + 1
        text = []
        for p, t in enumerate(filled):
            text += spans_in_b[p] if p in spans_in_b else [t]
        assert text == list(range(20, 60))


def test_errors_say_what_is_wrong():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown mask kind 'xmask'"):
        sample_spans(10, "xmask", rng)
    with pytest.raises(ValueError, match="unknown mask kind 'bmask'"):
        check_mix({"mask": 0.5, "bmask": 0.5})
    with pytest.raises(ValueError, match="a blank needs text around it"):
        sample_spans(1, "mask", rng)
    with pytest.raises(ValueError, match="cover all 6 tokens"):
        build(X, [(0, 6)], TOK)
    with pytest.raises(ValueError, match=r"span \(4, 9\) does not fit a text of 6 tokens"):
        build(X, [(4, 9)], TOK)
    with pytest.raises(ValueError, match="overlap"):
        build(X, [(1, 3), (2, 4)], TOK)
    with pytest.raises(ValueError, match="no \\[sMASK\\], <eop>"):
        BlankTokens.from_vocab({"[MASK]": 1, "[gMASK]": 3, "<sop>": 4})
