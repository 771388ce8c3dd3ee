"""Shared pieces of the benchmarks: the machine record printed with every figure, and interleaved timing.

Machines here are shared and noisy, so contenders are timed in interleaved rounds (A B C A B C ...)
and we report the best round (the least disturbed one) and the spread over all rounds.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from typing import Callable

# `python bench/x.py` puts bench/ first on sys.path, where bench/tokenizers.py would shadow the `tokenizers`
# package that transformers imports. Move bench/ to the end: this module stays importable, packages win.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """CPU model name and the subset of CPU_FLAGS it has (Linux /proc/cpuinfo; elsewhere: platform)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model, [f for f in CPU_FLAGS if f in flags]


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16: the CPUs where oneDNN runs bf16 matmuls natively (not emulated)."""
    _, flags = cpu_model_and_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def machine(device: str = "cpu") -> dict:
    """What a figure was measured on: printed next to every result."""
    import torch
    model, flags = cpu_model_and_flags()
    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "cpu_flags": flags,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def machine_line(info: dict) -> str:
    flags = " ".join(f if f in info["cpu_flags"] else f"no-{f}" for f in CPU_FLAGS)
    s = (f"{info['date']}, {info['cpu']} ({info['cpu_count']} CPUs; {flags}; torch cpu capability "
         f"{info['cpu_capability']}), torch {info['torch']}, {info['threads']} threads")
    if "gpu" in info:
        s += f", GPU {info['gpu']} (CUDA {info['cuda']})"
    return s


def set_threads(n: int) -> None:
    """Same thread count for every contender (intra-op; inter-op left alone as nothing runs in parallel)."""
    import torch
    torch.set_num_threads(n)


def sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(steps: dict[str, Callable[[], None]], *, rounds: int, iters: int, warmup: int,
                device: str = "cpu", log: Callable[[str], None] | None = print) -> dict[str, list[float]]:
    """Time each contender's `step()` in interleaved rounds: A B C A B C ...

    Each round of a contender runs `warmup` untimed steps (caches, allocator, branch predictors back to
    that contender) and then `iters` timed steps. Returns name -> seconds per step, one value per round.
    """
    for step in steps.values():  # first touch: lazy init, oneDNN primitive creation
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        for name, step in steps.items():
            for _ in range(warmup):
                step()
            sync(device)
            t0 = time.perf_counter()
            for _ in range(iters):
                step()
            sync(device)
            times[name].append((time.perf_counter() - t0) / iters)
        if log:
            log(f"round {r + 1}/{rounds}: " + "  ".join(f"{n} {times[n][-1] * 1e3:.2f} ms" for n in steps))
    return times


def summary(times: list[float], work: float = 1.0) -> dict:
    """work / seconds: best (fastest round), median, worst; spread = worst / best - 1."""
    rates = sorted(work / t for t in times)
    return {"best": rates[-1], "median": statistics.median(rates), "worst": rates[0],
            "spread": rates[-1] / rates[0] - 1.0, "rounds": len(rates)}


def ratio(a: list[float], b: list[float]) -> dict:
    """Speed of a relative to b (b's time / a's time): best-vs-best, and per-round ratios (same round, so
    both saw similar machine load) as median and min..max."""
    per_round = sorted(tb / ta for ta, tb in zip(a, b))
    return {"best": min(b) / min(a), "median": statistics.median(per_round),
            "min": per_round[0], "max": per_round[-1]}


def read_bandwidth(tensors: int = 3) -> float:
    """Bytes/s reading a 1 GiB fp32 tensor with torch's sum: the best of 5 sums over each of `tensors` freshly
    allocated tensors. The same measurement has given 31 to 64 GB/s on one machine from one run to the next
    (page placement); the best of several keeps the bound high, so a fraction of it is conservative."""
    import time

    import torch

    best = float("inf")
    for _ in range(tensors):
        x = torch.randn(256 * 1024 * 1024)
        for _ in range(5):
            t = time.perf_counter()
            x.sum()
            best = min(best, time.perf_counter() - t)
        del x
    return 256 * 1024 * 1024 * 4 / best
