"""`lmforge chat RUN` without --system uses the system prompt an SFT run was trained with."""
import json

from lmforge.cli.chat import trained_system_prompt


def test_trained_system_prompt(tmp_path):
    assert trained_system_prompt(tmp_path) == ""  # no run.json: no system prompt
    (tmp_path / "run.json").write_text(json.dumps({"recipe": {"name": "sft"}, "data": {"system": "你是一位诗人。"}}))
    assert trained_system_prompt(tmp_path) == "你是一位诗人。"
    (tmp_path / "run.json").write_text(json.dumps({"recipe": "lm", "data": {"corpus": "kjv"}}))
    assert trained_system_prompt(tmp_path) == ""  # a pretraining run has none
    (tmp_path / "run.json").write_text("{not json")
    assert trained_system_prompt(tmp_path) == ""
