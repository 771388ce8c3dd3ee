"""The one-command post-training pipeline (scripts/post_training.py) on a tiny configuration: every stage runs,
a second call skips them all, and a stage interrupted half-way resumes from its checkpoint."""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge.data import poems

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "post_training.py"


def load_script():
    spec = importlib.util.spec_from_file_location("post_training", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["post_training"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def tiny(tmp_path, sft_steps=4):
    """--set assignments that make every stage take seconds: a small text with every character the poem task
    needs (the train poems, every prompt), a 1-layer model, a few steps."""
    needed = "".join(poems.SYSTEM_PROMPT + e.prompt + e.answer for s in poems.SPLITS
                     for e in poems.examples(s, 4, free=True))
    corpus = tmp_path / "zh-small.txt"
    corpus.write_text("".join(sorted(set(needed))) + "\n" + poems.pretraining_text("train")[:5000], encoding="utf-8")
    return [f"base.data.corpus={corpus}", "base.data.block_size=32", "base.model.d_model=32",
            "base.model.n_heads=2", "base.model.n_layers=1", "base.train.max_steps=3",
            f"sft.train.max_steps={sft_steps}", "lora-sft.train.max_steps=2", "pairs.limit=8",
            "reward.train.max_steps=2", "dpo.train.max_steps=2",
            *[f"{s}.{k}" for s in ("ppo-scorer", "ppo", "grpo")
              for k in ("train.max_steps=2", "recipe.rollout_prompts=2", "recipe.max_new_tokens=8",
                        "data.eval_prompts=1", "data.eval_samples=1")],
            "grpo.recipe.group_size=2",
            "*.train.batch_size=2", "*.train.eval_interval=2",
            "*.train.eval_steps=1", "*.train.save_interval=1", "*.train.log_interval=1", "*.train.progress=false"]

STAGES = ["base", "sft", "lora-sft", "pairs", "reward", "dpo", "ppo-scorer", "ppo", "grpo", "eval"]


EVAL = {"n": "1", "limit": "2"}


def untied_scores(monkeypatch):
    """An untrained tiny model's poems all score 0, so every pair ties and the pairs stage rightly stops. This
    test is about the pipeline, not the scorer (tests/eval/test_poems.py): the real score plus a thousandth per
    character, so the answers of a prompt rarely tie."""
    import dataclasses

    from lmforge.eval import poems as scorer
    real = scorer.score
    monkeypatch.setattr(scorer, "score", lambda text, form: dataclasses.replace(
        real(text, form), score=real(text, form).score + 1e-3 * len(text)))


def test_every_stage_runs_then_a_second_call_skips_them(tmp_path, capsys, monkeypatch):
    untied_scores(monkeypatch)
    pt = load_script()
    out = tmp_path / "pt"
    sets = tiny(tmp_path)
    assert pt.run(out, sets, options=EVAL) == dict.fromkeys(STAGES, "start")
    result = json.loads((out / "eval" / "eval.json").read_text())
    assert list(result["runs"]) == list(pt.EVAL_RUNS) and result["runs"]["sft"]["n"] == 2
    assert all((out / "pairs" / f).is_file()
               for f in ("pairs-train.jsonl", "pairs-train-extremes.jsonl", "pairs-val.jsonl"))
    assert "kl_to_sft" not in result["runs"]["sft"]
    assert all(isinstance(r["kl_to_sft"], float) and r["train_minutes"] >= 0
               for k, r in result["runs"].items() if k != "sft")
    assert result["runs"]["dpo"]["kl_to_sft"] != 0.0  # DPO's steps moved the policy away from its reference
    import lmforge
    from lmforge.tokenizers import load_tokenizer
    sft = lmforge.load(out / "sft")
    texts = [s["text"] for s in result["runs"]["sft"]["samples"]]
    prompts = [e.prompt for e in poems.examples("test") if e.form][:len(texts)]
    assert pt.kl_to_reference(sft, sft, load_tokenizer(out / "sft"), prompts, texts, poems.SYSTEM_PROMPT) == 0.0
    assert (out / "eval" / "table.md").read_text().startswith("| run | mean score |")
    assert (out / "eval" / "rl.png").stat().st_size > 0
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert pt.run(out, sets, options=EVAL) == dict.fromkeys(STAGES, "done")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp  # nothing rewritten
    assert f"[2/{len(STAGES)}] sft: done, skipped" in capsys.readouterr().out
    # stopped after the last checkpoint but before the summary (DPO's evaluation, the reward model's bias
    # shift): not done; resumed, it trains no further step and writes the summary
    metrics = {stage: (out / stage / "metrics.jsonl").read_text() for stage in ("reward", "dpo", "grpo")}
    for stage, summary in (("reward", "reward.json"), ("dpo", "dpo.json"), ("grpo", "rl.json")):
        (out / stage / summary).unlink()
    assert pt.run(out, sets, only=["reward", "dpo", "grpo"], options=EVAL) == dict.fromkeys(
        ["reward", "dpo", "grpo"], "resume")
    for stage, summary in (("reward", "reward.json"), ("dpo", "dpo.json"), ("grpo", "rl.json")):
        assert (out / stage / summary).is_file()
        assert [json.loads(x)["step"] for x in (out / stage / "metrics.jsonl").read_text().splitlines()][-1] == 2
        assert (out / stage / "metrics.jsonl").read_text() == metrics[stage]  # no step trained again
    # a longer SFT asked for later: the finished one is continued, not restarted; the pairs made from it and
    # the eval are made again (the stages trained from the old SFT are left: their configs did not change)
    assert pt.run(out, sets + ["sft.train.max_steps=6"], only=["base", "sft", "pairs", "eval"], options=EVAL) == {
        "base": "done", "sft": "resume", "pairs": "start", "eval": "start"}
    assert [json.loads(x)["step"] for x in (out / "sft" / "metrics.jsonl").read_text().splitlines()][-1] == 6
    assert json.loads((out / "eval" / "eval.json").read_text())["inputs"]["sft"] == 6
    assert json.loads((out / "pairs" / "pairs.json").read_text())["inputs"] == {"sft": 6}


def test_an_interrupted_stage_resumes_from_its_checkpoint(tmp_path):
    pt = load_script()
    out = tmp_path / "pt"
    sets = tiny(tmp_path, sft_steps=2000)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), *[a for s in sets for a in ("--set", s)]]
    # SIGINT back to its default in the child: a test run started in the background from a non-interactive shell
    # ignores SIGINT, the child would inherit that, and Python would then never raise KeyboardInterrupt
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "sft" / "train_state.pt").exists():  # SFT has saved a checkpoint: interrupt it there
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    log = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, log
    assert "run the same command again to resume" in log
    saved = pt.trained_steps(out / "sft")
    assert 1 <= saved < 2000
    # the same command again, with SFT shortened so the test stays short: base is skipped, SFT continues
    assert pt.run(out, sets + ["sft.train.max_steps=" + str(saved + 2)], only=["base", "sft", "eval"],
                  options=EVAL) == {"base": "done", "sft": "resume", "eval": "start"}
    assert pt.trained_steps(out / "sft") == saved + 2


def test_bad_sets_and_stages_are_value_errors(tmp_path):
    pt = load_script()
    with pytest.raises(ValueError, match="no stage 'rlhf'"):
        pt.overrides_for("sft", ["rlhf.train.max_steps=3"])
    with pytest.raises(ValueError, match="write STAGE.key=value"):
        pt.overrides_for("sft", ["max_steps=3"])
    with pytest.raises(ValueError, match="unknown stages"):
        pt.run(tmp_path, [], only=["rlhf"])
    with pytest.raises(ValueError, match="stage sft needs base"):
        pt.run(tmp_path, [], only=["sft"])


def test_a_resumed_stage_trains_to_the_config_of_now_not_the_saved_one(tmp_path):
    """The stage's config file changed after an interruption (more steps): the stage resumes and trains to
    the new max_steps (the one its completeness was judged by), not to the one saved in its run.json."""
    pt = load_script()
    config = tmp_path / "sft.yaml"
    config.write_text((ROOT / "configs" / "sft-poems.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    base, sft, *rest = pt.STAGES
    pt.STAGES = (base, pt.Stage("sft", str(config), sft.links), *rest)
    out, sets = tmp_path / "pt", tiny(tmp_path, sft_steps=3)
    sets = [s for s in sets if not s.startswith("sft.train.max_steps")]
    config.write_text(re.sub(r"max_steps: \d+", "max_steps: 2", config.read_text(encoding="utf-8")), encoding="utf-8")
    assert pt.run(out, sets, only=["base", "sft"]) == {"base": "start", "sft": "start"}
    assert pt.trained_steps(out / "sft") == 2
    config.write_text(config.read_text(encoding="utf-8").replace("max_steps: 2", "max_steps: 4"), encoding="utf-8")
    assert pt.run(out, sets, only=["base", "sft"]) == {"base": "done", "sft": "resume"}
    assert pt.trained_steps(out / "sft") == 4
    assert json.loads((out / "sft" / "run.json").read_text())["train"]["max_steps"] == 4
