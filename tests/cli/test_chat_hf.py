"""`lmforge chat DIR` on a Hugging Face directory with its own chat template, driven through its terminal
(a real subprocess): the answer is what the model says in that template, up to the template's end of turn."""
import os
import subprocess
import sys

import pytest
from hf_chat_helpers import hf_gpt2_chat_dir  # tests/hf_chat_helpers.py


def test_chat_in_the_directorys_template_stops_at_its_end_of_turn(tmp_path):
    pytest.importorskip("transformers")
    path, _ = hf_gpt2_chat_dir(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # the model answers "Hi" then <|eom_id|> to a prompt ending in the Llama 3 generation prompt
    r = subprocess.run([sys.executable, "-m", "lmforge", "chat", str(path), "--system", "Be brief.",
                        "--temperature", "0", "--max-new-tokens", "20"],
                       input="Hello\nAnd you?\n/quit\n", capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    answers = [line.split("assistant> ", 1)[1] for line in r.stdout.splitlines() if "assistant> " in line]
    assert answers == ["Hi", "Hi"]  # stopped at <|eom_id|> (not shown), twice, not run on to 20 tokens


def test_a_template_that_does_not_parse_is_one_clear_line(tmp_path):
    pytest.importorskip("transformers")
    path, _ = hf_gpt2_chat_dir(tmp_path)
    (path / "chat_template.jinja").write_text("{{ messages[0].content }")
    r = subprocess.run([sys.executable, "-m", "lmforge", "chat", str(path)], input="/quit\n",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "the chat template does not parse" in r.stderr
