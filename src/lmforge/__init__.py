"""lmforge: build, train, inspect and serve the Transformer family of language models from scratch.

Heavy modules (torch, models) are imported on first use, so `import lmforge` stays cheap.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load": "lmforge.loading",
    "quantize": "lmforge.quantization",
    "embed": "lmforge.embedding",
    "GPT": "lmforge.models.gpt.model",
    "GPTConfig": "lmforge.models.gpt.config",
    "ModelOutput": "lmforge.models.outputs",
    "build_model": "lmforge.models",
    "save_model": "lmforge.models",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmforge' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
