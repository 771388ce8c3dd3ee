"""`import lmforge` (and `import lmforge; lmforge.GPT`) wall time relative to `import torch`.

Each import runs in a fresh interpreter (`python -c ...`), interleaved and repeated; we report the best
(least disturbed) and median of each and the differences. Target (issue 3): `import lmforge` at most
0.3 s more than `import torch`. `import lmforge` itself should not import torch at all (heavy modules
are loaded on first use, see lmforge/__init__.py); `lmforge.GPT` does, so it shows the model's own cost.

    python bench/import_time.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from common import machine_line, machine

CASES = {
    "torch": "import torch",
    "lmforge": "import lmforge",
    "lmforge.GPT": "import lmforge; lmforge.GPT",
}


def run(code: str) -> float:
    """Seconds to run `code` in a fresh interpreter, measured inside it (start-up of python itself excluded)."""
    wrapped = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", wrapped], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    for code in CASES.values():  # warm the OS file cache once
        run(code)
    times = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, code in CASES.items():
            times[name].append(run(code))
    torch_loaded = subprocess.run([sys.executable, "-c", "import sys, lmforge; print('torch' in sys.modules)"],
                                  check=True, capture_output=True, text=True).stdout.strip()
    print(f"\nImport time, {args.repeats} fresh interpreters each, interleaved -- {machine_line(machine())}\n")
    print("| import | best | median | worst | best - torch best | median - torch median |")
    print("|---|---:|---:|---:|---:|---:|")
    tb, tm = min(times["torch"]), statistics.median(times["torch"])
    for name, ts in times.items():
        b, m = min(ts), statistics.median(ts)
        print(f"| `{CASES[name]}` | {b:.3f} s | {m:.3f} s | {max(ts):.3f} s | {b - tb:+.3f} s | {m - tm:+.3f} s |")
    print(f"\n`import lmforge` loads torch: {torch_loaded}")


if __name__ == "__main__":
    main()
