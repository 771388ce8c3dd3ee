"""oneDNN-packed weight copies for 3-32-row fp32 products on CPU (batched decoding; the server).

oneDNN's linear on a copy of W that oneDNN has reordered for its kernel ("packed") is 1.3-2.5x the
thread split of lmforge.kernels.fewrow at 8 rows (`python bench/generate.py --only linear`, AMD EPYC
Zen 4, 2 cores, torch 2.13); lmforge.kernels.linear takes it for 3-32 rows where it is timed fastest
on the machine at hand. Only inside a `PackedWeights` table (the decoding Engine holds one): the
copy is made after a weight has been used this way a few times (a one-off prefill never pays for it),
kept while the weight is unchanged and the table lives, and costs memory: the weights are held twice.
`set_packing(False)` (`lmforge serve --no-pack`) turns it off and frees the copies.
"""
from __future__ import annotations

import threading
import weakref

import torch
from torch import Tensor

from lmforge.kernels.onednn import onednn_available

_PACK_AFTER = 4  # multi-row calls on a weight before it is packed
_PACK_HINT = 8   # the batch size oneDNN chooses the packed layout for

_packing = True
_tables: "weakref.WeakSet[PackedWeights]" = weakref.WeakSet()  # every live table, for set_packing(False)
_local = threading.local()  # .table: the PackedWeights entered on this thread, if any


def set_packing(enabled: bool) -> None:
    """Turn the packed copies for 3-32-row products on or off; off also frees the copies made so far."""
    global _packing
    _packing = bool(enabled)
    if not _packing:
        for table in list(_tables):
            table.clear()


class PackedWeights(dict):
    """Where `lmforge.kernels.linear` keeps oneDNN-packed weight copies: only inside `with table:`, on that
    thread, and only as long as the table lives. lmforge.generate.Engine holds one per engine and enters it
    for each step, so the copies exist while a decoder (the server's, a batched generate()) runs, and
    nowhere else.

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


def packed(weight: Tensor) -> Tensor | None:
    """oneDNN's packed copy of `weight` from the PackedWeights entered on this thread, made on the weight's
    _PACK_AFTER-th use there; None before that, outside any table, when packing is off or oneDNN missing."""
    table = getattr(_local, "table", None)
    if table is None or not _packing or weight.is_inference() or not onednn_available():
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
