"""Scaled dot-product attention by the form timed fastest here, for the two CPU cases torch's fused kernel serves badly.

lmforge.nn.attention.attention is the reference (torch's scaled_dot_product_attention, or the computation written
out when the probabilities are asked for). Two cases get candidates, each timed against it on the machine at hand
by lmforge.kernels.tune and taken only where at least 5% faster, the choice cached on disk with the others:

- decoding, one new query per row ("decode"): q (B, nh, 1, hs) against the cache's keys, with the rows' padding
  mask or none. Candidate "avx2": lmforge's kernel (cpu.cpp, decode_attention), one pass over each row's keys and
  values. torch's fused CPU kernel is built for blocks of queries: for 8 rows x 6 heads x 128 keys of 64 the
  tuner timed it at 0.094 ms and ours at 0.047 ms (AMD EPYC Zen 3, AVX2, torch 2.13, two threads; the server's
  6-layer model runs it 6 times a step; BENCHMARKS.md, the server under 8 streaming clients).
- training, causal self-attention over short sequences ("train"): q, k, v (B, nh, T, hs) with T = S, no mask,
  bias or dropout. Candidate "written": softmax(q k^T * scale + causal) v as batched matrix products (baddbmm
  with the causal mask as its addend, softmax, bmm); chosen at nanoGPT's CPU shape (12 x 4 heads x 64 x 32) on
  the same machine, where it made our training step 3-5% faster than nanoGPT's model.py eager and 10-12% faster
  compiled (bench/train_throughput.py; BENCHMARKS.md, training at small shapes).

Keys of the choice: the case, heads, head size, rows and keys (or the sequence length) rounded up to a power of
two, whether a mask is given, dtype (fp32 only) and threads. Under torch.compile the training case traces the
written form where eager chose it (inductor fuses its scale, mask and softmax), decoding the reference. With
autograd where the case wants none, for bf16, other devices, a bias, dropout or need_weights: the reference.
`set_attention(False)` (and lmforge.kernels.set_enabled(False)) turns both off. lmforge.kernels.accelerate
puts this function into a model's MultiHeadAttention layers (their `attend`), restore() takes it out.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

import lmforge.kernels.native as native
from lmforge.kernels.tune import bucket, choose, measure
from lmforge.nn.attention import attention as reference

_enabled = True
_CAUSAL: dict[tuple, Tensor] = {}  # (T, device, dtype) -> (T, T) additive causal mask: 0 on and below the diagonal


def set_attention(enabled: bool) -> None:
    """The timed forms on (the default) or off (lmforge.nn.attention.attention everywhere)."""
    global _enabled
    _enabled = bool(enabled)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, bias: Tensor | None = None,
              *, is_causal: bool = False, dropout_p: float = 0.0, scale: float | None = None,
              need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """lmforge.nn.attention.attention (same arguments, same result to float rounding), by the form timed fastest
    here for this kind of call (module docstring)."""
    if (_enabled and bias is None and not need_weights and dropout_p == 0.0 and q.dtype == torch.float32
            and q.device.type == "cpu"):
        B, H, T, D = q.shape
        S = k.size(-2)
        sc = 1.0 / math.sqrt(D) if scale is None else scale
        grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
        causal_self = is_causal and mask is None and T == S and T > 1 and k.size(1) == H
        if torch.compiler.is_compiling():  # the written form is plain ops, which inductor fuses; our kernel is not
            if causal_self and _traced_written(B, H, T, D, grad):
                return _written_causal(q, k, v, sc), None
        elif T == 1 and not grad and k.size(1) == H:
            keep = _keep(mask, B, S)
            if keep is not False and _decode_choice(B, H, S, D, keep is not None) == "avx2":
                return native.extension().decode_attention(q, k, v, keep, sc), None
        elif causal_self and _train_choice(B, H, T, D, grad) == "written":
            return _written_causal(q, k, v, sc), None
    return reference(q, k, v, mask, bias, is_causal=is_causal, dropout_p=dropout_p, scale=scale,
                     need_weights=need_weights)


def _keep(mask: Tensor | None, B: int, S: int) -> Tensor | None | bool:
    """The (B, S) boolean key mask a one-query mask (B or 1, 1, 1, S) amounts to; None for no mask; False for
    any other mask (per-head or float masks: the reference handles them)."""
    if mask is None:
        return None
    if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1:3] != (1, 1) or mask.size(-1) != S \
            or mask.size(0) not in (1, B):
        return False
    return mask.reshape(mask.size(0), S).expand(B, S)


def decode_kernel(B: int, H: int, S: int, D: int, masked: bool) -> bool:
    """Whether a decoding call (q (B, H, 1, D) against S keys, with a key mask or not) takes lmforge's kernel now:
    then lmforge.kernels.decode may use its twin that also writes the cache (cpu.cpp: cached_attention)."""
    return _enabled and _decode_choice(B, H, S, D, masked) == "avx2"


@functools.cache  # asked for every layer of every decoding step: the string is made once per kind of call
def _decode_key(H: int, D: int, rows: int, keys: int, masked: bool, threads: int) -> str:
    return (f"attention decode heads={H} hs={D} rows<={rows} keys<={keys} {'masked' if masked else 'unmasked'} "
            f"float32 threads={threads}")


def _decode_choice(B: int, H: int, S: int, D: int, masked: bool) -> str:
    key = _decode_key(H, D, bucket(B), bucket(S), masked, torch.get_num_threads())
    names = ("sdpa",) + (("avx2",) if native.buildable() else ())

    def seconds():
        g = torch.Generator().manual_seed(0)
        rows, keys = bucket(B), bucket(S)
        q, k, v = (torch.randn(rows, H, n, D, generator=g) for n in (1, keys, keys))
        keep = torch.ones(rows, keys, dtype=torch.bool)
        keep[::2, : keys // 4] = False  # every other row left-padded, as rows of different lengths decode
        mask = keep[:, None, None, :] if masked else None
        ext = native.extension()
        candidates = {"sdpa": lambda: reference(q, k, v, mask)}
        if ext is not None:
            candidates["avx2"] = lambda: ext.decode_attention(q, k, v, keep if masked else None, 1 / math.sqrt(D))
        return measure(candidates, calls=8)
    return native.usable(choose(key, names, seconds))


def _causal(T: int, device, dtype) -> Tensor:
    key = (T, device, dtype)
    if key not in _CAUSAL:
        _CAUSAL[key] = torch.full((T, T), float("-inf"), device=device, dtype=dtype).triu_(1)
    return _CAUSAL[key]


def _written_causal(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """softmax(q k^T * scale + causal) v, written as batched matrix products: "Attention Is All You Need", eq. 1."""
    B, H, T, D = q.shape
    scores = torch.baddbmm(_causal(T, q.device, q.dtype), q.reshape(B * H, T, D),
                           k.reshape(B * H, T, D).transpose(1, 2), alpha=scale)
    return torch.bmm(scores.softmax(dim=-1), v.reshape(B * H, T, D)).view(B, H, T, D)


@torch.compiler.assume_constant_result
def _traced_written(B: int, H: int, T: int, D: int, grad: bool) -> bool:
    """Whether torch.compile traces the written form: where eager timed it faster (read, or timed, eagerly while
    dynamo traces; a constant of the graph). Under inductor it gains more than eager: at nanoGPT's CPU shape (two
    threads, AMD EPYC Zen 3) our compiled step went from 1.03x to 1.07-1.08x our eager one (BENCHMARKS.md)."""
    return _train_choice(B, H, T, D, grad) == "written"


def _train_choice(B: int, H: int, T: int, D: int, grad: bool) -> str:
    """"sdpa" or "written" for causal self-attention over T positions: forward + backward where autograd records
    (training), the forward alone otherwise (a prompt's prefill, evaluation)."""
    key = (f"attention {'train' if grad else 'causal'} heads={H} hs={D} rows<={bucket(B)} len<={bucket(T)} "
           f"float32 threads={torch.get_num_threads()}")

    def seconds():
        g = torch.Generator().manual_seed(0)
        n = bucket(T)
        # as MultiHeadAttention hands them over: heads split off the last dimension of (B, T, nh * hs), transposed
        leaves = [torch.randn(bucket(B), n, H, D, generator=g).requires_grad_(grad) for _ in range(3)]
        q, k, v = (t.transpose(1, 2) for t in leaves)
        dout = torch.randn(bucket(B), H, n, D, generator=g)

        def run(f):
            def call():
                out = f()
                if grad:
                    torch.autograd.grad(out, leaves, dout)
            return call
        return measure({"sdpa": run(lambda: reference(q, k, v, is_causal=True)[0]),
                        "written": run(lambda: _written_causal(q, k, v, 1 / math.sqrt(D)))}, grad=grad)
    return choose(key, ("sdpa", "written"), seconds)[0]
