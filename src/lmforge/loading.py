"""lmforge.load(path): one entry point for lmforge run/model directories and Hugging Face checkpoints."""
from __future__ import annotations

from pathlib import Path


def load(path: str | Path, *, base_only: bool = False):
    """Load a model from an lmforge directory (config.json with "family") or a Hugging Face
    checkpoint directory (config.json with "model_type" + model.safetensors or pytorch_model.bin).
    base_only: for a wrapped model (an adapter, a reward head), the family model inside it."""
    from lmforge.convert.hf import is_hf_directory, load_hf
    from lmforge.models import load_model
    path = Path(path)
    if is_hf_directory(path):
        return load_hf(path)
    return load_model(path, base_only=base_only)
