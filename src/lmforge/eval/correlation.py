"""Correlation of two lists of numbers: Pearson's r and Spearman's rho (Pearson's r of the ranks, ties given
their average rank). How well a reward model agrees with the scorer it learnt from.

    >>> pearson([1, 2, 3], [2, 4, 7])
    0.9933992677987828
    >>> spearman([1, 2, 3], [2, 4, 7]), spearman([1, 2, 2], [3, 1, 1])
    (1.0, -1.0)
"""
from __future__ import annotations

import math


def pearson(x: list[float], y: list[float]) -> float | None:
    """Pearson's correlation coefficient; None when either list is constant (no variance to correlate)."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"correlation needs two lists of the same length >= 2, got {len(x)} and {len(y)}")
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def ranks(x: list[float]) -> list[float]:
    """1-based ranks, tied values sharing their average rank. Example: [10, 30, 20, 20] -> [1, 4, 2.5, 2.5]."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    out = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (ties averaged, as scipy.stats.spearmanr); None when either list is constant."""
    return pearson(ranks(x), ranks(y))
