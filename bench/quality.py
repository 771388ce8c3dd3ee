"""Quality per wall-clock: KJV character LM, the same time budget for ours and for the reference.

ours       lmforge GPT trained by lmforge's Trainer with our best settings for this budget:
           configs/nanogpt-cpu.yaml (the reference's shape: 4 layers, 4 heads, width 128, context 64,
           batch 12) with lr 2e-3 -> 2e-4 (kjv-char.yaml's peak: small models take a higher lr) and
           bf16 autocast where the CPU has native bf16 (fp32 elsewhere), eval and checkpoint only at
           the end. (A first 10-minute run with configs/kjv-char.yaml as is -- context 128, batch 16,
           dtype auto, which picked fp32 under load -- lost: 1.3988 vs 1.3574; see BENCHMARKS.md.)
reference  nanoGPT's shakespeare-char CPU recipe (nanoGPT README, "I only have a macbook": n_layer=4,
           n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0, lr 1e-3 -> 1e-4 cosine,
           warmup 100, beta2 0.99, weight decay 0.1 on 2-D tensors, grad clip 1.0, fp32 on CPU)
           run on Hugging Face's GPT2LMHeadModel (SDPA attention) in a transcription of nanoGPT's
           train.py loop (get_lr, AdamW groups, clip, step). nanoGPT's own model is not on PyPI; HF's
           GPT-2 is the same architecture, so this is the recipe with an independent implementation.

Both: the bundled KJV with lmforge's split by book (val: Ruth, Ecclesiastes, Mark), the same character
vocabulary, random training windows (nanoGPT's get_batch), the same number of threads, and the same
budget. The recipe's max_iters is a step count; here each side's cosine schedule is stretched to the
number of steps it can do in the budget (timed on a throwaway copy before the clock starts), and a
hard deadline stops either one at the budget regardless. By default the two run at the same time,
one thread each, so both see the same load from whatever else runs on the machine.

Score (identical for both, after training, not timed): mean next-character cross-entropy (nats) over
the whole val split cut into consecutive 64-character windows, every position scored, fp32, eval mode.
64 is the reference's context; ours could use 128, so this score does not give ours its longer context.

    python bench/quality.py --minutes 10          # the benchmark (about 11 minutes)
    python bench/quality.py --minutes 0.5         # smoke run
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import cpu_has_native_bf16, machine, machine_line, set_threads

ROOT = Path(__file__).resolve().parent.parent
EVAL_BLOCK = 64
OURS_CONFIG = "nanogpt-cpu.yaml"
OURS_OVERRIDES = ["train.lr=2e-3", "train.min_lr=2e-4", "train.eval_interval=0", "train.save_interval=0",
                  "train.progress=false"]
# nanoGPT config/train_shakespeare_char.py + the README's CPU overrides
RECIPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, learning_rate=1e-3, min_lr=1e-4,
              warmup_iters=100, beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0)


class Deadline(Exception):
    pass


def data(block_size: int, work: Path):
    from lmforge.train.recipes.lm import DataConfig
    from lmforge.data.prepare import prepare
    return prepare(DataConfig(corpus="kjv", block_size=block_size), work)


@torch.no_grad()
def val_loss(forward, val_tokens) -> float:
    """Mean CE over consecutive EVAL_BLOCK windows of the val split; forward(x) -> logits (B, T, V)."""
    ids = torch.from_numpy(val_tokens[: (len(val_tokens) - 1) // EVAL_BLOCK * EVAL_BLOCK + 1].astype("int64"))
    x, y = ids[:-1].view(-1, EVAL_BLOCK), ids[1:].view(-1, EVAL_BLOCK)
    total, n = 0.0, 0
    for i in range(0, len(x), 64):
        logits = forward(x[i:i + 64]).float()
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y[i:i + 64].reshape(-1), reduction="sum").item()
        n += y[i:i + 64].numel()
    return total / n


def steps_in(budget_s: float, step, calib_s: float) -> tuple[int, float]:
    """How many step() calls fit in budget_s, timed for about calib_s after 5 warm-up calls."""
    for _ in range(5):
        step()
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < calib_s:
        step()
        k += 1
    s = (time.perf_counter() - t0) / k
    return max(1, int(budget_s / s)), s


def run_ours(budget_s: float, calib_s: float, work: Path) -> dict:
    from lmforge.train.recipes import load_run_config
    from lmforge.data.sampler import RandomWindows
    from lmforge.models import build_model
    from lmforge.train.loop import Trainer

    dtype = "bf16" if cpu_has_native_bf16() or torch.cuda.is_available() else "fp32"
    cfg = load_run_config(ROOT / "configs" / OURS_CONFIG, OURS_OVERRIDES + [f"train.dtype={dtype}"])
    tok, tokens = data(cfg.data.block_size, work)
    t = cfg.train
    batches = RandomWindows(tokens["train"], cfg.data.block_size, t.batch_size, seed=t.seed)
    val = RandomWindows(tokens["val"], cfg.data.block_size, t.batch_size, seed=t.seed + 1)

    def build():
        torch.manual_seed(t.seed)
        return build_model("gpt", cfg.model_config(vocab_size=tok.vocab_size))
    quiet = lambda msg: None
    probe = Trainer(build(), t, batches, val, out_dir=None, log=quiet)  # throwaway: times a step
    planned, step_s = steps_in(budget_s, probe.train_step, calib_s)
    t = type(t).from_dict({**t.to_dict(), "max_steps": planned})
    model = build()

    def deadline(trainer, row):
        if time.perf_counter() - start > budget_s:
            raise Deadline

    trainer = Trainer(model, t, batches, val, out_dir=work / "run", tokenizer=tok, callbacks=(deadline,), log=quiet)
    start = time.perf_counter()
    try:
        trainer.fit()
    except Deadline:
        pass
    elapsed = time.perf_counter() - start
    model.eval()
    return {"steps": trainer.step, "planned_steps": planned, "calibrated_step_s": step_s, "train_s": elapsed,
            "dtype": dtype, "tokens_seen": trainer.step * t.batch_size * cfg.data.block_size,
            "val_loss": val_loss(lambda x: model(x).logits, tokens["val"]),
            "config": f"configs/{OURS_CONFIG} + {' '.join(o.split('.', 1)[1] for o in OURS_OVERRIDES[:2])}"}


def run_reference(budget_s: float, calib_s: float, work: Path) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    from lmforge.data.sampler import RandomWindows
    from lmforge.train.optim import param_groups
    r = RECIPE
    tok, tokens = data(r["block_size"], work)
    batches = RandomWindows(tokens["train"], r["block_size"], r["batch_size"], seed=1337)

    def build():
        torch.manual_seed(1337)
        cfg = GPT2Config(vocab_size=tok.vocab_size, n_positions=r["block_size"], n_embd=r["n_embd"],
                         n_layer=r["n_layer"], n_head=r["n_head"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=0, eos_token_id=0)
        model = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa")
        # nanoGPT's configure_optimizers: decay 2-D tensors only (the rule param_groups implements);
        # fused AdamW is CUDA-only there
        opt = torch.optim.AdamW(param_groups(model, r["weight_decay"]), lr=r["learning_rate"],
                                betas=(r["beta1"], r["beta2"]))
        return model.train(), opt

    def get_lr(it: int, max_iters: int) -> float:  # nanoGPT train.py get_lr, lr_decay_iters = max_iters
        if it < r["warmup_iters"]:
            return r["learning_rate"] * (it + 1) / (r["warmup_iters"] + 1)
        if it > max_iters:
            return r["min_lr"]
        ratio = (it - r["warmup_iters"]) / (max_iters - r["warmup_iters"])
        return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r["learning_rate"] - r["min_lr"])

    def make_step(model, opt, max_iters, it=[0]):
        def step():
            lr = get_lr(it[0], max_iters)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = batches.get(it[0])
            logits = model(input_ids=x).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
            opt.step()
            opt.zero_grad(set_to_none=True)
            it[0] += 1
        return step, it

    planned, step_s = steps_in(budget_s, make_step(*build(), 10 ** 6, [0])[0], calib_s)
    model, opt = build()
    step, it = make_step(model, opt, planned, [0])
    start = time.perf_counter()
    while it[0] < planned and time.perf_counter() - start < budget_s:
        step()
    elapsed = time.perf_counter() - start
    model.eval()
    return {"steps": it[0], "planned_steps": planned, "calibrated_step_s": step_s, "train_s": elapsed, "dtype": "fp32",
            "tokens_seen": it[0] * r["batch_size"] * r["block_size"],
            "val_loss": val_loss(lambda x: model(input_ids=x).logits, tokens["val"]),
            "config": "nanoGPT shakespeare-char CPU recipe on transformers.GPT2LMHeadModel"}


RUNNERS = {"ours": run_ours, "reference": run_reference}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per contender")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per contender")
    ap.add_argument("--sequential", action="store_true",
                    help="run the contenders one after the other (e.g. with --threads 2) instead of side by side")
    ap.add_argument("--calibrate-s", type=float, default=15.0, help="seconds spent timing steps before the clock")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--only", choices=sorted(RUNNERS), help=argparse.SUPPRESS)  # one contender, in this process
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    budget = args.minutes * 60

    if args.only:
        set_threads(args.threads)
        with tempfile.TemporaryDirectory() as work:
            res = RUNNERS[args.only](budget, args.calibrate_s, Path(work))
        res["machine"] = machine()
        Path(args.out).write_text(json.dumps(res))
        return

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = lambda name: [sys.executable, __file__, "--only", name, "--minutes", str(args.minutes),
                            "--threads", str(args.threads), "--calibrate-s", str(args.calibrate_s),
                            "--out", str(Path(tmp) / f"{name}.json")]
        if args.sequential:
            for name in RUNNERS:
                subprocess.run(cmd(name), check=True, env=env)
        else:
            procs = [subprocess.Popen(cmd(name), env=env) for name in RUNNERS]
            for p in procs:
                if p.wait() != 0:
                    raise SystemExit(f"a contender failed: {p.args}")
        for name in RUNNERS:
            results[name] = json.loads((Path(tmp) / f"{name}.json").read_text())
    info = results["ours"]["machine"]
    mode = "one after the other" if args.sequential else "side by side (same time)"
    print(f"\nQuality per wall-clock: KJV characters, {args.minutes:g} min of training each, {mode}, "
          f"{args.threads} thread(s) each -- {machine_line(info)}\n")
    print("| contender | configuration | dtype | steps (planned) | train s | tokens seen | val loss (nats/char) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['config']} | {r['dtype']} | {r['steps']} ({r['planned_steps']}) | {r['train_s']:.0f} | "
              f"{r['tokens_seen']:,} | {r['val_loss']:.4f} |")
    d = results["reference"]["val_loss"] - results["ours"]["val_loss"]
    print(f"\nours - reference: {-d:+.4f} nats/char ({'ours lower' if d > 0 else 'reference lower or equal'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"minutes": args.minutes, "threads": args.threads,
                                               "sequential": args.sequential, "results": results}, indent=1))


if __name__ == "__main__":
    main()
