"""`linear(x, weight, bias)`: F.linear, with the CPU fast paths chosen per product; and the modules that use it.

Which product takes which path (fp32 on CPU; everything else is F.linear):

- 1-2 rows (one or two sequences decoding): the column form (lmforge.kernels.fewrow.columns).
- 3-32 rows (batched decoding; the server): oneDNN on a packed copy of the weight, inside a PackedWeights
  table (lmforge.kernels.packed); without one, with packing off or without oneDNN, the thread split
  (lmforge.kernels.fewrow.split).
- At least 2^28 multiply-adds (a training batch, a 512-token prefill): oneDNN's kernel
  (lmforge.kernels.onednn), in training for the forward only.

The few-row paths never run where autograd records (training keeps F.linear there). Medium products
(33 rows and more, under the large size), bf16 (whose kernel already uses every thread) and small
matrices (where the bookkeeping costs more than it saves, and which stay in cache anyway) keep F.linear.
`set_few_rows(False)` sends every 1-32-row product to F.linear.

`Linear` and `LMHead` are lmforge.nn's torch.nn.Linear and LMHead computed by `linear`: the same
parameters, state-dict names and init. lmforge.kernels.accelerate puts them in place of a model's own.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.kernels.fewrow import columns, split
from lmforge.kernels.onednn import large_onednn, train_linear
from lmforge.kernels.packed import packed
from lmforge.nn.heads import LMHead as PlainLMHead

_FEW_ROWS = 32                # up to this many rows (batch x new tokens) these paths win
_COLUMN_ROWS = 2              # up to this many rows the column form beats the packed product
_MIN_COLUMN_WEIGHT = 1 << 17  # 384 x 384 read from memory: 1.8x F.linear; already in cache it loses 3 us of 14
_MIN_SPLIT_WEIGHT = 1 << 19   # 768 x 768 is the smallest GPT-2 matrix and gains 1.14x from the split; 128 x 128 loses 3x

_few_rows = True


def set_few_rows(enabled: bool) -> None:
    """Turn the 1-32-row products (column form, packed copies, thread split) on or off (off: F.linear)."""
    global _few_rows
    _few_rows = bool(enabled)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear(x, weight, bias); few-row fp32 inference on CPU takes a faster product, and so do large fp32
    products on CPU, with or without gradients (module docstring)."""
    out_f, in_f = weight.shape
    if x.numel() > _FEW_ROWS * in_f and large_onednn(x, weight, bias):
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad)):
            return train_linear(x, weight, bias)
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, in_f), weight, bias, "none", [], "")
        return y.view(*x.shape[:-1], out_f)  # a prefill, an evaluation: the same forward, nothing to save
    if (x.numel() > _FEW_ROWS * in_f or not _few_rows  # training batches stop here
            or not x.is_cpu or x.dtype != torch.float32
            or weight.numel() < _MIN_COLUMN_WEIGHT or not weight.is_contiguous()
            or (bias is not None and not bias.is_contiguous())
            or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                             or (bias is not None and bias.requires_grad)))):
        return F.linear(x, weight, bias)
    threads = torch.get_num_threads()
    rows = x.reshape(-1, in_f)
    if not rows.is_contiguous():
        rows = rows.contiguous()
    chunks = max(2, threads)
    if rows.size(0) <= _COLUMN_ROWS and out_f >= 128 * chunks:
        y = columns(rows, weight, bias, chunks)
    elif rows.size(0) > _COLUMN_ROWS and (copy := packed(weight)) is not None:
        y = torch.ops.mkldnn._linear_pointwise(rows, copy, bias, "none", [], "")
    elif threads >= 2 and out_f >= 64 * threads and weight.numel() >= _MIN_SPLIT_WEIGHT:
        y = split(rows, weight, bias, threads)
    else:
        return F.linear(x, weight, bias)
    return y.view(*x.shape[:-1], out_f)


class Linear(nn.Linear):
    """torch.nn.Linear (same parameters, same init, same state-dict names) computed by `linear` above."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


class LMHead(PlainLMHead):
    """lmforge.nn.LMHead whose tied product (the embedding matrix, GPT-2's 50257 x 768 head: the largest
    matrix a decoding step reads) is computed by `linear`; an untied head's `proj` is a Linear of its own."""

    def forward(self, x: Tensor) -> Tensor:
        if self.proj is not None:
            return self.proj(x)
        return linear(x, self.embedding[0].weight)
