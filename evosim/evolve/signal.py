"""Phylogenetic signal of a continuous trait: Blomberg's K and its randomisation test.

``K`` compares how much tip values vary around their phylogenetic mean, relative to how
much they vary given the tree, with what Brownian motion on that tree predicts (Blomberg,
Garland & Ives 2003). With ``C`` the Brownian covariance of the tips (shared root-path
lengths), ``a`` the GLS estimate of the root value and ``n`` tips::

    MSE0 = (x - a)'(x - a) / (n - 1)          MSE = (x - a)' C^-1 (x - a) / (n - 1)
    K = (MSE0 / MSE) / ((tr C - n / (1' C^-1 1)) / (n - 1))

The denominator is the exact expectation of ``MSE0 / MSE`` under Brownian motion (of
any rate): whitening by ``C^-1/2`` turns the residual into an isotropic Gaussian on an
(n-1)-dimensional subspace, whose direction is uniform on the sphere and independent of
its length, so the ratio of the two quadratic forms has expectation ``tr(M C M) / (n-1)``
with ``M`` the projection that removes the mean. Hence ``E[K] = 1`` exactly under
Brownian motion, ``K < 1`` when close relatives resemble each other less than that (e.g.
strong stabilising selection, or no signal: ``K`` near 0 on shuffled tips), ``K > 1``
when more. On a star tree ``K = 1`` for every ``x``.

References
----------
Blomberg S.P., Garland T., Ives A.R. (2003) Testing for phylogenetic signal in comparative
data: behavioral traits are more labile. Evolution 57:717-745.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import cho_factor, cho_solve

__all__ = ["blomberg_k", "blomberg_k_test", "phylogenetic_covariance"]


def phylogenetic_covariance(
    tree,  # noqa: ANN001 - Phylogeny
    species: Sequence[str] | None = None,
) -> np.ndarray:
    """``[S, S]`` shared root-path lengths of ``species`` (the Brownian covariance per sigma^2).

    Parameters
    ----------
    tree
        A rooted :class:`~evosim.phylo.Phylogeny` with branch lengths.
    species
        Leaves (or any nodes) to include, in order; default: the extant leaves.

    Returns
    -------
    np.ndarray
        ``C[i, j]`` = length of the path from the root shared by ``species[i]`` and
        ``species[j]``; ``C[i, i]`` = the root-to-node length.
    """
    from evosim.evolve.propagate import tree_arrays

    species = list(tree.extant_leaves if species is None else species)
    arr = tree_arrays(tree)
    index = {name: i for i, name in enumerate(arr.nodes)}
    # below[s, v] = 1 if node v is on the root path of species s (v itself included).
    below = np.zeros((len(species), arr.n))
    for row, name in enumerate(species):
        v = index[name]
        while v >= 0:
            below[row, v] = 1.0
            v = int(arr.parent[v])
    return (below * arr.length) @ below.T


def _as_columns(x: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    x = np.asarray(x, dtype=np.float64)
    single = x.ndim == 1
    x = x[:, None] if single else x
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"traits must be [n] or [n, m] with n = {n} tips, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("traits must be finite")
    return x, single


def blomberg_k(x: np.ndarray, cov: np.ndarray) -> float | np.ndarray:
    """Blomberg's K of one trait ``[n]``, or of each column of ``[n, m]`` (see the module).

    Parameters
    ----------
    x
        Tip values, in the order of ``cov``'s rows.
    cov
        ``[n, n]`` Brownian covariance of the tips
        (:func:`phylogenetic_covariance`), positive definite.

    Returns
    -------
    float or np.ndarray
        K (``[m]`` for ``[n, m]`` input). A column with no variation gives NaN.

    Raises
    ------
    ValueError
        Shapes disagree, or ``cov`` is not positive definite, or ``n < 3``.
    """
    cov = np.asarray(cov, dtype=np.float64)
    n = cov.shape[0]
    if cov.shape != (n, n) or n < 3:
        raise ValueError(f"cov must be a square matrix over >= 3 tips, got shape {cov.shape}")
    xs, single = _as_columns(x, n)
    try:
        factor = cho_factor(cov, lower=True)
    except np.linalg.LinAlgError:
        raise ValueError("cov must be positive definite") from None
    ones = np.ones(n)
    c_inv_1 = cho_solve(factor, ones)
    s = ones @ c_inv_1
    root = (c_inv_1 @ xs) / s  # GLS root estimate per column
    r = xs - root[None, :]
    mse0 = np.sum(r * r, axis=0) / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = np.sum(r * cho_solve(factor, r), axis=0) / (n - 1)
        expected = (np.trace(cov) - n / s) / (n - 1)
        k = (mse0 / mse) / expected
    k = np.where(mse > 0, k, np.nan)
    return float(k[0]) if single else k


def blomberg_k_test(
    x: np.ndarray,
    cov: np.ndarray,
    *,
    permutations: int = 999,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Blomberg's K of one trait and its randomisation p-value (tip values shuffled).

    Parameters
    ----------
    x
        ``[n]`` tip values.
    cov
        ``[n, n]`` Brownian covariance of the tips.
    permutations
        Number of shuffles ``P``.
    rng
        Generator for the shuffles.

    Returns
    -------
    (K, p)
        ``p = (1 + #{K_shuffled >= K}) / (P + 1)``: the chance of a K at least this large
        if the values were unrelated to the tree (Blomberg et al. 2003).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be one trait [n], got shape {x.shape}")
    k = blomberg_k(x, cov)
    shuffled = np.stack([rng.permutation(x) for _ in range(permutations)], axis=1)
    null = blomberg_k(shuffled, cov)
    return float(k), float((1 + np.count_nonzero(null >= k)) / (permutations + 1))
