"""Correlations of two vectors, as used by every score in evosim (one definition each)."""

from __future__ import annotations

import numpy as np

__all__ = ["pearson", "ranks", "spearman"]


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a vector's entries, ties given their mean rank (float64).

    The ``average`` ranks of ``scipy.stats.rankdata``, from one unstable (SIMD) argsort:
    the order among tied entries does not change their mean rank, so a stable sort is
    not needed (about 3x faster at millions of entries). ``NaN`` anywhere gives all
    ``NaN``, as rankdata's default.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    out = np.empty(x.size)
    if x.size == 0:
        return out
    if np.isnan(x).any():
        out.fill(np.nan)
        return out
    order = np.argsort(x)
    xs = x[order]
    first = np.empty(x.size, dtype=bool)
    first[0] = True
    np.not_equal(xs[1:], xs[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], x.size)
    out[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return out


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
    return pearson(ranks(x), ranks(y))
