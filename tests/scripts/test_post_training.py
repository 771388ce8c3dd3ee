"""The one-command post-training pipeline (scripts/post_training.py) on a tiny configuration: every stage runs,
a second call skips them all, and a stage interrupted half-way resumes from its checkpoint."""
import importlib.util
import json
import os
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
            f"sft.train.max_steps={sft_steps}", "*.train.batch_size=2", "*.train.eval_interval=2",
            "*.train.eval_steps=1", "*.train.save_interval=1", "*.train.log_interval=1", "*.train.progress=false"]


EVAL = {"n": "1", "limit": "2"}


def test_every_stage_runs_then_a_second_call_skips_them(tmp_path, capsys):
    pt = load_script()
    out = tmp_path / "pt"
    sets = tiny(tmp_path)
    assert pt.run(out, sets, options=EVAL) == {"base": "start", "sft": "start", "eval": "start"}
    result = json.loads((out / "eval" / "eval.json").read_text())
    assert set(result["runs"]) == {"sft"} and result["runs"]["sft"]["n"] == 2
    assert (out / "eval" / "table.md").read_text().startswith("| run | mean score |")
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert pt.run(out, sets, options=EVAL) == {"base": "done", "sft": "done", "eval": "done"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp  # nothing rewritten
    assert "[2/3] sft: done, skipped" in capsys.readouterr().out
    # a longer SFT asked for later: the finished one is continued, not restarted, and the eval made again
    assert pt.run(out, sets + ["sft.train.max_steps=6"], options=EVAL) == {"base": "done", "sft": "resume",
                                                                          "eval": "start"}
    assert [json.loads(x)["step"] for x in (out / "sft" / "metrics.jsonl").read_text().splitlines()][-1] == 6
    assert json.loads((out / "eval" / "eval.json").read_text())["inputs"] == {"sft": 6}


def test_an_interrupted_stage_resumes_from_its_checkpoint(tmp_path):
    pt = load_script()
    out = tmp_path / "pt"
    sets = tiny(tmp_path, sft_steps=2000)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    assert pt.run(out, sets + ["sft.train.max_steps=" + str(saved + 2)], options=EVAL) == {
        "base": "done", "sft": "resume", "eval": "start"}
    assert pt.trained_steps(out / "sft") == saved + 2


def test_bad_sets_and_stages_are_value_errors(tmp_path):
    pt = load_script()
    with pytest.raises(ValueError, match="no stage 'ppo'"):
        pt.overrides_for("sft", ["ppo.train.max_steps=3"])
    with pytest.raises(ValueError, match="write STAGE.key=value"):
        pt.overrides_for("sft", ["max_steps=3"])
    with pytest.raises(ValueError, match="unknown stages"):
        pt.run(tmp_path, [], only=["rlhf"])
    with pytest.raises(ValueError, match="stage sft needs base"):
        pt.run(tmp_path, [], only=["sft"])
