"""Sharded training (train.parallel=fsdp) against one unsharded process with the same global batch.

    python scripts/fsdp_check.py                          # every case this machine has: cuda (nccl), cpu (gloo) x 2
    python scripts/fsdp_check.py --device cpu --nproc 2   # one case
    python scripts/fsdp_check.py --device cuda --nproc 1  # a machine with one GPU: a group of one, same code path

Each case trains the same model twice from the same seed: `lmforge train` in one process with batch B*N, then
`torchrun --nproc_per_node N -m lmforge train ... --set train.parallel=fsdp` with batch B in each process
(rank r reads rows [r*B, (r+1)*B) of every global batch, so both runs see the same windows). It prints the two
loss curves side by side, the largest loss and weight differences, and checks that the sharded run's
checkpoint loads with lmforge.load. fp32 throughout (no TF32, no bf16): what is left is the order of float
sums. Exit status 1 if a difference passes --tol. A few seconds per case on a CPU; the first CUDA case pays
for CUDA's start-up.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's lmforge, as the training processes get (PYTHONPATH below)


def train(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return time.perf_counter() - t


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def check(device: str, nproc: int, args, tmp: Path) -> bool:
    from safetensors.torch import load_file

    import lmforge

    sets = [f"train.max_steps={args.steps}", "train.log_interval=1", "train.save_interval=0",
            f"train.eval_interval={args.steps}", "train.dtype=fp32", "train.progress=false", "model.dropout=0.0",
            f"train.device={device}"] + args.set
    sets = [x for s in sets for x in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    plain, sharded = tmp / f"{device}-plain", tmp / f"{device}-fsdp{nproc}"
    s1 = train([sys.executable, "-m", "lmforge", "train", args.config, "--out", str(plain), *sets,
                "--set", f"train.batch_size={args.batch * nproc}"], env)
    s2 = train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                "-m", "lmforge", "train", args.config, "--out", str(sharded), *sets,
                "--set", f"train.batch_size={args.batch}", "--set", "train.parallel=fsdp"], env)
    a, b = losses(plain), losses(sharded)
    backend = "nccl" if device == "cuda" else "gloo"
    print(f"\n{device} ({backend}): 1 process, batch {args.batch * nproc}  vs  {nproc} sharded process(es), "
          f"batch {args.batch} each  ({s1:.1f} s and {s2:.1f} s with start-up)")
    print(f"{'step':>5} {'1 process':>12} {'fsdp':>12} {'difference':>12}")
    for (step, la), (_, lb) in zip(a, b):
        print(f"{step:>5} {la:>12.6f} {lb:>12.6f} {lb - la:>12.2e}")
    wa, wb = load_file(plain / "model.safetensors"), load_file(sharded / "model.safetensors")
    dloss = max(abs(la - lb) for (_, la), (_, lb) in zip(a, b))
    dweight = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    same_steps = [s for s, _ in a] == [s for s, _ in b] and sorted(wa) == sorted(wb)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    dlogits = (lmforge.load(sharded)(ids).logits - lmforge.load(plain)(ids).logits).abs().max().item()
    ok = same_steps and max(dloss, dweight, dlogits) <= args.tol
    print(f"max |loss difference| {dloss:.2e}   max |weight difference| {dweight:.2e} over {len(wa)} tensors   "
          f"max |logit difference| of the loaded checkpoints {dlogits:.2e}   -> {'OK' if ok else 'FAILED'} "
          f"(tolerance {args.tol:g})")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], help="one case (default: cuda where there is one, and cpu)")
    p.add_argument("--nproc", type=int, help="processes (default: every GPU for cuda, 2 for cpu)")
    p.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=4, help="windows per process per step")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more overrides, as lmforge train's")
    args = p.parse_args()
    devices = [args.device] if args.device else (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
    ok = True
    with TemporaryDirectory() as tmp:
        for device in devices:
            nproc = args.nproc or (torch.cuda.device_count() if device == "cuda" else 2)
            if device == "cuda" and not 1 <= nproc <= torch.cuda.device_count():
                sys.exit(f"--nproc {nproc} on cuda needs {nproc} GPUs; this machine has {torch.cuda.device_count()}")
            if nproc < 1:
                sys.exit(f"--nproc must be at least 1, got {nproc}")
            ok &= check(device, nproc, args, Path(tmp))
    print(f"\ntorch {torch.__version__}; {'all cases OK' if ok else 'a case FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
