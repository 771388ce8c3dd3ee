"""Logit processors on hand-made distributions; their docstring examples are run as doctests."""
import doctest
import math

import pytest
import torch

from lmforge.generate import FILTERS, SamplingParams, sampling
from lmforge.generate.sampling import (banned_ngram_tokens, min_p, presence_frequency_penalty, repetition_penalty,
                                       top_k, top_p, typical)

P = torch.tensor([0.5, 0.3, 0.15, 0.05])


def kept(logits):
    return (~logits.isneginf()).nonzero().flatten().tolist()


def test_docstring_examples_hold():
    result = doctest.testmod(sampling, extraglobs={"torch": torch, "math": math})
    assert result.attempted >= 9 and result.failed == 0


@pytest.mark.parametrize("p, expected", [(0.4, [0]), (0.5, [0]), (0.75, [0, 1]), (0.85, [0, 1, 2]), (0.99, [0, 1, 2, 3]),
                                         (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_smallest_set_reaching_p(p, expected):
    assert kept(top_p(P.log(), p)) == expected


def test_top_p_works_on_unsorted_rows_independently():
    logits = torch.stack([P[[2, 0, 3, 1]].log(), torch.tensor([0.05, 0.05, 0.1, 0.8]).log()])
    out = top_p(logits, 0.75)
    assert kept(out[0]) == [1, 3] and kept(out[1]) == [3]
    # the kept tokens are renormalised in proportion: 0.5 : 0.3
    torch.testing.assert_close(out[0].softmax(-1)[[1, 3]], torch.tensor([0.625, 0.375]))


@pytest.mark.parametrize("k, expected", [(1, [0]), (2, [0, 1]), (3, [0, 1, 2]), (0, [0, 1, 2, 3]), (9, [0, 1, 2, 3])])
def test_top_k(k, expected):
    assert kept(top_k(P[[0, 1, 2, 3]].log(), k)) == expected


def test_top_p_on_a_flat_large_vocabulary_equals_a_full_sort():
    logits = torch.randn(3, 5000) * 0.3  # nucleus of thousands of tokens: the widening search must reach it
    for p in (0.05, 0.5, 0.9):
        probs, order = logits.softmax(-1).sort(-1, descending=True)
        n_keep = ((probs.cumsum(-1) - probs) < p).sum(-1)
        assert (~top_p(logits, p).isneginf()).sum(-1).tolist() == n_keep.tolist()


def test_top_k_keeps_ties_and_never_empties_a_row():
    assert kept(top_k(torch.tensor([1.0, 3.0, 3.0, 0.0]), 1)) == [1, 2]
    assert len(kept(top_p(torch.tensor([0.0, 1.0, 0.0]), 1e-6))) == 1  # a tiny p keeps the top token only
    assert kept(top_p(torch.tensor([0.0, 0.0, 0.0]), 1e-6)) != []  # all tied: never empty


def test_min_p_and_typical():
    assert kept(min_p(P.log(), 0.2)) == [0, 1, 2]
    assert kept(min_p(P.log(), 0.7)) == [0]
    assert kept(typical(P.log(), 0.25)) == [1]  # the most typical token is not the most likely one
    assert kept(typical(P.log(), 0.5)) == [0, 1]
    # a uniform distribution is all typical: every token at distance 0 from the entropy
    assert kept(typical(torch.zeros(5), 0.9)) == [0, 1, 2, 3, 4]


def test_penalties():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.5]])
    counts = torch.tensor([[2, 1, 0, 1]])
    torch.testing.assert_close(repetition_penalty(logits, counts, 2.0), torch.tensor([[1.0, -2.0, 0.5, 0.25]]))
    torch.testing.assert_close(presence_frequency_penalty(logits, counts, 0.5, 0.25),
                               torch.tensor([[1.0, -1.75, 0.5, -0.25]]))
    assert banned_ngram_tokens([1, 2, 3, 1, 2], 3) == [3]
    assert banned_ngram_tokens([7, 7, 7], 2) == [7]
    assert banned_ngram_tokens([1, 2, 3], 3) == []  # (2, 3) never seen before


def test_process_order_and_tracking():
    params = SamplingParams(temperature=1.0, top_k=3, top_p=0.75, banned_tokens=(1,))
    p = torch.tensor([0.4, 0.25, 0.15, 0.12, 0.08])
    z, removed = params.process(p.log()[None], track=True)
    # banned removes 1 -> [0.533, -, 0.2, 0.16, 0.107]; top-k 3 removes 4 -> [0.597, -, 0.224, 0.179, -];
    # top-p 0.75 needs 0.597 + 0.224: removes 3
    by = {name: [] if m is None else m[0].nonzero().flatten().tolist() for name, m in zip(FILTERS, removed)}
    assert kept(z[0]) == [0, 2]
    assert by == {"banned": [1], "no_repeat_ngram": [], "top_k": [4], "top_p": [3], "typical_p": [], "min_p": []}


def test_greedy_ignores_filters_but_keeps_penalties():
    params = SamplingParams(temperature=0, top_k=1, logit_bias={3: 10.0})
    z, _ = params.process(P.log()[None])
    assert z.argmax(-1).item() == 3


@pytest.mark.parametrize("kwargs, name, allowed", [
    (dict(temperature=-0.1), "temperature", ">= 0"),
    (dict(top_k=-1), "top_k", ">= 0"),
    (dict(top_p=0.0), "top_p", r"in \(0, 1\]"),
    (dict(top_p=1.5), "top_p", r"in \(0, 1\]"),
    (dict(min_p=2.0), "min_p", r"in \[0, 1\]"),
    (dict(typical_p=0.0), "typical_p", r"in \(0, 1\]"),
    (dict(repetition_penalty=0.0), "repetition_penalty", "> 0"),
    (dict(presence_penalty=3.0), "presence_penalty", r"\[-2, 2\]"),
    (dict(frequency_penalty=-2.5), "frequency_penalty", r"\[-2, 2\]"),
    (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size", ">= 0"),
    (dict(banned_tokens=(99,), vocab_size=10), "banned_tokens", r"\[0, 9\]"),
])
def test_bad_parameters_name_the_parameter_and_range(kwargs, name, allowed):
    with pytest.raises(ValueError, match=f"{name} (must be|has token id).*{allowed}"):
        SamplingParams(**kwargs)
