"""Does the modern recipe matter at laptop scale? A Llama-style model against a GPT-2-style one.

Training: configs/kjv-char.yaml (gpt-mini: learned positions, LayerNorm, GELU MLP, 4 heads) and
configs/kjv-char-llama.yaml (llama-mini: RoPE, RMSNorm, SwiGLU, 4 query heads over 2 key/value heads) have
the same parameters per layer (196,608), data (the bundled KJV, characters), batch, schedule and optimizer.
Each gets the same compute time: one training step of each (forward, backward, AdamW, the run's batch shape)
is timed in interleaved rounds, then each trains for `--seconds / its step time` steps through the real
recipe (its cosine schedule decays fully), val loss evaluated 10 times. Interleaving makes the ratio of the
step times hold on a busy machine; the long runs need not be quiet. Prints the table and writes the plot of
val loss against compute time.

Decoding: tokens/s of greedy generation with grouped-query attention (2 key/value heads) against the same
model with full multi-head attention (8), at a shape where the KV cache is read at every step (8 layers,
width 512, a 768-token prompt, 256 new tokens, a batch of 4); also the cache's bytes. Timed in interleaved
rounds (bench/common.py).

    python bench/modern_recipe.py                    # both parts, 240 s of training each
    python bench/modern_recipe.py --part decode      # only the decoding comparison
    python bench/modern_recipe.py --seconds 60 --plot /tmp/curves.png
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from common import interleaved, machine, machine_line, set_threads, summary

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"gpt-mini (GPT-2 recipe)": ROOT / "configs/kjv-char.yaml",
           "llama-mini (Llama recipe)": ROOT / "configs/kjv-char-llama.yaml"}


def _run(config: Path, out: Path, **train) -> list[dict]:
    from lmforge.train.recipes import load_run_config, train as train_run
    overrides = [f"train.{k}={v}" for k, v in {"progress": False, **train}.items()]
    cfg = load_run_config(config, overrides)
    train_run(cfg, out)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _step_fn(config: Path):
    """One training step (forward, backward, AdamW) of the config's model on random batches of its shape."""
    from lmforge.models import build_model
    from lmforge.train.optim import build_optimizer
    from lmforge.train.recipes import load_run_config
    cfg = load_run_config(config)
    model_cfg = cfg.model_config(vocab_size=73)  # the KJV character vocabulary
    model = build_model(type(model_cfg).family, model_cfg).train()
    from lmforge.kernels import accelerate
    accelerate(model)  # as the Trainer does on CPU
    opt = build_optimizer(model, cfg.train)
    B, T = cfg.train.batch_size, cfg.data.block_size
    x, y = torch.randint(0, 73, (B, T)), torch.randint(0, 73, (B, T))

    def step():
        loss = model(x, targets=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def train_part(seconds: float, work: Path, plot: Path | None, rounds: int) -> None:
    # Seconds per step of each, timed in interleaved rounds (A B A B ...) so both see the same machine
    # load; each then gets seconds / its step time steps, so both get the same compute time whatever
    # else runs on the machine during the long runs.
    times = interleaved({name: _step_fn(config) for name, config in CONFIGS.items()}, rounds=rounds, iters=10,
                        warmup=3)
    rows = {name: {"step_s": sorted(t)[len(t) // 2]} for name, t in times.items()}
    for name, config in CONFIGS.items():
        steps = max(50, int(seconds / rows[name]["step_s"]))
        t0 = time.perf_counter()
        metrics = _run(config, work / config.stem, max_steps=steps, eval_interval=max(1, steps // 10),
                       save_interval=0, warmup_steps=min(100, steps // 10))
        evals = [(r["step"] * rows[name]["step_s"], r["val_loss"]) for r in metrics if "val_loss" in r]
        from lmforge.models import load_model
        n = sum(p.numel() for p in load_model(work / config.stem).parameters())
        rows[name].update(steps=steps, wall_s=time.perf_counter() - t0, evals=evals, params=n)
    print(f"\n{'model':28s} {'params':>8s} {'s/step':>7s} {'steps':>6s} {'budget s':>9s} {'wall s':>7s} {'val loss':>9s}")
    for name, r in rows.items():
        print(f"{name:28s} {r['params'] / 1e6:7.3f}M {r['step_s']:7.4f} {r['steps']:6d} {r['evals'][-1][0]:9.1f} "
              f"{r['wall_s']:7.1f} {r['evals'][-1][1]:9.4f}")
        print("   val loss at (step x s/step): " + ", ".join(f"{t:.0f}s {v:.3f}" for t, v in r["evals"]))
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for name, r in rows.items():
            ax.plot(*zip(*r["evals"]), marker="o", label=name)
        ax.set_xlabel("training compute time (steps x interleaved s/step)")
        ax.set_ylabel("val loss (nats/char)")
        ax.set_title("KJV characters, equal parameters and wall-clock")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"plot: {plot}")


def decode_part(rounds: int) -> None:
    from lmforge.generate import generate
    from lmforge.models import build_model
    shape = dict(vocab_size=256, max_len=1024, d_model=512, n_heads=8, n_layers=8, d_ff=1408)
    prompt_len, new, batch = 768, 256, 4
    torch.manual_seed(0)
    models = {f"{kv} key/value heads": build_model("llama", dict(shape, n_kv_heads=kv)).eval() for kv in (2, 8)}
    prompts = torch.randint(0, 256, (batch, prompt_len)).tolist()

    def step(model):
        def run():
            with torch.inference_mode():
                for _ in generate(model, prompts, max_new_tokens=new, temperature=0):
                    pass
        return run

    for name, m in models.items():
        c = m.new_cache(1)
        per_token = sum(t[:, :, :1].numel() * t.element_size() for t in c.k + c.v)
        params = sum(p.numel() for p in m.parameters())
        print(f"{name}: {params / 1e6:.2f}M parameters, KV cache {per_token / 1024:.1f} KiB per token "
              f"({per_token * (prompt_len + new) * batch / 2**20:.1f} MiB for this batch)")
    times = interleaved({n: step(m) for n, m in models.items()}, rounds=rounds, iters=1, warmup=0)
    for name, t in times.items():
        s = summary(t, work=new * batch)
        print(f"{name}: {s['best']:.1f} tok/s best, {s['median']:.1f} median (prefill included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "train", "decode"], default="all")
    ap.add_argument("--seconds", type=float, default=240.0, help="training wall-clock per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved decode rounds")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs/modern-recipe-val-loss.png")
    ap.add_argument("--work", type=Path, default=None, help="where the runs go (default: a temporary directory)")
    args = ap.parse_args()
    set_threads(args.threads)
    print(machine_line(machine()))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        if args.part in ("all", "train"):
            train_part(args.seconds, work, args.plot, args.rounds)
        if args.part in ("all", "decode"):
            decode_part(args.rounds)


if __name__ == "__main__":
    main()
