"""THE registry: every family is a package (config.py torch-free, model.py, hf.py where HF has one) found
through lmforge.models.FAMILIES, and nothing else decides which families exist."""
import subprocess
import sys

import pytest
import torch

from lmforge.models import FAMILIES, build_model, config_class, load_model, lookup, save_model


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_builds_saves_and_loads_through_the_registry(name, tmp_path):
    entry = FAMILIES[name]
    cls = config_class(name)
    assert cls.family == name and cls.__module__ == f"lmforge.models.{name}.config"
    assert entry.model_class().__module__ == f"lmforge.models.{name}.model"
    preset = next(p for p in cls.PRESETS if p.endswith("tiny"))
    torch.manual_seed(0)
    model = build_model(name, preset)
    assert isinstance(model, entry.model_class()) and model.config == cls.preset(preset)
    save_model(model, tmp_path)
    again = load_model(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert entry.decoding in ("decoder", "encoder-decoder", "encoder")


def test_family_configs_import_without_torch():
    mods = [f"lmforge.models.{n}.config" for n in FAMILIES]
    code = f"import importlib, sys; [importlib.import_module(m) for m in {mods!r}]; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_unknown_family_and_missing_hf_counterpart_say_what_exists(tmp_path):
    with pytest.raises(ValueError, match="unknown model family 'gpt5'. Known families: gpt, transformer, lstm, llama"):
        lookup("gpt5")
    from lmforge.convert.hf import save_hf
    with pytest.raises(ValueError, match="'lstm' family has no Hugging Face counterpart.*exists for: gpt, llama, bert, distilbert"):
        save_hf(build_model("lstm", "lstm-tiny"), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    assert [n for n, f in FAMILIES.items() if f.hf_adapter() is not None] == ["gpt", "llama", "bert", "distilbert", "t5"]
