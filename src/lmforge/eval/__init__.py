"""Evaluation: BLEU and chrF through sacrebleu, BLEU by source length, placeholder accuracy."""
from lmforge.eval.translation import bleu_by_length, placeholder_accuracy, score_translations

__all__ = ["score_translations", "bleu_by_length", "placeholder_accuracy"]
