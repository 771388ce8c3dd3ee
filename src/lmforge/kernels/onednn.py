"""Products of more than 32 rows in fp32 on CPU by oneDNN's kernel instead of torch's default BLAS (MKL).

Which kernel is faster depends on the CPU and the shape: on an AMD EPYC (Zen 4) oneDNN's fp32 linear was
1.17-1.50x torch's default for the GPT-2 matrices at batch 4 x 256, most for the 50257-way head (`python
bench/gpt2_step.py --products`). So lmforge.kernels.linear times the two for each shape and row count
(lmforge.kernels.tune) and takes oneDNN only where it measured faster. In training only the forward takes
it (`_TrainLinear`): oneDNN's backward products were not faster there, so they stay MKL's.
`set_large_onednn(False)` turns this path off.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

_large_onednn_on = True


def set_large_onednn(enabled: bool) -> None:
    """Turn oneDNN's kernel for large fp32 products on or off (off: F.linear, torch's default BLAS), e.g. to
    compare numbers with F.linear or on a CPU where it is not the faster one."""
    global _large_onednn_on
    _large_onednn_on = bool(enabled)


@functools.cache
def onednn_available() -> bool:
    """This torch has oneDNN and its fused linear op (checked once: every product asks)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def large_onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """oneDNN can take this fp32 product on CPU: contiguous operands, outside bf16 autocast (where F.linear
    computes in bf16) and outside torch.compile (which traces F.linear). Whether it should is timed."""
    return (_large_onednn_on and x.dtype == torch.float32 and weight.dtype == torch.float32 and x.is_cpu
            and weight.is_contiguous()
            and (bias is None or (bias.dtype == torch.float32 and bias.is_contiguous()))
            and not torch.is_autocast_enabled("cpu") and onednn_available() and not torch.compiler.is_compiling())


class _TrainLinear(torch.autograd.Function):
    """F.linear for large fp32 training products on CPU, with the forward product computed by oneDNN instead
    of torch's default BLAS (MKL), and the backward exactly autograd's for F.linear (two MKL products and a
    sum), so gradients are bit-identical to F.linear's given the same output gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        # like F.linear: keep x only for the weight's gradient and the weight only for x's
        ctx.save_for_backward(x if weight.requires_grad else None, weight if x.requires_grad else None)
        ctx.has_bias = bias is not None
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.size(-1)), weight, bias, "none", [], "")
        return y.view(*x.shape[:-1], weight.size(0))

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.size(-1))
        gx = torch.mm(g, weight).view(*grad.shape[:-1], weight.size(1)) if ctx.needs_input_grad[0] else None
        gw = torch.mm(g.t(), x.reshape(-1, x.size(-1))) if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


train_linear = _TrainLinear.apply  # (x, weight, bias) -> y, recorded by autograd: oneDNN's forward, F.linear's backward


def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """oneDNN's fp32 linear of x (..., in) without gradients: a prefill, an evaluation."""
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.size(-1)), weight, bias, "none", [], "")
    return y.view(*x.shape[:-1], weight.size(0))
