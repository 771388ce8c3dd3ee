"""GPT-2 small (124M) forward + backward step time at batch 4 x 256: lmforge GPT vs Hugging Face GPT2LMHeadModel.

Both models: GPT-2 small's shape (12 layers, 12 heads, width 768, vocab 50257, 1024 positions), dropout 0,
train mode, the same weights (ours converted from the HF model with lmforge.models.gpt.hf, so the two
compute the same function; ours with lmforge.kernels applied on CPU, as lmforge's Trainer does, so large
products take oneDNN's forward), HF with attn_implementation="sdpa". One step = forward, mean next-token
cross-entropy over all 4*256 positions, backward, zero the gradients (no optimizer: the issue asks for
forward + backward). Both losses are computed the same way, F.cross_entropy on the logits.
Target (issue 3): our step time <= 0.8x HF's in fp32.

    python bench/gpt2_step.py                        # CPU, fp32
    python bench/gpt2_step.py --device cuda --dtypes fp32,bf16
    python bench/gpt2_step.py --products --threads 2    # the forward products alone: F.linear vs oneDNN
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys

import torch
import torch.nn.functional as F

from common import interleaved, machine, machine_line, ratio, set_threads, summary


def build(device: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    from lmforge.models.gpt.hf import config_from_hf, state_from_hf
    from lmforge.models.gpt.model import GPT
    torch.manual_seed(0)
    cfg = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # defaults are GPT-2 small's shape
    hf = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa")
    c = config_from_hf(cfg.to_dict())
    ours = GPT(c)
    ours.load_state_dict(state_from_hf(hf.state_dict(), c))
    if torch.device(device).type == "cpu":
        from lmforge.kernels import accelerate
        accelerate(ours)  # what lmforge's Trainer does on CPU
    return ours.to(device).train(), hf.to(device).train()


def products(threads: int, rounds: int) -> None:
    """Forward GFLOP/s of the products in a GPT-2-small training step at 1024 rows: torch's F.linear (MKL on
    CPU) vs oneDNN's linear, which lmforge.kernels uses for large fp32 training products; interleaved."""
    from lmforge.kernels.onednn import onednn_available
    if not onednn_available():
        print("skipped: this torch has no oneDNN linear")
        return
    set_threads(threads)
    info = machine("cpu")
    print(f"Forward products, 1024 rows, fp32, GFLOP/s (best of {rounds} interleaved rounds) -- {machine_line(info)}\n")
    print("| matrix (out x in) | F.linear (MKL) | oneDNN | ratio |")
    print("|---|---:|---:|---:|")
    for out_f, in_f in [(2304, 768), (768, 768), (3072, 768), (768, 3072), (50257, 768)]:
        x, w, b = torch.randn(1024, in_f), torch.randn(out_f, in_f), torch.randn(out_f)
        steps = {"mkl": lambda: F.linear(x, w, b),
                 "onednn": lambda: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")}
        with torch.no_grad():
            times = interleaved(steps, rounds=rounds, iters=2, warmup=1, log=None)
        gflop = 2 * 1024 * in_f * out_f / 1e9
        print(f"| {out_f} x {in_f} | {gflop / min(times['mkl']):.0f} | {gflop / min(times['onednn']):.0f} | "
              f"{min(times['mkl']) / min(times['onednn']):.2f}x |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads, the same for both")
    ap.add_argument("--dtypes", default="fp32")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--products", action="store_true",
                    help="instead of the step: forward GFLOP/s of each GPT-2 product, F.linear vs oneDNN")
    args = ap.parse_args(argv)
    if args.products:
        return products(args.threads, args.rounds)
    set_threads(args.threads)
    ours, hf = build(args.device)
    V = hf.config.vocab_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (args.batch, args.seq), generator=g).to(args.device)
    y = torch.randint(0, V, (args.batch, args.seq), generator=g).to(args.device)

    def step_fn(model, fwd, dtype):
        amp = (lambda: torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16)) if dtype == "bf16" \
            else contextlib.nullcontext

        def step():
            with amp():
                loss = fwd(model)
            loss.backward()
            model.zero_grad(set_to_none=True)
        return step

    ce = lambda z: F.cross_entropy(z.reshape(-1, V), y.reshape(-1))
    steps = {}
    for d in args.dtypes.split(","):
        sfx = "" if d == "fp32" else f"-{d}"
        steps["ours" + sfx] = step_fn(ours, lambda m: m(x, targets=y).loss, d)  # F.cross_entropy inside
        steps["hf" + sfx] = step_fn(hf, lambda m: ce(m(input_ids=x).logits), d)

    info = machine(args.device)
    print(machine_line(info), file=sys.stderr)
    times = interleaved(steps, rounds=args.rounds, iters=args.iters, warmup=args.warmup, device=args.device,
                        log=lambda s: print(s, file=sys.stderr))
    print(f"\nGPT-2 small forward+backward, batch {args.batch} x {args.seq}, {args.device} -- {machine_line(info)}\n")
    print("| contender | step time best | median | worst | spread |")
    print("|---|---:|---:|---:|---:|")
    res = {"machine": info, "batch": args.batch, "seq": args.seq, "seconds": times, "ratios": {}}
    for k, ts in times.items():
        s = summary(ts)
        print(f"| {k} | {1 / s['best']:.3f} s | {1 / s['median']:.3f} s | {1 / s['worst']:.3f} s | "
              f"{s['spread'] * 100:.0f}% |")
    print("\n| step time ratio (lower is better) | best / best | per-round median | per-round min..max |")
    print("|---|---:|---:|---:|")
    for d in args.dtypes.split(","):
        sfx = "" if d == "fp32" else f"-{d}"
        r = ratio(times["ours" + sfx], times["hf" + sfx])  # speed ratio; step-time ratio is its inverse
        res["ratios"][f"ours{sfx} / hf{sfx}"] = r
        print(f"| ours{sfx} / hf{sfx} | {1 / r['best']:.3f}x | {1 / r['median']:.3f}x | "
              f"{1 / r['max']:.3f}..{1 / r['min']:.3f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
