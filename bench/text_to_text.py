"""T5 text-to-text on the bundled gettext pairs, at equal wall-clock: one command, a table and plots.

Three lanes train at the same time (one process and one thread each, so all see the same machine for the
same minutes), each for --minutes of training time in total:

  t5-multi       one T5 (t5-mini) on three tasks from scratch (configs/text2text-gettext.yaml): en-de, en-zh,
                 and "which program: <message>" -> the program's name
  transformers   two single-task Transformers (transformer-small, configs/translate-en-de.yaml then
                 configs/translate-en-zh.yaml), --minutes / 2 each, one after the other
  t5-span-ft     the same T5, span-corruption pretraining (configs/span-gettext.yaml) for --minutes / 2, then the
                 three tasks (configs/text2text-gettext-finetune.yaml) for --minutes / 2

Comparison (a) is t5-multi vs transformers (one model for both directions vs one per direction); (b) is
t5-span-ft vs t5-multi (pretraining then fine-tuning vs fine-tuning from scratch, the same total time). Both
T5 lanes share one Unigram vocabulary (learned once, before any clock starts), so pretraining is the only
difference in (b). Then every model decodes the same test rows greedily (three processes again): about
--test-limit rows of each translation test split (programs never seen in training; every k-th row) with
sacrebleu BLEU and chrF, and the classification's held-out messages (of training programs) with exact-match
accuracy. Writes OUT/results.json, docs/t5-text2text-*.png and prints the markdown table.

    python bench/text_to_text.py --minutes 10 --test-limit 250 --small
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import cpu_model_and_flags  # bench/common.py

ROOT = Path(__file__).resolve().parents[1]
LANES = ("t5-multi", "transformers", "t5-span-ft")
TASKS = ("en-de", "en-zh", "program")


def shared_tokenizer(out: Path) -> Path:
    """One Unigram vocabulary (8000 + 100 sentinels, T5's layout) for both T5 lanes: learned on the pretraining
    text (training programs' messages), the task prefixes and the class names."""
    from lmforge.data import text2text
    from lmforge.tokenizers import save_tokenizer
    from lmforge.train.recipes.span import train_tokenizer

    path = out / "tokenizer"
    if not (path / "tokenizer.json").is_file():
        texts = text2text.pretraining_texts() + list(text2text.PREFIXES.values()) + list(text2text.programs())
        t = time.perf_counter()
        save_tokenizer(train_tokenizer(texts, 8000, 100, "t5"), path)
        print(f"== shared Unigram vocabulary learned in {time.perf_counter() - t:.0f} s", flush=True)
    return path


# sized down for a 2-core machine shared with other work: at the configs' size (7.6M parameters, 2048-token
# batches) a step took 8-15 s there and a 5-minute phase ended inside its warm-up. Same width and depth for both
# families (head size 32), so the T5 and the Transformer stay at equal size.
SMALL_MODEL = ["model.d_model=128", "model.n_heads=4", "model.n_layers=2", "model.d_ff=512"]
SMALL_TRAIN = ["train.warmup_steps=100", "train.eval_interval=50", "train.eval_steps=4"]


def train_lane(lane: str, minutes: float, out: Path, small: bool) -> None:
    from lmforge.train.recipes import load_run_config
    from lmforge.train.recipes import train as run_training

    tok = str(out / "tokenizer")
    model, t5 = (SMALL_MODEL, [*SMALL_MODEL, "model.head_dim=32"]) if small else ([], [])
    batch = [*SMALL_TRAIN, "data.max_tokens=1024"] if small else []
    steps = {"t5-multi": [("text2text-gettext", "t5-multi", minutes, [f"data.tokenizer={tok}", *t5, *batch])],
             "transformers": [("translate-en-de", "tf-en-de", minutes / 2, [*model, *batch]),
                              ("translate-en-zh", "tf-en-zh", minutes / 2, [*model, *batch])],
             "t5-span-ft": [("span-gettext", "t5-span", minutes / 2,  # 8 x 114 tokens: about the others' batches
                             [f"data.tokenizer={tok}", *t5, *(SMALL_TRAIN + ["train.batch_size=8"] if small else [])]),
                            ("text2text-gettext-finetune", "t5-span-ft", minutes / 2,
                             [f"recipe.init={out / 't5-span'}", *batch])]}[lane]
    for config, name, m, sets in steps:
        run_dir = out / name
        if (run_dir / "train_state.pt").exists():
            print(f"== {name}: already trained, kept", flush=True)
            continue
        print(f"== {name}: configs/{config}.yaml, {m:g} minutes", flush=True)
        cfg = load_run_config(ROOT / "configs" / f"{config}.yaml", [f"recipe.minutes={m}", *sets])
        if run_training(cfg, run_dir) != 0:
            raise SystemExit(f"{name} failed")


def test_rows(limit: int) -> dict:
    from lmforge.data import text2text

    out = {}
    for task in TASKS:
        rows = text2text.examples(task, "test")
        out[task] = rows[:: -(-len(rows) // limit)] if limit and len(rows) > limit else rows
    return out


def eval_lane(lane: str, out: Path, limit: int) -> None:
    """Decode the test rows with the lane's final model(s), greedily; write OUT/eval-LANE.json."""
    import torch

    from lmforge.data import text2text
    from lmforge.eval.text2text import evaluate
    from lmforge.eval.translation import evaluate_pairs, load_translator
    from lmforge.models import load_model
    from lmforge.tokenizers import load_tokenizer

    if (out / f"eval-{lane}.json").is_file():
        print(f"== {lane}: already decoded, kept", flush=True)
        return
    rows = test_rows(limit)
    result = {}
    if lane == "transformers":
        for task in ("en-de", "en-zh"):
            model, tok = load_translator(out / f"tf-{task}")
            n = len(text2text.PREFIXES[task])
            with torch.no_grad():
                r = evaluate_pairs(model, tok, [e.src[n:] for e in rows[task]], [e.tgt for e in rows[task]],
                                   text2text.LANG[task], beam=0)
            r["samples"] = [[e.src[n:], h, e.tgt] for e, h in list(zip(rows[task], r.pop("hypotheses")))[:3]]
            result[task] = {**r, "params": sum(q.numel() for q in model.parameters())}
    else:
        run = out / lane
        model, tok = load_model(run), load_tokenizer(run)
        result = evaluate(model, tok, [e for task in TASKS for e in rows[task]], beam=0)
        for r in result.values():
            r["params"] = sum(q.numel() for q in model.parameters())
    (out / f"eval-{lane}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def plot(results: dict, docs: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110, gridspec_kw={"width_ratios": [2, 1]})
    names = list(results["eval"])
    w = 0.8 / len(names)
    for j, name in enumerate(names):
        e = results["eval"][name]
        axes[0].bar(np.arange(2) + j * w, [e.get(t, {}).get("bleu", 0) for t in ("en-de", "en-zh")], w, label=name)
        acc = e.get("program", {}).get("accuracy")
        if acc is not None:
            axes[1].bar(j, 100 * acc, 0.6, label=name, color=f"C{j}")
    axes[0].set_xticks(np.arange(2) + w * (len(names) - 1) / 2, ["en-de", "en-zh"])
    axes[0].set_ylabel("BLEU (sacrebleu), test programs")
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    axes[1].set_ylabel("which program: accuracy (%)")
    axes[1].set_ylim(0, 100)
    fig.suptitle(f"gettext text-to-text, {results['meta']['minutes']:g} min of training per lane, greedy", fontsize=10)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(docs / "t5-text2text-scores.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, runs in (("t5-multi", ["t5-multi"]), ("t5-span-ft", ["t5-span", "t5-span-ft"]),
                       ("transformer en-de", ["tf-en-de"]), ("transformer en-zh", ["tf-en-zh"])):
        offset = 0.0
        xs, ys = [], []
        for r in runs:
            rows = [m for m in results["metrics"][r] if "val_loss" in m and "elapsed_s" in m]
            if r == "t5-span-ft" or r == "tf-en-zh":
                offset = results["meta"]["minutes"] / 2
            if r == "t5-span":
                ax.plot([m["elapsed_s"] / 60 for m in rows], [m["val_loss"] for m in rows], ":", color="C4",
                        label="t5-span (span-corruption val loss)")
                continue
            xs += [offset + m["elapsed_s"] / 60 for m in rows]
            ys += [m["val_loss"] for m in rows]
        if xs:
            ax.plot(xs, ys, "o-", markersize=3, label=name)
    ax.set_xlabel("training time of the lane (minutes, wall clock)")
    ax.set_ylabel("val cross-entropy (nats/token)")
    ax.set_title("validation loss against wall-clock time (translation runs: label-smoothed)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(docs / "t5-text2text-val-loss.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def spawn(args, flag: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--minutes", str(args.minutes), "--out", str(args.out),
           "--test-limit", str(args.test_limit), *(["--small"] if args.small else [])]
    procs = [subprocess.Popen(cmd + [flag, lane], env=env) for lane in LANES]
    if any(p.wait() for p in procs):
        raise SystemExit("a lane failed; see its output above")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="training time per lane (each lane's total)")
    p.add_argument("--out", default="runs/bench-text2text")
    p.add_argument("--test-limit", type=int, default=400, help="test rows per task, every k-th (0 = all)")
    p.add_argument("--docs", default=str(ROOT / "docs"))
    p.add_argument("--small", action="store_true", help="d_model 128, 2 + 2 layers, 1024-token batches, warm-up 100 "
                   "(SMALL_MODEL, SMALL_TRAIN): enough steps in minutes on a busy 2-core machine")
    p.add_argument("--train-lane", choices=LANES, help=argparse.SUPPRESS)  # the children
    p.add_argument("--eval-lane", choices=LANES, help=argparse.SUPPRESS)
    args = p.parse_args()

    import torch
    torch.set_num_threads(1)
    out = Path(args.out)
    if args.train_lane:
        train_lane(args.train_lane, args.minutes, out, args.small)
        return 0
    if args.eval_lane:
        eval_lane(args.eval_lane, out, args.test_limit)
        return 0

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    shared_tokenizer(out)
    t1 = time.perf_counter()
    spawn(args, "--train-lane")
    t2 = time.perf_counter()
    spawn(args, "--eval-lane")
    t3 = time.perf_counter()
    runs = ["t5-multi", "tf-en-de", "tf-en-zh", "t5-span", "t5-span-ft"]
    results = {"meta": {"cpu": cpu_model_and_flags()[0], "torch": torch.__version__, "threads": 1,
                        "date": time.strftime("%Y-%m-%d"), "minutes": args.minutes, "test_limit": args.test_limit, "small": args.small,
                        "seconds": {"tokenizer": round(t1 - t0), "training": round(t2 - t1), "decoding": round(t3 - t2)}},
               "eval": {lane: json.loads((out / f"eval-{lane}.json").read_text()) for lane in LANES},
               "metrics": {r: metrics(out / r) for r in runs}}
    summaries = {}
    for r in runs:
        last = results["metrics"][r][-1]
        vals = [m["val_loss"] for m in results["metrics"][r] if "val_loss" in m]
        summaries[r] = {"steps": last.get("step"), "train_s": round(last.get("elapsed_s", 0)),
                        "val_loss": vals[-1] if vals else None}
    results["runs"] = summaries
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    for path in plot(results, docs):
        print(f"plot: {path}")
    e = results["eval"]
    print(f"\n{args.minutes:g} min of training per lane (3 lanes at once, 1 thread each), {results['meta']['cpu']}, "
          f"greedy decoding; tokenizer {results['meta']['seconds']['tokenizer']} s, training "
          f"{results['meta']['seconds']['training']} s, decoding {results['meta']['seconds']['decoding']} s")
    print("| lane | models (params each) | steps | en-de BLEU | en-de chrF | en-zh BLEU | en-zh chrF | which program: acc. |")
    print("|---|---|---|---|---|---|---|---|")
    lane_runs = {"t5-multi": ["t5-multi"], "transformers": ["tf-en-de", "tf-en-zh"],
                 "t5-span-ft": ["t5-span", "t5-span-ft"]}
    for lane in LANES:
        x = e[lane]
        acc = f"{100 * x['program']['accuracy']:.1f}% (n={x['program']['n']})" if "program" in x else "—"
        print(f"| {lane} | {len(lane_runs[lane])} ({x['en-de']['params'] / 1e6:.1f}M) | {' + '.join(str(summaries[r]['steps']) for r in lane_runs[lane])} | "
              f"{x['en-de']['bleu']:.2f} | {x['en-de']['chrf']:.1f} | {x['en-zh']['bleu']:.2f} | {x['en-zh']['chrf']:.1f} "
              f"| {acc} |")
    print(f"test rows: en-de {e['t5-multi']['en-de']['n']}, en-zh {e['t5-multi']['en-zh']['n']}, program "
          f"{e['t5-multi']['program']['n']}; signatures: {e['t5-multi']['en-de']['bleu_signature']} ; "
          f"{e['t5-multi']['en-zh']['bleu_signature']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
