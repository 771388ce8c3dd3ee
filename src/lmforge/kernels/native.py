"""lmforge's own compiled CPU products (cpu.cpp): built once, on first use, with torch.utils.cpp_extension.

The kernels are candidates like any other fast path: lmforge.kernels.tune times them against torch's product
on the machine at hand, and they run only where they measured faster (the int8 product of kernels.int8, the
few-row fp32 product "avx2" of kernels.linear, the GELU of kernels.gelu, the decoding attention of
kernels.attention). Building needs a C++ compiler and ninja and takes ~30-60 s once (torch keeps the built
module in its extensions directory, $TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions); without them, or on a
CPU without AVX2, `extension()` is None and torch's products remain.
"""
from __future__ import annotations

import functools
import importlib.util
import shutil
import sys
import threading
from pathlib import Path
from typing import Sequence

import torch

_lock = threading.Lock()
_extension = None  # the built module; False once building failed


@functools.cache  # asked on hot paths (each training GELU): PATH is searched once
def buildable() -> bool:
    """Whether `extension()` can be expected to build here, without building it: an AVX2 CPU (as torch sees it), a
    C++ compiler on the PATH and ninja importable."""
    return (torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
            and any(shutil.which(c) for c in ("c++", "g++", "clang++"))
            and (importlib.util.find_spec("ninja") is not None or shutil.which("ninja") is not None))


def usable(order: Sequence[str]) -> str:
    """The first name in a tuner's order that can run in this process: "avx2" (these kernels) only where they are
    built, since a cached choice may name it in a process whose build failed or was not possible."""
    return next(n for n in order if n != "avx2" or extension() is not None)


def extension():
    """The compiled cpu.cpp (int8_linear, dequantize, linear_rows, gelu_tanh_forward / _backward, decode_attention),
    built on first call; None where it cannot be (no AVX2, no compiler, the build failed: said once on stderr)."""
    global _extension
    if _extension is None:
        with _lock:
            if _extension is None:
                _extension = False
                if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
                    from torch.utils.cpp_extension import load
                    # torch loads a kernel it built before at once; say why we wait only when it compiles
                    note = threading.Timer(2.0, lambda: print("lmforge: compiling the CPU kernels (once; ~30-60 s)",
                                                              file=sys.stderr, flush=True))
                    note.start()
                    try:
                        # -fopenmp: at::parallel_for is OpenMP code inlined from torch's headers; compiled without
                        # it, every product of ours ran on one thread whatever torch.get_num_threads() said
                        _extension = load("lmforge_cpu", [str(Path(__file__).with_name("cpu.cpp"))],
                                          extra_cflags=["-O3", "-mavx2", "-mfma", "-fopenmp"],
                                          extra_ldflags=["-fopenmp"], verbose=False)
                    except Exception as e:  # no compiler, no ninja, ...: the other candidates remain
                        print(f"lmforge: the CPU kernels could not be built ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); using torch's products",
                              file=sys.stderr)
                    finally:
                        note.cancel()
    return _extension or None
