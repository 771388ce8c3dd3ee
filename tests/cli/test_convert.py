import subprocess
import sys

import torch

import lmforge
from lmforge.models import build_model, save_model


def lmforge_cli(*args):
    return subprocess.run([sys.executable, "-m", "lmforge", *map(str, args)], capture_output=True, text=True)


def test_convert_both_ways(transformers, tmp_path):
    model = build_model("gpt", dict(vocab_size=60, max_len=24, d_model=32, n_heads=2, n_layers=2))
    save_model(model, tmp_path / "ours")
    r = lmforge_cli("convert", tmp_path / "ours", tmp_path / "hf", "--to", "hf")
    assert r.returncode == 0, r.stderr
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 60, (1, 10))
    with torch.no_grad():
        assert (hf(ids).logits - model.eval()(ids).logits).abs().max() <= 1e-4
    assert lmforge_cli("convert", tmp_path / "hf", tmp_path / "back", "--to", "lmforge").returncode == 0
    back = lmforge.load(tmp_path / "back").state_dict()
    assert all(torch.equal(v, back[k]) for k, v in model.state_dict().items())


def test_convert_errors_are_one_clear_line(tmp_path):
    r = lmforge_cli("convert", tmp_path / "missing", tmp_path / "out", "--to", "hf")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    r = lmforge_cli("convert", tmp_path, tmp_path / "out", "--to", "onnx")
    assert r.returncode == 2 and "invalid choice: 'onnx'" in r.stderr
