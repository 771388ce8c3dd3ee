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
    file appears when the stage is done)."""
    name: str
    config: str = ""  # configs/*.yaml, relative to the repository
    links: dict[str, str] = field(default_factory=dict)  # config key -> stage whose directory it takes
    make: Callable | None = None
    output: str = ""  # a non-training stage's result file, in its directory
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
    for name in EVAL_RUNS:
        if name not in dirs or not (dirs[name] / "train_state.pt").is_file():
            continue  # a stage left out with --only
        run_dir = dirs[name]
        saved = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        r = evaluate_poems(lmforge.load(run_dir), load_tokenizer(run_dir), examples, n=int(options.get("n", 4)),
                           temperature=float(options.get("temperature", 1.0)), seed=int(options.get("seed", 0)),
                           system=saved.get("data", {}).get("system") or poems.SYSTEM_PROMPT)
        rows[name] = r
        print(f"  {name}: mean score {r['mean_score']:.3f}, format {100 * r['format_rate']:.1f}%, "
              f"rhyme {100 * r['rhyme_rate']:.1f}% ({r['n']} poems)", flush=True)
    lines = ["| run | mean score | format rate | rhyme rate | distinct-2 | poems |", "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {r['mean_score']:.3f} | {100 * r['format_rate']:.1f}% | {100 * r['rhyme_rate']:.1f}% | "
              f"{r['distinct_2']:.3f} | {r['n']} |" for k, r in rows.items()]
    (out_dir / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # written last, it marks the stage done for these checkpoints (a longer run of a stage makes it stale)
    atomic_write_json(out_dir / "eval.json", {"options": options, "inputs": input_steps(dirs), "runs": rows})
    print("\n".join(lines))


# THE stage table. The lead plugs the later stages in between sft and eval, e.g.
#   Stage("pairs", make=pairs.make, output="pairs.jsonl", minutes=5),            # two SFT samples per prompt
#   Stage("reward", "configs/reward-poems.yaml", {"recipe.init": "sft", "data.pairs": "pairs"}, minutes=5),
#   Stage("ppo", "configs/ppo-poems.yaml", {"recipe.init": "sft", "recipe.reward": "reward"}, minutes=10),
#   Stage("ppo-scorer", ...), Stage("dpo", ...), Stage("grpo", ...), Stage("lora-sft", ...)
# and adds their names to EVAL_RUNS.
STAGES = (
    Stage("base", "configs/zh-base.yaml", minutes=12),
    Stage("sft", "configs/sft-poems.yaml", {"recipe.init": "base"}, minutes=6),
    Stage("eval", make=make_eval, output="eval.json", minutes=3),
)
EVAL_RUNS = ("sft",)  # the runs the eval table compares, in its order


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


def input_steps(dirs: dict[str, Path]) -> dict[str, int | None]:
    """The checkpoint step of every compared run: what an eval table was made from."""
    return {name: trained_steps(dirs[name]) for name in EVAL_RUNS if name in dirs}


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
        return ("done" if made_from == input_steps(dirs) else "start"), None
    from lmforge.train.recipes import load_run_config

    links = [f"{k}={dirs[v]}" for k, v in stage.links.items()]
    cfg = load_run_config(ROOT / stage.config, links + overrides_for(stage.name, sets))
    step = trained_steps(run_dir)
    if step is None:
        return "start", cfg
    return ("done" if step >= cfg.train.max_steps else "resume"), cfg


def run(out: Path, sets: list[str] = (), only: list[str] | None = None, options: dict | None = None) -> dict[str, str]:
    """Run the pipeline into `out`; returns {stage: what was done ("done" = skipped, "resume", "start")}."""
    from lmforge.train.recipes import resolve, train

    names = [s.name for s in STAGES]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"--only names unknown stages {unknown}; the stages are {', '.join(names)}")
    dirs = {s.name: out / s.name for s in STAGES}
    report = {}
    for i, stage in enumerate(STAGES, 1):
        if only and stage.name not in only:
            continue
        for key, source in stage.links.items():
            if trained_steps(dirs[source]) is None:
                raise ValueError(f"stage {stage.name} needs {source} ({key}) but {dirs[source]} holds no run: run "
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
            stage.make(dirs[stage.name], dirs, dict(options or {}))
        else:
            links = [f"{k}={dirs[v]}" for k, v in stage.links.items()]
            overrides = links + overrides_for(stage.name, list(sets))
            if what == "resume":
                cfg, _ = resolve(None, overrides, out=dirs[stage.name], resume=True)
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
                   help="eval options: n (poems per title, 4), temperature (1), seed (0), split (test), limit (0)")
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
