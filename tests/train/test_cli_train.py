"""`lmforge train` / `lmforge info`: a run from a YAML config, and one clear line for each kind of bad input."""
import json
import shutil
from pathlib import Path

import pytest

from lmforge.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
QUICK = ["--set", "train.max_steps=10", "--set", "train.eval_interval=5", "--set", "train.progress=false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", str(TINY), "--out", str(out), *QUICK]) == 0
    return out


def error_of(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def write_yaml(tmp_path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def test_train_writes_a_readable_run_and_info_reports_it(run_dir, capsys):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_state.pt", "metrics.jsonl", "loss.png",
            "run.json"} <= names
    import lmforge

    model = lmforge.load(run_dir)
    n_params = sum(p.numel() for p in model.parameters())
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"parameters  {n_params:,}" in out and "step        10" in out and "val loss" in out
    assert main(["info", str(run_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == n_params and info["last_val"]["step"] == 10 and info["config"]["family"] == "gpt"


def test_unknown_key_in_yaml_names_it_and_the_allowed_keys(tmp_path, capsys):
    err = error_of(["train", write_yaml(tmp_path, "train:\n  learning_rate: 0.1\n"), "--out", str(tmp_path / "o")], capsys)
    assert "unknown key 'learning_rate'" in err and "Allowed keys: max_steps, batch_size" in err
    err = error_of(["train", write_yaml(tmp_path, "model:\n  n_layer: 2\n"), "--out", str(tmp_path / "o")], capsys)
    assert "unknown key 'n_layer'" in err and "n_layers" in err
    err = error_of(["train", write_yaml(tmp_path, "optim:\n  lr: 0.1\n"), "--out", str(tmp_path / "o")], capsys)
    assert "unknown section 'optim'" in err and "model, data, train" in err


def test_wrong_type_or_value_names_the_key(tmp_path, capsys):
    err = error_of(["train", write_yaml(tmp_path, "train:\n  lr: fast\n"), "--out", str(tmp_path / "o")], capsys)
    assert "lr must be a number, got 'fast'" in err
    err = error_of(["train", str(TINY), "--set", "train.dtype=fp16", "--out", str(tmp_path / "o")], capsys)
    assert "dtype='fp16' is not allowed. Allowed values: 'auto', 'fp32', 'bf16'" in err
    err = error_of(["train", str(TINY), "--set", "model.preset=gpt-huge", "--out", str(tmp_path / "o")], capsys)
    assert "unknown preset 'gpt-huge'" in err and "gpt-mini" in err
    err = error_of(["train", str(TINY), "--set", "train.lrr=1", "--out", str(tmp_path / "o")], capsys)
    assert "unknown key 'lrr' in train" in err
    err = error_of(["train", str(TINY), "--set", "lr=1", "--out", str(tmp_path / "o")], capsys)
    assert "section one of model, data, train" in err
    err = error_of(["train", write_yaml(tmp_path, "train: [1, 2\n"), "--out", str(tmp_path / "o")], capsys)
    assert "is not valid YAML" in err
    err = error_of(["train", str(tmp_path / "missing.yaml")], capsys)
    assert "missing.yaml does not exist" in err


def test_window_longer_than_context_is_refused(tmp_path, capsys):
    err = error_of(["train", str(TINY), "--set", "data.block_size=64", "--out", str(tmp_path / "o")], capsys)
    assert "data.block_size (64) is longer than the model's context max_len (32)" in err
    err = error_of(["train", str(TINY), "--set", "data.corpus=no-such-corpus", "--out", str(tmp_path / "o")], capsys)
    assert "not a bundled corpus" in err


def test_existing_run_needs_resume_and_resume_needs_a_run(run_dir, tmp_path, capsys):
    err = error_of(["train", str(TINY), "--out", str(run_dir), *QUICK], capsys)
    assert "already holds a checkpoint: pass --resume" in err
    err = error_of(["train", "--resume", "--out", str(tmp_path / "empty")], capsys)
    assert "nothing to resume" in err
    err = error_of(["train", str(TINY), "--resume", "--out", str(run_dir)], capsys)  # without the run's --set values
    assert "differs from the config saved" in err and "train.max_steps: saved 10, file 40" in err


def test_resume_from_a_corrupt_checkpoint_names_the_file_and_keeps_it(run_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "train_state.pt").write_bytes(b"not a checkpoint")
    err = error_of(["train", "--resume", "--out", str(broken)], capsys)
    assert "train_state.pt is corrupt" in err
    assert (broken / "train_state.pt").read_bytes() == b"not a checkpoint"  # nothing overwritten
    shutil.copy(run_dir / "train_state.pt", broken / "train_state.pt")
    cfg = json.loads((broken / "config.json").read_text())
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:200])
    err = error_of(["train", "--resume", "--out", str(broken)], capsys)
    assert "model.safetensors is not a readable safetensors file" in err
    assert cfg == json.loads((broken / "config.json").read_text())


def test_info_on_something_that_is_not_a_run(tmp_path, capsys):
    assert "does not exist" in error_of(["info", str(tmp_path / "nope")], capsys)
    assert "has no config.json" in error_of(["info", str(tmp_path)], capsys)


def test_corpus_too_small_or_not_text(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("In the beginning God created the heaven and the earth.\n" * 4)
    err = error_of(["train", str(TINY), "--set", f"data.corpus={small}", "--out", str(tmp_path / "o")], capsys)
    assert "the val split of corpus" in err and "fewer than data.block_size + 1 = 33" in err
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00abc" * 100)
    err = error_of(["train", str(TINY), "--set", f"data.corpus={binary}", "--out", str(tmp_path / "o2")], capsys)
    assert "is not UTF-8 text" in err
