"""Losses as plain functions of logits and targets: the paper's formula, one function each."""
from lmforge.objectives.label_smoothing import label_smoothed_cross_entropy

__all__ = ["label_smoothed_cross_entropy"]
