"""How often can a midpoint of two sisters beat both sisters as a guess of their parent?

The ancestor score asks whether the AE decoded at the midpoint of two sister species'
codes is nearer their true parent than either sister's own AE. Even with the sisters'
true traits in hand, the midpoint of the traits is not always nearer the parent than both
sisters' traits: the parent is not at the midpoint. This module gives the two yardsticks
the report puts beside the score.

*On the world's own cherries* (:func:`midpoint_wins`): whether the midpoint of the
sisters' true traits is nearer (Euclidean) the parent's true traits than both sisters'.

*Under Brownian motion* (:func:`brownian_midpoint_wins`): with equal sister branches the
sisters' displacements from the parent are ``a, b`` i.i.d. ``N(0, s I_k)``. Writing
``u = (a + b) / sqrt 2`` and ``v = (a - b) / sqrt 2`` (again i.i.d.), the midpoint wins,
``|a + b|^2 / 4 < min(|a|^2, |b|^2)``, exactly when ``|v|^2 > 2 |u . v|``; and as
``u . v = |v| Z`` with ``Z ~ N(0, 1)`` independent of ``|v|^2 ~ s chi^2_k``, its
probability is ``P(F(1, k) < k / 4)``, whatever the rate and branch length. It is 0.295
for one trait (``2 arctan(1/2) / pi``), 0.550 for three, 0.805 for eight and 0.937 for
sixteen: a midpoint ancestor can win in 80% of cherries only with eight traits or more.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import f as f_dist

__all__ = ["brownian_midpoint_wins", "midpoint_wins"]


def midpoint_wins(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether the midpoint of ``a`` and ``b`` is nearer ``parent`` than both are, per row.

    Parameters
    ----------
    parent, a, b
        ``[C, k]`` points: a parent and its two children, one cherry per row.

    Returns
    -------
    np.ndarray
        ``[C]`` bool; ties count as losses.
    """
    parent, a, b = (np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in (parent, a, b))
    if not parent.shape == a.shape == b.shape:
        shapes = ", ".join(str(v.shape) for v in (parent, a, b))
        raise ValueError(f"parent, a and b must share a shape, got {shapes}")
    mid = ((0.5 * (a + b) - parent) ** 2).sum(1)
    return mid < np.minimum(((a - parent) ** 2).sum(1), ((b - parent) ** 2).sum(1))


def brownian_midpoint_wins(k: int) -> float:
    """Probability that two sisters' midpoint is nearer their parent than both, under
    Brownian motion in ``k`` independent traits with equal sister branches:
    ``P(F(1, k) < k / 4)`` (module docstring)."""
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return float(f_dist.cdf(k / 4, 1, int(k)))
