"""Span metrics on cases worked by hand, and entity F1 equal to seqeval's on the same sequences."""
import random

import pytest

from lmforge.eval.spans import chunks, entity_f1, exact_match, normalize_answer, qa_f1, squad_scores


def test_squad_normalisation_and_scores_by_hand():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert exact_match("The Eiffel Tower", "eiffel tower.") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    # prediction tokens [in, eiffel, tower] vs [eiffel, tower]: P 2/3, R 1 -> F1 0.8
    assert qa_f1("in the Eiffel Tower", "Eiffel Tower") == pytest.approx(0.8)
    # repeated tokens are clipped: [a1, a1, a1] vs [a1]: common 1, P 1/3, R 1 -> 0.5
    assert qa_f1("a1 a1 a1", "a1") == pytest.approx(0.5)
    assert qa_f1("", "tower") == 0.0 and qa_f1("the", "a") == 0.0  # both normalise to nothing: no common token
    s = squad_scores(["Eiffel Tower", "Paris"], ["the Eiffel Tower", "London"])
    assert s == {"exact_match": 0.5, "f1": 0.5, "n": 2}
    with pytest.raises(ValueError, match="pair up"):
        squad_scores(["a"], [])


def test_chunks_follow_conlleval():
    assert chunks(["B-PER", "I-PER", "O", "I-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]  # I after O starts one
    assert chunks(["B-X", "B-X", "I-X"]) == [("X", 0, 1), ("X", 1, 3)]
    assert chunks(["B-X", "I-Y", "I-Y"]) == [("X", 0, 1), ("Y", 1, 3)]  # a type change ends and starts
    assert chunks(["O", "O"]) == [] and chunks([]) == []
    with pytest.raises(ValueError, match="not BIO"):
        chunks(["E-X"])


def test_entity_f1_by_hand():
    true = [["B-X", "I-X", "O", "B-Y"], ["O", "B-X"]]
    pred = [["B-X", "I-X", "O", "B-X"], ["O", "O"]]
    # 3 true entities, 2 predicted, 1 right: P 1/2, R 1/3, F1 0.4
    r = entity_f1(true, pred)
    assert (r["precision"], r["recall"], r["n_true"], r["n_pred"]) == (0.5, 1 / 3, 3, 2)
    assert r["f1"] == pytest.approx(0.4)
    assert entity_f1([["O"]], [["O"]])["f1"] == 0.0
    with pytest.raises(ValueError, match="one tag per token"):
        entity_f1([["O", "O"]], [["O"]])


def test_entity_f1_equals_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = random.Random(0)
    tags = ["O", "B-TERM", "I-TERM", "B-X", "I-X"]
    for trial in range(200):
        n = rng.randint(1, 6)
        true = [[rng.choice(tags) for _ in range(rng.randint(1, 8))] for _ in range(n)]
        pred = [[rng.choice(tags) for _ in t] for t in true]
        if trial % 5 == 0:
            pred = [list(t) for t in true]
        ours = entity_f1(true, pred)
        assert ours["precision"] == pytest.approx(seqeval.precision_score(true, pred, zero_division=0))
        assert ours["recall"] == pytest.approx(seqeval.recall_score(true, pred, zero_division=0))
        assert ours["f1"] == pytest.approx(seqeval.f1_score(true, pred, zero_division=0))
