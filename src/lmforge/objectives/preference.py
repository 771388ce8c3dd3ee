"""Learning from preference pairs (chosen y_w, rejected y_l for a prompt x): a reward model, and DPO.

Reward model (Bradley & Terry 1952; Stiennon et al. 2020 sec. 3.4; Ouyang et al. 2022 sec. 3.5 eq. 1):
the probability that y_w is preferred is sigmoid(r(x, y_w) - r(x, y_l)), so the loss is its negative log,

    loss = -log sigmoid(r_chosen - r_rejected)

DPO (Rafailov et al. 2023, eq. 7): the same Bradley-Terry likelihood with the reward written through the policy
itself, r(x, y) = beta * log(pi(y | x) / pi_ref(y | x)) (the partition function cancels in the difference),

    loss = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))])

where log pi(y | x) is the SUM of the completion tokens' log-probabilities (`sequence_logps`), the prompt's left out.

Worked example: r_chosen - r_rejected = 0 -> loss = log 2 = 0.693147 (no preference learnt yet);
beta = 0.1, policy log-ratios chosen +2 and rejected -2 -> loss = -log sigmoid(0.4) = 0.513015.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lmforge.objectives.output import LossOutput


def _pair(chosen: Tensor, rejected: Tensor, what: str) -> None:
    if chosen.shape != rejected.shape or chosen.dim() != 1:
        raise ValueError(f"{what}: chosen {tuple(chosen.shape)} and rejected {tuple(rejected.shape)} must both be one "
                         "number per pair, shape (B,), row i of each from the same prompt")


def bradley_terry(r_chosen: Tensor, r_rejected: Tensor) -> LossOutput:
    """Reward-model loss -log sigmoid(r_chosen - r_rejected), the mean over pairs (module docstring).

    r_chosen, r_rejected (B,): the reward model's scalar for each side of each pair.
    Metrics: accuracy (share of pairs ranked right, a tie counts as wrong), margin (mean r_chosen - r_rejected).
    Example: r_chosen = r_rejected -> log 2 = 0.693147, accuracy 0.
    """
    _pair(r_chosen, r_rejected, "bradley_terry")
    delta = r_chosen.float() - r_rejected.float()
    loss = -F.logsigmoid(delta).mean()  # logsigmoid, not log(sigmoid()): finite for a large negative margin
    return LossOutput(loss, {"accuracy": (delta > 0).float().mean().detach(), "margin": delta.mean().detach()})


def dpo(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
        beta: float = 0.1) -> LossOutput:
    """DPO loss (Rafailov et al. 2023, eq. 7), the mean over pairs; every argument (B,) a summed log-prob.

    beta: the strength of the implicit KL penalty to the reference (the paper's 0.1; 0.5 for its summarisation runs).
    Metrics: the implicit rewards beta * log(pi / pi_ref) of each side (reward_chosen, reward_rejected), their
    difference (margin), the share of pairs where chosen's is higher (accuracy), and the policy's own log-prob
    gap log pi(y_w) - log pi(y_l) (logp_gap: what DPO raises, relative to the reference's).
    Example: beta 0.1, log-ratios chosen +2, rejected -2 -> -log sigmoid(0.4) = 0.513015.
    """
    if not beta > 0:
        raise ValueError(f"beta must be positive (Rafailov et al. 2023 use 0.1 to 0.5), got {beta}")
    for name, (a, b) in (("policy", (policy_chosen, policy_rejected)), ("reference", (ref_chosen, ref_rejected))):
        _pair(a, b, f"dpo ({name} log-probs)")
    if policy_chosen.shape != ref_chosen.shape:
        raise ValueError(f"dpo: policy log-probs {tuple(policy_chosen.shape)} and reference log-probs "
                         f"{tuple(ref_chosen.shape)} must be of the same pairs")
    chosen_ratio = policy_chosen.float() - ref_chosen.float()  # log pi(y_w|x) / pi_ref(y_w|x)
    rejected_ratio = policy_rejected.float() - ref_rejected.float()
    logits = beta * (chosen_ratio - rejected_ratio)
    loss = -F.logsigmoid(logits).mean()
    reward_chosen, reward_rejected = beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
    return LossOutput(loss, {
        "reward_chosen": reward_chosen.mean(), "reward_rejected": reward_rejected.mean(),
        "margin": (reward_chosen - reward_rejected).mean(), "accuracy": (logits > 0).float().mean().detach(),
        "logp_gap": (policy_chosen - policy_rejected).detach().float().mean()})


def sequence_logps(logits: Tensor, ids: Tensor, completion_mask: Tensor) -> Tensor:
    """log pi(y | x): the sum of log p(ids[t] | ids[:t]) over the completion's tokens -> (B,).

    logits (B, T, V) from a causal LM on ids (B, T); completion_mask (B, T), 1 on the completion's tokens (the
    assistant's answer and its end-of-turn marker), 0 on the prompt and on padding. Token t is predicted by the
    logits at t - 1, so the first token can never be a completion token.
    Example: T = 3, completion_mask [0, 1, 1] -> log p(ids[1] | ids[0]) + log p(ids[2] | ids[:2]).
    """
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(ids.shape) or ids.shape != completion_mask.shape:
        raise ValueError(f"logits {tuple(logits.shape)}, ids {tuple(ids.shape)} and completion_mask "
                         f"{tuple(completion_mask.shape)} must be (B, T, V), (B, T) and (B, T)")
    if completion_mask.size(1) and bool(completion_mask[:, 0].any()):
        raise ValueError("completion_mask marks the first token of a row: nothing predicts it. A completion "
                         "follows its prompt (at least the assistant marker)")
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V): the distribution over token t+1
    token = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    return (token * completion_mask[:, 1:].to(token.dtype)).sum(-1)
