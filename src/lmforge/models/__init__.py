"""Model families: REGISTRY maps a family name to (Config class, Model class).

    >>> model = build_model("gpt", {"vocab_size": 65, "max_len": 64, "d_model": 32, "n_heads": 2, "n_layers": 1})
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.config import Config, GPTConfig, LSTMConfig, TransformerConfig
from lmforge.io import atomic_write, atomic_write_json

REGISTRY: dict[str, tuple[type, str]] = {
    # family -> (config class, "module:Class"); models are imported lazily (keeps `import lmforge` fast)
    "gpt": (GPTConfig, "lmforge.models.gpt:GPT"),
    "transformer": (TransformerConfig, "lmforge.models.transformer:Transformer"),  # Vaswani et al. 2017
    "lstm": (LSTMConfig, "lmforge.models.lstm:LSTM"),  # the RNN baseline (Luong et al. 2015 attention)
}


def _model_class(family: str):
    import importlib
    if family not in REGISTRY:
        raise ValueError(f"unknown model family {family!r}. Known families: {', '.join(REGISTRY)}")
    module, name = REGISTRY[family][1].split(":")
    return getattr(importlib.import_module(module), name)


def build_model(family: str, config: Config | dict[str, Any] | str):
    """Build a freshly initialised model. `config`: a Config, a dict of fields, or a preset name."""
    cls = _model_class(family)
    config_cls = REGISTRY[family][0]
    if isinstance(config, str):
        config = config_cls.preset(config)
    elif isinstance(config, dict):
        config = config_cls.from_dict(config)
    return cls(config)


def save_model(model, directory: str | Path) -> None:
    """Write directory/config.json ({"family": ..., **config}) and directory/model.safetensors, each atomically."""
    from safetensors.torch import save_file
    directory = Path(directory)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write_json(directory / "config.json", {"family": model.config.family, **model.config.to_dict()})


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


def load_model(directory: str | Path):
    """Load an lmforge model directory written by save_model (or a training run)."""
    directory = Path(directory)
    config = read_config(directory)
    family = config.pop("family", None)
    if family is None:
        raise ValueError(f"{directory}/config.json has no 'family' key: not an lmforge model directory")
    model = build_model(family, config)
    load_state(model, read_safetensors(directory / "model.safetensors"), str(directory / "model.safetensors"))
    return model


def read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not directory.exists():
        raise FileNotFoundError(f"{directory} does not exist")
    if not path.exists():
        raise FileNotFoundError(f"{directory} has no config.json: not a model directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the file is corrupt") from None


def read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the checkpoint has no weights")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is corrupt or not a safetensors file ({e})") from None
