"""Linear layers whose weights are stored in fewer bytes: int8 with a scale per output channel, or bf16.

Decoding one token reads every weight once, so on a CPU its speed is set by the bytes read (GPT-2-124M:
496 MB per token in fp32, 124 MB in int8). These layers are the reference math: plain PyTorch that
dequantizes and calls F.linear. lmforge.kernels has the faster int8 product (kernels.int8), applied by
`lmforge.kernels.accelerate` as for every other layer; lmforge.quantization.quantize puts these layers into
a model.

int8 scheme: weight-only, symmetric, one scale per output channel (absmax), as in LLM.int8 (Dettmers et
al. 2022, sec. 2: "absmax quantization", vector-wise: one constant per row of W) and torchao's int8
weight-only layout (int8 weight (out, in), one scale per output row, activations stay float):

    scale[n] = max_k |W[n, k]| / 127        q[n, k] = round(W[n, k] / scale[n])  in [-127, 127]
    y = x @ (q * scale[:, None]).T + b  =  (x @ q.T) * scale + b

Symmetric, so no zero point; -128 is never used, so -q is always representable. The rounding error of
each weight is at most scale[n] / 2.

    layer = Int8Linear.from_weight(linear.weight, linear.bias)
    layer(x)   # ~= linear(x): each weight within half a step of its row's scale
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INT8_MAX = 127  # symmetric range [-127, 127] (LLM.int8's absmax uses 127)


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """weight (out, in) float -> (q (out, in) int8, scale (out,) fp32), per output channel (module docstring).

    Example: [[0.5, -1.0], [0.0, 0.0]] -> q [[64, -127], [0, 0]], scale [1/127, 1] (an all-zero row gets scale 1)."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1)                                 # (out,)
    scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """y = x @ (weight * scale[:, None]).T + bias, weight int8 (out, in), scale fp32 (out,), bias fp32 or None.

    The weight is a Parameter that never needs a gradient (requires_grad=False), so it moves, saves and
    loads with the model's other parameters (`model.to`, state dicts, huge pages)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.zeros(out_features, in_features, dtype=torch.int8), requires_grad=False)
        self.register_buffer("scale", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_weight(cls, weight: Tensor, bias: Tensor | None = None) -> "Int8Linear":
        """Quantize a float weight (out, in) (and keep its bias in fp32)."""
        out_f, in_f = weight.shape
        layer = cls(in_f, out_f, bias=bias is not None)
        q, scale = quantize_int8(weight)
        layer.weight.data, layer.scale = q.to(weight.device), scale.to(weight.device)
        if bias is not None:
            layer.bias.data = bias.detach().float().clone()
        return layer

    def dequantized(self) -> Tensor:
        """The fp32 weight this layer computes with: weight * scale per row."""
        return self.weight.float() * self.scale[:, None]

    def forward(self, x: Tensor) -> Tensor:
        w = self.dequantized().to(x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


class BF16Linear(nn.Module):
    """y = x @ weight.T + bias with the weight stored in bf16 (half the bytes of fp32): the input is
    converted to bf16 for the product and the output back to the input's dtype, so everything around the
    product (norms, attention, the residual stream) keeps its precision. The bias stays fp32."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.zeros(out_features, in_features, dtype=torch.bfloat16), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_weight(cls, weight: Tensor, bias: Tensor | None = None) -> "BF16Linear":
        out_f, in_f = weight.shape
        layer = cls(in_f, out_f, bias=bias is not None)
        layer.weight.data = weight.detach().to(torch.bfloat16).clone()
        if bias is not None:
            layer.bias.data = bias.detach().float().clone()
        return layer

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x.to(torch.bfloat16), self.weight).to(x.dtype)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, bf16"
