"""Pearson's r and Spearman's rho (ties averaged) against scipy.stats on random and tied data."""
import random

import pytest

from lmforge.eval.correlation import pearson, ranks, spearman


def test_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    x = [rng.gauss(0, 1) for _ in range(50)]
    y = [a + rng.gauss(0, 1) for a in x]
    tied = [round(a * 4) / 4 for a in y]  # scores in quarters, as the poem scorer's: many ties
    for a, b in ((x, y), (x, tied), (tied, [round(v) for v in x])):
        assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-12)
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)


def test_worked_examples_and_edge_cases():
    assert ranks([10, 30, 20, 20]) == [1, 4, 2.5, 2.5]
    assert spearman([1, 2, 3], [2, 4, 7]) == 1.0 and spearman([1, 2, 3], [3, 2, 1]) == -1.0
    assert pearson([1, 1, 1], [1, 2, 3]) is None  # a constant list has nothing to correlate
    with pytest.raises(ValueError, match="same length >= 2"):
        pearson([1.0], [2.0])
