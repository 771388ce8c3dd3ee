"""Training: a model-agnostic Trainer, AdamW groups and schedules, atomic checkpoints."""
from lmforge.train.checkpoint import load_checkpoint, save_checkpoint
from lmforge.train.loop import Trainer
from lmforge.train.optim import Schedule, build_optimizer, param_groups
from lmforge.train.precision import choose_dtype

__all__ = ["Trainer", "choose_dtype", "Schedule", "build_optimizer", "param_groups", "save_checkpoint", "load_checkpoint"]
