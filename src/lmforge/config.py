"""Typed, serialisable configs. No torch import: a config can be read, validated and printed anywhere.

Every config is a dataclass derived from `Config`, validated in `__post_init__`, with named presets:

    >>> from lmforge.config import GPTConfig
    >>> GPTConfig.preset("gpt-tiny").d_model
    64
    >>> GPTConfig.from_dict({"d_modle": 64})
    Traceback (most recent call last):
    ...
    ValueError: GPTConfig: unknown key 'd_modle'. Allowed keys: ...
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, ClassVar


class Config:
    """Base for all configs: to_dict / from_dict / from_file / preset, with clear errors."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def allowed_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, ignore: tuple[str, ...] = ()):
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__}: expected a mapping of keys to values, got {type(d).__name__}")
        hints = typing.get_type_hints(cls)
        allowed = cls.allowed_keys()
        kwargs = {}
        for key, value in d.items():
            if key in ignore:
                continue
            if key not in allowed:
                raise ValueError(f"{cls.__name__}: unknown key {key!r}. Allowed keys: {', '.join(allowed)}")
            kwargs[key] = _coerce(cls.__name__, key, value, hints[key])
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml
            d = yaml.safe_load(text) or {}
        else:
            d = json.loads(text)
        return cls.from_dict(d)

    @classmethod
    def preset(cls, name: str, **overrides):
        if name not in cls.PRESETS:
            raise ValueError(f"{cls.__name__}: unknown preset {name!r}. Available: {', '.join(cls.PRESETS)}")
        return cls.from_dict({**cls.PRESETS[name], **overrides})

    def replace(self, **changes):
        return type(self).from_dict({**self.to_dict(), **changes})


def _coerce(owner: str, key: str, value: Any, hint: Any) -> Any:
    """Check `value` against the annotation `hint`; allow int -> float and str from `--set k=v`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(owner, key, value, a)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{owner}: {key}={value!r} is not allowed. Allowed values: {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{owner}: {key} must be a list, got {value!r}")
        return origin(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{owner}: {key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"{owner}: {key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"{owner}: {key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{owner}: {key} must be a number, got {value!r}")
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{owner}: {key} must be a string, got {value!r}")
        return value
    return value


def _check(cond: bool, owner: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{owner}: {msg}")


Activation = typing.Literal["relu", "gelu", "gelu_tanh", "swiglu", "geglu"]


@dataclasses.dataclass
class GPTConfig(Config):
    """GPT-1/GPT-2-style decoder: learned positions, pre-norm blocks + final LayerNorm, GELU MLP, tied head."""

    vocab_size: int = 50257  # GPT-2 BPE: 50,000 merges + 256 bytes + <|endoftext|>
    max_len: int = 1024  # context length (GPT-2: 1024)
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 0  # 0 means 4 * d_model (GPT-2)
    dropout: float = 0.0  # GPT-2 used 0.1 for pretraining; 0 is better for small/short runs (nanoGPT)
    bias: bool = True  # GPT-2 has biases in linears and LayerNorms
    norm_eps: float = 1e-5  # GPT-2 layer_norm_epsilon
    activation: Activation = "gelu_tanh"  # GPT-2 uses the tanh approximation of GELU
    tie_embeddings: bool = True  # output projection shares the token embedding (GPT-2)

    family: ClassVar[str] = "gpt"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "gpt-tiny": dict(vocab_size=256, max_len=128, d_model=64, n_heads=4, n_layers=2),
        # nanoGPT's CPU recipe for shakespeare-char: 4 layers, 4 heads, width 128, block 64
        "gpt-mini": dict(vocab_size=256, max_len=64, d_model=128, n_heads=4, n_layers=4),
        "gpt-small-char": dict(vocab_size=256, max_len=256, d_model=384, n_heads=6, n_layers=6),
        "gpt1": dict(vocab_size=40478, max_len=512, d_model=768, n_heads=12, n_layers=12, activation="gelu"),
        "gpt2": dict(),  # 124M
        "gpt2-medium": dict(d_model=1024, n_heads=16, n_layers=24),
        "gpt2-large": dict(d_model=1280, n_heads=20, n_layers=36),
        "gpt2-xl": dict(d_model=1600, n_heads=25, n_layers=48),
    }

    def __post_init__(self):
        n = type(self).__name__
        for k in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers"):
            _check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        _check(self.d_model % self.n_heads == 0, n, f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        _check(0.0 <= self.dropout < 1.0, n, f"dropout must be in [0, 1), got {self.dropout}")
        _check(self.d_ff >= 0, n, f"d_ff must be >= 0 (0 means 4*d_model), got {self.d_ff}")
        if self.d_ff == 0:
            self.d_ff = 4 * self.d_model
