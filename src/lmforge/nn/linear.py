"""Linear layers: y = x W^T + b, with faster paths for the few-row products of token-by-token decoding.

Decoding one token multiplies a single row by every weight matrix: a matrix-vector product, limited by
how fast the weights stream from memory. On CPU, torch's fp32 product with 1-32 rows runs on one thread
whatever `torch.set_num_threads` says (MKL's small-M path) and reads ~12 GB/s on our test machine, where
a plain sum reads ~28 GB/s on one thread. `linear` takes other routes for fp32 inference on CPU, each
with the same arithmetic per output, so results agree with F.linear to float rounding:

- 1-2 rows (one or two sequences decoding): W's rows cut into equal blocks, each times the rows held
  as (in, M) columns, all in one `torch.bmm`. One row reads 24-33 GB/s at 2 threads (1.6-2.5x F.linear)
  for the GPT-2 matrices and head, 18-27 GB/s on one thread (1.2-2.1x).
- 3-32 rows (batched decoding; the server): oneDNN's linear on a copy of W that oneDNN has reordered for
  its kernel ("packed"), 1.3-2.5x the thread split below at 8 rows. Only inside a `PackedWeights` table
  (the decoding Engine holds one): the copy is made after a weight has been used this way a few times
  (a one-off prefill never pays for it), kept while the weight is unchanged and the table lives, and
  costs memory: the weights are held twice. `set_packing(False)` (`lmforge serve --no-pack`) turns it
  off.
- Otherwise (no table entered, packing off, no oneDNN): the output features cut into one slice per
  thread, handed to `torch.baddbmm` as a batch so every thread works: 1.1-1.7x F.linear at 8 rows,
  2 threads.

Figures: `python bench/generate.py --only linear` (AMD EPYC Zen 4, 2 cores, torch 2.13, 2026-11-23).
Medium products (33 rows and more, under the size below), bf16 (whose kernel already uses every
thread) and small matrices (where the bookkeeping costs more than it saves, and which stay in cache
anyway) keep F.linear.

Large products: fp32 products on CPU of at least 2^28 multiply-adds (GPT-2 small's training step at
batch 4 x 256, a 512-token prefill; not the nanoGPT CPU shape) are computed by oneDNN, which on our
Zen 4 is 1.17-1.50x torch's default (MKL) for the GPT-2 matrices (`python bench/gpt2_step.py
--products`). In training only the forward: the backward is F.linear's. `set_large_onednn(False)`
turns this off.
"""
from __future__ import annotations

import functools
import threading
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_FEW_ROWS = 32                # up to this many rows (batch x new tokens) these paths win
_COLUMN_ROWS = 2              # up to this many rows the column form beats the packed product
_MIN_COLUMN_WEIGHT = 1 << 17  # 384 x 384 read from memory: 1.8x F.linear; already in cache it loses 3 us of 14
_MIN_SPLIT_WEIGHT = 1 << 19   # 768 x 768 is the smallest GPT-2 matrix and gains 1.14x from the split; 128 x 128 loses 3x
_PACK_AFTER = 4               # multi-row calls on a weight before it is packed
_PACK_HINT = 8                # the batch size oneDNN chooses the packed layout for
_MIN_ONEDNN_MACS = 1 << 28    # products from here on take oneDNN's fp32 kernel (1024 x 768 x 768 = 2^29.2)

_packing = True
_large_onednn_on = True
_tables: "weakref.WeakSet[PackedWeights]" = weakref.WeakSet()  # every live table, for set_packing(False)
_local = threading.local()  # .table: the PackedWeights entered on this thread, if any


def set_packing(enabled: bool) -> None:
    """Turn the packed copies for 3-32-row products on or off; off also frees the copies made so far."""
    global _packing
    _packing = bool(enabled)
    if not _packing:
        for table in list(_tables):
            table.clear()


def set_large_onednn(enabled: bool) -> None:
    """Turn oneDNN's kernel for large fp32 products on or off (off: F.linear, torch's default BLAS), e.g. to
    compare numbers with F.linear or on a CPU where it is not the faster one."""
    global _large_onednn_on
    _large_onednn_on = bool(enabled)


class PackedWeights(dict):
    """Where `linear` keeps oneDNN-packed weight copies: only inside `with table:`, on that thread, and only
    as long as the table lives. lmforge.generate.Engine holds one per engine and enters it for each step,
    so the copies exist while a decoder (the server's, a batched generate()) runs, and nowhere else.

    Entries: id(weight) -> [weakref to the weight, (data_ptr, version, dtype), calls, packed copy or None].
    A weight changed in place (an optimizer step, load_state_dict) gets a fresh copy. A change that torch
    does not count (writing through `weight.data`) is not seen: use a new table after one."""

    def __init__(self):
        super().__init__()
        _tables.add(self)

    def __enter__(self) -> "PackedWeights":
        self._outer = getattr(_local, "table", None)
        _local.table = self
        return self

    def __exit__(self, *exc) -> None:
        _local.table = self._outer

    __hash__ = object.__hash__  # a WeakSet member; equality stays dict equality


class _TrainLinear(torch.autograd.Function):
    """F.linear for large fp32 training products on CPU, with the forward product computed by oneDNN instead
    of torch's default BLAS (MKL), and the backward exactly autograd's for F.linear (two MKL products and a
    sum), so gradients are bit-identical to F.linear's given the same output gradient. On our AMD EPYC
    (Zen 4) oneDNN's forward is faster for every GPT-2 matrix, most for the 50257-way head
    (`python bench/gpt2_step.py --products`); its backward products were not, so they stay MKL's."""

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


def _large_onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """A large fp32 product on CPU, outside bf16 autocast (where F.linear computes in bf16) and outside
    torch.compile (which traces F.linear)."""
    return (_large_onednn_on and x.dtype == torch.float32 and weight.dtype == torch.float32 and x.is_cpu
            and x.numel() * weight.size(0) >= _MIN_ONEDNN_MACS and weight.is_contiguous()
            and (bias is None or (bias.dtype == torch.float32 and bias.is_contiguous()))
            and not torch.is_autocast_enabled("cpu") and _onednn_available() and not torch.compiler.is_compiling())


@functools.cache
def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear(x, weight, bias); few-row fp32 inference on CPU takes a faster product, and so do large fp32
    products on CPU, with or without gradients (module docstring)."""
    out_f, in_f = weight.shape
    if x.numel() > _FEW_ROWS * in_f and _large_onednn(x, weight, bias):
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad)):
            return _TrainLinear.apply(x, weight, bias)
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, in_f), weight, bias, "none", [], "")
        return y.view(*x.shape[:-1], out_f)  # a prefill, an evaluation: the same forward, nothing to save
    if (x.numel() > _FEW_ROWS * in_f or not x.is_cpu or x.dtype != torch.float32  # training batches stop here
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
        y = _columns(rows, weight, bias, chunks)
    elif rows.size(0) > _COLUMN_ROWS and (packed := _packed(weight)) is not None:
        y = torch.ops.mkldnn._linear_pointwise(rows, packed, bias, "none", [], "")
    elif threads >= 2 and out_f >= 64 * threads and weight.numel() >= _MIN_SPLIT_WEIGHT:
        y = _split(rows, weight, bias, threads)
    else:
        return F.linear(x, weight, bias)
    return y.view(*x.shape[:-1], out_f)


def _columns(rows: Tensor, weight: Tensor, bias: Tensor | None, chunks: int) -> Tensor:
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
    y = y.view(1, main) if m == 1 else y.permute(2, 0, 1).reshape(m, main)  # (chunks, per, M) -> (M, main)
    return _with_rest(y, rows, weight, bias)


def _split(rows: Tensor, weight: Tensor, bias: Tensor | None, threads: int) -> Tensor:
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


def _packed(weight: Tensor) -> Tensor | None:
    """oneDNN's packed copy of `weight` from the PackedWeights entered on this thread, made on the weight's
    _PACK_AFTER-th use there; None before that, outside any table, when packing is off or oneDNN missing."""
    table = getattr(_local, "table", None)
    if table is None or not _packing or weight.is_inference() or not _onednn_available():
        return None
    key = (weight.data_ptr(), weight._version, weight.dtype)
    entry = table.get(id(weight))
    if entry is None or entry[0]() is not weight or entry[1] != key:
        entry = table[id(weight)] = [weakref.ref(weight), key, 0, None]
    if entry[3] is None:
        entry[2] += 1
        if entry[2] < _PACK_AFTER:
            return None
        try:
            entry[3] = torch.ops.mkldnn._reorder_linear_weight(weight, _PACK_HINT)
        except (AttributeError, RuntimeError):  # a torch without these oneDNN ops: stay on the split
            set_packing(False)
            return None
    return entry[3]


class Linear(nn.Linear):
    """nn.Linear (same parameters, same init, same state-dict names) computed by `linear` above."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
