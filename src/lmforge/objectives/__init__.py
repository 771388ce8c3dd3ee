"""Losses as plain functions: the paper's formula, one function each; LossOutput carries a loss and its metrics."""
from lmforge.objectives.distill import cosine_loss, distillation_loss, soft_target_loss
from lmforge.objectives.label_smoothing import label_smoothed_cross_entropy
from lmforge.objectives.mlm import bert_pretraining_loss
from lmforge.objectives.output import LossOutput
from lmforge.objectives.preference import bradley_terry, dpo, sequence_logps

__all__ = ["LossOutput", "bert_pretraining_loss", "bradley_terry", "cosine_loss", "distillation_loss", "dpo",
           "label_smoothed_cross_entropy", "sequence_logps", "soft_target_loss"]
