"""A run config's `lora:` section: any recipe trains adapters only, checkpoints resume bit for bit, the run
directory carries the adapter in PEFT's format and a pointer to its base."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lmforge
from lmforge import lora
from lmforge.config import LoRAOptions
from lmforge.train import loop, recipes
from lmforge.train.recipes import load_run_config

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
QUIET = ["train.progress=false", "train.eval_interval=4", "train.save_interval=4", "train.log_interval=2"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "base"
    assert recipes.train(load_run_config(TINY, QUIET + ["train.max_steps=4"]), out) == 0
    return out


def lora_config(base_run, steps=8):
    return load_run_config(TINY, QUIET + [f"train.max_steps={steps}", f"lora.base={base_run}", "lora.r=4",
                                          "lora.targets=[qkv, fc2]"])


def test_a_lora_run_trains_only_the_adapters_and_saves_them_for_peft(base_run, tmp_path):
    out = tmp_path / "run"
    assert recipes.train(lora_config(base_run), out) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["wrapper"]["kind"] == "lora" and record["wrapper"]["base_path"] == str(base_run)
    weights, base = load_file(out / "model.safetensors"), load_file(base_run / "model.safetensors")
    for k, v in base.items():  # the base weights did not move
        assert torch.equal(weights["base." + k], v), k
    assert any(weights[k].abs().sum() > 0 for k in weights if ".lora_B." in k)  # the adapters did
    assert sorted(p.name for p in (out / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    # the adapter on the base run gives the trained run's logits
    model = lmforge.load(out).eval()
    again = lora.load_adapter(lmforge.load(base_run), out / "adapter").eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert lora.trainable(model)[0] == 2 * (4 * 32 + 96 * 4 + 4 * 128 + 32 * 4)


def test_a_lora_run_resumes_bit_for_bit(base_run, tmp_path, monkeypatch):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert recipes.train(lora_config(base_run), full) == 0
    save = loop.Trainer.save

    def save_then_stop(self):
        save(self)
        if self.step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop.Trainer, "save", save_then_stop)
    assert recipes.train(lora_config(base_run), cut) == 130
    monkeypatch.setattr(loop.Trainer, "save", save)
    cfg, _ = recipes.resolve(None, [], out=cut, resume=True)
    assert cfg.lora == LoRAOptions(r=4, targets=["qkv", "fc2"], base=str(base_run))
    assert recipes.train(cfg, cut, resume=True) == 0
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lora_options_are_checked_before_training(base_run, tmp_path):
    with pytest.raises(ValueError, match="lora: r must be positive"):
        load_run_config(TINY, ["lora.r=0"])
    with pytest.raises(ValueError, match="unknown key 'rank' in lora"):
        load_run_config(TINY, ["lora.rank=4"])
    cfg = load_run_config(TINY, QUIET + ["lora.targets=[c_attn]"])
    with pytest.raises(ValueError, match="'c_attn' matches no linear layer"):
        recipes.train(cfg, tmp_path / "x")
    assert load_run_config(TINY).lora is None  # no section: full fine-tuning
    bundled = load_run_config(TINY.parent / "sft-poems-lora.yaml")
    assert bundled.NAME == "sft" and bundled.lora.targets == ["q", "v", "out", "fc1", "fc2"]
    assert recipes.run_config(bundled.to_dict()) == bundled  # what run.json holds reads back the same


def test_lora_sft_by_config(tmp_path):
    """The sft recipe knows nothing of LoRA: the `lora:` section alone makes it LoRA-SFT, on recipe.init's weights."""
    from lmforge.data import chat, poems
    from lmforge.models import build_model, save_model
    from lmforge.tokenizers import CharTokenizer, save_tokenizer
    from lmforge.train.recipes import run_config

    text = "".join(poems.SYSTEM_PROMPT + e.prompt + e.answer + "\n" for s in poems.SPLITS
                   for e in poems.examples(s, 4, free=True))
    tok = CharTokenizer.train(text, special_tokens=chat.CHAT_SPECIAL_TOKENS)
    torch.manual_seed(0)
    init = tmp_path / "init"
    save_model(build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=512, d_model=16, n_heads=2, n_layers=1)),
               init)
    save_tokenizer(tok, init)
    cfg = run_config({"recipe": {"name": "sft", "init": str(init)}, "data": {"phrasings": 1, "free": False},
                      "train": {"max_steps": 2, "batch_size": 2, "eval_interval": 2, "eval_steps": 1,
                                "progress": False, "dtype": "fp32"},
                      "lora": {"r": 2, "targets": ["q", "v"]}})
    assert recipes.train(cfg, tmp_path / "run") == 0
    model = lmforge.load(tmp_path / "run")
    assert isinstance(model, lora.LoRAModel) and model.base_path == str(init)
    base = load_file(init / "model.safetensors")
    weights = load_file(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(weights["base." + k], v) for k, v in base.items())
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
