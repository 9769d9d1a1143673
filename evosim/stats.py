"""Correlations of two vectors, as used by every score in evosim (one definition each)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["pearson", "spearman"]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two vectors of the same length.

    Returns
    -------
    float
        ``NaN`` when either vector is constant or they have fewer than two entries.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"vectors of different lengths: {x.size} and {y.size}")
    if x.size < 2:
        return float("nan")
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return float(np.dot(x, y) / den) if den > 0 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: :func:`pearson` of the ranks (ties get their mean rank)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"vectors of different lengths: {x.size} and {y.size}")
    if x.size < 2:
        return float("nan")
    return pearson(rankdata(x), rankdata(y))
