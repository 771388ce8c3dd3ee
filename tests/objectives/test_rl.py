"""The RL losses (lmforge.objectives.rl): GRPO against TRL 1.16's GRPOTrainer on identical tensors; PPO's pieces
(TRL 1.16 has no PPO trainer any more) against the papers' equations written out step by step, with a GAE worked by
hand."""
import math
import types
from collections import defaultdict

import pytest
import torch

from lmforge.objectives.rl import (entropy, gae, grpo_advantages, grpo_loss, kl_k1, kl_k3, masked_mean,
                                   ppo_policy_loss, ppo_rewards, token_logprobs, value_loss, whiten)

trl_utils = pytest.importorskip("trl.trainer.utils")


def test_logprobs_and_entropy_match_trl():
    torch.manual_seed(0)
    logits, tokens = torch.randn(3, 5, 11) * 2, torch.randint(0, 11, (3, 5))
    torch.testing.assert_close(token_logprobs(logits, tokens), trl_utils.selective_log_softmax(logits, tokens))
    torch.testing.assert_close(entropy(logits), trl_utils.entropy_from_logits(logits))
    assert abs(entropy(torch.zeros(1, 4)).item() - math.log(4)) < 1e-6
    assert abs(token_logprobs(torch.tensor([[[0.5, 0.3, 0.2]]]).log(), torch.tensor([[1]])).item() - math.log(0.3)) < 1e-6


def test_kl_estimators_worked_and_unbiased():
    lp, ref = torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25))
    assert abs(kl_k1(lp, ref).item() - math.log(2)) < 1e-6
    assert abs(kl_k3(lp, ref).item() - (0.5 - math.log(0.5) - 1)) < 1e-6
    # both are unbiased estimators of KL(pi || ref) for y ~ pi (Schulman 2020): exact expectation over a 3-way pi
    p, q = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.2, 0.5, 0.3])
    kl = (p * (p / q).log()).sum()
    torch.testing.assert_close((p * kl_k1(p.log(), q.log())).sum(), kl)
    torch.testing.assert_close((p * kl_k3(p.log(), q.log())).sum(), kl)
    assert (kl_k3(torch.randn(100), torch.randn(100)) >= 0).all()  # k3 is never negative


def test_gae_worked_by_hand():
    # gamma = 1, lam = 0.5; r = [0, 1], V = [.5, .2] (the docstring's example)
    #   t=1: delta = 1 + 0 - .2 = .8, A = .8;  t=0: delta = 0 + .2 - .5 = -.3, A = -.3 + .5 * .8 = .1
    adv, ret = gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.2]]), torch.ones(1, 2), gamma=1.0, lam=0.5)
    torch.testing.assert_close(adv, torch.tensor([[0.1, 0.8]]))
    torch.testing.assert_close(ret, torch.tensor([[0.6, 1.0]]))
    # three steps, gamma = .9, lam = .8, a padded row (its value after the end must count as 0):
    #   row 0: r = [0, 0, 2], V = [1, 1, 1]
    #     t=2: delta = 2 - 1 = 1,              A2 = 1
    #     t=1: delta = 0 + .9 - 1 = -.1,       A1 = -.1 + .72 * 1 = .62
    #     t=0: delta = 0 + .9 - 1 = -.1,       A0 = -.1 + .72 * .62 = .3464
    #   row 1: r = [0, 3, pad], V = [2, 1, 7 (pad)]
    #     t=1: delta = 3 + 0 - 1 = 2,          A1 = 2
    #     t=0: delta = 0 + .9 - 2 = -1.1,      A0 = -1.1 + .72 * 2 = .34
    r = torch.tensor([[0.0, 0.0, 2.0], [0.0, 3.0, 5.0]])
    v = torch.tensor([[1.0, 1.0, 1.0], [2.0, 1.0, 7.0]])
    m = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = gae(r, v, m, gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, torch.tensor([[0.3464, 0.62, 1.0], [0.34, 2.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[1.3464, 1.62, 2.0], [2.34, 3.0, 0.0]]))


def test_gae_is_the_discounted_sum_of_deltas():
    # Schulman et al. 2016 eq. 16: A_t = sum_l (gamma lam)^l delta_{t+l}; lam = 1 gives the return minus V
    torch.manual_seed(1)
    r, v, T = torch.randn(4, 6), torch.randn(4, 6), 6
    gamma, lam = 0.95, 0.9
    adv, _ = gae(r, v, torch.ones(4, 6), gamma, lam)
    nv = torch.cat([v[:, 1:], torch.zeros(4, 1)], 1)
    delta = r + gamma * nv - v
    by_sum = torch.stack([sum((gamma * lam) ** l * delta[:, t + l] for l in range(T - t)) for t in range(T)], 1)
    torch.testing.assert_close(adv, by_sum)
    adv1, ret1 = gae(r, v, torch.ones(4, 6), gamma, 1.0)
    disc = torch.stack([sum(gamma ** l * r[:, t + l] for l in range(T - t)) for t in range(T)], 1)
    torch.testing.assert_close(ret1, disc)


def test_whiten():
    torch.testing.assert_close(whiten(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([-1.0, 0.0, 1.0]))
    x, m = torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1, 1, 1, 0]])
    torch.testing.assert_close(whiten(x, m), torch.tensor([[-1.0, 0.0, 1.0, 0.0]]))  # the masked 100 is not counted
    torch.testing.assert_close(whiten(x, m, shift_mean=False), torch.tensor([[1.0, 2.0, 3.0, 0.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        whiten(torch.tensor([1.0]))


def test_ppo_rewards_put_the_score_on_the_last_token():
    score = torch.tensor([1.0, 2.0])
    lp, ref = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]).log(), torch.full((2, 3), 0.25).log()
    m = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards, kl = ppo_rewards(score, lp, ref, m, kl_coef=0.5)
    k1 = (lp - ref) * m
    expected = -0.5 * k1
    expected[0, 2] += 1.0
    expected[1, 1] += 2.0
    torch.testing.assert_close(rewards, expected)
    torch.testing.assert_close(kl, k1)
    with pytest.raises(ValueError, match="no response token"):
        ppo_rewards(score, lp, ref, torch.tensor([[1, 0, 0], [0, 0, 0]]), 0.5)


def test_ppo_policy_loss_is_eq7():
    torch.manual_seed(2)
    lp, old, adv = torch.randn(3, 4) * 0.3, torch.randn(3, 4) * 0.3, torch.randn(3, 4)
    m = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    out = ppo_policy_loss(lp, old, adv, m, clip=0.2)
    # L^CLIP = E_t[min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)], written out element by element
    total, n, clipped = 0.0, 0, 0
    for b in range(3):
        for t in range(4):
            if m[b, t]:
                r = math.exp(lp[b, t] - old[b, t])
                a = float(adv[b, t])
                cl = min(max(r, 0.8), 1.2)
                total += -min(r * a, cl * a)
                clipped += cl * a < r * a
                n += 1
    assert abs(out.loss.item() - total / n) < 1e-6
    assert abs(float(out.metrics["clip_frac"]) - clipped / n) < 1e-6
    # inside the clip range the gradient is the plain policy gradient, -A * ratio * dlogp
    lp = torch.zeros(1, 2, requires_grad=True)
    ppo_policy_loss(lp, torch.zeros(1, 2), torch.tensor([[1.0, -2.0]]), torch.ones(1, 2)).loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-0.5, 1.0]]))
    # outside it, in the direction the advantage pushes, no gradient
    lp = torch.full((1, 1), 0.5, requires_grad=True)
    ppo_policy_loss(lp, torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1)).loss.backward()
    assert lp.grad.item() == 0.0


def test_value_loss_clipped():
    v, old, ret = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.5, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 2.0]])
    out = value_loss(v, old, ret, torch.ones(1, 3), clip=0.2)
    # t0: V=1, clip to .7: max(1, .49) = 1;  t1: 1, 1 -> 1;  t2: V=2 (exact), clip to .2: max(0, 3.24) = 3.24
    assert abs(out.loss.item() - 0.5 * (1 + 1 + 3.24) / 3) < 1e-6
    assert abs(float(out.metrics["vf_clip_frac"]) - 1 / 3) < 1e-6


def test_grpo_advantages_match_trl():
    r = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.9, 0.4, 0.1])
    ours = grpo_advantages(r, 2)
    torch.testing.assert_close(ours[:4], torch.tensor([0.7070, -0.7070, 0.0, 0.0]), atol=1e-4, rtol=0)
    # TRL's GRPOTrainer._generate_and_score_completions (scale_rewards="group"), its lines written out here with
    # its nanstd (the computation is inline, not a callable)
    for G in (2, 4):
        mean = torch.nanmean(r.view(-1, G), dim=1).repeat_interleave(G, dim=0)
        std = trl_utils.nanstd(r.view(-1, G), dim=1).repeat_interleave(G, dim=0)
        torch.testing.assert_close(grpo_advantages(r, G), (r - mean) / (std + 1e-4))
    with pytest.raises(ValueError, match="at least 2"):
        grpo_advantages(r, 1)
    with pytest.raises(ValueError, match="groups of 3"):
        grpo_advantages(r, 3)


def _trl_grpo_loss(logp, old_logp, ref_logp, advantages, mask, clip, beta):
    """TRL 1.16's GRPOTrainer._compute_loss on our tensors: the method runs unchanged on a stand-in `self` whose
    log-probability function returns `logp` (what the model would give); loss_type "grpo", token-level ratios."""
    from trl import GRPOTrainer

    B, T = logp.shape
    me = types.SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta,
        args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None), loss_type="grpo",
        epsilon_low=clip, epsilon_high=clip, use_vllm=False, model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, _entropy_bonus_enabled=False, aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        accelerator=types.SimpleNamespace(reduce=lambda x, reduction: x, gather=lambda x: x))
    inputs = {"prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
              "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
              "advantages": advantages, "old_per_token_logps": old_logp, "ref_per_token_logps": ref_logp}
    loss = GRPOTrainer._compute_loss(me, None, inputs)
    return loss, me._metrics["train"]


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_matches_trl(beta):
    torch.manual_seed(3)
    B, T = 6, 5
    old, ref = torch.randn(B, T) * 0.5 - 2, torch.randn(B, T) * 0.5 - 2
    base = old + torch.randn(B, T) * 0.3  # ratios on both sides of the clip range
    adv = grpo_advantages(torch.rand(B), 3)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 4 + [0], [1] * 5, [1, 0, 0, 0, 0], [1] * 2 + [0] * 3])
    ours_lp, trl_lp = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    ours = grpo_loss(ours_lp, old, ref, adv, mask, clip=0.2, beta=beta)
    theirs, metrics = _trl_grpo_loss(trl_lp, old, ref, adv, mask, 0.2, beta)
    torch.testing.assert_close(ours.loss, theirs)
    ours.loss.backward()
    theirs.backward()
    torch.testing.assert_close(ours_lp.grad, trl_lp.grad)
    assert abs(float(ours.metrics["clip_frac"]) - metrics["clip_ratio/region_mean"][0]) < 1e-6
    if beta:
        assert abs(float(ours.metrics["kl"]) - metrics["kl"][0]) < 1e-6


def test_grpo_loss_is_eq3_written_out():
    # Shao et al. 2024 eq. 3: 1/G sum_i 1/|o_i| sum_t [min(ratio A, clip(ratio) A) - beta D_KL], D_KL from eq. 4
    lp = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
    old = torch.tensor([[-1.1, -2.0], [-0.9, -9.0]])
    ref = torch.tensor([[-1.0, -1.5], [-0.7, -9.0]])
    adv, mask, beta, eps = torch.tensor([1.0, -1.0]), torch.tensor([[1, 1], [1, 0]]), 0.1, 0.2
    total = 0.0
    for i in range(2):
        n = int(mask[i].sum())
        s = 0.0
        for t in range(n):
            r = math.exp(lp[i, t] - old[i, t])
            a = float(adv[i])
            d = math.exp(ref[i, t] - lp[i, t]) - (ref[i, t] - lp[i, t]) - 1
            s += min(r * a, min(max(r, 1 - eps), 1 + eps) * a) - beta * d
        total += s / n
    assert abs(grpo_loss(lp, old, ref, adv, mask, eps, beta).loss.item() - (-total / 2)) < 1e-6


def test_masked_mean():
    assert masked_mean(torch.tensor([[1.0, 2.0, 9.0]]), torch.tensor([[1, 1, 0]])).item() == 1.5
