"""Beam search (beam 1 == greedy, length penalty), label smoothing against a hand computation, the schedule."""
import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.generate.seq2seq import beam_search, greedy, length_penalty
from lmforge.models import build_model
from lmforge.objectives import label_smoothed_cross_entropy
from lmforge.train.optim import Schedule


def tiny(family):
    torch.manual_seed(3)
    preset = {"transformer": dict(vocab_size=40, max_len=64, d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0),
              "lstm": dict(vocab_size=40, max_len=64, d_model=32, n_layers=1, dropout=0.0)}[family]
    return build_model(family, preset).eval()


@pytest.mark.parametrize("family", ["transformer", "lstm"])
def test_beam_one_is_greedy(family):
    model = tiny(family)
    src = torch.randint(3, 40, (6, 9))
    src[2, 5:] = 0  # a padded row
    assert beam_search(model, src, beam=1, max_new_tokens=20) == greedy(model, src, max_new_tokens=20)


@pytest.mark.parametrize("family", ["transformer", "lstm"])
def test_beam_search_scores_at_least_as_well_as_its_hypotheses(family):
    """The returned hypothesis is the best-scoring of those found: compare with greedy under the same score."""
    model = tiny(family)
    eos_bias = torch.zeros(40)
    eos_bias[2] = 3.0  # make </s> a real candidate, so hypotheses end inside the limit (untouched, none did)
    model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + eos_bias)
    src = torch.randint(3, 40, (8, 7))

    def score(row, ids):
        tgt = torch.tensor([[1] + ids])
        logp = model(src[row:row + 1], tgt).logits.log_softmax(-1)[0]
        full = ids + [2]
        return sum(logp[t, full[t]].item() for t in range(len(full))) / length_penalty(len(full), 0.6)
    beams, greedies = beam_search(model, src, beam=4, max_new_tokens=12), greedy(model, src, max_new_tokens=12)
    ended = [row for row in range(8) if len(beams[row]) < 12 and len(greedies[row]) < 12]  # both emitted </s>
    assert len(ended) >= 4, (beams, greedies)
    if family == "transformer":  # here beam search finds other answers than greedy (the tiny LSTM's are the same)
        assert any(beams[row] != greedies[row] for row in ended)
    for row in ended:
        assert score(row, beams[row]) >= score(row, greedies[row]) - 1e-4


def test_length_penalty_values():
    assert length_penalty(1, 0.6) == 1.0  # ((5 + 1) / 6) ** alpha
    assert abs(length_penalty(7, 0.6) - 2 ** 0.6) < 1e-12
    assert length_penalty(30, 0.0) == 1.0


def test_decoding_refuses_decoder_only_models_and_bad_input():
    gpt = build_model("gpt", "gpt-tiny")
    with pytest.raises(ValueError, match="not an encoder-decoder"):
        greedy(gpt, torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="beam must be >= 1"):
        beam_search(tiny("transformer"), torch.ones(1, 3, dtype=torch.long), beam=0)
    with pytest.raises(ValueError, match="length >= 1"):
        greedy(tiny("transformer"), torch.ones(1, 0, dtype=torch.long))


def test_label_smoothing_against_hand_computation():
    # V = 2, eps = 0.1, logits (2, 0): -log p = (log(1 + e^-2), 2 + log(1 + e^-2)) = (0.126928, 2.126928)
    # loss = 0.9 * 0.126928 + 0.1 * (0.126928 + 2.126928) / 2 = 0.226928
    loss = label_smoothed_cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), 0.1)
    assert abs(loss.item() - (0.9 * math.log1p(math.exp(-2)) + 0.1 * (2 + 2 * math.log1p(math.exp(-2))) / 2)) < 1e-6
    assert abs(loss.item() - 0.226928) < 1e-6
    # uniform logits: smoothing changes nothing, loss = log V
    assert abs(label_smoothed_cross_entropy(torch.zeros(1, 5), torch.tensor([3])).item() - math.log(5)) < 1e-6
    # eps = 0 is plain cross-entropy; -100 is ignored; same as torch's label_smoothing
    x, y = torch.randn(2, 4, 11), torch.randint(0, 11, (2, 4))
    y[1, 3] = -100
    torch.testing.assert_close(label_smoothed_cross_entropy(x, y, 0.0), F.cross_entropy(x.view(-1, 11), y.view(-1)))
    torch.testing.assert_close(label_smoothed_cross_entropy(x, y, 0.1),
                               F.cross_entropy(x.view(-1, 11), y.view(-1), label_smoothing=0.1))
    with pytest.raises(ValueError, match="epsilon"):
        label_smoothed_cross_entropy(x, y, 1.0)


def test_inverse_sqrt_schedule_is_the_papers_formula():
    """Vaswani et al. 2017 eq. 3: lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), d_model 512, warmup 4000."""
    s = Schedule("inverse_sqrt", lr=(512 * 4000) ** -0.5, warmup_steps=4000, max_steps=100_000)
    for step in (1, 100, 1000, 4000, 10_000, 100_000):
        paper = 512 ** -0.5 * min(step ** -0.5, step * 4000 ** -1.5)
        assert abs(s(step - 1) - paper) < 1e-12  # our step is 0-based
    assert abs(s(3999) - 6.9877e-4) < 1e-7  # the peak, at the end of warmup
