"""Hugging Face checkpoint directories <-> lmforge models, for every family that has an hf.py adapter.

The family-specific part (config fields, tensor names) lives in lmforge.models.<family>.hf; this module
reads and writes the directories: config.json, model.safetensors (or a pytorch_model.bin read with
weights_only=True), and picks the family from config.json's "model_type" through the registry.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from lmforge.io import atomic_write, atomic_write_json
from lmforge.models import FAMILIES, lookup


def _adapters() -> dict[str, tuple[str, object]]:
    """HF model_type -> (family name, its hf module), over every family with an adapter."""
    out = {}
    for f in FAMILIES.values():
        adapter = f.hf_adapter()
        if adapter is not None:
            out.update({t: (f.name, adapter) for t in adapter.MODEL_TYPES})
    return out


def read_hf_weights(directory: Path) -> dict:
    """model.safetensors, or the shards model.safetensors.index.json lists (large checkpoints are split into
    model-00001-of-0000N.safetensors ...), else pytorch_model.bin loaded with weights_only=True (a pickle
    cannot run code)."""
    from lmforge.io import read_json
    from lmforge.models import read_safetensors
    st, pt = directory / "model.safetensors", directory / "pytorch_model.bin"
    index = directory / "model.safetensors.index.json"
    if st.exists():
        return read_safetensors(st)
    if index.exists():
        weight_map = read_json(index, "; the shard index is corrupt").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index} has no 'weight_map': not a safetensors shard index")
        state = {}
        for shard in sorted(set(weight_map.values())):
            state.update(read_safetensors(directory / shard))
        missing = [k for k in weight_map if k not in state]
        if missing:
            raise ValueError(f"{index} lists tensors no shard holds: {missing[:5]}")
        return state
    if pt.exists():
        import pickle
        try:
            return torch.load(pt, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(f"{pt} contains objects other than tensors; refusing to unpickle it because it could "
                             f"execute code. Convert it to safetensors with a trusted tool first. ({str(e)[:200]})") from None
        except (RuntimeError, EOFError) as e:
            raise ValueError(f"{pt} is corrupt or not a PyTorch checkpoint ({e})") from None
    raise FileNotFoundError(f"{directory} has none of model.safetensors, model.safetensors.index.json, pytorch_model.bin")


def config_from_hf(hf: dict, directory: str | Path = "the directory"):
    """The lmforge Config (of the right family) that a Hugging Face config.json describes."""
    model_type, adapters = hf.get("model_type"), _adapters()
    if model_type not in adapters:
        arch = ", ".join(hf.get("architectures") or []) or "no architectures listed"
        raise ValueError(f"{directory}: Hugging Face model_type {model_type!r} ({arch}) is not supported. "
                         f"Supported: {', '.join(adapters)}")
    return adapters[model_type][1].config_from_hf(hf)


def load_hf(directory: str | Path):
    """Load a Hugging Face checkpoint directory (config.json + weights) as an lmforge model."""
    from lmforge.models import build_model, load_state, read_config
    directory = Path(directory)
    config = config_from_hf(read_config(directory), directory)
    family, adapter = type(config).family, lookup(type(config).family).hf_adapter()
    hf_state = read_hf_weights(directory)
    if hasattr(adapter, "fit_weights"):  # what the tensors say about the config (T5: a head tied or not)
        config = adapter.fit_weights(config, hf_state)
    model = build_model(family, config)
    load_state(model, adapter.state_from_hf(hf_state, config), str(directory))
    return model


def save_hf(model, directory: str | Path) -> None:
    """Write a directory that transformers' from_pretrained loads (AutoModelForCausalLM, AutoModelForSeq2SeqLM
    for T5, the encoders' classes).

    A LoRA model (lmforge.lora) writes its base weights there and its adapter, in PEFT's format, in
    directory/adapter (peft.PeftModel.from_pretrained(that model, directory/adapter)); merge and unload it
    first (lmforge.lora.merge, unload) for one model with the adapters folded in."""
    from safetensors.torch import save_file

    from lmforge.lora import LoRAModel, save_adapter
    from lmforge.quantization import weights_of
    if weights_of(model) != "fp32":
        raise ValueError(f"the model's weights are {weights_of(model)} (lmforge.quantize); a Hugging Face directory "
                         f"holds float weights: convert the fp32 model it was quantized from")
    if isinstance(model, LoRAModel):
        save_hf(model.base, directory)  # the LoRA layers keep the base's tensor names; their own are not read
        save_adapter(model, Path(directory) / "adapter")
        return
    adapter = lookup(model.config.family).hf_adapter()
    if adapter is None:
        have = [f.name for f in FAMILIES.values() if f.hf]
        raise ValueError(f"the {model.config.family!r} family has no Hugging Face counterpart; conversion to Hugging "
                         f"Face format exists for: {', '.join(have)}")
    directory = Path(directory)
    state = adapter.state_to_hf({k: v.detach() for k, v in model.state_dict().items()}, model.config)
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write_json(directory / "config.json", adapter.config_to_hf(model.config))
    atomic_write_json(directory / "generation_config.json", {"_from_model_config": True})


def is_hf_directory(directory: Path) -> bool:
    path = directory / "config.json"
    try:
        return path.exists() and "model_type" in json.loads(path.read_text()) and "family" not in json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
