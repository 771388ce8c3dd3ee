"""Evaluation: BLEU and chrF through sacrebleu, BLEU by source length, placeholder accuracy; span metrics
(SQuAD exact match and token F1, entity F1 over BIO tags)."""
from lmforge.eval.spans import entity_f1, exact_match, qa_f1, squad_scores
from lmforge.eval.translation import bleu_by_length, placeholder_accuracy, score_translations

__all__ = ["score_translations", "bleu_by_length", "placeholder_accuracy", "exact_match", "qa_f1", "squad_scores",
           "entity_f1"]
