"""Linear layers: y = x W^T + b, with a faster path for the few-row products of token-by-token decoding.

Decoding one token multiplies a single row by every weight matrix: a matrix-vector product, limited by
how fast the weights stream from memory. On CPU, torch's fp32 product with 1-32 rows runs on one thread
whatever `torch.set_num_threads` says (MKL's small-M path), reading ~13 GB/s on our test machine. Cutting
the output features into one slice per thread and handing the slices to `torch.baddbmm` as a batch puts
every thread to work: the 50257 x 768 GPT-2 head went from 11.9 ms to 6.3 ms at 2 threads, the GPT-2
block matrices 1.6x faster (bench/generate.py; AMD EPYC Zen 4, torch 2.13). Same arithmetic per output,
so results agree with F.linear to float rounding. Training, large products, bf16 (whose kernel already
uses every thread) and small matrices (where the batch bookkeeping costs more than it saves) keep F.linear.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_FEW_ROWS = 32           # up to this many rows (batch x new tokens) the split wins; 64 rows: still 1.3x on the head
_MIN_WEIGHT = 1 << 19    # 768 x 768 fp32 is the smallest GPT-2 matrix and gains 1.14x; 128 x 128 loses 3x


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear(x, weight, bias); few-row fp32 inference on a multi-threaded CPU splits the output features
    across threads (see the module docstring)."""
    out_f, in_f = weight.shape
    if (x.numel() > _FEW_ROWS * in_f or not x.is_cpu or x.dtype != torch.float32  # training batches stop here
            or weight.numel() < _MIN_WEIGHT or not weight.is_contiguous()
            or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
        return F.linear(x, weight, bias)
    threads = torch.get_num_threads()
    if threads < 2 or out_f < 64 * threads:
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, in_f)
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


class Linear(nn.Linear):
    """nn.Linear (same parameters, same init, same state-dict names) computed by `linear` above."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
