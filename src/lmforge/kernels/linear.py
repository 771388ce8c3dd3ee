"""`linear(x, weight, bias)`: F.linear, or a faster product for it chosen by timing; and the modules that use it.

Which product takes which path (fp32 on CPU; everything else is F.linear):

- 1-32 rows without gradients (decoding: batch x new tokens): the fastest of F.linear, the column form and
  the thread split (lmforge.kernels.fewrow), up to 8 rows lmforge's own AVX2 loop ("avx2", cpu.cpp, built
  by lmforge.kernels.native where a compiler is), and from 3 rows oneDNN on a packed copy of the weight
  (lmforge.kernels.packed; only inside a PackedWeights table, so a batch-1 decode never holds its weights
  twice). Timed per weight shape, rows rounded up to a power of two, and thread count: `_time_few_rows`
  says what is timed.
- More than 32 rows (a training batch, a prefill): the faster of F.linear (torch's default BLAS) and
  oneDNN's kernel (lmforge.kernels.onednn), timed per shape and row count; in training for the forward only.

The timing, its cache on disk and its switches are lmforge.kernels.tune's: a choice is made the first time
a key is needed, on the machine at hand, and a fast path replaces F.linear only where it measured at least
5% faster. The few-row paths never run where autograd records (training keeps F.linear there), nor for
weights under 256 x 256 (`_MIN_FEW_ROW_WEIGHT`: choosing would cost what such a product takes).
`set_few_rows(False)` sends every 1-32-row product to F.linear.

`Linear` and `LMHead` are lmforge.nn's torch.nn.Linear and LMHead computed by `linear`: the same
parameters, state-dict names and init. lmforge.kernels.accelerate puts them in place of a model's own.
"""
from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lmforge.kernels.native as native
from lmforge.kernels.fewrow import columns, split
from lmforge.kernels.onednn import forward as onednn_forward
from lmforge.kernels.onednn import large_onednn, onednn_available, train_linear
from lmforge.kernels.packed import _PACK_AFTER, PackedWeights, packed
from lmforge.kernels.tune import bucket, choose, forced, measure
from lmforge.nn.heads import LMHead as PlainLMHead

_FEW_ROWS = 32  # up to this many rows a product reads its weights more than it computes: the decoding paths
_NATIVE_ROWS = 8  # rows up to which the AVX2 loop is a candidate (eight as two groups of four; cpu.cpp)
# Below this many weights (256 x 256 in fp32: 256 KiB) a few-row F.linear takes a few microseconds, about what
# choosing among the paths costs in Python (~5-10 us measured, torch 2.13): nothing to gain, so not even asked.
_MIN_FEW_ROW_WEIGHT = 1 << 16

_few_rows = True


def set_few_rows(enabled: bool) -> None:
    """Turn the 1-32-row products (column form, packed copies, thread split) on or off (off: F.linear)."""
    global _few_rows
    _few_rows = bool(enabled)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear(x, weight, bias), by the product timed fastest for its kind on this machine (module docstring)."""
    if torch.compiler.is_compiling():
        # torch.compile traces F.linear (inductor picks its own products); asked first, because tracing the
        # checks below breaks the graph at every product (dynamo skips torch.backends.mkldnn.is_available):
        # 18 graph breaks in a 4-layer GPT, which made the compiled training step slower than eager
        return F.linear(x, weight, bias)
    in_f = weight.size(1)
    if x.numel() > _FEW_ROWS * in_f:
        if large_onednn(x, weight, bias) and _large_choice(x, weight, bias) == "onednn":
            return train_linear(x, weight, bias) if _records_grad(x, weight, bias) else onednn_forward(x, weight, bias)
        return F.linear(x, weight, bias)
    if not _few_row_eligible(x, weight, bias):
        return F.linear(x, weight, bias)
    return _few_row_product(x, weight, bias)


def _records_grad(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad))


def _few_row_eligible(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """The few-row paths on, some rows, a weight worth choosing for (`_MIN_FEW_ROW_WEIGHT`); fp32 on CPU,
    contiguous weight and bias, nothing for autograd to record, no autocast (whose products are bf16), not being
    traced by torch.compile (which sees F.linear)."""
    return (_few_rows and x.numel() > 0 and weight.numel() >= _MIN_FEW_ROW_WEIGHT
            and x.is_cpu and x.dtype == torch.float32 and weight.dtype == torch.float32 and weight.is_contiguous()
            and (bias is None or bias.is_contiguous()) and not _records_grad(x, weight, bias)
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def _large_choice(x: Tensor, weight: Tensor, bias: Tensor | None) -> str:
    """"onednn" or "F.linear" for this shape, timed on this very product the first time (4 rounds: each call
    can take a second; the weight is read once for many rows, so copies are not needed as for few rows)."""
    out_f, in_f = weight.shape
    rows = bucket(x.numel() // in_f)
    key = f"large {out_f}x{in_f} rows<={rows} float32 threads={torch.get_num_threads()}"
    calls = {"F.linear": lambda: F.linear(x, weight, bias), "onednn": lambda: onednn_forward(x, weight, bias)}
    return choose(key, ("F.linear", "onednn"), lambda: measure(calls, rounds=4))[0]


def native_rows(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Whether `linear(x, weight, bias)` would compute with lmforge's AVX2 loop (cpu.cpp: linear_rows) now, x being
    (M, in) rows: then a caller may have that loop add the residual or apply the GELU in the same pass
    (lmforge.kernels.decode). Times the candidates if this kind of product was never chosen."""
    if not (x.numel() <= _NATIVE_ROWS * weight.size(1) and _few_row_eligible(x, weight, bias)):
        return False
    return _few_row_order(x, weight, bias)[0] == "avx2" and native.extension() is not None


def _few_row_order(x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[str, ...]:
    """The order of preference for this few-row product's kind, timed the first time it is asked."""
    out_f, in_f = weight.shape
    threads, m = torch.get_num_threads(), bucket(x.numel() // in_f)
    names = _few_row_names(m, out_f, threads)
    return choose(_few_row_key(out_f, in_f, m, threads), names, lambda: _time_few_rows(names, m, weight, bias))


def _few_row_product(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x times W^T by the first usable product in this key's order (packed: once its copy exists)."""
    out_f, in_f = weight.shape
    threads = torch.get_num_threads()
    order = _few_row_order(x, weight, bias)
    if order[0] == "F.linear":
        return F.linear(x, weight, bias)  # before any reshape: the choice costs this product no more
    rows = x.reshape(-1, in_f)
    if not rows.is_contiguous():
        rows = rows.contiguous()
    for name in order:
        if name == "columns":
            y = columns(rows, weight, bias, max(2, threads))
        elif name == "split":
            y = split(rows, weight, bias, threads)
        elif name == "packed" and (copy := packed(weight)) is not None:
            y = torch.ops.mkldnn._linear_pointwise(rows, copy, bias, "none", [], "")
        elif name == "avx2" and (ext := native.extension()) is not None:
            y = ext.linear_rows(rows, weight, bias)
        elif name == "F.linear":
            break
        else:
            continue  # no packed copy yet (or none here), or a name from another version's cache
        return y.view(*x.shape[:-1], out_f)
    return F.linear(x, weight, bias)


@functools.cache  # asked at every call (every product of every decoding step): the string is made once
def _few_row_key(out_f: int, in_f: int, m: int, threads: int) -> str:
    return f"few_rows {out_f}x{in_f} rows<={m} float32 threads={threads}"


@functools.cache  # asked at every call: a tuple per (rows, outputs, threads), made once
def _few_row_names(m: int, out_f: int, threads: int) -> tuple[str, ...]:
    """The candidates for `m` rows: F.linear (the default) first."""
    names = ["F.linear"]
    if out_f >= max(2, threads):
        names.append("columns")  # at least one output per block
    if threads >= 2 and out_f >= threads:
        names.append("split")    # one slice per thread: one thread has nothing to split
    if m > 2 and onednn_available():
        names.append("packed")   # a second copy of the weights: not for one or two sequences
    if m <= _NATIVE_ROWS and native.buildable():
        names.append("avx2")     # built when first timed; a failed build leaves it out of the timing
    return tuple(names)


def _time_few_rows(names: tuple[str, ...], m: int, weight: Tensor, bias: Tensor | None) -> dict[str, float]:
    """Seconds per product of each candidate for `m` rows as it would run: F.linear itself, and each fast path
    through `linear` with that path forced, so its bookkeeping (a reshape, the packed copy's lookup: a few
    microseconds) counts. Each call multiplies the next of enough copies of the weight that they come from
    memory, not from a cache, as in a decode step (which reads every matrix of the model once)."""
    copies = [weight] + [weight.clone() for _ in range(_stream_copies(weight) - 1)]
    # any values will do; a generator of its own, so that timing draws nothing from the caller's random stream
    x = torch.randn(m, weight.size(1), generator=torch.Generator().manual_seed(0))
    table = PackedWeights()  # the packed candidate's copies: made here, freed with the table
    with table, forced("packed"):
        for _ in range(_PACK_AFTER if "packed" in names else 0):
            for w in copies:
                linear(x, w, bias)
    calls = {"F.linear": _cycling(lambda w: F.linear(x, w, bias), copies)}
    for name in names[1:]:
        if name == "avx2" and native.extension() is None:
            continue  # could not be built here: not a candidate
        calls[name] = _cycling(lambda w, name=name: _forced_linear(name, x, w, bias), copies)
    with table:
        return measure(calls, rounds=max(6, -(-20 // len(copies))), calls=len(copies))  # 20 calls at least


def _cycling(product: Callable[[Tensor], Tensor], weights: list[Tensor]) -> Callable[[], Tensor]:
    """A call that applies `product` to the next of `weights`, going round them."""
    it = itertools.cycle(weights)
    return lambda: product(next(it))


def _forced_linear(name: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    with forced(name):
        return linear(x, weight, bias)


def _stream_copies(weight: Tensor) -> int:
    """Copies of `weight` that fill twice the last-level cache, 64 MiB at least; at most 64 (a model made of
    matrices under 1 MiB mostly sits in cache when it runs, too)."""
    return max(1, min(64, -(-_stream_bytes() // (weight.numel() * weight.element_size()))))


@functools.cache
def _stream_bytes() -> int:
    """Twice the largest CPU cache Linux reports for cpu0, or 64 MiB if that is more (or nothing is reported)."""
    largest = 0
    for size in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = size.read_text().strip()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        if text[:-1].isdigit() and text[-1] in units:
            largest = max(largest, int(text[:-1]) * units[text[-1]])
    return max(64 << 20, 2 * largest)


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
