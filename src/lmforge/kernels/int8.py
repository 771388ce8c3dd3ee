"""The int8 weight-only product (lmforge.nn.quant.Int8Linear), computed the fastest way this machine has.

    int8_linear(x, q, scale, bias) == F.linear(x, q * scale[:, None], bias)   (to float rounding)

Candidates, each exact up to float rounding:
- "dequantize": F.linear(x, q.to(fp32)) * scale: converts the whole weight to fp32 first (reads 1 byte,
  writes 4 and reads 4 per weight). Always there; the reference.
- "int8pack": torch's own weight-only int8 kernel, torch.ops.aten._weight_int8pack_mm(x, q, scale): x (M, K)
  float, q (N, K) int8, scale (N,) in x's dtype -> (M, N). Vectorized for AVX-512; on an AVX2-only CPU
  (AMD EPYC Zen 3, torch 2.13) it measured ~10x slower than the fp32 product, so there it loses.
- "avx2": lmforge's own kernel (cpu.cpp, lmforge.kernels.native): each int8 row widened to fp32 in registers,
  the weight read once at one byte per element. Built with torch.utils.cpp_extension the first time it is
  needed (a C++ compiler and ninja; ~30-60 s, then cached by torch in its extensions directory); only on
  CPUs with AVX2.
  Measured 2.8x the fp32 product over GPT-2-124M's 49 matrices at one row, one thread (bench/quantize.py).
  It widens the weight again for every row, so for many rows (a prompt) there is also
- "avx2 dequantize": the same kernel's vectorized dequantize into an fp32 copy, then F.linear: the weight is
  converted once and the fp32 product does the rest.

Which one runs is chosen by timing, through lmforge.kernels.tune like every other fast path: the first product
of each (rows bucket, out, in, dtype, threads) times every candidate on its real input (at most _SAMPLE
weights of it), and a candidate is taken only where it beats "dequantize", the reference, by tune's margin;
the choice is kept in tune's cache file, so the next process starts tuned. `choices()` says what was chosen; `set_int8(False)` sends every product to the
reference (lmforge.nn.quant.Int8Linear's own forward), as `lmforge.kernels.set_enabled(False)` does.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from lmforge.kernels.native import extension
from lmforge.kernels.tune import bucket, choose, forcing, measure
from lmforge.nn.quant import Int8Linear as PlainInt8Linear

_SAMPLE = 1 << 23    # weights timed at most (8 MB in int8, more than a core's caches hold): a vocabulary-sized
                     # head (GPT-2's 50257 x 768) is timed on its first rows (each row costs the same), and the
                     # first prompt does not wait seconds for the slow candidates

_enabled = True
_chosen: dict[tuple, tuple[str, Callable]] = {}  # the hot path's memo of tune's choice: key -> (name, product)


def set_int8(enabled: bool) -> None:
    """Turn the int8 fast path on or off (off: Int8Linear computes its reference, dequantize + F.linear)."""
    global _enabled
    _enabled = bool(enabled)


def choices() -> dict[tuple, str]:
    """What was chosen so far: {(rows bucket, out, in, dtype, threads): candidate name}."""
    return {key: name for key, (name, _) in _chosen.items()}


def _plus(y: Tensor, bias: Tensor | None) -> Tensor:
    return y if bias is None else y + bias  # int8_linear hands over the bias in x's dtype


def _dequantize(x: Tensor, q: Tensor, scale: Tensor, bias: Tensor | None = None) -> Tensor:
    return _plus(F.linear(x, q.to(x.dtype)) * scale.to(x.dtype), bias)


def _int8pack(x: Tensor, q: Tensor, scale: Tensor, bias: Tensor | None = None) -> Tensor:
    return _plus(torch.ops.aten._weight_int8pack_mm(x, q, scale.to(x.dtype)), bias)


def _avx2(x: Tensor, q: Tensor, scale: Tensor, bias: Tensor | None = None) -> Tensor:
    return extension().int8_linear(x, q, scale, bias)  # the bias added as each output is written


def _avx2_dequantize(x: Tensor, q: Tensor, scale: Tensor, bias: Tensor | None = None) -> Tensor:
    return F.linear(x, extension().dequantize(q, scale), bias)


def candidates(x: Tensor) -> dict[str, Callable[..., Tensor]]:
    """The products that can compute x (M, K) @ int8 q (N, K) here: name -> f(x, q, scale, bias=None) -> (M, N)."""
    out = {"dequantize": _dequantize}
    if hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        out["int8pack"] = _int8pack
    if x.dtype == torch.float32 and extension() is not None:
        out["avx2"] = _avx2
        if x.size(0) > 1:  # one row: converting the whole weight first cannot beat converting it in registers
            out["avx2 dequantize"] = _avx2_dequantize
    return out


def int8_linear(x: Tensor, q: Tensor, scale: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (..., K) float, q (N, K) int8, scale (N,) -> (..., N): F.linear(x, q * scale[:, None], bias) computed
    by the candidate measured fastest for this shape (module docstring)."""
    N, K = q.shape
    rows = x.reshape(-1, K)
    if not rows.is_contiguous():
        rows = rows.contiguous()
    key = (bucket(rows.size(0)), N, K, x.dtype, torch.get_num_threads())
    chosen = None if forcing() else _chosen.get(key)  # a forced path wins over the memo, and is not memoized
    if chosen is None:
        funcs = candidates(rows)  # "dequantize" first: the default a candidate must beat
        sample = max(1, min(N, _SAMPLE // K))  # output rows timed
        qs, ss = q[:sample], scale[:sample]
        timed = {n: (lambda f=f: f(rows, qs, ss)) for n, f in funcs.items()}
        dtype = str(x.dtype).removeprefix("torch.")
        order = choose(f"int8 {N}x{K} rows={key[0]} {dtype} threads={key[4]}", tuple(funcs),
                       lambda: measure(timed, rounds=4))
        name = next(n for n in order if n in funcs)  # a cached name this process lacks (no compiler): the next
        chosen = (name, funcs[name])
        if not forcing():
            _chosen[key] = chosen
    if bias is not None and bias.dtype != rows.dtype:
        bias = bias.to(rows.dtype)
    return chosen[1](rows, q, scale, bias).view(*x.shape[:-1], N)


class Int8Linear(PlainInt8Linear):
    """lmforge.nn.quant.Int8Linear (same tensors, same state-dict names) computed by `int8_linear`; where
    autograd records a gradient for the input, or off the CPU, or with the path off, the reference."""

    def forward(self, x: Tensor) -> Tensor:
        if (not _enabled or not x.is_cpu or x.dtype not in (torch.float32, torch.bfloat16)
                or (torch.is_grad_enabled() and x.requires_grad)):
            return super().forward(x)
        return int8_linear(x, self.weight, self.scale, self.bias)
