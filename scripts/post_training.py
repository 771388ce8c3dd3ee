"""The post-training pipeline in one command: pretrain -> SFT -> ... -> an eval table (docs/post-training.md).

    python scripts/post_training.py                      # every stage into runs/post-training/<stage>
    python scripts/post_training.py --out runs/pt --set sft.train.max_steps=200 --set '*.train.progress=false'
    python scripts/post_training.py --only base,sft      # some stages (their inputs must be done)

Each stage is skipped when its run directory is complete (a training stage: a checkpoint at its
train.max_steps; another stage: its output file), resumed when it holds a checkpoint short of that (the
Trainer resumes bit-exact from its last checkpoint, so Ctrl-C at any point loses at most save_interval
steps), and started otherwise. Run the same command again after an interruption.

Sized for about an hour on a 2-core CPU (OMP_NUM_THREADS=1 is set here): see the minutes column of STAGES.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 cores: one thread per process is faster than two fighting
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline. A training stage names a run config (lmforge train CONFIG) and `links`:
    run-config keys set to an earlier stage's run directory (e.g. {"recipe.init": "base"}). Another stage
    gives `make(out_dir, dirs, options) -> None`, which writes `output` inside out_dir (atomically: the
    file appears when the stage is done). A training stage's `output`, when it names one, is the summary its
    recipe writes after the last step (reward.json: after the head's bias shift): a run interrupted between its
    last checkpoint and that file is resumed, which trains nothing and writes the rest."""
    name: str
    config: str = ""  # configs/*.yaml, relative to the repository
    # config key -> the stage whose directory it takes, or "STAGE/FILE" for a file in that directory
    links: dict[str, str] = field(default_factory=dict)
    make: Callable | None = None
    output: str = ""  # a non-training stage's result file; a training stage's summary, written after its last step
    inputs: tuple[str, ...] = ()  # a non-training stage: the training stages it is made from
    minutes: float = 0  # expected wall time on 2 shared cores (the whole pipeline: about an hour)


def make_eval(out_dir: Path, dirs: dict[str, Path], options: dict) -> None:
    """The eval table: each compared run's poems for the held-out titles (lmforge.eval.poems)."""
    import lmforge
    from lmforge.data import poems
    from lmforge.eval.poems import evaluate_poems
    from lmforge.io import atomic_write_json
    from lmforge.tokenizers import load_tokenizer

    examples = poems.examples(options.get("split", "test"))
    if options.get("limit"):
        examples = examples[:int(options["limit"])]
    rows = {}
    n = int(options.get("n", 16))  # poems per title
    for name in EVAL_RUNS:
        if name not in dirs or not (dirs[name] / "train_state.pt").is_file():
            continue  # a stage left out with --only
        run_dir = dirs[name]
        saved = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        system = saved.get("data", {}).get("system") or poems.SYSTEM_PROMPT
        r = evaluate_poems(lmforge.load(run_dir), load_tokenizer(run_dir), examples, n=n,
                           temperature=float(options.get("temperature", 1.0)), seed=int(options.get("seed", 0)),
                           system=system)
        scored = [e for e in examples if e.form]
        prompts = [scored[i // n].prompt for i in range(len(r["samples"]))]
        texts = [s["text"] for s in r["samples"]]
        if name != "sft" and "sft" in dirs and (dirs["sft"] / "train_state.pt").is_file():
            r["kl_to_sft"] = kl_to_reference(lmforge.load(run_dir), lmforge.load(dirs["sft"]),
                                             load_tokenizer(run_dir), prompts, texts, system)
        r["train_minutes"] = train_minutes(run_dir)
        rows[name] = r
        kl = f", KL to SFT {r['kl_to_sft']:.2f} nats" if "kl_to_sft" in r else ""
        print(f"  {name}: mean score {r['mean_score']:.3f}, format {100 * r['format_rate']:.1f}%, "
              f"rhyme {100 * r['rhyme_rate']:.1f}% ({r['n']} poems){kl}", flush=True)
    lines = ["| run | mean score | format rate | rhyme rate | KL to SFT (nats per answer) | distinct-2 | "
             "train minutes | poems |", "|---|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        kl = f"{r['kl_to_sft']:.2f}" if "kl_to_sft" in r else "-"
        lines.append(f"| {k} | {r['mean_score']:.3f} | {100 * r['format_rate']:.1f}% | {100 * r['rhyme_rate']:.1f}% | "
                     f"{kl} | {r['distinct_2']:.3f} | {r['train_minutes']:.1f} | {r['n']} |")
    (out_dir / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_rl(dirs, out_dir / "rl.png")
    # written last, it marks the stage done for these checkpoints (a longer run of a stage makes it stale)
    atomic_write_json(out_dir / "eval.json", {"options": options, "inputs": input_steps(dirs, EVAL_RUNS), "runs": rows})
    print("\n".join(lines))


def kl_to_reference(policy, reference, tokenizer, prompts: list[str], texts: list[str], system: str) -> float:
    """KL(policy || reference) in nats per answer, estimated on the policy's own samples (drawn at temperature 1):
    the mean over answers of log policy(y | x) - log reference(y | x), summed over the answer's tokens and its
    end-of-turn marker (the k1 estimator, Schulman 2020, "Approximating KL divergence"; unbiased for samples
    from the policy). The answers are the eval's texts encoded again in the chat template."""
    import torch

    from lmforge.data.preferences import encode_completion
    from lmforge.objectives.preference import sequence_logps

    def logp(model, ids, mask):
        out = model(ids)
        return sequence_logps(getattr(out, "logits", out), ids, mask)

    policy.eval()
    reference.eval()
    diffs = []
    with torch.no_grad():
        for prompt, text in zip(prompts, texts):
            ids, mask = encode_completion(tokenizer, prompt, text, system)
            ids, mask = torch.tensor([ids]), torch.tensor([mask])
            diffs.append(float(logp(policy, ids, mask) - logp(reference, ids, mask)))
    return sum(diffs) / len(diffs)


def plot_rl(dirs: dict[str, Path], path: Path) -> None:
    """Reward and KL to the SFT model against the step for the RL stages (their metrics.jsonl rows)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("ppo-scorer", "ppo", "grpo"):
        f = dirs.get(name, Path("-")) / "metrics.jsonl"
        if not f.is_file():
            continue
        rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
        rows = [r for r in rows if "reward" in r]
        for ax, key in zip(axes, ("reward", "kl")):
            ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=name)
    axes[0].set(xlabel="step", ylabel="mean reward of the rollout", title="reward (ppo: the reward model's)")
    axes[1].set(xlabel="step", ylabel="nats per answer", title="KL to the SFT model (k1, on the rollout)")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_minutes(run_dir: Path) -> float:
    """The stage's own training wall-clock (the last metrics row's elapsed_s), in minutes."""
    rows = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(rows[-1]).get("elapsed_s", 0.0) / 60 if rows else 0.0


def make_pairs(out_dir: Path, dirs: dict[str, Path], options: dict) -> None:
    """Preference pairs for the reward model and DPO (lmforge.eval.preferences.make_pairs, as `lmforge pairs`):
    `samples` SFT answers per train / val prompt ranked by the poem scorer, ties dropped: for train every pair of
    a prompt's answers whose scores differ (Ouyang et al. 2022's K-choose-2; the reward model's), and from them
    each prompt's best and worst (pairs-train-extremes.jsonl: DPO's); for val the best and the worst (the
    held-out pairs both are measured on). Options: samples (train's answers per prompt, 8),
    val_samples (4), phrasings (4: every prompt phrasing of a poem), pairing (train's: "all", or "extremes"),
    limit (0 = every prompt), temperature (1), seed (0). Measured (docs/post-training.md#results): the reward
    model's held-out accuracy was 71.9% from train's (best, worst) of 4, 74.1% from all pairs of 4 (300 steps)
    and 78.5-83.7% from all pairs of 8 (1200 steps, two runs)."""
    from lmforge.data.preferences import extremes, write_pairs
    from lmforge.eval.preferences import make_pairs as sample_pairs
    from lmforge.io import atomic_write_json

    stats = {}
    for split in ("train", "val"):
        samples = int(options.get("samples", 8)) if split == "train" else int(options.get("val_samples", 4))
        pairs, stats[split] = sample_pairs(dirs["sft"], split, samples=samples,
                                           phrasings=int(options.get("phrasings", 4)),
                                           limit=int(options.get("limit", 0)),
                                           temperature=float(options.get("temperature", 1.0)),
                                           pairing=options.get("pairing", "all") if split == "train" else "extremes",
                                           seed=int(options.get("seed", 0)) + (split == "val"), progress=True)
        if not pairs:
            key = "samples" if split == "train" else "val_samples"
            raise ValueError(f"pairs: every {split} prompt's samples tied; set pairs.{key} higher (now {samples})")
        write_pairs(out_dir / f"pairs-{split}.jsonl", pairs)
        if split == "train":  # DPO's: each prompt's best and worst of the same answers (docs/post-training.md)
            write_pairs(out_dir / "pairs-train-extremes.jsonl", extremes(pairs))
        s = stats[split]
        print(f"  {split}: {s['pairs']} pairs from {s['prompts']} prompts ({s['ties']} tied); chosen score "
              f"{s['chosen_score']:.3f}, rejected {s['rejected_score']:.3f}", flush=True)
    atomic_write_json(out_dir / "pairs.json", {"options": options, "inputs": input_steps(dirs, ("sft",)),
                                               "stats": stats})


# THE stage table, in order; a stage's links name the earlier stages it reads. Minutes: on 2 cores alone.
STAGES = (
    Stage("base", "configs/zh-base.yaml", minutes=24),
    Stage("sft", "configs/sft-poems.yaml", {"recipe.init": "base"}, minutes=6),
    Stage("lora-sft", "configs/sft-poems-lora.yaml", {"recipe.init": "base"}, minutes=5),
    Stage("pairs", make=make_pairs, output="pairs.json", inputs=("sft",), minutes=4),
    Stage("reward", "configs/reward-poems.yaml",
          {"recipe.sft": "sft", "data.pairs": "pairs/pairs-train.jsonl", "data.val_pairs": "pairs/pairs-val.jsonl"},
          output="reward.json", minutes=8),
    # DPO on each prompt's (best, worst) of the same answers: on all pairs of 8 it scored below SFT (4 poems a
    # title: 0.181 vs 0.187) with a smaller held-out log-prob margin (+7.78 vs +11.95), docs/post-training.md#results
    Stage("dpo", "configs/dpo-poems.yaml",
          {"recipe.sft": "sft", "data.pairs": "pairs/pairs-train-extremes.jsonl",
           "data.val_pairs": "pairs/pairs-val.jsonl"},
          output="dpo.json", minutes=4),
    Stage("ppo-scorer", "configs/ppo-poems.yaml", {"recipe.sft": "sft"}, output="rl.json", minutes=8),
    Stage("ppo", "configs/ppo-poems.yaml", {"recipe.sft": "sft", "recipe.reward": "reward"}, output="rl.json",
          minutes=8),
    Stage("grpo", "configs/grpo-poems.yaml", {"recipe.sft": "sft"}, output="rl.json", minutes=8),
    Stage("eval", make=make_eval, output="eval.json", minutes=4),
)
EVAL_RUNS = ("sft", "lora-sft", "dpo", "ppo-scorer", "ppo", "grpo")  # the runs the eval table compares, in its order


def overrides_for(stage: str, sets: list[str]) -> list[str]:
    """The --set assignments that apply to `stage`: "STAGE.key=value" or "*.key=value", as "key=value"."""
    out = []
    for s in sets:
        target, _, rest = s.partition(".")
        if not rest or "=" not in rest:
            raise ValueError(f"--set {s!r}: write STAGE.key=value (e.g. sft.train.max_steps=200) or *.key=value")
        if target not in ("*", *(st.name for st in STAGES)):
            raise ValueError(f"--set {s!r}: no stage {target!r}; the stages are {', '.join(st.name for st in STAGES)}")
        if target in ("*", stage):
            out.append(rest)
    return out


def trained_steps(run_dir: Path) -> int | None:
    """The step of the run directory's last checkpoint, or None when it has none."""
    from lmforge.train.checkpoint import STATE, load_train_state, recover

    if not (run_dir / STATE).exists() and not (run_dir / ".staging").exists():
        return None
    recover(run_dir)  # a save cut short by the interruption: finish or roll back (journaled, see checkpoint.py)
    return load_train_state(run_dir / STATE)["step"] if (run_dir / STATE).exists() else None


def input_steps(dirs: dict[str, Path], names) -> dict[str, int | None]:
    """The checkpoint step of each named run: what a non-training stage's output was made from."""
    return {name: trained_steps(dirs[name]) for name in names if name in dirs}


def stage_inputs(stage: Stage) -> tuple[str, ...]:
    return EVAL_RUNS if stage.make is make_eval else stage.inputs


def link_path(dirs: dict[str, Path], link: str) -> Path:
    """A link's path: a stage's directory ("sft") or a file in it ("pairs/pairs-train.jsonl")."""
    source, _, rest = link.partition("/")
    return dirs[source] / rest if rest else dirs[source]


def is_done(stage: Stage, run_dir: Path) -> bool:
    """Whether a stage has a result another stage can read: a checkpoint, or a non-training stage's output."""
    if stage.make is not None:
        return (run_dir / stage.output).is_file()
    return trained_steps(run_dir) is not None and (not stage.output or (run_dir / stage.output).is_file())


def status(stage: Stage, run_dir: Path, sets: list[str], dirs: dict[str, Path]) -> tuple[str, object]:
    """("done" | "resume" | "start", the stage's run config or None). A non-training stage is done when its
    output exists and was made from the checkpoints that are there now."""
    if stage.make is not None:
        path = run_dir / stage.output
        if not path.is_file():
            return "start", None
        try:
            made_from = json.loads(path.read_text(encoding="utf-8")).get("inputs")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return "start", None  # damaged: made again
        return ("done" if made_from == input_steps(dirs, stage_inputs(stage)) else "start"), None
    from lmforge.train.recipes import load_run_config

    links = [f"{k}={link_path(dirs, v)}" for k, v in stage.links.items()]
    cfg = load_run_config(ROOT / stage.config, links + overrides_for(stage.name, sets))
    step = trained_steps(run_dir)
    if step is None:
        return "start", cfg
    finished = step >= cfg.train.max_steps and (not stage.output or (run_dir / stage.output).is_file())
    return ("done" if finished else "resume"), cfg


def run(out: Path, sets: list[str] = (), only: list[str] | None = None, options: dict | None = None) -> dict[str, str]:
    """Run the pipeline into `out`; returns {stage: what was done ("done" = skipped, "resume", "start")}."""
    from lmforge.train.recipes import train

    names = [s.name for s in STAGES]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"--only names unknown stages {unknown}; the stages are {', '.join(names)}")
    dirs = {s.name: out / s.name for s in STAGES}
    report = {}
    for i, stage in enumerate(STAGES, 1):
        if only and stage.name not in only:
            continue
        by_name = {s.name: s for s in STAGES}
        for key, link in stage.links.items():
            source = link.partition("/")[0]
            if not is_done(by_name[source], dirs[source]):
                raise ValueError(f"stage {stage.name} needs {source} ({key}) but {dirs[source]} holds no result: run "
                                 f"the pipeline with {source} first")
        what, cfg = status(stage, dirs[stage.name], list(sets), dirs)
        report[stage.name] = what
        head = f"[{i}/{len(STAGES)}] {stage.name}"
        if what == "done":
            print(f"{head}: done, skipped ({dirs[stage.name]})", flush=True)
            continue
        print(f"{head}: {'resuming' if what == 'resume' else 'starting'} (about {stage.minutes:g} min on 2 cores) "
              f"-> {dirs[stage.name]}", flush=True)
        t0 = time.perf_counter()
        if stage.make is not None:
            dirs[stage.name].mkdir(parents=True, exist_ok=True)
            sets_here = dict(kv.split("=", 1) for kv in overrides_for(stage.name, sets) if "train." not in kv)
            stage.make(dirs[stage.name], dirs, {**(options or {} if stage.make is make_eval else {}), **sets_here})
        else:
            # resumed or not, the stage trains with the pipeline's config (its file, links and --set), not the
            # one saved in the run directory: a config changed since the interruption (e.g. a new max_steps)
            # is what `status` judged completeness by, so it must be what the stage trains to
            code = train(cfg, dirs[stage.name], resume=what == "resume")
            if code != 0:
                print(f"{head}: stopped (exit {code}); run the same command again to resume", file=sys.stderr)
                raise SystemExit(code)
        print(f"{head}: finished in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/post-training", help="the pipeline's directory (a run directory per stage)")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="change a stage's run config, e.g. sft.train.max_steps=200; '*.' for every training stage")
    p.add_argument("--only", default="", help="comma-separated stages to run (default: all)")
    p.add_argument("--eval", action="append", default=[], metavar="KEY=VALUE",
                   help="eval options: n (poems per title, 16), temperature (1), seed (0), split (test), limit (0)")
    args = p.parse_args(argv)
    options = dict(kv.split("=", 1) for kv in args.eval)
    try:
        run(Path(args.out), args.set, [s for s in args.only.split(",") if s] or None, options)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
