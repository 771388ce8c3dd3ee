"""LoRA against full fine-tuning on one GPT: parameters trained, training memory, step time, side by side.

One training step = forward, mean next-token cross-entropy, backward, AdamW step (torch's fused AdamW, as
lmforge's Trainer builds it: lmforge.train.optim), zero the gradients; dropout 0; fp32; the same batch and the
same starting weights for both. LoRA: lmforge.lora.apply(r, alpha=2r, targets), everything else frozen, so its
optimizer holds moments for the adapters only and backward computes no weight gradient for the frozen matrices
(the input gradients still flow through them).

- step time: both contenders in one process, interleaved rounds (A B A B ...; bench/common.interleaved);
- memory: each contender alone in a fresh process (peak RSS after 3 steps minus RSS with the model built, on CPU;
  torch.cuda.max_memory_allocated on a GPU), plus the exact bytes of what training keeps beside the weights
  (gradients + AdamW's two moments).

    OMP_NUM_THREADS=1 python bench/lora.py                        # gpt-small-char shape (6 x 384), vocab 4000
    OMP_NUM_THREADS=1 python bench/lora.py --preset gpt2 --batch 4 --block 256 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F

from common import interleaved, machine, machine_line, set_threads, summary


def build(args, kind: str, device: str):
    from lmforge import lora
    from lmforge.models import build_model
    from lmforge.train.optim import build_optimizer
    from lmforge.config import TrainConfig

    torch.manual_seed(0)
    model = build_model("gpt", _cfg(args))
    if kind == "lora":
        model = lora.apply(model, r=args.r, alpha=2 * args.r, dropout=0.0, targets=args.targets.split(","))
    if torch.device(device).type == "cpu":
        from lmforge.kernels import accelerate
        accelerate(model)  # what lmforge's Trainer does on CPU (LoRA's layers are left alone)
    model = model.to(device).train()
    opt = build_optimizer(model, TrainConfig(lr=1e-4, weight_decay=0.0))
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, args.vocab, (args.batch, args.block + 1), generator=g).to(device)

    def step():
        logits = model(x[:, :-1]).logits
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, opt, step


def _cfg(args) -> dict:
    from lmforge.models.gpt.config import GPTConfig
    base = dict(GPTConfig.PRESETS[args.preset])
    base.update(vocab_size=args.vocab, max_len=max(args.block, base.get("max_len", 1024)), dropout=0.0)
    return base


def counts(model, opt) -> dict:
    params = {id(p): p for p in model.parameters()}.values()
    trained = [p for p in params if p.requires_grad]
    return {"params": sum(p.numel() for p in params), "trained": sum(p.numel() for p in trained),
            # what training keeps beside the weights: one gradient and AdamW's exp_avg, exp_avg_sq per trained value
            "grad_adam_bytes": sum(3 * p.numel() * p.element_size() for p in trained)}


def memory(args, kind: str) -> dict:
    """Run in a fresh process: the peak memory 3 training steps add to the built model."""
    device = args.device
    model, opt, step = build(args, kind, device)
    if device == "cpu":
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(3):
            step()
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024  # KiB -> bytes (Linux)
    else:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    return {**counts(model, opt), "peak_bytes": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpt-small-char")
    p.add_argument("--vocab", type=int, default=4000)  # a Chinese character vocabulary's order of size
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--targets", default="qkv,out")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--memory", choices=["full", "lora"], help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    set_threads(args.threads)
    if args.memory:
        print(json.dumps(memory(args, args.memory)))
        return
    info = machine(args.device)
    mem = {}
    for kind in ("full", "lora"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--memory", kind], check=True,
                             capture_output=True, text=True).stdout
        mem[kind] = json.loads(out.strip().splitlines()[-1])
    steps = {kind: build(args, kind, args.device)[2] for kind in ("full", "lora")}
    times = interleaved(steps, rounds=args.rounds, iters=args.iters, warmup=1, device=args.device, log=None)
    from lmforge.models.gpt.config import GPTConfig
    c = GPTConfig.from_dict(_cfg(args)).to_dict()
    print(f"LoRA vs full fine-tuning: GPT {c['n_layers']} x {c['d_model']} ({args.preset} shape, vocab {args.vocab}), "
          f"batch {args.batch} x {args.block}, fp32, LoRA r={args.r} alpha={2 * args.r} on {args.targets}; "
          f"{args.rounds} interleaved rounds of {args.iters} steps -- {machine_line(info)}\n")
    print("| | parameters trained | grads + AdamW moments | peak memory of 3 steps | step time (best / median) |")
    print("|---|---:|---:|---:|---:|")
    for kind, name in (("full", "full fine-tuning"), ("lora", "LoRA")):
        m, s = mem[kind], summary(times[kind])
        print(f"| {name} | {m['trained']:,} of {m['params']:,} ({100 * m['trained'] / m['params']:.2f}%) | "
              f"{m['grad_adam_bytes'] / 2**20:.1f} MiB | {m['peak_bytes'] / 2**20:.1f} MiB | "
              f"{1e3 / s['best']:.0f} / {1e3 / s['median']:.0f} ms |")
    ratio = [f / l for f, l in zip(times["full"], times["lora"])]
    print(f"\nLoRA step time / full: {min(times['lora']) / min(times['full']):.2f} (best vs best); per round "
          f"full/lora speed-up {min(ratio):.2f}..{max(ratio):.2f}")


if __name__ == "__main__":
    main()
