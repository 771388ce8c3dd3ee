"""The distillation terms (Hinton et al. 2015; Sanh et al. 2019) against the formulas written out and torch's losses."""
import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.objectives import LossOutput, cosine_loss, distillation_loss, soft_target_loss


def test_soft_target_worked_example():
    # T = 1: p_t = (0.5, 0.5), p_s = (0.75, 0.25): KL = 0.5 log(0.5/0.75) + 0.5 log(0.5/0.25) = 0.5 log(4/3)
    s, t = torch.tensor([[math.log(3.0), 0.0]]), torch.zeros(1, 2)
    assert abs(soft_target_loss(s, t, 1.0).item() - 0.5 * math.log(4 / 3)) < 1e-6
    assert abs(soft_target_loss(s, t, 1.0).item() - 0.143841) < 1e-6
    # equal logits: 0 at any temperature
    assert soft_target_loss(t + 3.0, t + 3.0, 2.0).item() == 0.0


def test_soft_target_is_the_formula_and_kldivloss():
    torch.manual_seed(0)
    s, t, T = torch.randn(4, 7, 11), torch.randn(4, 7, 11) * 3, 2.0
    p_t, p_s = F.softmax(t / T, -1), F.softmax(s / T, -1)
    by_hand = (p_t * (p_t.log() - p_s.log())).sum(-1).mean() * T * T  # KL summed over classes, mean over rows
    torch.testing.assert_close(soft_target_loss(s, t, T), by_hand)
    ref = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s.view(-1, 11) / T, -1),
                                                     F.softmax(t.view(-1, 11) / T, -1)) * T ** 2
    torch.testing.assert_close(soft_target_loss(s, t, T), ref)
    # the mask keeps only the chosen rows (e.g. the masked-LM positions)
    mask = torch.zeros(4, 7, dtype=torch.bool)
    mask[0, 1] = mask[2, 5] = True
    torch.testing.assert_close(soft_target_loss(s, t, T, mask), soft_target_loss(s[mask], t[mask], T))
    # Hinton et al.'s T^2 (sec. 2.1): at high T the gradient tends to (z_s - z_t) / (N V) (logits centred),
    # whatever T is, so the soft term keeps its weight against the hard-label term
    centred = lambda z: z - z.mean(-1, keepdim=True)  # noqa: E731
    s, t = s.double(), t.double()
    for T, error in ((1e4, 2e-5), (1e5, 2e-6)):  # the next term of the expansion shrinks as 1/T
        s1 = s.clone().requires_grad_(True)
        soft_target_loss(s1, t, T).backward()
        torch.testing.assert_close(s1.grad, (centred(s) - centred(t)) / (28 * 11), atol=error, rtol=0)


def test_cosine_loss_formula_and_cosineembeddingloss():
    assert abs(cosine_loss(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])).item() - (1 - 1 / math.sqrt(2))) < 1e-6
    h = torch.randn(3, 5)
    assert cosine_loss(h, 2 * h).item() < 1e-6 and abs(cosine_loss(h, -h).item() - 2.0) < 1e-6
    torch.manual_seed(0)
    s, t = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    by_hand = 1 - (s * t).sum(-1) / (s.norm(dim=-1) * t.norm(dim=-1))
    torch.testing.assert_close(cosine_loss(s, t), by_hand.mean())
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])  # padding is left out
    ref = torch.nn.CosineEmbeddingLoss()(s[mask.bool()], t[mask.bool()], torch.ones(8))
    torch.testing.assert_close(cosine_loss(s, t, mask), ref)
    torch.testing.assert_close(cosine_loss(s, t, mask), by_hand[mask.bool()].mean())


def test_distillation_loss_is_the_weighted_sum():
    torch.manual_seed(0)
    s, t = torch.randn(8, 45, requires_grad=True), torch.randn(8, 45)
    hs, ht = torch.randn(8, 32, requires_grad=True), torch.randn(8, 32)
    y = torch.randint(0, 45, (8,))
    task = F.cross_entropy(s, y)
    out = distillation_loss(s, t, task, hs, ht)  # the paper's 5, 2, 1 and T = 2
    assert isinstance(out, LossOutput)
    kl = (F.softmax(t / 2, -1) * (F.log_softmax(t / 2, -1) - F.log_softmax(s / 2, -1))).sum(-1).mean() * 4
    cos = (1 - F.cosine_similarity(hs, ht, dim=-1)).mean()
    torch.testing.assert_close(out.loss, 5 * kl + 2 * task + 1 * cos)
    torch.testing.assert_close(out.metrics["distill_kl"], kl.detach())
    torch.testing.assert_close(out.metrics["distill_cos"], cos.detach())
    torch.testing.assert_close(out.metrics["distill_task"], task.detach())
    other = distillation_loss(s, t, task, hs, ht, alpha_ce=1, alpha_task=0.5, alpha_cos=0, temperature=1)
    kl1 = (F.softmax(t, -1) * (F.log_softmax(t, -1) - F.log_softmax(s, -1))).sum(-1).mean()
    torch.testing.assert_close(other.loss, kl1 + 0.5 * task)
    assert other.metrics["distill_cos"].item() == 0.0
    out.loss.backward()  # gradients reach the student's logits and hidden states
    assert s.grad.abs().sum() > 0 and hs.grad.abs().sum() > 0


def test_bad_input_says_what_to_do():
    s = torch.randn(2, 5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        soft_target_loss(s, s, 0.0)
    with pytest.raises(ValueError, match="same classes"):
        soft_target_loss(s, torch.randn(2, 6))
    with pytest.raises(ValueError, match="same width"):
        cosine_loss(s, torch.randn(2, 6))
    with pytest.raises(ValueError, match="one true/false per vector"):
        cosine_loss(s, s, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="alpha_cos must be >= 0"):
        distillation_loss(s, s, s.sum(), s, s, alpha_cos=-1)
    with pytest.raises(ValueError, match="all 0"):
        distillation_loss(s, s, s.sum(), s, s, alpha_ce=0, alpha_task=0, alpha_cos=0)
