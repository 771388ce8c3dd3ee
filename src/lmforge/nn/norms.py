"""LayerNorm (bias optional) and RMSNorm."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm(nn.LayerNorm):
    """torch's LayerNorm (Ba et al. 2016); `bias=False` as in T5-style/nanoGPT variants."""

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True):
        super().__init__(d_model, eps=eps, bias=bias)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight -- Zhang & Sennrich 2019; T5's "LayerNorm" (no mean, no bias).

    Computed in float32 like T5 (mesh-tensorflow) so that bf16 activations do not lose the scale.
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).to(x.dtype) * self.weight
