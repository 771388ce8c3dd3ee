"""Which precision to train in: `train.dtype` fp32, bf16 (autocast), or auto (bf16 only where it is faster)."""
from __future__ import annotations

import hashlib
import math
import time
from typing import Any, Callable

import torch

from lmforge.kernels import tune
from lmforge.kernels.tune import cpu_flags


def _seconds(fn: Callable[[], Any], device: torch.device, bf16: bool, budget: float) -> float:
    """Best wall time of fn() under (optional) bf16 autocast, repeated for about `budget` s (at least 3 runs)."""
    best, runs = math.inf, 0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        fn()  # warm-up: first-call dispatch and kernel set-up are not what we compare
        end = time.perf_counter() + budget
        while time.perf_counter() < end or runs < 3:
            runs += 1
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
    return best


MIN_SPEEDUP = 1.1  # bf16 costs precision; take it only for a clear win


def choose_dtype(requested: str, device: torch.device, model: torch.nn.Module | None = None,
                 probe: Callable[[], Any] | None = None, probe_key: str = "") -> tuple[bool, str]:
    """(use bf16 autocast?, why). "auto" picks bf16 only where it is faster.

    CUDA: bf16 whenever the GPU supports it (Ampere and later run it on tensor cores).
    CPU: only with native bf16 instructions (AVX512-BF16 or AMX); on an AVX2-only CPU bf16 is
    emulated and a matmul is ~100x slower. Flags say bf16 matmuls are fast, not that the model is:
    a small model spends its time in casts, norms and softmax, where bf16 gains nothing. So a
    flagged CPU is confirmed by timing `probe()` (the trainer passes forward + backward on its first
    batch; default: the model's largest matmul) ~0.1 s each way, and bf16 must be
    at least MIN_SPEEDUP times faster. The outcome is kept in lmforge.kernels.tune's cache on disk, keyed by
    the model's parameter shapes, `probe_key` (the trainer gives its batch size) and the thread count, so
    the next run of the same shape here does not time again; with tuning off (LMFORGE_TUNING=0) a shape
    not in the cache takes fp32.
    """
    if requested == "fp32":
        return False, "fp32 requested"
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        if requested == "bf16" and not ok:
            raise ValueError("train.dtype=bf16 but this GPU does not support bf16; use train.dtype=fp32 or auto")
        return ok, "CUDA device supports bf16" if ok else "this GPU has no bf16: fp32"
    if requested == "bf16":
        return True, "bf16 requested"
    capability = torch.backends.cpu.get_cpu_capability()
    native = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"}) or \
        (["capability " + capability] if "BF16" in capability.upper() or "AMX" in capability.upper() else [])
    if not native:
        return False, f"CPU has no native bf16 (capability {capability}, no avx512_bf16/amx flag): fp32"
    what = "a training step (forward + backward)"
    if probe is None:
        w = max((p for p in model.parameters() if p.dim() == 2), key=lambda p: p.numel(), default=None) if model else None
        if w is None:
            return True, f"CPU has {', '.join(native)}: bf16"
        w, x = w.detach(), torch.randn(512, w.shape[1], device=w.device)
        probe, what = (lambda: x @ w.T), "the model's largest matmul"
    return _timed_choice(probe, device, what, f"{shapes_key(model)} {probe_key}".strip(), native)


def _timed_choice(probe: Callable[[], Any], device: torch.device, what: str, shapes: str,
                  native: list[str]) -> tuple[bool, str]:
    """fp32 or bf16 by timing probe() ~0.1 s each way, or by the cached outcome of an earlier timing."""
    key = f"dtype {device.type} {'step' if 'step' in what else 'matmul'} {shapes} threads={torch.get_num_threads()}"
    timed = []

    def seconds() -> dict[str, float]:
        timed.append(True)
        return {"fp32": _seconds(probe, device, False, 0.1), "bf16": _seconds(probe, device, True, 0.1)}

    verdict = tune.choose(key, ("fp32", "bf16"), seconds, margin=MIN_SPEEDUP)[0]
    record = tune.tuner().records.get(key)
    if record is None:  # tuning off and nothing cached (or a forced choice)
        return verdict == "bf16", f"CPU has {', '.join(native)}; not timed (tuning off): {verdict}"
    speedup = record["ms"]["fp32"] / record["ms"]["bf16"]
    when = "" if timed else " (an earlier run on this machine, cached)"
    return verdict == "bf16", (f"CPU has {', '.join(native)}; {what} measured {speedup:.2f}x the fp32 speed in "
                               f"bf16{when}: {verdict}")


def shapes_key(model: torch.nn.Module | None) -> str:
    """The model's parameter count and a short hash of its parameter shapes: what the timing depends on."""
    if model is None:
        return "model=none"
    shapes = [tuple(p.shape) for p in model.parameters()]
    digest = hashlib.sha1(repr(shapes).encode()).hexdigest()[:10]
    return f"params={sum(p.numel() for p in model.parameters())}/{digest}"
