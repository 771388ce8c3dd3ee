"""Label-smoothed cross-entropy (Szegedy et al. 2016, sec. 7; used by Vaswani et al. 2017, sec. 5.4).

The target distribution is q = (1 - eps) * one_hot(y) + eps / V (uniform over the V classes), so

    loss = (1 - eps) * (-log p_y) + eps * mean_k(-log p_k)

Worked example: V = 2, eps = 0.1, logits (0, 0) (p = 0.5 each), y = 0:
loss = 0.9 * log 2 + 0.1 * log 2 = log 2 = 0.6931 -- smoothing costs nothing at the uniform point;
with logits (2, 0): -log p = (0.1269, 2.1269), loss = 0.9 * 0.1269 + 0.1 * 1.1269 = 0.2269.
Identical to torch's F.cross_entropy(..., label_smoothing=eps) (tested); written out to read like the paper.
"""
from __future__ import annotations

from torch import Tensor


def label_smoothed_cross_entropy(logits: Tensor, targets: Tensor, epsilon: float = 0.1,
                                 ignore_index: int = -100) -> Tensor:
    """logits (..., V), targets (...) -> mean loss over targets != ignore_index. epsilon 0.1 per Vaswani et al. 2017."""
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    logp = logits.float().log_softmax(dim=-1).reshape(-1, logits.size(-1))  # (N, V)
    y = targets.reshape(-1)  # (N,)
    keep = y != ignore_index
    nll = -logp.gather(1, y.clamp(min=0)[:, None]).squeeze(1)  # -log p_y
    uniform = -logp.mean(dim=-1)  # cross-entropy with the uniform distribution
    loss = (1.0 - epsilon) * nll + epsilon * uniform
    return (loss * keep).sum() / keep.sum().clamp(min=1)
