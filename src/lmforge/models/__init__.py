"""Model families and THE registry: family -> config class, model class, Hugging Face adapter, decoding kind.

Each family is a package, models/<family>/: config.py (a torch-free dataclass with presets), model.py
(the wiring over lmforge.nn), hf.py where the family has a Hugging Face counterpart (the key map).
Families never import each other. Classes are imported on first use, so reading the registry (and
validating a run config against it) stays torch-free.

    >>> model = build_model("gpt", {"vocab_size": 65, "max_len": 64, "d_model": 32, "n_heads": 2, "n_layers": 1})
    >>> FAMILIES["transformer"].decoding
    'encoder-decoder'
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lmforge.config import Config
from lmforge.io import atomic_write, atomic_write_json, read_json


@dataclass(frozen=True)
class Family:
    """One registry entry. `decoding`: how lmforge.generate drives the model (both through the protocol of
    lmforge.models.protocol): "decoder" continues a prompt; "encoder-decoder" reads a source and writes a
    target; "encoder" does not generate (BERT: it reads text into vectors; lmforge.embed, fill-mask).
    `recipe`: the training recipe a run config gets when it names none (lmforge.train.recipes)."""

    name: str
    config: str  # class name in lmforge.models.<name>.config
    model: str  # class name in lmforge.models.<name>.model
    decoding: Literal["decoder", "encoder-decoder", "encoder"]
    recipe: str
    hf: bool = False  # lmforge.models.<name>.hf exists: lmforge.load / lmforge convert read and write HF directories

    def _module(self, part: str):
        return importlib.import_module(f"lmforge.models.{self.name}.{part}")

    def config_class(self) -> type[Config]:
        return getattr(self._module("config"), self.config)

    def model_class(self) -> type:
        return getattr(self._module("model"), self.model)

    def hf_adapter(self):
        """The family's hf module (MODEL_TYPES, config_from_hf/to_hf, state_from_hf/to_hf), or None."""
        return self._module("hf") if self.hf else None


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("gpt", "GPTConfig", "GPT", "decoder", recipe="lm", hf=True),  # Radford et al. 2018, 2019
    Family("transformer", "TransformerConfig", "Transformer", "encoder-decoder", recipe="translation"),  # Vaswani et al. 2017
    Family("lstm", "LSTMConfig", "LSTM", "encoder-decoder", recipe="translation"),  # the RNN baseline (Luong et al. 2015)
    Family("llama", "LlamaConfig", "Llama", "decoder", recipe="lm", hf=True),  # Touvron et al. 2023; Qwen2, GLM-4
    Family("bert", "BERTConfig", "BERT", "encoder", recipe="mlm", hf=True),  # Devlin et al. 2019
    Family("distilbert", "DistilBERTConfig", "DistilBERT", "encoder", recipe="distill", hf=True),  # Sanh et al. 2019
    Family("glm", "GLMConfig", "GLM", "decoder", recipe="blank"),  # Du et al. 2022, blank infilling (GLM-4: llama)
    Family("t5", "T5Config", "T5", "encoder-decoder", recipe="translation", hf=True),  # Raffel et al. 2020
)}


def lookup(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}. Known families: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def config_class(name: str) -> type[Config]:
    """The Config class of family `name` (e.g. "gpt" -> GPTConfig)."""
    return lookup(name).config_class()


def build_model(family: str, config: Config | dict[str, Any] | str):
    """Build a freshly initialised model. `config`: a Config, a dict of fields, or a preset name."""
    entry = lookup(family)
    cls, config_cls = entry.model_class(), entry.config_class()
    if isinstance(config, str):
        config = config_cls.preset(config)
    elif isinstance(config, dict):
        config = config_cls.from_dict(config)
    return cls(config)


def save_model(model, directory: str | Path) -> None:
    """Write directory/config.json ({"family": ..., **config}) and directory/model.safetensors, each atomically.
    A quantized model (lmforge.quantization) adds "weights": "int8" | "bf16" to both (the file's metadata
    also names the scheme), and its tensors are the quantized ones with their scales."""
    from safetensors.torch import save_file

    from lmforge.quantization import SCHEME, weights_of
    directory = Path(directory)
    weights = weights_of(model)
    marks = {} if weights == "fp32" else {"weights": weights}
    metadata = {"format": "pt", **marks, **({"scheme": SCHEME[weights]} if marks else {})}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, tmp, metadata=metadata))
    atomic_write_json(directory / "config.json", {"family": model.config.family, **model.config.to_dict(), **marks})


def load_state(model, state: dict, source: str) -> None:
    """Copy `state` into `model`, with errors that name the missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(f"{source}: tensors do not match the model. Missing: {missing[:5]}; unexpected: {unexpected[:5]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{source}: tensor {k!r} has shape {tuple(v.shape)}, the model expects "
                             f"{tuple(own[k].shape)} (does config.json match the weights?)")
    model.load_state_dict(state, strict=True)


# Wrapper kinds: a model around a family model (an adapter, a value or reward head) is saved as its base
# family's config.json plus "wrapper": {"kind": ..., ...}, its base's tensors under "base." (see
# lmforge.train.checkpoint.config_record). kind -> "module:Class"; the class rebuilds itself around a loaded
# base with `Class.from_record(base, record)`. Post-training recipes register theirs.
WRAPPERS: dict[str, str] = {
    "lora": "lmforge.lora:LoRAModel",  # Hu et al. 2021: low-rank adapters (lmforge.lora)
    "value_head": "lmforge.train.value:ValueModel",  # PPO's policy with its value head
    "reward": "lmforge.train.reward_model:RewardModel",  # a scalar head on the last token (Ouyang et al. 2022 sec. 3.5)
}


def load_model(directory: str | Path, *, base_only: bool = False):
    """Load an lmforge model directory written by save_model (or a training run).

    A wrapped model's directory loads as its wrapper (when its kind is in WRAPPERS), or, with base_only=True,
    as the family model it wraps (the tensors under "base.", nested wrappers unwrapped)."""
    directory = Path(directory)
    config = read_config(directory)
    family = config.pop("family", None)
    if family is None:
        raise ValueError(f"{directory}/config.json has no 'family' key: not an lmforge model directory")
    wrapper = config.pop("wrapper", None)
    weights = config.pop("weights", "fp32")  # a quantized model (lmforge.quantization): int8 / bf16 tensors
    state = read_safetensors(directory / "model.safetensors")
    source = str(directory / "model.safetensors")
    model = build_model(family, config)
    if weights != "fp32":
        from lmforge.quantization import check_weights, quantize
        check_weights(weights)
        marked = read_safetensors_metadata(directory / "model.safetensors").get("weights", "fp32")
        if marked != weights or wrapper is not None:
            raise ValueError(f"{directory}: config.json says the weights are {weights} but model.safetensors says "
                             f"{marked}{' and the model is wrapped' if wrapper else ''}; save the model again "
                             f"with lmforge.models.save_model")
        quantize(model, weights, empty=True)  # the layers' shapes; the file fills them, nothing is requantized
    if wrapper is None:
        load_state(model, state, source)
        return model
    records = []  # outermost first
    while wrapper is not None:
        records.append(wrapper)
        wrapper = wrapper.get("base") if isinstance(wrapper, dict) else None
    if base_only:
        prefix = "base." * len(records)
        own = model.state_dict()  # a wrapper's tensors inside its base (LoRA's adapters on its linears) are not the base's
        load_state(model, {k[len(prefix):]: v for k, v in state.items()
                           if k.startswith(prefix) and k[len(prefix):] in own}, source)
        return model
    unknown = [r.get("kind") for r in records if r.get("kind") not in WRAPPERS]
    if unknown:
        raise ValueError(f"{directory} holds a {' around a '.join(str(r.get('kind')) for r in records)} around a "
                         f"{family} model; wrapper kind {unknown[0]!r} is not registered (known: "
                         f"{', '.join(WRAPPERS) or 'none'}). Load the {family} model inside it with "
                         f"load_model(path, base_only=True)")
    for record in reversed(records):  # innermost wrapper first
        module, name = WRAPPERS[record["kind"]].split(":")
        model = getattr(importlib.import_module(module), name).from_record(model, record)
    load_state(model, state, source)
    return model


def read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not directory.exists():
        raise FileNotFoundError(f"{directory} does not exist")
    if not path.exists():
        raise FileNotFoundError(f"{directory} has no config.json: not a model directory")
    return read_json(path, "; the file is corrupt")


def read_safetensors_metadata(path: Path) -> dict:
    """The string metadata saved in a safetensors file's header ({} when it has none)."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is corrupt or not a safetensors file ({e})") from None


def read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the checkpoint has no weights")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is corrupt or not a safetensors file ({e})") from None
