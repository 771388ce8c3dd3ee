"""--weights int8|bf16|fp32 on lmforge generate and chat, end to end on a tiny run directory."""
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.cli import main
from lmforge.generate import generate
from lmforge.models import build_model, save_model
from lmforge.tokenizers import CharTokenizer, load_tokenizer, save_tokenizer

PROMPT = "And God said"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory: a random tiny GPT + a character tokenizer trained on a slice of the bundled KJV."""
    path = tmp_path_factory.mktemp("run")
    with lzma.open(Path(lmforge.__file__).parent / "data" / "corpora" / "kjv.txt.xz", "rt", encoding="utf-8") as f:
        tok = CharTokenizer.train(f.read(20000))
    torch.manual_seed(0)
    save_model(build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=64, d_model=64, n_heads=4, n_layers=2)), path)
    save_tokenizer(tok, path)
    return path


@pytest.fixture
def loaded(monkeypatch):
    """The models the CLI's commands load (lmforge.cli.generate.load_run, also chat's), recorded as they return."""
    import lmforge.cli.chat
    import lmforge.cli.generate
    models, real = [], lmforge.cli.generate.load_run

    def spy(*args, **kwargs):
        model, tok = real(*args, **kwargs)
        models.append(model)
        return model, tok
    monkeypatch.setattr(lmforge.cli.generate, "load_run", spy)
    monkeypatch.setattr(lmforge.cli.chat, "load_run", spy)
    return models


def greedy_text(model, run, n=16):
    tok = load_tokenizer(run)
    return tok.decode([s.token for s in generate(model, tok.encode(PROMPT), max_new_tokens=n, temperature=0)])


@pytest.mark.parametrize("weights", ["int8", "bf16", "fp32"])
def test_generate_with_weights_prints_what_the_quantized_model_generates(run, weights, capsys, loaded):
    code = main(["generate", str(run), "--prompt", PROMPT, "--max-new-tokens", "16", "--temperature", "0",
                 "--weights", weights])
    out = capsys.readouterr().out
    assert code == 0
    # this random model's greedy text is the same in every weight format: which weights ran is checked directly
    assert [lmforge.quantization.weights_of(m) for m in loaded] == [weights]
    expected = greedy_text(lmforge.quantize(lmforge.load(run).eval(), weights), run)
    assert out == PROMPT + expected + "\n"


def test_weights_must_be_a_known_kind(run, capsys):
    with pytest.raises(SystemExit):
        main(["generate", str(run), "--prompt", PROMPT, "--weights", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err


def test_a_saved_int8_run_decodes_as_saved_and_refuses_fp32(run, tmp_path, capsys, loaded):
    model = lmforge.quantize(lmforge.load(run).eval(), "int8")
    save_model(model, tmp_path)
    (tmp_path / "tokenizer.json").write_bytes((run / "tokenizer.json").read_bytes())
    args = ["generate", str(tmp_path), "--prompt", PROMPT, "--max-new-tokens", "16", "--temperature", "0"]
    assert main(args) == 0
    assert capsys.readouterr().out == PROMPT + greedy_text(model, run) + "\n"
    assert lmforge.quantization.weights_of(loaded[-1]) == "int8"
    assert main(args + ["--weights", "int8"]) == 0  # already int8: unchanged
    capsys.readouterr()
    assert main(args + ["--weights", "fp32"]) == 2
    assert "already int8" in capsys.readouterr().err


def test_chat_with_int8_weights_answers(run):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "lmforge", "chat", str(run), "--weights", "int8", "--max-new-tokens",
                           "8", "--seed", "0"], input="And God said\n/quit\n", capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("assistant> ") == 1 and proc.stdout.rstrip().endswith("you>")


def test_chat_loads_the_weights_it_is_given(run, loaded, monkeypatch, capsys):
    """In process, so the model chat decodes with can be looked at: --weights int8 gives it int8 layers."""
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO("And God said\n/quit\n"))
    assert main(["chat", str(run), "--weights", "int8", "--max-new-tokens", "4", "--seed", "0"]) == 0
    assert [lmforge.quantization.weights_of(m) for m in loaded] == ["int8"]
