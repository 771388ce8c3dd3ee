"""Each CPU fast path chosen by timing it on the machine at hand, once; the choices kept on disk.

Why: which product is fastest depends on the CPU, its memory and torch's build, not on a constant. The
column form of lmforge.kernels.fewrow read 1.6-2.5x faster than F.linear on an AMD EPYC Zen 4, where
MKL's few-row kernel runs on one thread, and 0.4-0.55x as fast on an Intel Xeon with AVX-512, where MKL's
uses both threads (issue 17). So the first time a product of one kind is needed -- a key such as
"few_rows 2304x768 rows<=1 float32 threads=2" -- its candidates are timed, torch's default always among
them, and the outcome is kept:

- timed: each candidate is one short call (one product, on the next of its copies of the weight), made
  `calls` times a round, in interleaved rounds (A A A B B B, then B B B A A A, ...: load from other
  processes falls on all of them alike, and so does the place in a round, which matters: a product timed
  against itself read 1-2.5% slower in first place), after one untimed pass each (oneDNN builds its
  kernel, the memory is touched); a candidate's time is the median of all its calls. A call is short
  next to the time slices of other processes, so a process switch spoils a few calls, not the median. On
  our loaded 2-core machine (load 6) the ratio of two products timed this way stayed within 0.96-1.01 over
  four timings; timed as whole rounds it ranged 0.59-1.07 by the fastest round and 0.54-1.79 by the median.
- kept: an order of preference. The candidates faster than the default by at least `MARGIN` (5%: less is
  within the noise of a shared machine, and the default must never lose beyond noise), fastest first,
  then the default. The caller takes the first one it can use at that moment.
- cached: in memory, and in a JSON file per CPU model and torch version in the user's cache directory
  ($LMFORGE_CACHE_DIR, else $XDG_CACHE_HOME/lmforge, else ~/.cache/lmforge), so the next process starts
  tuned. The file is written atomically (a new file renamed over the old); one that cannot be read is
  ignored with a warning and rewritten. Delete it to time everything again.
- re-timed when it was timed on a busy machine: each choice keeps the load it was timed under (runnable
  processes per core, the 1-minute load average). Under load a product on two threads loses more than one
  on one thread (a thread waits for the other's time slice), so a choice timed at load 6 on 2 cores can
  be wrong on the quiet machine: decode read 35.1 tok/s with such choices against 43.3 with choices timed
  quiet (issue 17, AMD EPYC Zen 3). A choice timed at more than `BUSY` processes per core is timed again
  the first time it is used in a process whose machine is at least 1.5x less loaded, and the new timing
  replaces it. Likewise a choice timed without one of today's candidates (a later version added a kernel) is
  timed again.

Switches: `set_tuning(False)` (or LMFORGE_TUNING=0 in the environment) times nothing: a key not cached
takes the default. `forced(*names)` makes every choice the first of `names` among its candidates, untimed
(for tests and benches that must run one path). lmforge.kernels.set_enabled(False) turns the fast paths
themselves off.

    from lmforge.kernels import tune
    order = tune.choose("demo 1x1", ("F.linear", "fast"), lambda: tune.measure({"F.linear": f, "fast": g}))
    # ('fast', 'F.linear') where g measured at least 5% faster than f, else ('F.linear',)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import statistics
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

MARGIN = 1.05  # a candidate replaces the default only if at least 5% faster (the default wins ties and noise)
ROUNDS = 6     # timed rounds per candidate (even: each candidate is first in half of them)
BUSY = 1.5     # runnable processes per core above which a timing is re-done on a quieter machine


def env_switch(name: str, default: bool = True) -> bool:
    """An on/off environment variable: 1/true/on/yes or 0/false/off/no (unset or empty: `default`)."""
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{name}={os.environ[name]!r} is not a switch: set it to 1 (on) or 0 (off), or unset it")


_tuning = env_switch("LMFORGE_TUNING")
_forced: tuple[str, ...] | None = None


def set_tuning(enabled: bool) -> None:
    """Time new keys (True, the default) or not (False: a key not cached takes torch's default)."""
    global _tuning
    _tuning = bool(enabled)


@contextlib.contextmanager
def forced(*names: str) -> Iterator[None]:
    """Within: every choice is the first of `names` that is among its candidates (then the default), untimed
    and not recorded. forced() with no names: the default everywhere.

    Example: with forced("columns", "split"): linear(x, w)  # the column form where it applies, else the split"""
    global _forced
    before, _forced = _forced, tuple(names)
    try:
        yield
    finally:
        _forced = before


def forcing() -> bool:
    """Whether a `forced(...)` is in effect: a caller that memoizes choices must not keep a forced one."""
    return _forced is not None


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo's "model name"; elsewhere what platform knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def cache_file() -> Path:
    """Where this CPU model's and this torch's choices are kept (module docstring)."""
    root = os.environ.get("LMFORGE_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmforge"
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")[:60]
    # the model name alone may be shared by different parts (a bare "AMD EPYC"): a short hash of the full
    # name and the feature flags keeps such machines apart
    flags = " ".join(sorted(cpu_flags()))
    digest = hashlib.sha1(f"{cpu_model()}|{flags}".encode()).hexdigest()[:8]
    version = re.sub(r"[^A-Za-z0-9.]+", "-", torch.__version__)
    return Path(root) / f"tune-{cpu}-{digest}-torch-{version}.json"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def load() -> float | None:
    """Runnable processes per core: the 1-minute load average over the CPUs this process may use (None where
    the system has no load average)."""
    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return os.getloadavg()[0] / max(1, cores or 1)
    except (OSError, AttributeError):
        return None


def stale(record: dict, now: float | None) -> bool:
    """Whether a cached choice was timed on a machine busy enough (`BUSY`) and at least 1.5x busier than now
    that it should be timed again (module docstring).

    Example: stale({"load": 3.0}, 1.0) is True; stale({"load": 3.0}, 2.5) and stale({"load": 1.0}, 0.1) are False"""
    then = record.get("load")
    return isinstance(then, (int, float)) and now is not None and then > BUSY and now * 1.5 <= then


def measure(candidates: dict[str, Callable[[], object]], rounds: int = ROUNDS, calls: int = 1, *,
            warm: bool = True, grad: bool = False) -> dict[str, float]:
    """Median seconds per call of each candidate over `rounds` (made even) interleaved rounds of `calls` calls
    each, the order reversed every other round, after one untimed pass of `calls` calls each unless `warm` is
    False (the caller has run them) (module docstring: why short calls, the median and the order). Without
    autograd unless `grad` (a training step's forward and backward)."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    order = list(candidates.items())
    with torch.enable_grad() if grad else torch.no_grad():
        for _, fn in (order if warm else ()):
            for _ in range(calls):
                fn()
        for r in range(rounds + rounds % 2):
            for name, fn in (order if r % 2 == 0 else order[::-1]):
                for _ in range(calls):
                    t = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def rank(seconds: dict[str, float], default: str, margin: float = MARGIN) -> tuple[str, ...]:
    """The order of preference: candidates at least `margin` times faster than `default`, fastest first, then it.

    Example: rank({"F.linear": 1.0, "a": 0.5, "b": 0.97, "c": 0.8}, "F.linear") == ("a", "c", "F.linear")"""
    faster = sorted((t, name) for name, t in seconds.items() if name != default and t * margin <= seconds[default])
    return tuple(name for _, name in faster) + (default,)


class Tuner:
    """The choices of one process: `records` (key -> {"order": [...], "ms": {candidate: ms per call}, "load":
    processes per core while timed}), read from
    and written to `path` (None: memory only)."""

    def __init__(self, path: Path | str | None = None):
        self.path = None if path is None else Path(path)
        self.records: dict[str, dict] = {}
        self._orders: dict[str, tuple[str, ...]] = {}  # the hot path's lookup: key -> order
        self._fresh: set[str] = set()  # keys on file that were not timed on a much busier machine (`stale`)
        self._loaded = False
        self._lock = threading.RLock()  # one timing at a time: two would disturb each other

    def choose(self, key: str, names: Sequence[str], seconds: Callable[[], dict[str, float]],
               margin: float = MARGIN) -> tuple[str, ...]:
        """The order of preference for `key` among `names` (names[0] is the default). `seconds()` times the
        candidates (name -> seconds, e.g. by `measure`); it is called only when the key is neither cached
        nor forced, and tuning is on."""
        if _forced is not None:
            return tuple(n for n in _forced if n in names and n != names[0]) + (names[0],)
        order = self._orders.get(key)
        if order is not None:
            return order
        with self._lock:
            self._load()
            if key in self._orders:
                return self._orders[key]
            record = self.records.get(key)
            if key in self._fresh and (not record.get("ms") or set(names) <= set(record["ms"])):
                self._orders[key] = tuple(record["order"])  # on file, timed quiet enough, with every candidate
                return self._orders[key]
            if not _tuning:  # a stale choice on file is still better than none; else the default, not recorded
                if key in self.records:
                    self._orders[key] = tuple(self.records[key]["order"])  # the hot path's lookup from now on
                    return self._orders[key]
                return (names[0],)
            busy = load()
            measured = seconds()
            order = rank(measured, names[0], margin)
            self.records[key] = {"order": list(order), "ms": {n: round(s * 1e3, 4) for n, s in measured.items()}}
            if busy is not None:
                self.records[key]["load"] = round(busy, 2)
            self._orders[key] = order
            self._save()
            return order

    def _load(self) -> None:
        """Read the file once (a missing one is an empty cache; a broken one is ignored, with a warning). A choice
        timed on a much busier machine than this one is kept on file but not used: it is timed again (`stale`);
        so is one whose timing lacks a candidate the caller now has (a later lmforge, a kernel built since)."""
        if self._loaded:
            return
        self._loaded = True
        now = load()
        for key, record in self._read().items():
            self.records.setdefault(key, record)
            if not stale(record, now):
                self._fresh.add(key)

    def _read(self, warn: bool = True) -> dict[str, dict]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            choices = json.loads(self.path.read_text())["choices"]
            if not all(isinstance(r["order"], list) and all(isinstance(n, str) for n in r["order"]) and r["order"]
                       for r in choices.values()):
                raise ValueError("a choice without a list of candidate names")
            return choices
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            if warn:
                warnings.warn(f"ignoring the kernel tuning cache {self.path} ({type(e).__name__}: {e}); "
                              f"its products will be timed again and the file rewritten", stacklevel=2)
            return {}

    def _save(self) -> None:
        """Write every choice, merged with what another process may have written meanwhile, atomically."""
        if self.path is None:
            return
        data = {"cpu": cpu_model(), "torch": torch.__version__,
                "capability": torch.backends.cpu.get_cpu_capability(),
                "choices": {**self._read(warn=False), **self.records}}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)  # atomic: a reader sees the old file or the new one, never half of one
        except OSError as e:
            warnings.warn(f"cannot write the kernel tuning cache {self.path} ({e}); the choices are kept for "
                          f"this process only (set LMFORGE_CACHE_DIR to a writable folder)", stacklevel=2)
            self.path = None  # warn once


_tuner: Tuner | None = None


def tuner() -> Tuner:
    """This process's Tuner, on the cache file of this CPU and torch (made at first use)."""
    global _tuner
    if _tuner is None:
        _tuner = Tuner(cache_file())
    return _tuner


@contextlib.contextmanager
def using(t: Tuner) -> Iterator[Tuner]:
    """Within: choices are made and kept by `t` (e.g. a fresh Tuner, to time everything now)."""
    global _tuner
    before, _tuner = _tuner, t
    try:
        yield t
    finally:
        _tuner = before


def choose(key: str, names: Sequence[str], seconds: Callable[[], dict[str, float]],
           margin: float = MARGIN) -> tuple[str, ...]:
    """This process's Tuner's `choose` (Tuner.choose)."""
    return tuner().choose(key, names, seconds, margin)


def bucket(rows: int) -> int:
    """Rows rounded up to a power of two, so a model is timed a handful of times, not per call.

    Example: [bucket(n) for n in (1, 2, 3, 5, 9, 17, 33)] == [1, 2, 4, 8, 16, 32, 64]"""
    return 1 << max(0, rows - 1).bit_length()
