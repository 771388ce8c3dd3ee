"""GPT-2's tanh GELU for training, computed by the fastest of three forms on this machine.

0.5 (1 + tanh(z)) = sigmoid(2 z), so gelu_tanh(x) = x * sigmoid(2 C (x + A x^3)), C = sqrt(2 / pi), A = 0.044715.
torch's CPU kernel for F.gelu(approximate="tanh") (forward and backward) spends its time in a vectorised tanh.
The candidates: torch's kernel ("F.gelu", the default); the sigmoid form in plain torch ops ("sigmoid", a few
passes each way); and one pass each way in lmforge's AVX2 kernels ("avx2", cpu.cpp, fp32 only, where they can
be built). Forward + backward of a (12, 64, 512) fp32 tensor, AMD EPYC Zen 3 (AVX2), torch 2.13, two threads:
torch's kernel 1.65-1.99 ms, the sigmoid form 1.22-1.89 ms, the AVX2 kernels 0.39 ms (the exact erf GELU,
nanoGPT's: 0.71-0.89 ms); nanoGPT's CPU recipe shape spent ~9% of its training step in torch's kernel. Whether
that holds on another CPU (AVX-512's tanh) is not assumed: like every fast path (lmforge.kernels.tune) the
first training use of a (rows rounded to a power of two, width, dtype, threads) times forward + backward of
each on an input of that shape and keeps a form of ours only where it measured at least 5% faster than
torch's; the choice is cached on disk with the others. Under torch.compile the sigmoid form is traced where
eager chose a form of ours (the AVX2 kernels are opaque to inductor).

Where autograd records (training) in fp32/fp64 on CPU, with the fast paths on. Without autograd (decoding,
evaluation) in fp32 on CPU the forward alone has two candidates, torch's kernel and the AVX2 forward (which
then writes gelu(x) only), timed the same way: torch's tanh is slow on AVX2 here too (8 rows x 1536, the
server's model: the tuner timed torch's kernel at 0.045 ms a call, the AVX2 forward at 0.009 ms; AMD EPYC Zen 3,
two threads). bf16 and other devices take torch's kernel, bit for bit lmforge.nn.feedforward.gelu_tanh.
lmforge.kernels.accelerate puts it into a model's modules whose `act` is gelu_tanh (FeedForward layers with
gelu_tanh or geglu_tanh, a masked-LM head); restore() takes it out.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

import lmforge.kernels.native as native
from lmforge.kernels.tune import bucket, choose, measure

_C = math.sqrt(2.0 / math.pi)  # GPT-2's tanh approximation: 0.5 x (1 + tanh(C (x + A x^3)))
_A = 0.044715


class _GeluTanh(torch.autograd.Function):
    """GPT-2's tanh GELU and its gradient, written with a sigmoid: 0.5 (1 + tanh(z)) = sigmoid(2 z), so
    gelu(x) = x * s with s = sigmoid(2 C (x + A x^3)) and gelu'(x) = s + s (1 - s) * x * 2 C (1 + 3 A x^2).

    Why: torch's CPU kernel for approximate="tanh" (gelu and gelu_backward) spends its time in a vectorised
    tanh; this form is a few passes of cheap elementwise ops each way. Plain ops, no addcmul with a 0-dim
    tensor: that broadcast took 0.4 ms per call at (12, 64, 512) and made the form slower than torch's at two
    threads. Forward + backward of a (12, 64, 512) fp32 tensor, AMD EPYC Zen 3 (AVX2), torch 2.13, two threads:
    1.65 ms for F.gelu(approximate="tanh"), 1.22 ms here (0.89 ms for the exact erf GELU). Outputs agree with
    F.gelu(approximate="tanh") to ~5e-7, gradients to ~3e-6 (tests/kernels/test_gelu.py).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        s = (x * x).mul_(2 * _C * _A).add_(2 * _C).mul_(x).sigmoid_()  # sigmoid(2C(1 + A x^2) x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, s = ctx.saved_tensors
        xdz = (x * x).mul_(3 * 2 * _C * _A).add_(2 * _C).mul_(x)  # x * dz/dx = x 2C (1 + 3A x^2)
        return (1 - s).mul_(s).mul_(xdz).add_(s).mul_(grad)  # (s (1 - s) x dz/dx + s) * grad


_enabled = True


def set_gelu(enabled: bool) -> None:
    """Our forms on (chosen by timing, the default) or off (torch's kernel everywhere)."""
    global _enabled
    _enabled = bool(enabled)


def _forward_backward(f, x: Tensor, g: Tensor):
    def call():
        with torch.enable_grad():
            y = f(x)
            torch.autograd.grad(y, x, g)
    return call


class _GeluTanhAVX2(torch.autograd.Function):
    """The same forward and gradient in one pass each way: lmforge's AVX2 kernels (cpu.cpp, gelu_tanh_forward /
    gelu_tanh_backward; fp32, contiguous), which keep s = sigmoid(2z) from the forward for the backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.contiguous()
        y, s = native.extension().gelu_tanh_forward(x)
        ctx.save_for_backward(x, s)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, s = ctx.saved_tensors
        return native.extension().gelu_tanh_backward(x, s, grad.contiguous())


_FORMS = {"sigmoid": _GeluTanh.apply, "avx2": _GeluTanhAVX2.apply}


@functools.cache  # asked at every call (each layer of each step): made once per kind of input
def _kind(mode: str, shape: tuple[int, ...], dtype: torch.dtype, threads: int) -> tuple[str, int, int]:
    """(tune's key, width, rows rounded up to a power of two) for `mode` ("train" or "infer") on this input."""
    width = shape[-1] if shape else 1
    rows = bucket(max(1, math.prod(shape) // max(1, width)))
    return f"gelu_tanh {mode} {width} rows<={rows} {str(dtype).removeprefix('torch.')} threads={threads}", width, rows


def _choice(shape: tuple[int, ...], dtype: torch.dtype) -> str:
    """"F.gelu", "sigmoid" or "avx2" for training on inputs of this shape and dtype: tune's cached choice, timed
    on a random input of the shape the first time (forward + backward of each)."""
    key, _, _ = _kind("train", shape, dtype, torch.get_num_threads())
    names = ("F.gelu", "sigmoid") + (("avx2",) if dtype == torch.float32 and native.buildable() else ())

    def seconds():
        probe = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0)).requires_grad_()
        g = torch.ones_like(probe)
        forms = {"F.gelu": lambda t: F.gelu(t, approximate="tanh"), **_FORMS}
        return measure({n: _forward_backward(forms[n], probe, g) for n in names
                        if n != "avx2" or native.extension() is not None}, rounds=6)
    return native.usable(choose(key, names, seconds))


@torch.compiler.assume_constant_result
def _traced_choice(shape: tuple[int, ...], dtype: torch.dtype) -> bool:
    """Whether to trace the sigmoid form under torch.compile: where eager timed a form of ours faster than torch's
    (the AVX2 kernel is opaque to inductor, so its plain-op twin is traced instead). Run eagerly while dynamo
    traces (it may time); its answer is a constant of the graph. Under inductor the sigmoid form measured 1.12x
    F.gelu's for the whole training step of nanoGPT's CPU shape (AMD EPYC Zen 3, one thread)."""
    return _choice(shape, dtype) != "F.gelu"


def _inference_choice(shape: tuple[int, ...]) -> str:
    """"F.gelu" or "avx2" for fp32 inputs of this shape without autograd (decoding, evaluation): the forward alone,
    timed the first time on a random input of the shape."""
    key, width, rows = _kind("infer", shape, torch.float32, torch.get_num_threads())
    names = ("F.gelu",) + (("avx2",) if native.buildable() else ())

    def seconds():
        probe = torch.randn(rows, width, generator=torch.Generator().manual_seed(0))
        ext = native.extension()
        forms = {"F.gelu": lambda: F.gelu(probe, approximate="tanh")}
        if ext is not None:
            forms["avx2"] = lambda: ext.gelu_tanh_forward(probe, False)
        return measure(forms, calls=8)
    return native.usable(choose(key, names, seconds))


def inference_kernel(shape: tuple[int, ...]) -> bool:
    """Whether gelu_tanh of an fp32 input of this shape without autograd takes the AVX2 forward now: then
    lmforge.kernels.decode may have the product before it apply it in the same pass (cpu.cpp: linear_rows)."""
    return _enabled and _inference_choice(shape) == "avx2"


def gelu_tanh(x: Tensor) -> Tensor:
    """F.gelu(x, approximate="tanh"), by the form timed fastest here for training, or for inference in fp32
    (module docstring)."""
    if _enabled and x.device.type == "cpu":
        if x.requires_grad and torch.is_grad_enabled():
            return _training_form(x)
        if (x.dtype == torch.float32 and not torch.compiler.is_compiling()
                and _inference_choice(tuple(x.shape)) == "avx2"):
            return native.extension().gelu_tanh_forward(x.contiguous(), False)[0]
    return F.gelu(x, approximate="tanh")


def _training_form(x: Tensor) -> Tensor:
    """gelu_tanh where autograd records: the form chosen for training (traced: the sigmoid form where eager chose
    one of ours); bf16 and other dtypes torch's kernel."""
    if x.dtype in (torch.float32, torch.float64):
        shape = tuple(x.shape)
        if torch.compiler.is_compiling():
            if _traced_choice(shape, x.dtype):
                return _GeluTanh.apply(x)
        elif (name := _choice(shape, x.dtype)) != "F.gelu":
            return _FORMS[name](x)
    return F.gelu(x, approximate="tanh")
