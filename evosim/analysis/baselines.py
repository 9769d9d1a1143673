"""Baselines: other ways to get a distance matrix over species, scored like the MAE.

Each function returns ``[S, S]`` distances in ``bank.species`` order (member-level
features are averaged over replicates first). None of them sees the true tree;
``traits`` sees the true species traits and is the oracle.

==================  ===========================================================
``traits``          Euclidean distance between true species mean traits (oracle)
``data_mean``       mean and standard deviation of each species' instances
``data_distribution`` energy distance between the species' instance sets
                    (Szekely & Rizzo 2013), every instance read: exact, or sliced
                    energy features for many species
``raw_weights``     flattened AE parameters, unstandardised
``weight_stats``    per-layer statistics of each AE's parameters (moments,
                    quantiles, singular values): invariant to hidden-unit permutation
``functional``      the functional representation (probe outputs + whitened code
                    geometry), no MAE
``pca``             principal components of the MAE's own input, as many as the
                    code coordinates the MAE's tree is read from (``meta.tree_dims``)
``untrained_mae``   the MAE encoder at its random initialisation (the same
                    coordinates)
``mae_target``      the distances the MAE's distance term holds its codes to
                    (``meta.distance_target``), with no code: how much of the tree
                    the target has before the code must keep it
``random``          expected scores of random (Yule) trees on the same leaves
==================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import lgamma
from typing import Any

import numpy as np
import torch

from evosim.analysis.metrics import euclidean
from evosim.meta.fit import distance_target_rows
from evosim.meta.representation import flatten_params, make_probes, represent
from evosim.scenario import BASELINE_NAMES

__all__ = [
    "BASELINES",
    "baseline_distances",
    "distribution_distances",
    "energy_distances",
    "energy_subsample_size",
    "not_applicable",
    "sliced_energy_features",
    "weight_statistics",
]

BASELINES = BASELINE_NAMES  # the scenario validates against the same names

#: Baselines that read AE weights directly: they need every species to share one architecture.
WEIGHT_BASELINES = ("raw_weights", "weight_stats")

#: Budget for the energy distance: S^2 n^2 pairwise distances at most (n instances per species).
ENERGY_BUDGET = 3e8
#: Pairwise instance distances held at once by the energy distance.
ENERGY_BLOCK = 2**25
#: Sliced energy features (:func:`sliced_energy_features`): random directions, grid cells
#: per direction, and pooled points sampled to place the cells.
SLICED_DIRECTIONS = 128
SLICED_CELLS = 64
SLICED_GRID_SAMPLE = 2**16


def species_means(x: np.ndarray, replicates: int) -> np.ndarray:
    """Member rows ``[S*R, F]`` (species-major) -> species means ``[S, F]``."""
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(-1, replicates, x.shape[1]).mean(axis=1)


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)


def energy_subsample_size(species: int) -> int:
    """Instances per species :func:`energy_distances` keeps by default: ``S^2 n^2 <=
    ENERGY_BUDGET``, between 16 and 256."""
    return int(np.clip(np.sqrt(ENERGY_BUDGET) / species, 16, 256))


def energy_distances(
    instances: np.ndarray,
    rng: np.random.Generator | Sequence[np.random.Generator],
    *,
    n_max: int | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Energy distance between every pair of instance sets, ``[S, N, D] -> [S, S]``.

    ``sqrt(2 E|X - Y| - E|X - X'| - E|Y - Y'|)`` (a metric on distributions; V-statistic
    estimates). Each species is subsampled to ``n`` instances, with ``n`` chosen so that
    ``S^2 n^2 <= ENERGY_BUDGET`` (between 16 and 256), or ``n_max``, drawn from ``rng``:
    one generator for all, or one per species (then a species' subsample does not depend
    on its position). The pairwise distances are computed on ``device`` (the CPU unless
    asked otherwise).
    """
    x = np.asarray(instances, dtype=np.float32)
    s, n_all, dim = x.shape
    n = energy_subsample_size(s) if n_max is None else n_max
    n = min(n, n_all)
    gens = [rng] * s if isinstance(rng, np.random.Generator) else list(rng)
    if len(gens) != s:
        raise ValueError(f"rng: one generator, or one per species ({s}), got {len(gens)}")
    idx = np.stack([g.choice(n_all, size=n, replace=False) for g in gens])
    device = torch.device(device)
    sub = torch.as_tensor(x[np.arange(s)[:, None], idx], device=device)  # [S, n, D]
    flat = sub.reshape(s * n, dim)
    cross = torch.zeros(s, s, dtype=torch.float64)
    block = max(1, int(ENERGY_BLOCK // (n * n * s)))
    for i in range(0, s, block):
        # E|X_i - X_j| for j >= i only: the matrix is symmetric, the lower half a mirror
        d = torch.cdist(flat[i * n : (i + block) * n], flat[i * n :])  # [b*n, (S-i)*n]
        b = d.shape[0] // n
        cross[i : i + b, i:] = d.reshape(b, n, s - i, n).mean(dim=(1, 3)).double().cpu()
    cross = torch.triu(cross) + torch.triu(cross, 1).T
    within = torch.diagonal(cross)
    e = 2.0 * cross - within[:, None] - within[None, :]
    e = 0.5 * (e + e.T)
    out = e.clamp_min(0.0).sqrt().numpy()
    np.fill_diagonal(out, 0.0)
    return out


def distribution_distances(
    instances: np.ndarray, rng: np.random.Generator, *, device: torch.device | str = "cpu"
) -> np.ndarray:
    """``data_distribution``: energy distances between the species' instance sets,
    ``[S, N, D] -> [S, S]``, reading every instance.

    Exact (:func:`energy_distances` over all ``N`` instances) while
    ``S^2 N^2 <= ENERGY_BUDGET``; beyond, the Euclidean distances of
    :func:`sliced_energy_features` (directions and grid from ``rng``), within about 1% of
    the exact distances (median), where a subsample small enough for the budget would keep
    16 of 256 instances at 4,096 species and err by 1-3% (``bench/bench_sliced_energy.py``).
    Both compute on ``device``.
    """
    s, n_all = np.shape(instances)[:2]
    if float(s) ** 2 * float(n_all) ** 2 <= ENERGY_BUDGET:
        return energy_distances(instances, rng, n_max=n_all, device=device)
    return euclidean(sliced_energy_features(instances, rng, device=device).astype(np.float64))


def _random_directions(dim: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, dim]`` unit vectors, each uniform on the sphere: rows of independent random
    rotations (Haar), so directions within a block are orthogonal (less variance than
    independent draws, the same mean)."""
    blocks = []
    for _ in range(-(-n // dim)):
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        blocks.append(q * np.sign(np.diag(r))[None, :])
    return np.concatenate(blocks, axis=1).T[:n]


def _sphere_constant(dim: int) -> float:
    """``1 / E|theta_1|`` for ``theta`` uniform on the unit sphere of R^dim, so that
    ``|v| = c E|theta . v|`` for every vector ``v``."""
    return float(np.exp(0.5 * np.log(np.pi) + lgamma((dim + 1) / 2) - lgamma(dim / 2)))


def sliced_energy_features(
    clouds: np.ndarray,
    rng: np.random.Generator,
    *,
    n_directions: int = SLICED_DIRECTIONS,
    n_cells: int | None = SLICED_CELLS,
    chunk: int = 64,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Rows ``[S, F]`` whose Euclidean distances approximate the energy distances of
    point clouds ``[S, N, D]`` (those of :func:`energy_distances`, without subsampling).

    The energy distance of two distributions on R^D is ``c_D`` times the mean, over
    directions ``theta`` uniform on the sphere, of the 1-D energy distance of their
    projections on ``theta`` (because ``|v| = c_D E|theta . v|``), and a 1-D energy
    distance is ``2 * integral (F(t) - G(t))^2 dt`` for the two CDFs (Szekely & Rizzo
    2013). So each cloud's projected CDFs, read on a grid and weighted by the grid's
    spacing, are a feature vector whose squared distances are the energy distance. The
    work is linear in the number of clouds, and the distance of two clouds is one
    Euclidean distance, so a minibatch can compute it on the fly, for any number of
    clouds.

    Two approximations: ``n_directions`` random directions (rows of random rotations)
    stand for the mean over the sphere, and each direction's axis is cut into
    ``n_cells`` cells at quantiles of the pooled projections (placed from at most
    ``SLICED_GRID_SAMPLE`` pooled points drawn from ``rng``; the outer edges are the
    exact extremes), each CDF read at its cells' midpoints. ``n_cells=None`` puts an edge
    at every pooled point: then the 1-D distances are exact for the drawn directions (for
    small inputs; tests). ``F = n_directions * n_cells``. Defaults, 128 x 64: within 1% of
    the exact distances (median) on Gaussian clouds in 8 dimensions, and 0.8-1.4% on the
    MAE's behaviour target (``outline``, ``identify``, ``circles``, ``quickstart``: 2-32
    dimensions; correlation with the exact distances at least 0.996;
    ``bench/bench_sliced_energy.py``). The projections compute on ``device``, a chunk of
    clouds at a time; the clouds stay where they are.
    """
    x = torch.as_tensor(np.asarray(clouds, dtype=np.float32))
    s, n, dim = x.shape
    device = torch.device(device)
    theta = torch.as_tensor(
        _random_directions(dim, n_directions, rng), dtype=torch.float32, device=device
    )

    def projected(a: int) -> torch.Tensor:  # [chunk, N, L]
        return x[a : a + chunk].to(device) @ theta.T

    if n_cells is None:
        pooled = x.reshape(s * n, dim).to(device)
        edges = torch.sort(pooled @ theta.T, dim=0).values.T  # [L, S*N]
    else:
        take = rng.choice(s * n, size=min(s * n, SLICED_GRID_SAMPLE), replace=False)
        levels = torch.linspace(0, 1, n_cells + 1, dtype=torch.float64, device=device)
        sample = x.reshape(s * n, dim)[torch.as_tensor(np.sort(take))].to(device)
        edges = torch.quantile((sample @ theta.T).double(), levels, dim=0).T.float()  # [L, C+1]
        low = torch.full((n_directions,), float("inf"), device=device)
        high = torch.full((n_directions,), float("-inf"), device=device)
        for a in range(0, s, chunk):
            proj = projected(a).reshape(-1, n_directions)
            low = torch.minimum(low, proj.min(dim=0).values)
            high = torch.maximum(high, proj.max(dim=0).values)
        edges[:, 0], edges[:, -1] = low, high
    width = (edges[:, 1:] - edges[:, :-1]).clamp_min(0.0)
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])  # [L, C]
    scale = torch.sqrt(2.0 * _sphere_constant(dim) * width.double() / n_directions).float()
    out = np.empty((s, mids.numel()), dtype=np.float32)
    for a in range(0, s, chunk):
        proj = torch.sort(projected(a).transpose(1, 2).contiguous(), dim=2).values
        below = torch.searchsorted(proj, mids.expand(len(proj), -1, -1).contiguous(), right=True)
        out[a : a + chunk] = (below.float() / n * scale).reshape(len(proj), -1).cpu().numpy()
    # centred (distances unchanged): float32 distances of rows far from the origin would
    # lose digits to cancellation
    return out - out.mean(axis=0, dtype=np.float64).astype(np.float32)


def weight_statistics(params: dict[str, Any]) -> np.ndarray:
    """Permutation-free per-member statistics ``[M, F]`` of every parameter tensor.

    For each tensor: mean, standard deviation, mean absolute value and the 5, 25, 50,
    75, 95% quantiles of its entries; for weight matrices also the top 4 singular
    values. All are unchanged by permuting hidden units.
    """
    feats = []
    qs = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    for name, v in params.items():
        t = torch.as_tensor(v, dtype=torch.float32)
        flat = t.reshape(t.shape[0], -1)
        feats += [
            flat.mean(1, keepdim=True),
            flat.std(1, keepdim=True, correction=0),
            flat.abs().mean(1, keepdim=True),
            torch.quantile(flat, qs, dim=1).T,
        ]
        if name.endswith("weight") and t.ndim == 3:
            sv = torch.linalg.svdvals(t)[:, :4]
            feats.append(sv)
    return torch.cat(feats, dim=1).numpy().astype(np.float64)


#: Below this many rows (or features), PCA takes a dense eigendecomposition.
PCA_DENSE_MAX = 512


def _principal_eigenpairs(
    x: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, xc, gram, lam, vec, signal)``: the top ``k`` eigenpairs of the smaller of the
    Gram matrix ``Xc Xc^T`` (``gram``) and the scatter matrix ``Xc^T Xc`` of ``x [M, F]``.

    Largest first: dense ``eigh`` up to :data:`PCA_DENSE_MAX`, else ARPACK run to machine
    precision. ``signal`` marks the eigenvalues above the Gram matrix's rounding
    (``n u lam_max``); those below are its null space's, whose SVD singular values are
    rounding too. The scatter matrix's are all kept.
    """
    from scipy.linalg import eigh
    from scipy.sparse.linalg import eigsh

    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    m, f = xc.shape
    gram = m <= f
    a = xc @ xc.T if gram else xc.T @ xc
    n = a.shape[0]
    k = min(k, n)
    if k <= 0:
        return mean, xc, gram, np.zeros(0), np.zeros((n, 0)), np.zeros(0, dtype=bool)
    if n <= PCA_DENSE_MAX or k >= n - 1:
        lam, vec = eigh(a, subset_by_index=[n - k, n - 1])
    else:
        # a fixed start vector: it decides the number of iterations, not the result
        v0 = np.random.default_rng(0).standard_normal(n)
        lam, vec = eigsh(a, k=k, which="LA", tol=0.0, v0=v0)
    order = np.argsort(-lam)
    lam, vec = lam[order], vec[:, order]
    signal = lam > n * 2.0**-52 * max(float(lam[0]), 0.0) if gram else np.ones(k, dtype=bool)
    return mean, xc, gram, lam, vec, signal


def _pca_scores(x: np.ndarray, k: int) -> np.ndarray:
    """Scores ``[M, k]`` on the first ``k`` principal components of ``x [M, F]``.

    The top ``k`` eigenpairs of the smaller of the Gram matrix ``Xc Xc^T`` (scores
    ``u sqrt(lam)``, null-space ones zeroed) and the scatter matrix ``Xc^T Xc`` (scores
    ``Xc v``), both exact forms of the thin SVD ``Xc = U S V^T``: the same scores up to
    each component's sign, which no distance between scores sees. Above
    :data:`PCA_DENSE_MAX` rows and features the k eigenpairs come from ARPACK's Lanczos
    iteration run to machine precision (``tol=0``) rather than a full decomposition (at
    2,048 members of 9,320 features: 1 s instead of 90). A component's error is then
    about ``eps |X|^2 / gap``, with ``gap`` the distance of its eigenvalue from the
    others, the same conditioning as the SVD's.
    """
    _, xc, gram, lam, vec, signal = _principal_eigenpairs(x, k)
    if gram:
        return vec * np.sqrt(np.where(signal, lam, 0.0))
    return xc @ vec


def principal_axes(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [F], axes [r, F])``: the first ``r <= k`` principal axes of ``x [M, F]``.

    As :func:`_pca_scores`, from the smaller of the Gram and scatter matrices; axes of
    the Gram matrix's null space are left out.
    """
    mean, xc, gram, lam, vec, signal = _principal_eigenpairs(x, k)
    if not gram:
        return mean, vec.T
    return mean, ((xc.T @ vec[:, signal]) / np.sqrt(lam[signal])).T


def not_applicable(name: str, bank: Any, meta: Any = None) -> str | None:
    """Why baseline ``name`` cannot apply to ``bank`` and ``meta`` (one line), or None if it can."""
    if name in WEIGHT_BASELINES and getattr(bank, "is_mixed", False):
        return "reads AE weights, and the species' AEs have different architectures"
    if name == "mae_target" and meta is not None and meta.config.distance_weight == 0:
        return "the MAE has no distance term (meta.distance_weight: 0)"
    return None


def baseline_distances(
    name: str,
    sim: Any,
    bank: Any,
    meta: Any,
    *,
    seed: int = 0,
    meta_input: np.ndarray | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """``[S, S]`` distances for one baseline (all except ``random``, see :func:`analyse`).

    Parameters
    ----------
    name
        One of :data:`BASELINES` except ``random``.
    sim
        The simulation (``traits``, ``instances``, ``species``).
    bank
        The AE bank (``params``, ``species``, ``replicates``).
    meta
        The fitted :class:`~evosim.meta.MetaResult`.
    seed
        Seeds the sliced energy features (many species) and probes.
    meta_input
        The MAE's input ``[M, F]`` (``meta.represent(bank)``), if already computed.
    device
        Where the energy distances compute (``data_distribution``).
    """
    from evosim.seeding import rng as make_rng

    species = list(bank.species)
    r = int(bank.replicates)

    def traits() -> np.ndarray:
        return euclidean(np.stack([np.asarray(sim.traits[s], dtype=np.float64) for s in species]))

    def _instances() -> np.ndarray:
        pos = {s: i for i, s in enumerate(sim.species)}
        return np.asarray(sim.instances)[[pos[s] for s in species]]

    def data_mean() -> np.ndarray:
        x = _instances()
        return euclidean(np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1))

    def data_distribution() -> np.ndarray:
        rng = make_rng(seed, "baseline", "energy")
        return distribution_distances(_instances(), rng, device=device)

    def raw_weights() -> np.ndarray:
        return euclidean(species_means(flatten_params(bank.params), r))

    def weight_stats() -> np.ndarray:
        return euclidean(species_means(_zscore(weight_statistics(bank.params)), r))

    def functional() -> np.ndarray:
        probes = meta.representation.probes
        if probes is None:
            cfg = meta.config
            probes = make_probes(bank, cfg.probes, cfg.off_manifold_fraction, seed)
        return euclidean(species_means(represent(bank, "functional", probes=probes), r))

    def _input() -> np.ndarray:
        return meta_input if meta_input is not None else meta.represent(bank)

    def pca() -> np.ndarray:
        return euclidean(species_means(_pca_scores(_input(), meta.tree_dims), r))

    def untrained_mae() -> np.ndarray:
        return euclidean(species_means(meta.untrained_encode(_input())[:, : meta.tree_dims], r))

    def mae_target() -> np.ndarray:
        rows = distance_target_rows(meta, bank, meta_input)
        if rows is None:
            raise ValueError(f"mae_target: {not_applicable('mae_target', bank, meta)}")
        return euclidean(species_means(rows, r))

    fns: dict[str, Callable[[], np.ndarray]] = {
        "traits": traits,
        "data_mean": data_mean,
        "data_distribution": data_distribution,
        "raw_weights": raw_weights,
        "weight_stats": weight_stats,
        "functional": functional,
        "pca": pca,
        "untrained_mae": untrained_mae,
        "mae_target": mae_target,
    }
    if name not in fns:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return fns[name]()
