"""Training: a model-agnostic Trainer, AdamW groups and schedules, atomic checkpoints, recipes.

Names are imported on first use (lmforge.train.recipes reads run configs without importing torch).
"""
from __future__ import annotations

import importlib

_LAZY = {
    "Trainer": "lmforge.train.loop", "choose_dtype": "lmforge.train.precision",
    "Schedule": "lmforge.train.optim", "build_optimizer": "lmforge.train.optim", "param_groups": "lmforge.train.optim",
    "save_checkpoint": "lmforge.train.checkpoint", "load_checkpoint": "lmforge.train.checkpoint",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmforge.train' has no attribute {name!r}")
