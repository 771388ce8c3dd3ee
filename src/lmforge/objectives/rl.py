"""Policy-gradient losses for post-training: PPO (Schulman et al. 2017) as RLHF uses it (Stiennon et al. 2020,
Ouyang et al. 2022) and GRPO (Shao et al. 2024, DeepSeekMath sec. 4.1). Pure functions on tensors; the rollouts,
the models and the reward live in the recipes (lmforge.train.recipes.ppo, .grpo).

Shapes: B sequences (rows), T positions of the response (the tokens the policy chose); `mask` (B, T) is 1 on
response tokens and 0 on the padding after a row's end; `logp` are the policy's log-probabilities of the chosen
tokens, `ref_logp` the frozen reference's (the SFT model), `old_logp` the policy's when it sampled the rollout.

Where we follow "The N implementation details of RLHF with PPO" (Huang et al. 2024, ICLR blog track; the details of
OpenAI's lm-human-preferences code), the detail is named "N-details" in a comment.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lmforge.objectives.output import LossOutput


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of x over the positions where mask is 1 (all of them, or along `dim`).

    Example: masked_mean([[1., 2., 9.]], [[1, 1, 0]]) -> 1.5"""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """log pi(token_t | context): logits (B, T, V) predicting tokens (B, T) -> (B, T), in float32.

    Example: logits log([0.5, 0.3, 0.2]) and token 1 -> log 0.3 = -1.204"""
    return torch.gather(F.log_softmax(logits.float(), -1), -1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy(logits: Tensor) -> Tensor:
    """Entropy of each position's next-token distribution, -sum_v p log p: (B, T, V) -> (B, T).

    Example: uniform over 4 tokens -> log 4 = 1.386"""
    logp = F.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1)


# ----------------------------------------------------------------------------- KL to the reference

def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token KL estimate k1 = log pi(y) - log pi_ref(y) for y ~ pi (Schulman 2020, "Approximating KL
    divergence"): unbiased, can be negative. What Stiennon et al. 2020 (eq. 1) and Ouyang et al. 2022 (eq. 2)
    put into the reward, beta * log(pi / pi_ref).

    Example: logp = log 0.5, ref_logp = log 0.25 -> log 2 = 0.693"""
    return logp - ref_logp


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token KL estimate k3 = pi_ref/pi - log(pi_ref/pi) - 1 for y ~ pi (Schulman 2020): unbiased and
    never negative. DeepSeekMath's GRPO penalty, Shao et al. 2024 eq. 4.

    Example: logp = log 0.5, ref_logp = log 0.25 -> 0.5 - log 0.5 - 1 = 0.193"""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


# ----------------------------------------------------------------------------- PPO

def whiten(x: Tensor, mask: Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the masked entries (all entries without a mask); shift_mean=False keeps the mean
    and only rescales (N-details: rewards are scaled without a shift, advantages whitened with one). The
    variance is the unbiased one (Bessel's correction), as the N-details code's masked_whiten.

    Example: whiten([1., 2., 3.]) -> [-1., 0., 1.] (std 1 with n - 1)"""
    mask = torch.ones_like(x) if mask is None else mask.to(x.dtype)
    n = mask.sum()
    if n < 2:
        raise ValueError(f"whiten needs at least 2 entries to estimate a variance, got {int(n)}")
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / (n - 1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def ppo_rewards(score: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor, kl_coef: float) -> tuple[Tensor, Tensor]:
    """The per-token reward of RLHF's PPO: -kl_coef * k1 at every response token, plus the sequence's score at
    its last token (Stiennon et al. 2020 eq. 1; Ouyang et al. 2022 eq. 2: R(x, y) - beta log(pi/pi_ref)).
    score (B,), the rest (B, T) -> (rewards (B, T), per-token k1 (B, T)), both 0 on padding.

    Example: score [1.], k1 [[.1, .2]], kl_coef .5 -> rewards [[-.05, -.1 + 1.]]"""
    mask = mask.to(logp.dtype)
    kl = kl_k1(logp, ref_logp) * mask
    rewards = -kl_coef * kl
    last = mask.sum(1).long() - 1  # index of each row's last response token
    if (last < 0).any():
        raise ValueError("a row has no response token (mask all 0): every sampled response has at least one token")
    rewards[torch.arange(len(score), device=score.device), last] += score.to(rewards.dtype)
    return rewards, kl


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), backwards over the response:

        delta_t = r_t + gamma V(s_{t+1}) - V(s_t)        A_t = delta_t + gamma lam A_{t+1}

    with V = 0 after a row's last token (the episode ends there). Returns (advantages, returns = A + V), (B, T),
    0 on padding. Defaults gamma = 1, lam = 0.95: N-details (lm-human-preferences).

    Worked example (gamma = 1, lam = 0.5): r = [0, 1], V = [.5, .2]:
      t=1: delta = 1 + 0 - .2 = .8,  A = .8;   t=0: delta = 0 + .2 - .5 = -.3,  A = -.3 + .5 * .8 = .1
    """
    mask = mask.to(values.dtype)
    values, rewards = values * mask, rewards * mask
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)  # A_{t+1}
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def ppo_policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
                    clip: float = 0.2) -> LossOutput:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), negated to be minimised, mean over response tokens:

        ratio = pi / pi_old        loss = -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)

    metrics: clip_frac (share of tokens where the clipped term is the smaller one, i.e. the gradient is cut),
    approx_kl (mean of (log ratio)^2 / 2, between the policy and the one that sampled; N-details)."""
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = masked_mean(-torch.min(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean((clipped < unclipped).float(), mask)
        approx_kl = masked_mean(0.5 * log_ratio ** 2, mask)
    return LossOutput(loss, {"clip_frac": clip_frac, "approx_kl": approx_kl})


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float = 0.2) -> LossOutput:
    """The value head's clipped squared error (N-details; the PPO2 baselines' vf clipping):

        V_clip = old_V + clamp(V - old_V, -eps, eps)      loss = 1/2 max((V - R)^2, (V_clip - R)^2)

    mean over response tokens. metrics: vf_clip_frac (share of tokens where the clipped error is the larger)."""
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    err, err_clipped = (values - returns) ** 2, (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(err, err_clipped), mask)
    with torch.no_grad():
        frac = masked_mean((err_clipped > err).float(), mask)
    return LossOutput(loss, {"vf_clip_frac": frac})


# ----------------------------------------------------------------------------- GRPO

def grpo_advantages(rewards: Tensor, group_size: int, eps: float = 1e-4) -> Tensor:
    """Group-normalised advantages (Shao et al. 2024 sec. 4.1.2, outcome supervision): the G samples of a prompt
    are consecutive rows; each gets (r - mean(group)) / (std(group) + eps), the same for every token of its
    response. std is the unbiased one and eps 1e-4, as TRL's GRPOTrainer; a group whose samples all score the
    same gets advantage 0 (nothing to learn from it). rewards (B,) with B = prompts * G -> (B,).

    Example, G = 2: rewards [1., 0., .5, .5] -> [.707, -.707, 0., 0.] (std of (1, 0) is .707)"""
    if group_size < 2:
        raise ValueError(f"GRPO needs at least 2 samples per prompt to normalise within a group, got {group_size}")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.view(-1, group_size)  # (prompts, G)
    mean = groups.mean(1, keepdim=True)
    std = groups.std(1, keepdim=True)  # unbiased (n - 1)
    return ((groups - mean) / (std + eps)).view(-1)


def grpo_loss(logp: Tensor, old_logp: Tensor, ref_logp: Tensor, advantages: Tensor, mask: Tensor,
              clip: float = 0.2, beta: float = 0.04) -> LossOutput:
    """GRPO's objective (Shao et al. 2024 eq. 3), negated to be minimised:

        per token: -[min(ratio A, clip(ratio, 1 - eps, 1 + eps) A) - beta * k3(pi || pi_ref)]
        loss = mean over the G outputs of (mean over the tokens of each output)   (the 1/G sum 1/|o_i| sum_t)

    advantages (B,) (one per output) or (B, T). Defaults: eps 0.2, beta 0.04 (Shao et al. sec. 4.2; TRL's
    GRPOConfig has the same eps, beta 0). metrics: clip_frac (tokens where the ratio left [1-eps, 1+eps] in the
    direction that stops the gradient, as TRL counts "region" clipping) and kl (mean k3 over tokens)."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # (B, 1): every token of an output shares its advantage
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.min(ratio * advantages, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages)
    kl = kl_k3(logp, ref_logp)
    per_token = -(surrogate - beta * kl)
    loss = masked_mean(per_token, mask, dim=1).mean()
    with torch.no_grad():
        clipped = ((ratio < 1 - clip) & (advantages < 0)) | ((ratio > 1 + clip) & (advantages > 0))
        metrics = {"clip_frac": masked_mean(clipped.float(), mask), "kl": masked_mean(kl, mask)}
    return LossOutput(loss, metrics)
