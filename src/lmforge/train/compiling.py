"""Whether to train through torch.compile: `train.compile` false (eager), true, or auto (chosen by timing).

torch.compile (inductor; on CPU it generates C++ for the glue between the matrix products: norms, GELU,
residual adds, softmax) can make a step faster, but not everywhere: the products themselves stay the same
BLAS calls, the generated code is not always faster than torch's kernels, and compilation costs seconds up
front (about 25 s for a 4-layer GPT's forward and backward on 2 AMD EPYC Zen 3 cores, cold; a few seconds
with inductor's on-disk cache warm). So `auto` decides by measuring, on the machine at hand:

- compile the model and run one forward + backward on the first batch (that is the compilation; its
  seconds are logged);
- time eager and compiled forward + backward steps on that batch, interleaved (E C C E E C ...: load from
  other processes falls on both alike), the median of each; the optimizer step is the same code either way
  and is not timed;
- keep compiled only if it is at least lmforge.kernels.tune.MARGIN (5%) faster: eager is the default that a
  candidate must beat beyond noise, as for every fast path in lmforge.kernels;
- record the choice in lmforge.kernels.tune's cache file (per CPU model and torch version, in the user's
  cache directory) under a key naming the device, the model's parameter shapes, the batch, the dtype and
  the thread count, so the next run of that shape here does not time again (it still compiles, if compiled
  won). With tuning off (LMFORGE_TUNING=0) a shape not in the cache stays eager.

Timing draws no random numbers from the run (the RNG state is restored afterwards, so dropout masks stay
those of an uninterrupted eager run) and leaves no gradients behind.

If compilation fails (no C++ compiler, an unsupported op), training continues eager with a warning, for
`true` as for `auto`; a failure is not cached (installing a compiler fixes it for the next run).
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import torch

from lmforge.kernels import tune

ROUNDS = 6  # interleaved rounds (even: each candidate first in half of them); a step is ~0.01-1 s
CALLS = 2   # steps per candidate per round


class CompileFailed(RuntimeError):
    """torch.compile could not compile the model here (the cause is chained)."""


def warm_up(step: Callable[[], Any]) -> float:
    """Run the compiled step once (dynamo traces, inductor compiles forward and backward): its seconds.
    CompileFailed if compilation fails."""
    t = time.perf_counter()
    try:
        step()
    except Exception as e:  # inductor raises many kinds (no compiler, C++ errors, unsupported ops)
        raise CompileFailed(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    return time.perf_counter() - t


def choose_compile(key: str, eager_step: Callable[[], Any], compiled_step: Callable[[], Any],
                   margin: float = tune.MARGIN) -> tuple[bool, str, float | None]:
    """(compile?, why, compile seconds or None) for the shape named by `key`.

    eager_step / compiled_step: one forward + backward each (no optimizer step). The compiled one is run once
    first, always (compilation, timed), unless the cache says eager; then, if the key is not in
    lmforge.kernels.tune's cache, both are timed (tune.measure, with autograd) and compiled is kept only if `margin` times faster.
    CompileFailed propagates (the caller trains eager and warns).

    Example: choose_compile("compile cpu ...", eager, compiled) -> (True, "a training step measured 1.12x ...", 24.8)
    """
    key = f"compile {key} threads={torch.get_num_threads()}"
    names = ("eager", "compiled")
    compile_s: list[float] = []
    timed: list[bool] = []  # seconds() ran: timed now, not read from the cache

    def seconds() -> dict[str, float]:
        timed.append(True)
        compile_s.append(warm_up(compiled_step))
        eager_step()  # warm: first-call set-up is not what we compare
        return tune.measure({"eager": eager_step, "compiled": compiled_step}, ROUNDS, CALLS, warm=False, grad=True)

    verdict = tune.choose(key, names, seconds, margin=margin)[0]
    record = tune.tuner().records.get(key)
    if verdict == "compiled" and not compile_s:  # cached (or forced): compile now, for this run
        compile_s.append(warm_up(compiled_step))
    if record is None:  # tuning off and nothing cached, or a forced choice
        return verdict == "compiled", f"not timed (tuning off or forced): {verdict}", (compile_s or [None])[0]
    ms = record.get("ms") or {}
    when = "" if timed else " (an earlier run on this machine, cached)"
    speed = (f"a training step measured {ms['eager'] / ms['compiled']:.2f}x eager's speed compiled"
             if {"eager", "compiled"} <= set(ms) else "a cached choice without its timings")
    return verdict == "compiled", f"{speed}{when}: {verdict}", (compile_s or [None])[0]


def failed(e: CompileFailed) -> str:
    """The warning for a compilation that failed."""
    msg = (f"torch.compile failed here ({e}); training eager instead. torch.compile's inductor needs a C++ "
           "compiler on CPU (e.g. g++) and Triton on GPU; set train.compile: false to skip the attempt")
    warnings.warn(msg, stacklevel=3)
    return msg
