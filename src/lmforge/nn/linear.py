"""Linear layers: y = x W^T + b, with faster paths for the few-row products of token-by-token decoding.

Decoding one token multiplies a single row by every weight matrix: a matrix-vector product, limited by
how fast the weights stream from memory. On CPU, torch's fp32 product with 1-32 rows runs on one thread
whatever `torch.set_num_threads` says (MKL's small-M path) and reads ~12 GB/s on our test machine, where
a plain sum reads ~28 GB/s on one thread. Two batched products do better, same arithmetic per output, so
results agree with F.linear to float rounding:

- One row (batch-1 decoding): W's rows cut into equal blocks, each times the row held as an (in, 1)
  column, all in one `torch.bmm`. 27-29 GB/s at 2 threads (2.2-2.4x F.linear) for the GPT-2 matrices
  and head, 15-21 GB/s on one thread (1.2-1.7x); 768 x 3072 gains least (1.3x, 1.0x).
- 2-32 rows (batched decoding, short prefills): the output features cut into one slice per thread,
  handed to `torch.baddbmm` as a batch so every thread works: 1.1-1.4x F.linear at 8 rows, 2 threads.

Figures: `python bench/generate.py --only linear` (AMD EPYC Zen 4, 2 cores, torch 2.13, 2026-11-23).
Training, large products, bf16 (whose kernel already uses every thread) and small matrices (where the
batch bookkeeping costs more than it saves) keep F.linear.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_FEW_ROWS = 32           # up to this many rows (batch x new tokens) the split wins; 64 rows: still 1.3x on the head
_MIN_WEIGHT = 1 << 19    # 768 x 768 fp32 is the smallest GPT-2 matrix and gains 1.14x; 128 x 128 loses 3x


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear(x, weight, bias); few-row fp32 inference on CPU takes a faster batched product
    (see the module docstring)."""
    out_f, in_f = weight.shape
    if (x.numel() > _FEW_ROWS * in_f or not x.is_cpu or x.dtype != torch.float32  # training batches stop here
            or weight.numel() < _MIN_WEIGHT or not weight.is_contiguous()
            or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
        return F.linear(x, weight, bias)
    threads = torch.get_num_threads()
    rows = x.reshape(-1, in_f)
    if rows.size(0) == 1:
        return _matvec(rows.contiguous(), weight, bias, max(2, threads)).view(*x.shape[:-1], out_f)
    if threads < 2 or out_f < 64 * threads:
        return F.linear(x, weight, bias)
    per = out_f // threads
    main = per * threads  # the slices must be equal for one batched product; the rest (< threads columns) aside
    w = weight[:main].view(threads, per, in_f).transpose(1, 2)  # (threads, in, per): a view, no copy
    xs = rows.unsqueeze(0).expand(threads, -1, -1)               # (threads, M, in): a view, no copy
    if bias is None:
        y = torch.bmm(xs, w)
    else:
        y = torch.baddbmm(bias[:main].view(threads, 1, per), xs, w)
    y = y.transpose(0, 1).reshape(rows.size(0), main)  # (M, main)
    if main < out_f:
        y = torch.cat([y, F.linear(rows, weight[main:], None if bias is None else bias[main:])], dim=1)
    return y.view(*x.shape[:-1], out_f)


def _matvec(row: Tensor, weight: Tensor, bias: Tensor | None, chunks: int) -> Tensor:
    """One row times W^T as `chunks` matrix-times-column products in one bmm: W's rows cut into equal
    blocks (a view, no copy), each multiplied by the row held as an (in, 1) column."""
    out_f, in_f = weight.shape
    per = out_f // chunks
    main = per * chunks
    w = weight[:main].view(chunks, per, in_f)
    # row.t() is (in, 1) with strides (1, in). Keep exactly this form: the same column with strides (1, 1)
    # sends bmm to a kernel 5x slower (measured, torch 2.13).
    col = row.t().unsqueeze(0).expand(chunks, -1, -1)
    if bias is None:
        y = torch.bmm(w, col)
    else:
        y = torch.baddbmm(bias[:main].view(chunks, per, 1), w, col)
    y = y.view(1, main)
    if main < out_f:
        y = torch.cat([y, F.linear(row, weight[main:], None if bias is None else bias[main:])], dim=1)
    return y


class Linear(nn.Linear):
    """nn.Linear (same parameters, same init, same state-dict names) computed by `linear` above."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
