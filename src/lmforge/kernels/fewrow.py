"""Few-row fp32 products on CPU (token-by-token decoding) that use every thread.

Decoding one token multiplies a single row by every weight matrix: a matrix-vector product, limited by
how fast the weights stream from memory. On an AMD EPYC Zen 4, torch's fp32 product with 1-32 rows runs
on one thread whatever `torch.set_num_threads` says (MKL's small-M path) and reads ~12 GB/s, where a plain
sum reads ~28 GB/s on one thread. Two forms here, each with the same arithmetic per output as F.linear,
so results agree with it to float rounding:

- `columns`: W's rows cut into equal blocks, each times the rows held as (in, M) columns, all in one
  `torch.bmm`. One row read 24-33 GB/s at 2 threads (1.6-2.5x F.linear) for the GPT-2 matrices and head
  on the Zen 4, 18-27 GB/s on one thread (1.2-2.1x).
- `split`: the output features cut into one slice per thread, handed to `torch.baddbmm` as a batch so
  every thread works: 1.1-1.7x F.linear at 8 rows, 2 threads, on the Zen 4.

Figures: `python bench/generate.py --only linear` (AMD EPYC Zen 4, 2 cores, torch 2.13, 2026-11-23). On
other CPUs they can lose to F.linear (an Intel Xeon with AVX-512: 0.41-0.55x), so neither is used untimed:
lmforge.kernels.linear times both against F.linear (and the packed product) per shape and row count.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def columns(rows: Tensor, weight: Tensor, bias: Tensor | None, chunks: int) -> Tensor:
    """rows (M, in) times W^T as `chunks` matrix-times-columns products in one bmm: W's rows cut into equal
    blocks, each multiplied by the rows held as (in, M) columns. All operands are strided views, no copies
    (as_strided: one call each on this per-token path instead of slice + view + transpose + expand)."""
    out_f, in_f = weight.shape
    m = rows.size(0)
    per = out_f // chunks
    main = per * chunks
    w = weight.as_strided((chunks, per, in_f), (per * in_f, in_f, 1))  # W[:main] as (chunks, per, in)
    # The rows as (in, M) columns with strides (1, in) -- rows.t() -- repeated for every block (stride 0).
    # Keep exactly these strides: for one row, a column with strides (1, 1) sends bmm to a kernel 5x slower
    # (measured, torch 2.13).
    cols = rows.as_strided((chunks, in_f, m), (0, 1, in_f))
    if bias is None:
        y = torch.bmm(w, cols)
    else:
        y = torch.baddbmm(bias.as_strided((chunks, per, 1), (per, 1, 1)), w, cols)
    # (chunks, per, M) -> (M, main), row-major: reshape alone gives a view with strides (1, M), and every op after
    # it (the attention's q, k, v among them) then reads transposed memory: scaled_dot_product_attention took its
    # slow path at 8 decoding rows, 500 us a layer instead of ~70 (measured, torch 2.13)
    y = y.view(1, main) if m == 1 else y.permute(2, 0, 1).contiguous().view(m, main)
    return _with_rest(y, rows, weight, bias)


def split(rows: Tensor, weight: Tensor, bias: Tensor | None, threads: int) -> Tensor:
    """rows (M, in) times W^T with the output features cut into one slice per thread, as one baddbmm."""
    out_f, in_f = weight.shape
    per = out_f // threads
    main = per * threads  # the slices must be equal for one batched product; the rest (< threads columns) aside
    w = weight[:main].view(threads, per, in_f).transpose(1, 2)  # (threads, in, per): a view, no copy
    xs = rows.unsqueeze(0).expand(threads, -1, -1)               # (threads, M, in): a view, no copy
    if bias is None:
        y = torch.bmm(xs, w)
    else:
        y = torch.baddbmm(bias[:main].view(threads, 1, per), xs, w)
    y = y.transpose(0, 1).reshape(rows.size(0), main)  # (M, main)
    return _with_rest(y, rows, weight, bias)


def _with_rest(y: Tensor, rows: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """y (M, main) holds the first `main` outputs (equal blocks); the few left over (< blocks) by F.linear."""
    main = y.size(1)
    if main == weight.size(0):
        return y
    return torch.cat([y, F.linear(rows, weight[main:], None if bias is None else bias[main:])], dim=1)
