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


def test_convert_a_lora_run_as_base_plus_peft_adapter_or_merged(transformers, tmp_path):
    peft = __import__("pytest").importorskip("peft")
    from lmforge import lora
    from lmforge.train.checkpoint import save_checkpoint
    torch.manual_seed(0)
    model = lora.apply(build_model("gpt", dict(vocab_size=60, max_len=24, d_model=32, n_heads=2, n_layers=2)),
                       r=2, alpha=4, targets=["qkv", "fc2"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.1)
    save_checkpoint(tmp_path / "run", model, {"step": 1})
    ids = torch.randint(0, 60, (2, 10))
    with torch.no_grad():
        want = model.eval()(ids).logits

    assert lmforge_cli("convert", tmp_path / "run", tmp_path / "hf", "--to", "hf").returncode == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        got = peft.PeftModel.from_pretrained(hf, tmp_path / "hf" / "adapter").eval()(ids).logits
    assert (got - want).abs().max() <= 1e-5

    assert lmforge_cli("convert", tmp_path / "run", tmp_path / "merged", "--to", "hf", "--merge").returncode == 0
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        assert (merged(ids).logits - want).abs().max() <= 1e-5
    assert not (tmp_path / "merged" / "adapter").exists()

    r = lmforge_cli("convert", tmp_path / "run", tmp_path / "again", "--to", "lmforge")
    assert r.returncode == 2 and "is a LoRA run" in r.stderr and "--merge" in r.stderr
