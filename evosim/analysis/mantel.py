"""Mantel permutation tests of several distance matrices against one, sharing permutations.

Every method's distances are tested against the same true distances. The test statistic
of a permutation is a dot product of one method's centred distances with the permuted
truth, so one permuted truth serves every method: per permutation the truth is gathered
once and multiplied with all methods' distances in one matrix product. Each method keeps
its own sequential stopping rule, and its p-value is exactly the one a test of that method
alone, drawing the same permutations, would give.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numba
import numpy as np
import torch

from evosim.stats import pearson

__all__ = ["MANTEL_HITS", "mantel", "mantel_null_mean", "mantel_tests"]

#: Sequential Mantel test: stop once this many permutations reach the observed statistic.
MANTEL_HITS = 20
#: Permutations drawn per batch (the results do not depend on it, only the time).
_BATCH = 64
#: Bytes of permuted truth gathered at once (rows per block follow from it).
_BLOCK_BYTES = 64 * 2**20
#: Ties: a permutation counts when its statistic is at least the observed one less this.
_TIE = 1e-12


@numba.njit(cache=True, parallel=True)
def _gather_block(d: np.ndarray, perms: np.ndarray, r0: int, out: np.ndarray) -> None:
    """``out[b, i, j - r0] = d[perms[b, r0 + i], perms[b, j]]`` for ``j >= r0``."""
    rows = out.shape[1]
    n = perms.shape[1]
    for b in numba.prange(perms.shape[0]):
        s = perms[b]
        for i in range(rows):
            row = d[s[r0 + i]]
            o = out[b, i]
            for j in range(r0, n):
                o[j - r0] = row[s[j]]


def _permuted_block(
    d: torch.Tensor, perms: torch.Tensor, r0: int, r1: int, d_np: np.ndarray | None
) -> torch.Tensor:
    """Rows ``r0:r1``, columns ``r0:`` of ``d[p][:, p]`` for every permutation ``p``."""
    n = perms.shape[1]
    if d_np is not None:  # CPU: a compiled gather, 6x torch's advanced indexing
        out = np.empty((perms.shape[0], r1 - r0, n - r0))
        # as many threads as torch was given (a sweep pins each task to its share)
        threads = torch.get_num_threads()
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        try:
            _gather_block(d_np, perms.numpy(), r0, out)
        finally:
            # numba's OpenMP layer shares the process's OpenMP runtime with torch, and
            # starting its pool resets that runtime's thread count: give torch its own back
            torch.set_num_threads(threads)
        return torch.from_numpy(out)
    return d[perms[:, r0:r1].unsqueeze(-1), perms[:, r0:].unsqueeze(1)]


def _centred_block(
    mats: Sequence[torch.Tensor], means: Sequence[float], r0: int, r1: int
) -> torch.Tensor:
    """``[k, (r1 - r0) * (n - r0)]``: rows ``r0:r1``, columns ``r0:`` of each centred matrix,
    zero on and below the diagonal, so that the blocks together cover each pair once."""
    block = torch.stack([m[r0:r1, r0:] - mu for m, mu in zip(mats, means)])
    rows = r1 - r0
    block[:, :, :rows] = torch.triu(block[:, :, :rows], diagonal=1)
    return block.reshape(len(mats), -1)


def mantel_tests(
    reference: np.ndarray,
    others: Sequence[np.ndarray],
    permutations: int = 999,
    rng: np.random.Generator | None = None,
    *,
    device: str | torch.device = "cpu",
    stop_after: int = MANTEL_HITS,
) -> list[tuple[float, float]]:
    """Mantel tests of each matrix in ``others`` against ``reference``, on shared permutations.

    For each ``d2`` in ``others``: Pearson r of the upper triangles of ``reference`` and ``d2``
    and its one-sided permutation p-value, with the rows and columns of ``d2`` permuted
    together. The p-value follows the precision the permutations can give, by sequential
    stopping (Besag & Clifford 1991): permutations are drawn until ``stop_after`` (h) of
    them reach the observed r, or ``permutations`` (P) have been drawn. Stopped after L
    draws, ``p = h / L`` (relative standard error about ``1 / sqrt(h)``); otherwise
    ``p = (1 + hits) / (1 + P)``, the fixed-size test. Both are exact p-values; a large r
    costs all P permutations, a small one only about ``h / p``. ``stop_after >= P + 1``
    gives the fixed-size test. With at most P distinct permutations (``n! <= P``) every one
    is enumerated and p is the exact permutation p-value.

    All tests draw the same permutations from ``rng``, so each result equals that of
    :func:`mantel` on its own pair with a generator in the same state. Permuting ``d2`` by
    a permutation and ``reference`` by its inverse give the same statistic; the computation
    does the latter, once per permutation for all of ``others``.

    Parameters
    ----------
    reference : array_like, [n, n]
        Symmetric distance matrix with zero diagonal (e.g. the true distances).
    others : sequence of array_like, [n, n]
        Symmetric distance matrices, each tested against ``reference``.
    permutations : int
        At most this many permutations per test (0: every p is ``NaN``).
    rng : numpy.random.Generator
        Draws the permutations.
    device : str or torch.device
        Where the permuted products run (default CPU; never chosen here).
    stop_after : int
        h, the number of permutations reaching r that stops a test.

    Returns
    -------
    list of (r, p)
        In the order of ``others``.

    References
    ----------
    Mantel (1967) Cancer Res. 27:209. Besag & Clifford (1991) Biometrika 78:301.
    """
    d1 = np.ascontiguousarray(reference, dtype=np.float64)
    n = d1.shape[0]
    iu0, iu1 = np.triu_indices(n, k=1)
    a = d1[iu0, iu1]
    mats = [np.ascontiguousarray(d, dtype=np.float64) for d in others]
    for d in mats:
        if d.shape != d1.shape:
            raise ValueError(f"Mantel test: matrix shape {d.shape} differs from {d1.shape}")
    if not mats:
        return []
    rs, means, norms = [], [], []
    for d in mats:  # one upper triangle at a time: at 10,000 species each is 400 MB
        b = d[iu0, iu1]
        rs.append(pearson(a, b))
        means.append(float(b.mean()))
        norms.append(float(np.linalg.norm(b - means[-1])))
    del b, iu0, iu1
    ps = [float("nan")] * len(mats)
    todo = [m for m, r in enumerate(rs) if np.isfinite(r)]
    if permutations <= 0 or not todo:
        return [(float(r), p) for r, p in zip(rs, ps)]
    if rng is None:
        raise ValueError("mantel needs rng (a numpy Generator) to draw permutations")
    device = torch.device(device)
    a_norm = float(np.linalg.norm(a - a.mean()))
    del a
    means = [means[m] for m in todo]
    # statistic = sum over pairs of (d2 - mean) * permuted reference / (|a_c| |b_c|): the
    # permuted reference keeps its mean and norm, and the centred d2 sums to 0
    scale = np.array([1.0 / (a_norm * norms[m]) for m in todo])
    threshold = np.array([rs[m] for m in todo]) - _TIE
    d_t = torch.as_tensor(d1, device=device)
    d_np = d1 if device.type == "cpu" else None
    mats_t = [torch.as_tensor(mats[m], device=device) for m in todo]
    rows = max(1, min(n, _BLOCK_BYTES // (8 * n * _BATCH)))

    def statistics(perms: torch.Tensor, active: np.ndarray) -> np.ndarray:
        out = torch.zeros(perms.shape[0], active.size, dtype=torch.float64, device=device)
        act_mats = [mats_t[k] for k in active]
        act_means = [means[k] for k in active]
        for r0 in range(0, n - 1, rows):
            r1 = min(r0 + rows, n)
            g = _permuted_block(d_t, perms, r0, r1, d_np).reshape(perms.shape[0], -1)
            out += g @ _centred_block(act_mats, act_means, r0, r1).T
        return out.cpu().numpy() * scale[active]

    if math.factorial(n) <= permutations:
        perms = torch.as_tensor(list(itertools.permutations(range(n))), device=device)
        stats = statistics(perms, np.arange(len(todo)))
        for k, m in enumerate(todo):
            ps[m] = float(np.count_nonzero(stats[:, k] >= threshold[k])) / len(perms)
        return [(float(r), p) for r, p in zip(rs, ps)]
    hits = np.zeros(len(todo), dtype=np.int64)
    active = np.arange(len(todo))
    drawn = 0
    while drawn < permutations and active.size:
        m = min(_BATCH, permutations - drawn)
        draws = np.argsort(rng.random((m, n)), axis=1)
        # the statistic of d2 permuted by p is that of the reference permuted by p's inverse
        inverse = torch.as_tensor(np.argsort(draws, axis=1), device=device)
        stats = statistics(inverse, active)
        still = []
        for col, k in enumerate(active):
            counted = np.cumsum(stats[:, col] >= threshold[k])
            if hits[k] + counted[-1] >= stop_after:
                at = int(np.searchsorted(counted, stop_after - hits[k])) + 1
                ps[todo[k]] = float(stop_after / (drawn + at))
            else:
                hits[k] += int(counted[-1])
                still.append(k)
        active = np.asarray(still, dtype=np.int64)
        drawn += m
    for k in active:
        ps[todo[k]] = float((1.0 + hits[k]) / (1.0 + permutations))
    return [(float(r), p) for r, p in zip(rs, ps)]


def mantel(
    d1: np.ndarray,
    d2: np.ndarray,
    permutations: int = 999,
    rng: np.random.Generator | None = None,
    *,
    device: str | torch.device = "cpu",
    stop_after: int = MANTEL_HITS,
) -> tuple[float, float]:
    """Mantel test: Pearson r of the upper triangles and its one-sided permutation p-value.

    The rows and columns of ``d2`` are permuted together; the p-value is sequential (see
    :func:`mantel_tests`, of which this is the one-matrix case).

    Parameters
    ----------
    d1, d2 : array_like, [n, n]
        Symmetric distance matrices with zero diagonal.
    permutations : int
        At most this many permutations (0: ``p`` is ``NaN``).
    rng : numpy.random.Generator
        Draws the permutations.
    device : str or torch.device
        Where the permuted products run (default CPU; never chosen here).
    stop_after : int
        h, the number of permutations reaching ``r`` that stops the test.

    Returns
    -------
    (r, p)
    """
    return mantel_tests(d1, [d2], permutations, rng, device=device, stop_after=stop_after)[0]


def mantel_null_mean(permutations: int, stop_after: int = MANTEL_HITS) -> float:
    """Expected :func:`mantel` p-value under the null (no association, continuous statistics).

    The observed statistic's tail probability u is uniform, each permutation reaches it
    with probability u, and integrating the sequential rule over u gives
    ``h^2 sum_{L=h}^{P} 1 / (L^2 (L + 1)) + h (h + 1) / (2 (P + 1)^2)`` (h = ``stop_after``;
    ``(P + 2) / (2 (P + 1))`` for the fixed-size test, h = P + 1).
    """
    P, h = int(permutations), int(stop_after)
    if P <= 0:
        return float("nan")
    h = min(h, P + 1)
    L = np.arange(h, P + 1, dtype=np.float64)
    return float(h * h * np.sum(1.0 / (L * L * (L + 1.0))) + h * (h + 1) / (2.0 * (P + 1) ** 2))
