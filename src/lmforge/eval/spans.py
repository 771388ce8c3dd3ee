"""Span metrics: extractive QA (exact match and token F1, as SQuAD's official evaluation script v1.1,
Rajpurkar et al. 2016) and entity F1 over BIO tag sequences (the CoNLL-2000 conlleval chunk rules,
which seqeval's default mode follows; Tjong Kim Sang & Buchholz 2000).

    >>> exact_match("The Eiffel Tower", "eiffel tower.")
    1.0
    >>> round(qa_f1("in the Eiffel Tower", "Eiffel Tower"), 3)
    0.8
    >>> chunks(["B-PER", "I-PER", "O", "I-LOC"])
    [('PER', 0, 2), ('LOC', 3, 4)]
"""
from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation, drop the articles a/an/the, squeeze spaces.

    Example: "The  Eiffel-Tower!" -> "eiffeltower"
    """
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 if the two answers are equal after normalize_answer, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def qa_f1(prediction: str, truth: str) -> float:
    """Token-level F1 between two answers after normalize_answer (bag of tokens, counts clipped).

    Example: prediction "in the Eiffel Tower" -> [in, eiffel, tower], truth [eiffel, tower]:
    precision 2/3, recall 1, F1 0.8.
    """
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], truths: list[str]) -> dict:
    """Mean exact match and F1 over pairs (fractions in [0, 1]) -> {exact_match, f1, n}."""
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions but {len(truths)} answers: they must pair up one to one")
    if not truths:
        raise ValueError("nothing to score: no answers")
    n = len(truths)
    return {"exact_match": sum(map(exact_match, predictions, truths)) / n,
            "f1": sum(map(qa_f1, predictions, truths)) / n, "n": n}


def _split_tag(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I") or not kind:
        raise ValueError(f"tag {tag!r} is not BIO: use 'O', 'B-<type>' or 'I-<type>'")
    return prefix, kind


def chunks(tags: list[str]) -> list[tuple[str, int, int]]:
    """The entities of one BIO sequence as (type, start, end) token spans, end exclusive.

    conlleval's rules: an entity starts at B-x, or at I-x after O or after a tag of another type
    (an I with no B still counts); it ends before O, B-, or a tag of another type.
    Example: ["B-PER", "I-PER", "O", "I-LOC"] -> [("PER", 0, 2), ("LOC", 3, 4)]
    """
    out, start, kind = [], None, ""
    for i, tag in enumerate(list(tags) + ["O"]):  # the sentinel O closes a trailing entity
        prefix, k = _split_tag(tag)
        if start is not None and (prefix in ("B", "O") or k != kind):
            out.append((kind, start, i))
            start = None
        if start is None and prefix != "O":
            start, kind = i, k
    return out


def entity_f1(true_seqs: list[list[str]], pred_seqs: list[list[str]]) -> dict:
    """Micro-averaged entity precision, recall and F1 over sentences (an entity is right only if its type,
    start and end all match) -> {precision, recall, f1, n_true, n_pred}. Zero where undefined, as seqeval.

    Example: true [["B-X", "I-X", "O"]], predicted [["B-X", "O", "O"]] -> precision 0, recall 0, F1 0.
    """
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} true sequences but {len(pred_seqs)} predicted: they must pair up")
    n_true = n_pred = correct = 0
    for i, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
        if len(t) != len(p):
            raise ValueError(f"sequence {i}: {len(t)} true tags but {len(p)} predicted; one tag per token")
        tc, pc = set(chunks(t)), set(chunks(p))
        n_true, n_pred, correct = n_true + len(tc), n_pred + len(pc), correct + len(tc & pc)
    precision = correct / n_pred if n_pred else 0.0
    recall = correct / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_true": n_true, "n_pred": n_pred}
