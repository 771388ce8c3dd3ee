"""Transformer (2017) vs the LSTM baseline at an equal wall-clock budget, on the bundled gettext pairs.

Trains configs/translate-PAIR.yaml (transformer-small) and configs/translate-PAIR-lstm.yaml (lstm-small)
at the same time (one process and one thread each, so both see the same machine for the same minutes;
--no-parallel: one after the other), each for --minutes of wall-clock time, then decodes the test
split (programs never seen in training) with beam 4, alpha 0.6 and reports side by side: BLEU and
chrF (sacrebleu, signature printed), placeholder accuracy, training tokens/s, BLEU by source length.
Writes OUT/results-PAIR.json and PNG plots into docs/.

    python bench/translation.py --pair en-de --minutes 30
    python bench/translation.py --pair en-zh --minutes 30 --out runs/bench-translation
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import cpu_model_and_flags  # bench/common.py

ROOT = Path(__file__).resolve().parents[1]


def plot(results: dict, pair: str, docs: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    names = list(results)
    buckets = [b["bucket"] for b in results[names[0]]["test"]["by_length"]]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    w = 0.8 / len(names)
    for j, name in enumerate(names):
        by = {b["bucket"]: b for b in results[name]["test"]["by_length"]}
        ax.bar(np.arange(len(buckets)) + j * w, [by[b]["bleu"] if b in by else 0 for b in buckets], w, label=name)
    ns = {b["bucket"]: b["n"] for b in results[names[0]]["test"]["by_length"]}
    ax.set_xticks(np.arange(len(buckets)) + w * (len(names) - 1) / 2, [f"{b}\n(n={ns[b]})" for b in buckets])
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU (sacrebleu)")
    minutes = results[names[0]]["minutes"]
    ax.set_title(f"{pair} test split, beam 4: BLEU by source length ({minutes:g} min each)", fontsize=10)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(docs / f"translation-{pair}-bleu-by-length.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name in names:
        rows = [r for r in results[name]["metrics"] if "val_loss" in r and "elapsed_s" in r]
        ax.plot([r["elapsed_s"] / 60 for r in rows], [r["val_loss"] for r in rows], "o-", markersize=3, label=name)
    ax.set_xlabel("training time (minutes, wall clock)")
    ax.set_ylabel("val cross-entropy (label-smoothed, nats/token)")
    ax.set_title(f"{pair}: validation loss against wall-clock time", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(docs / f"translation-{pair}-val-loss.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def run_family(args, family: str, test, lang: str, out: Path, docs: Path) -> None:
    """Train one model for args.minutes, decode the test split, write RUN/result.json."""
    from lmforge.eval.translation import evaluate_pairs, load_translator, plot_cross_attention
    from lmforge.train.recipes.translation import Run, run

    config = ROOT / "configs" / (f"translate-{args.pair}.yaml" if family == "transformer"
                                 else f"translate-{args.pair}-{family}.yaml")
    cfg = Run.from_file(config).with_overrides([f"recipe.minutes={args.minutes}"])
    run_dir = out / f"{args.pair}-{family}"
    if (run_dir / "train_state.pt").exists():
        raise SystemExit(f"{run_dir} already holds a run; remove it or pass another --out")
    print(f"== {family}: {config.relative_to(ROOT)}, {args.minutes:g} minutes", flush=True)
    summary = run(cfg, run_dir)
    model, tokenizer = load_translator(run_dir)
    print(f"== {family}: decoding {len(test)} test pairs, beam 4", flush=True)
    r = evaluate_pairs(model, tokenizer, [q.src for q in test], [q.tgt for q in test], lang, beam=4,
                       warn=lambda m: print(m, flush=True))
    hyps = r.pop("hypotheses")
    (run_dir / "test-hypotheses.txt").write_text("\n".join(hyps) + "\n")
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    result = {"config": str(config.relative_to(ROOT)), "minutes": args.minutes, "train": summary,
              "params": sum(q.numel() for q in model.parameters()), "test": r, "metrics": metrics}
    print(f"== {family}: BLEU {r['bleu']:.2f} chrF {r['chrf']:.2f} placeholders "
          f"{100 * r['placeholders']['accuracy']:.1f}% tokens/s {summary['tokens_per_s']}", flush=True)
    if family == "transformer":  # cross-attention of a test message with a placeholder
        q = next((q for q in test if "%s" in q.src and 4 <= len(q.src.split()) <= 10), test[0])
        hyp = hyps[test.index(q)]
        plot_cross_attention(model, tokenizer, q.src, hyp, docs / f"translation-{args.pair}-attention.png")
        result["heatmap_sentence"] = {"src": q.src, "hyp": hyp, "ref": q.tgt}
    del model
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", default="en-de", choices=["en-de", "en-zh"])
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget per model")
    p.add_argument("--out", default="runs/bench-translation")
    p.add_argument("--test-limit", type=int, default=0,
                   help="decode about N test pairs, evenly spaced over the split (every k-th; 0 = all)")
    p.add_argument("--families", default="transformer,lstm")
    p.add_argument("--docs", default=str(ROOT / "docs"))
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a CPU shared with other work, 2 threads measured ~10x slower "
                        "per step than alone, as each intra-op barrier waits for a descheduled thread)")
    p.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=True,
                   help="train the models at the same time, one process each (default): on a shared machine both "
                        "then see the same load for the same minutes; --no-parallel trains one after the other")
    p.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)  # used by --parallel's children
    args = p.parse_args()

    import torch
    torch.set_num_threads(args.threads)

    from lmforge.data.translation import read_tsv, split_by_domain

    out, docs = Path(args.out), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    lang, pairs = read_tsv(args.pair)
    test = split_by_domain(pairs)["test"]
    if args.test_limit and len(test) > args.test_limit:
        test = test[:: -(-len(test) // args.test_limit)]  # every k-th pair: all test programs stay represented
    families = args.families.split(",")
    if args.parallel and len(families) > 1:
        # one process per model, started together: both see the same machine for the same minutes
        cmd = [sys.executable, __file__, "--pair", args.pair, "--minutes", str(args.minutes), "--out", str(out),
               "--test-limit", str(args.test_limit), "--docs", str(docs), "--threads", str(args.threads)]
        procs = [subprocess.Popen(cmd + ["--families", f, "--no-report"]) for f in families]
        if any(proc.wait() for proc in procs):
            raise SystemExit("a training process failed; see its output above")
    results = {}
    for family in families:
        result = out / f"{args.pair}-{family}" / "result.json"
        if not (args.parallel and len(families) > 1):
            run_family(args, family, test, lang, out, docs)
        results[family] = json.loads(result.read_text())
    if args.no_report:
        return 0
    meta = {"pair": args.pair, "cpu": cpu_model_and_flags()[0], "threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "test_pairs": len(test)}
    (out / f"results-{args.pair}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    for path in plot(results, args.pair, docs):
        print(f"plot: {path}")

    print(f"\n{args.pair}, {args.minutes:g} min per model, {meta['cpu']}, {meta['threads']} threads, "
          f"{len(test)} test pairs, beam 4 alpha 0.6")
    print("| model | params | steps | train tokens/s | BLEU | chrF | placeholder acc. | weights |")
    print("|---|---|---|---|---|---|---|---|")
    for name, x in results.items():
        t, s = x["test"], x["train"]
        print(f"| {name} | {x['params'] / 1e6:.1f}M | {s['steps']} | {s['tokens_per_s']:.0f} | {t['bleu']:.2f} | "
              f"{t['chrf']:.2f} | {100 * t['placeholders']['accuracy']:.1f}% (n={t['placeholders']['n']}) | {s['best']} |")
    print("BLEU by source length (words):")
    for name, x in results.items():
        print(f"  {name}: " + ", ".join(f"{b['bucket']}: {b['bleu']:.1f} (n={b['n']})" for b in x["test"]["by_length"]))
    print(f"signatures: {results[next(iter(results))]['test']['bleu_signature']} ; "
          f"{results[next(iter(results))]['test']['chrf_signature']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
