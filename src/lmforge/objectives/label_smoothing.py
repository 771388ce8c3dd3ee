"""Label-smoothed cross-entropy (Szegedy et al. 2016, sec. 7; used by Vaswani et al. 2017, sec. 5.4).

The target distribution is q = (1 - eps) * one_hot(y) + eps / V (uniform over the V classes), so

    loss = (1 - eps) * (-log p_y) + eps * mean_k(-log p_k)

Worked example: V = 2, eps = 0.1, logits (0, 0) (p = 0.5 each), y = 0:
loss = 0.9 * log 2 + 0.1 * log 2 = log 2 = 0.6931 -- smoothing costs nothing at the uniform point;
with logits (2, 0): -log p = (0.1269, 2.1269), loss = 0.9 * 0.1269 + 0.1 * 1.1269 = 0.2269.
torch's F.cross_entropy(..., label_smoothing=eps) computes exactly this in one fused op, so that is what
runs; the test checks it against the worked example above.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def label_smoothed_cross_entropy(logits: Tensor, targets: Tensor, epsilon: float = 0.1,
                                 ignore_index: int = -100) -> Tensor:
    """logits (..., V), targets (...) -> mean loss over targets != ignore_index. epsilon 0.1 per Vaswani et al. 2017."""
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    V = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1), ignore_index=ignore_index,
                           label_smoothing=epsilon)
