"""Position-wise feed-forward: d_model -> d_ff -> d_model.

relu: Vaswani et al. 2017 eq. 2; gelu: BERT / GPT-1; gelu_tanh: GPT-2's approximation;
swiglu / geglu / geglu_tanh: gated variants (Shazeer 2020, "GLU Variants Improve Transformer"): act(gate(x)) * fc1(x);
Llama uses swiglu, T5 v1.1 geglu_tanh (its "gated-gelu" is the tanh approximation, HF's gelu_new).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU, tanh approximation (GPT-2's "gelu_new"; Hendrycks & Gimpel 2016, sec. 2): torch's kernel.
    lmforge.kernels.accelerate may give a model's feed-forwards a form of it timed faster here, for training and
    for fp32 decoding (lmforge.kernels.gelu).

    Example: gelu_tanh(torch.tensor([1.0])) == tensor([0.8412]); exact erf GELU: 0.8413.
    """
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": gelu_tanh,
    "swiglu": F.silu,
    "geglu": F.gelu,
    "geglu_tanh": gelu_tanh,
}
GATED = ("swiglu", "geglu", "geglu_tanh")


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", *, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}. Allowed: {', '.join(ACTIVATIONS)}")
        self.act = ACTIVATIONS[activation]
        self.gated = activation in GATED
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if self.gated else None
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)
        self.fc2.residual = True
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.gate(x)) * self.fc1(x) if self.gated else self.act(self.fc1(x))
        return self.fc2(self.drop(h))
