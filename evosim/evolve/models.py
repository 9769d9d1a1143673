"""Continuous trait evolution along a tree: Brownian motion, Ornstein-Uhlenbeck, early burst, jumps.

Each model assigns a trait vector to every node of the tree (root, internal, extant and
extinct leaves). All branch transitions are drawn at once and carried from the root
down by :func:`evosim.evolve.propagate.propagate`: no Python loop over nodes or traits.

Random draws are taken in a fixed order from the generator passed in, one row per node
in the tree's preorder: first the Gaussian diffusion ``Z [n, dim]``, then (``jumps``
only) the jump indicators ``[n]`` and jump sizes ``[n, dim]``.

References
----------
Felsenstein J. (1985) Phylogenies and the comparative method. Am. Nat. 125:1-15.
Hansen T.F. (1997) Stabilizing selection and the comparative analysis of adaptation.
Evolution 51:1341-1351.
Harmon L.J. et al. (2010) Early bursts of body size and shape evolution are rare in
comparative data. Evolution 64:2385-2396.
Landis M.J., Schraiber J.G., Liang M. (2013) Phylogenetic analysis using Levy processes:
finding jumps in the evolution of continuous traits. Syst. Biol. 62:193-204.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evosim.evolve.propagate import TreeArrays, propagate, tree_arrays
from evosim.evolve.tradeoff import _tradeoff
from evosim.scenario import TraitsConfig

__all__ = ["brownian", "ou", "early_burst", "jumps", "evolve_traits", "evolve_traits_array"]

Vector = float | Sequence[float] | np.ndarray


def _vector(value: Vector, dim: int, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    if v.ndim == 0:
        return np.full(dim, float(v))
    if v.shape != (dim,):
        raise ValueError(f"{name} must be a scalar or have {dim} values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite")
    return v


def _cholesky(
    correlation: Sequence[Sequence[float]] | np.ndarray | None, dim: int
) -> np.ndarray | None:
    if correlation is None:
        return None
    c = np.asarray(correlation, dtype=np.float64)
    if c.shape != (dim, dim):
        raise ValueError(f"correlation must be a {dim}x{dim} matrix, got shape {c.shape}")
    if not np.allclose(c, c.T):
        raise ValueError("correlation must be symmetric")
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise ValueError("correlation must be positive definite") from None


def _check(dim: int, sigma: float) -> None:
    if int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be > 0, got {sigma!r}")


def _diffusion(rng: np.random.Generator, n: int, dim: int, chol: np.ndarray | None) -> np.ndarray:
    """``[n, dim]`` standard normal rows, correlated by ``chol`` (``Z L^T`` has covariance C)."""
    z = rng.standard_normal((n, dim))
    return z if chol is None else z @ chol.T


def _as_dict(arrays: TreeArrays, x: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(arrays.nodes, x))


# ---------------------------------------------------------------------------- array kernels


def _brownian(arr: TreeArrays, dim: int, sigma: float, root: np.ndarray, chol, rng) -> np.ndarray:
    b = sigma * np.sqrt(arr.length)[:, None] * _diffusion(rng, arr.n, dim, chol)
    b[arr.parent < 0] = root
    return propagate(arr.parent, 1.0, b)


def _ou(arr, dim, sigma, alpha, theta, root, chol, rng) -> np.ndarray:
    decay = np.exp(-alpha * arr.length)
    # sd of the exact transition: sqrt(sigma^2 / (2 alpha) * (1 - exp(-2 alpha t)));
    # -expm1 keeps precision on short branches.
    sd = sigma * np.sqrt(-np.expm1(-2.0 * alpha * arr.length) / (2.0 * alpha))
    b = theta[None, :] * (1.0 - decay)[:, None] + sd[:, None] * _diffusion(rng, arr.n, dim, chol)
    b[arr.parent < 0] = root
    return propagate(arr.parent, decay, b)


def _early_burst(arr, dim, sigma, decay, root, chol, rng) -> np.ndarray:
    t0, dt = arr.parent_time, arr.length
    # Variance accrued from t0 to t0 + dt at rate sigma^2 exp(decay t):
    # sigma^2 (exp(decay t1) - exp(decay t0)) / decay, written stably.
    var = sigma**2 * np.exp(decay * t0) * np.expm1(decay * dt) / decay
    b = np.sqrt(np.maximum(var, 0.0))[:, None] * _diffusion(rng, arr.n, dim, chol)
    b[arr.parent < 0] = root
    return propagate(arr.parent, 1.0, b)


def _jumps(arr, dim, sigma, probability, scale, root, chol, rng) -> np.ndarray:
    b = sigma * np.sqrt(arr.length)[:, None] * _diffusion(rng, arr.n, dim, chol)
    happens = rng.random(arr.n) < probability
    size = scale * rng.standard_normal((arr.n, dim))
    b += np.where(happens[:, None], size, 0.0)
    b[arr.parent < 0] = root
    return propagate(arr.parent, 1.0, b)


# ---------------------------------------------------------------------------- public API


def brownian(
    tree,  # noqa: ANN001 - Phylogeny
    *,
    dim: int,
    sigma: float = 1.0,
    root: Vector = 0.0,
    correlation: Sequence[Sequence[float]] | np.ndarray | None = None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Brownian motion along the tree (Felsenstein 1985).

    Along a branch of length ``t`` the traits change by ``N(0, sigma^2 t C)``, with ``C``
    the trait correlation matrix (identity by default). Tips therefore have covariance
    ``sigma^2 * (shared root-path length) * C``.

    Parameters
    ----------
    tree
        A rooted :class:`~evosim.phylo.Phylogeny`.
    dim
        Number of traits.
    sigma
        Rate (sd per unit sqrt-time).
    root
        Root value, a scalar or ``[dim]``.
    correlation
        ``[dim, dim]`` positive-definite correlation matrix, or None for independent traits.
    rng
        The random generator.

    Returns
    -------
    dict[str, np.ndarray]
        Node name -> ``[dim]`` trait vector, for every node of the tree.
    """
    _check(dim, sigma)
    arr = tree_arrays(tree)
    x = _brownian(arr, dim, sigma, _vector(root, dim, "root"), _cholesky(correlation, dim), rng)
    return _as_dict(arr, x)


def ou(
    tree,  # noqa: ANN001 - Phylogeny
    *,
    dim: int,
    sigma: float = 1.0,
    alpha: float = 0.5,
    theta: Vector = 0.0,
    root: Vector = 0.0,
    correlation: Sequence[Sequence[float]] | np.ndarray | None = None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Ornstein-Uhlenbeck evolution toward an optimum (Hansen 1997), exact transition.

    Over a branch of length ``t``::

        x_child = theta + (x_parent - theta) e^{-alpha t}
                  + sqrt(sigma^2 / (2 alpha) (1 - e^{-2 alpha t})) Z,   Z ~ N(0, C)

    so on long branches the mean tends to ``theta`` and the variance to
    ``sigma^2 / (2 alpha)``.

    Parameters
    ----------
    tree
        A rooted :class:`~evosim.phylo.Phylogeny`.
    dim, sigma, root, correlation, rng
        As in :func:`brownian`.
    alpha
        Strength of the pull toward ``theta`` (per unit time), > 0.
    theta
        The optimum, a scalar or ``[dim]``.

    Returns
    -------
    dict[str, np.ndarray]
        Node name -> ``[dim]`` trait vector, for every node.
    """
    _check(dim, sigma)
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    arr = tree_arrays(tree)
    x = _ou(
        arr,
        dim,
        sigma,
        float(alpha),
        _vector(theta, dim, "theta"),
        _vector(root, dim, "root"),
        _cholesky(correlation, dim),
        rng,
    )
    return _as_dict(arr, x)


def early_burst(
    tree,  # noqa: ANN001 - Phylogeny
    *,
    dim: int,
    sigma: float = 1.0,
    decay: float = -1.0,
    root: Vector = 0.0,
    correlation: Sequence[Sequence[float]] | np.ndarray | None = None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Early burst (Harmon et al. 2010): Brownian motion whose rate decays through time.

    The rate at time ``t`` (since the root) is ``sigma^2 exp(decay t)``, ``decay < 0``, so a
    branch from ``t0`` to ``t1`` adds variance ``sigma^2 (e^{decay t1} - e^{decay t0}) / decay``
    and a tip at time ``T`` has variance ``sigma^2 (e^{decay T} - 1) / decay``.

    Parameters
    ----------
    tree
        A rooted :class:`~evosim.phylo.Phylogeny` (node times from the root).
    dim, sigma, root, correlation, rng
        As in :func:`brownian`.
    decay
        The rate's exponent ``a`` (per unit time), < 0.

    Returns
    -------
    dict[str, np.ndarray]
        Node name -> ``[dim]`` trait vector, for every node.
    """
    _check(dim, sigma)
    if not (np.isfinite(decay) and decay < 0):
        raise ValueError(f"decay must be < 0, got {decay!r}")
    arr = tree_arrays(tree)
    x = _early_burst(
        arr, dim, sigma, float(decay), _vector(root, dim, "root"), _cholesky(correlation, dim), rng
    )
    return _as_dict(arr, x)


def jumps(
    tree,  # noqa: ANN001 - Phylogeny
    *,
    dim: int,
    sigma: float = 1.0,
    jump_probability: float = 0.5,
    jump_scale: float = 1.0,
    root: Vector = 0.0,
    correlation: Sequence[Sequence[float]] | np.ndarray | None = None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Brownian motion plus punctuated change at speciation.

    Every daughter lineage (every non-root branch; each starts at a speciation, the root
    being the first) independently receives, with probability ``jump_probability``, a jump
    ``N(0, jump_scale^2 I)`` in all traits at once, applied at the start of the branch, on
    top of Brownian motion at rate ``sigma``. A tip whose root path has ``k`` branches and
    length ``T`` has per-trait variance ``sigma^2 T + jump_probability jump_scale^2 k``; two
    tips covary by the same expression over their shared path.

    Parameters
    ----------
    tree
        A rooted :class:`~evosim.phylo.Phylogeny`.
    dim, sigma, root, correlation, rng
        As in :func:`brownian` (``correlation`` applies to the Brownian part only).
    jump_probability
        Chance that a daughter lineage jumps, in [0, 1].
    jump_scale
        sd of each trait's jump, >= 0.

    Returns
    -------
    dict[str, np.ndarray]
        Node name -> ``[dim]`` trait vector, for every node.
    """
    _check(dim, sigma)
    if not 0.0 <= jump_probability <= 1.0:
        raise ValueError(f"jump_probability must be in [0, 1], got {jump_probability!r}")
    if not (np.isfinite(jump_scale) and jump_scale >= 0):
        raise ValueError(f"jump_scale must be >= 0, got {jump_scale!r}")
    arr = tree_arrays(tree)
    x = _jumps(
        arr,
        dim,
        sigma,
        float(jump_probability),
        float(jump_scale),
        _vector(root, dim, "root"),
        _cholesky(correlation, dim),
        rng,
    )
    return _as_dict(arr, x)


def evolve_traits_array(
    tree,  # noqa: ANN001 - Phylogeny
    config: TraitsConfig,
    rng: np.random.Generator,
) -> tuple[list[str], np.ndarray]:
    """Like :func:`evolve_traits`, but as ``(nodes in preorder, values [n, dim])``."""
    arr = tree_arrays(tree)
    dim, sigma = config.dim, config.sigma
    _check(dim, sigma)
    root = _vector(config.root, dim, "traits.root")
    chol = _cholesky(config.correlation, dim)
    if config.model == "brownian":
        x = _brownian(arr, dim, sigma, root, chol, rng)
    elif config.model == "ou":
        theta = _vector(config.theta, dim, "traits.theta")
        x = _ou(arr, dim, sigma, config.alpha, theta, root, chol, rng)
    elif config.model == "early_burst":
        x = _early_burst(arr, dim, sigma, config.decay, root, chol, rng)
    elif config.model == "jumps":
        x = _jumps(arr, dim, sigma, config.jump_probability, config.jump_scale, root, chol, rng)
    elif config.model == "tradeoff":
        # Task weights and optima: evosim.evolve.tradeoff.evolve_tradeoff (same draws).
        x, _, _ = _tradeoff(
            arr,
            dim,
            config.tasks,
            sigma,
            config.selection,
            config.weight_drift,
            config.task_spread,
            root,
            chol,
            rng,
        )
    elif config.model == "population":
        raise ValueError(
            "traits.model 'population' is individual-based: use "
            "evosim.evolve.population.evolve_population(tree, config, seed=...)"
        )
    else:  # pragma: no cover - the scenario schema rejects other names
        raise ValueError(f"unknown traits.model {config.model!r}")
    return arr.nodes, x


def evolve_traits(
    tree,  # noqa: ANN001 - Phylogeny
    config: TraitsConfig,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Evolve ``config.dim`` traits along ``tree`` with the model named by ``config.model``.

    Parameters
    ----------
    tree
        A rooted :class:`~evosim.phylo.Phylogeny`; every node gets a value (internal and
        extinct nodes too: they are the truth for ancestral analyses).
    config
        The ``traits:`` section of a scenario (``brownian``, ``ou``, ``early_burst``,
        ``jumps`` or ``tradeoff``; ``correlation``, when set, applies to the Gaussian
        diffusion of each). For ``tradeoff`` the task weights and optima drawn on the way
        are returned by :func:`evosim.evolve.tradeoff.evolve_tradeoff`.
    rng
        The random generator (``seeding.rng(seed, "traits")`` in :func:`evosim.simulate`).

    Returns
    -------
    dict[str, np.ndarray]
        Node name -> ``[dim]`` float64 trait vector.

    Raises
    ------
    ValueError
        ``config.model`` is ``population`` (see :mod:`evosim.evolve.population`).
    """
    nodes, x = evolve_traits_array(tree, config, rng)
    return dict(zip(nodes, x))
