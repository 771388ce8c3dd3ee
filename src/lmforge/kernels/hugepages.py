"""Model weights in transparent huge pages (Linux), for decoding on CPU.

Decoding one token reads every weight once: ~0.5 GB per token for GPT-2 small in fp32, streamed from
memory. torch allocates with the normal 4 KiB pages, so the stream needs a new address translation
every 4 KiB; from 2 MiB pages it needs 512x fewer, and reads faster. The one-row products over all
of GPT-2 small's weights (`lmforge.kernels.linear`) read 1.04-1.07x faster at 2 threads and 1.17x faster
at one thread from huge pages (26.0 -> 27.9 and 21.9 -> 25.7 GB/s, per-round medians; AMD EPYC Zen 4,
torch 2.13, 2026-11-23: `python bench/generate.py --only hugepages`, both copies interleaved in one
process).
That gain depends on the machine (its TLB, its memory), so it is timed here before any model moves:
`pays()` reads 128 MiB of matrices by one-row products from torch's allocation and from huge pages,
interleaved (lmforge.kernels.tune: once per machine, thread count and torch version, then cached), and a
model moves only where huge pages measured at least 5% faster.
Any program can have this: torch itself does it for every large allocation when started with
THP_MEM_ALLOC_ENABLE=1.

`huge_page_weights(model)` copies a model's CPU parameters into one private anonymous mapping advised
MADV_HUGEPAGE and points each parameter at its part (`p.data = ...`): the same Parameter objects and
values, new memory, for as long as the model lives. Nothing calls it behind a caller's back: the
decoding Engine and generate() call it when asked (`huge_pages=True`), and the CLI's decoding commands
and the server ask for it on the models they load. A model is moved once. It does nothing where the
kernel has no transparent huge pages (not Linux, or THP set to "never"), where they did not measure
faster, or after `set_huge_pages(False)`. Do not call it while another thread runs the same model: the old memory is
freed under it.
"""
from __future__ import annotations

import collections
import functools
import itertools
import math
import mmap
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.kernels.tune import choose, measure

HUGE_PAGE = 2 << 20  # x86-64 and arm64 (4 KiB base pages): a PMD-sized transparent huge page
_ALIGN = 64  # each tensor starts on a cache line

_enabled = True
_lock = threading.Lock()
_MARK = "_lmforge_huge_page_ptr"  # set on a moved parameter: where its data went (a later .data = x is seen)
_PROBE = (32, 1024, 1024)  # 32 matrices of 4 MiB in fp32 timed by `pays`: more than any cache, as a decode step's


def set_huge_pages(enabled: bool) -> None:
    """Turn `huge_page_weights` on or off (models already moved stay where they are)."""
    global _enabled
    _enabled = bool(enabled)


@functools.cache  # read once: every Engine (every generate() call) asks
def available() -> bool:
    """True where madvise(MADV_HUGEPAGE) can give huge pages: Linux with THP not set to "never"."""
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[never]" not in mode


def pays() -> bool:
    """Do one-row products (a decode step) read faster from huge pages than from torch's own allocation here?
    Timed once per machine and thread count (lmforge.kernels.tune), then cached."""
    key = f"huge_pages {_PROBE[0]}x{_PROBE[1]}x{_PROBE[2]} rows<=1 float32 threads={torch.get_num_threads()}"
    return choose(key, ("torch_alloc", "huge_pages"), _time_both)[0] == "huge_pages"


def _time_both() -> dict[str, float]:
    """Seconds per F.linear of one row by each of the same 32 matrices, in torch's allocation (one allocation
    each, as a model's weights) and in huge pages, interleaved (lmforge.kernels.tune.measure)."""
    gen = torch.Generator().manual_seed(0)  # not the caller's random stream
    normal = [torch.randn(_PROBE[1:], generator=gen) for _ in range(_PROBE[0])]
    arena, offset = _arena(sum(w.numel() * w.element_size() for w in normal))
    huge = torch.frombuffer(arena, dtype=torch.float32, count=math.prod(_PROBE), offset=offset).view(_PROBE)
    for h, w in zip(huge, normal):
        h.copy_(w)
    x = torch.ones(1, _PROBE[2])
    calls = {name: (lambda it=itertools.cycle(ws): F.linear(x, next(it))) for name, ws in
             (("torch_alloc", normal), ("huge_pages", list(huge)))}
    return measure(calls, calls=_PROBE[0])


def _arena(nbytes: int) -> tuple[mmap.mmap, int]:
    """(memory advised for huge pages, the offset in it where a huge page starts, `nbytes` of room from there)."""
    # Private anonymous memory, so it is what the advice applies to (a shared mapping is shmem, with its own
    # THP setting). One huge page more than needed, to start on a huge-page boundary.
    arena = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    arena.madvise(mmap.MADV_HUGEPAGE)
    return arena, -torch.frombuffer(arena, dtype=torch.uint8, count=1).data_ptr() % HUGE_PAGE


def _movable(p: nn.Parameter) -> bool:
    """A CPU parameter not moved yet, that is its storage's only content (a view into a bigger tensor is left
    alone: moving it would break the sharing), not in shared memory (torch.multiprocessing), not an inference
    tensor (whose data cannot be replaced)."""
    return (getattr(p, _MARK, None) != p.data_ptr() and p.device.type == "cpu" and p.numel() > 0
            and not p.is_inference() and not p.is_shared() and p.is_contiguous() and p.storage_offset() == 0
            and p.untyped_storage().nbytes() == p.numel() * p.element_size())


def huge_page_weights(model: nn.Module) -> int:
    """Move `model`'s CPU parameters into huge-page-backed memory where that measured faster (`pays`); returns
    the bytes moved (0: nothing done)."""
    if not (_enabled and available()):
        return 0
    with _lock:
        params = [p for p in model.parameters() if _movable(p)]
        owners = collections.Counter(p.data_ptr() for p in params)
        params = [p for p in params if owners[p.data_ptr()] == 1]  # two Parameters on one storage stay tied
        sizes = [-(-p.numel() * p.element_size() // _ALIGN) * _ALIGN for p in params]
        if sum(sizes) < HUGE_PAGE or not pays():  # not even one huge page to gain, or no gain measured here
            return 0
        arena, offset = _arena(sum(sizes))
        with torch.no_grad():
            for p, size in zip(params, sizes):
                # Each tensor keeps the mapping alive (frombuffer holds a reference to it) and has a storage of
                # its own, so safetensors sees no shared memory. Pages are filled (and made huge) by the copy.
                t = torch.frombuffer(arena, dtype=p.dtype, count=p.numel(), offset=offset).view(p.shape)
                t.copy_(p)
                p.data = t  # the old memory is freed here, one tensor at a time: no second copy of the model
                setattr(p, _MARK, t.data_ptr())
                offset += size
        return sum(p.numel() * p.element_size() for p in params)
