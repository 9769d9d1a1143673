"""Trade-off evolution: lineages pulled toward the Pareto front of several tasks.

Each of ``k`` tasks has an optimum ``o_j`` in trait space, and a phenotype ``x`` performs
task ``j`` as ``P_j(x) = -|x - o_j|^2 / 2`` (performance falls with distance from the task's
optimum, one metric for all tasks). A lineage whose fitness weighs the tasks by ``w``
(a point of the simplex) has its fitness peak at the weighted optimum
``x*(w) = sum_j w_j o_j``; as ``w`` ranges over the simplex these peaks fill the polytope
whose corners are the optima, which is the Pareto front of the tasks (Shoval et al. 2012).
Species therefore spread over that polytope, and its corners, the archetypes, are the
specialists.

The model, along every branch of the tree:

- **the weights drift**: each lineage carries log-weights ``u`` in R^k doing Brownian
  motion at rate ``weight_drift`` (sd per unit sqrt-time of each coordinate), and
  ``w = softmax(u)``: a logistic-normal walk on the simplex (Aitchison 1986). The root
  starts at ``u = 0``, the generalist with equal weights.
- **the traits follow**: the branch above a node is one selective regime whose optimum is
  ``x*(w)`` for the weights at that node (a multi-optimum Ornstein-Uhlenbeck model with
  regimes painted on branches, Butler & King 2004), and the traits evolve toward it by the
  exact OU transition of :func:`evosim.evolve.ou` with pull ``selection`` (the OU
  ``alpha``) and diffusion ``sigma``. The root's traits are ``x*`` of equal weights: the
  centroid of the optima.

Given the weights, a node's traits are Gaussian: their mean is a convex combination of
the root's optimum and the optima of the branches above it (so it lies in the polytope),
and each coordinate varies around it with variance
``sigma^2 / (2 a) (1 - e^{-2 a T})`` (``a = selection``, ``T``: the node's time since the
root), at most the OU stationary variance ``sigma^2 / (2 a)``. The weights carry
phylogenetic signal (Brownian on the tree); ``selection`` sets how closely traits track
them.

The optima are the corners of a regular simplex of circumradius ``task_spread`` centred on
``root``, in a random orientation: every pair of tasks is equally distinct, and the
polytope is a (k-1)-simplex, so ``k <= dim + 1``.

Random draws are taken in a fixed order from the generator passed in: the orientation
``[dim, k-1]``, then the weight increments ``[n, k]`` and the trait diffusion ``[n, dim]``,
one row per node in the tree's preorder.

References
----------
Shoval O. et al. (2012) Evolutionary trade-offs, Pareto optimality, and the geometry of
phenotype space. Science 336:1157-1160.
Butler M.A., King A.A. (2004) Phylogenetic comparative analysis: a modeling approach for
adaptive evolution. Am. Nat. 164:683-695.
Hansen T.F. (1997) Stabilizing selection and the comparative analysis of adaptation.
Evolution 51:1341-1351.
Aitchison J. (1986) The Statistical Analysis of Compositional Data. Chapman & Hall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evosim.evolve.propagate import TreeArrays, propagate, tree_arrays

__all__ = [
    "TradeoffWorld",
    "evolve_tradeoff",
    "pareto_optimum",
    "regular_simplex",
    "task_optima",
    "tradeoff",
]

Vector = float | Sequence[float] | np.ndarray


@dataclass(frozen=True)
class TradeoffWorld:
    """Everything the trade-off model draws, in the tree's preorder.

    Attributes
    ----------
    nodes
        Node names in preorder.
    traits
        ``[n, dim]`` traits of every node.
    weights
        ``[n, k]`` task weights of every node (rows on the simplex): the regime of the
        branch above each node.
    optima
        ``[k, dim]`` task optima (the archetypes).
    """

    nodes: list[str]
    traits: np.ndarray
    weights: np.ndarray
    optima: np.ndarray

    def traits_dict(self) -> dict[str, np.ndarray]:
        """Node name -> ``[dim]`` traits."""
        return dict(zip(self.nodes, self.traits))

    def weights_dict(self) -> dict[str, np.ndarray]:
        """Node name -> ``[k]`` task weights."""
        return dict(zip(self.nodes, self.weights))


def regular_simplex(k: int) -> np.ndarray:
    """``[k, k-1]`` corners of a regular simplex: centred at 0, unit circumradius.

    Any two corners have dot product ``-1/(k-1)``. Built as the Cholesky factor of that
    Gram matrix, which gives the same (lower-triangular) coordinates as the reference code
    of Keller et al. (2021, ``create_z_fix``).
    """
    if int(k) != k or k < 2:
        raise ValueError(f"a simplex needs k >= 2 corners, got {k!r}")
    m = k - 1
    gram = (1.0 + 1.0 / m) * np.eye(m) - 1.0 / m
    head = np.linalg.cholesky(gram)
    return np.vstack([head, -head.sum(axis=0)])


def task_optima(
    k: int, dim: int, *, spread: float, centre: Vector = 0.0, rng: np.random.Generator
) -> np.ndarray:
    """``[k, dim]`` task optima: a regular simplex of circumradius ``spread`` around ``centre``.

    The simplex is placed in a uniformly random orientation (a Haar-random orthonormal
    frame of ``k - 1`` directions in R^dim), so the optima's centroid is ``centre`` and
    every pair is ``spread * sqrt(2k / (k-1))`` apart.

    Raises
    ------
    ValueError
        ``k > dim + 1`` (k optima in general position need ``k - 1`` dimensions), or
        ``spread <= 0``.
    """
    if int(k) != k or k < 2:
        raise ValueError(f"tasks must be an integer >= 2, got {k!r}")
    if k > dim + 1:
        raise ValueError(f"tasks must be <= dim + 1 = {dim + 1} (optima in general position)")
    if not (np.isfinite(spread) and spread > 0):
        raise ValueError(f"task_spread must be > 0, got {spread!r}")
    c = np.broadcast_to(np.asarray(centre, dtype=np.float64), (dim,))
    g = rng.standard_normal((dim, k - 1))
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))  # sign fix: makes the frame Haar-distributed
    return c + spread * regular_simplex(k) @ q.T


def pareto_optimum(weights: np.ndarray, optima: np.ndarray) -> np.ndarray:
    """Fitness peak(s) ``weights @ optima`` for task weights ``[..., k]`` (rows on the simplex)."""
    return np.asarray(weights, dtype=np.float64) @ np.asarray(optima, dtype=np.float64)


def _softmax(u: np.ndarray) -> np.ndarray:
    e = np.exp(u - u.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _tradeoff(
    arr: TreeArrays,
    dim: int,
    k: int,
    sigma: float,
    alpha: float,
    weight_drift: float,
    spread: float,
    root: np.ndarray,
    chol: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    optima = task_optima(k, dim, spread=spread, centre=root, rng=rng)
    is_root = arr.parent < 0
    du = weight_drift * np.sqrt(arr.length)[:, None] * rng.standard_normal((arr.n, k))
    du[is_root] = 0.0
    w = _softmax(propagate(arr.parent, 1.0, du))
    theta = w @ optima  # [n, dim] the optimum of the branch above each node
    decay = np.exp(-alpha * arr.length)
    sd = sigma * np.sqrt(-np.expm1(-2.0 * alpha * arr.length) / (2.0 * alpha))
    z = rng.standard_normal((arr.n, dim))
    if chol is not None:
        z = z @ chol.T
    b = theta * (1.0 - decay)[:, None] + sd[:, None] * z
    b[is_root] = theta[is_root]
    return propagate(arr.parent, decay, b), w, optima


def _check(dim: int, tasks: int, sigma: float, selection: float, weight_drift: float) -> None:
    if int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if not (np.isfinite(selection) and selection > 0):
        raise ValueError(f"selection must be > 0, got {selection!r}")
    if not (np.isfinite(weight_drift) and weight_drift >= 0):
        raise ValueError(f"weight_drift must be >= 0, got {weight_drift!r}")
    if int(tasks) != tasks or tasks < 2:
        raise ValueError(f"tasks must be an integer >= 2, got {tasks!r}")


def tradeoff(
    tree,  # noqa: ANN001 - Phylogeny
    *,
    dim: int,
    tasks: int = 3,
    sigma: float = 1.0,
    selection: float = 4.0,
    weight_drift: float = 1.5,
    task_spread: float = 3.0,
    root: Vector = 0.0,
    correlation: Sequence[Sequence[float]] | np.ndarray | None = None,
    rng: np.random.Generator,
) -> TradeoffWorld:
    """Evolve traits under selection toward the Pareto front of ``tasks`` tasks (see the module).

    Parameters
    ----------
    tree
        A rooted :class:`~evosim.phylo.Phylogeny`.
    dim
        Number of traits.
    tasks
        Number of tasks ``k`` (``2 <= k <= dim + 1``): the archetypes.
    sigma
        Diffusion of the traits (sd per unit sqrt-time).
    selection
        The pull toward the lineage's current fitness peak per unit time (the OU
        ``alpha``), > 0.
    weight_drift
        Rate of the log-weights' Brownian motion (sd per unit sqrt-time), >= 0; 0 keeps
        every lineage a generalist.
    task_spread
        Distance of each optimum from ``root`` (the optima simplex's circumradius).
    root
        Centre of the optima and the root's traits, a scalar or ``[dim]``.
    correlation
        ``[dim, dim]`` correlation of the trait diffusion, or None.
    rng
        The random generator.

    Returns
    -------
    TradeoffWorld
        Traits and task weights of every node, and the optima.
    """
    from evosim.evolve.models import _cholesky, _vector

    _check(dim, tasks, sigma, selection, weight_drift)
    arr = tree_arrays(tree)
    x, w, optima = _tradeoff(
        arr,
        dim,
        int(tasks),
        float(sigma),
        float(selection),
        float(weight_drift),
        float(task_spread),
        _vector(root, dim, "root"),
        _cholesky(correlation, dim),
        rng,
    )
    return TradeoffWorld(nodes=arr.nodes, traits=x, weights=w, optima=optima)


def evolve_tradeoff(
    tree,  # noqa: ANN001 - Phylogeny
    config,  # noqa: ANN001 - TraitsConfig
    rng: np.random.Generator,
) -> TradeoffWorld:
    """:func:`tradeoff` with the fields of a ``traits:`` section (``model: tradeoff``).

    Uses ``dim``, ``tasks``, ``sigma``, ``selection``, ``weight_drift``, ``task_spread``,
    ``root`` and ``correlation``. Draws exactly what
    :func:`evosim.evolve.evolve_traits` draws for the same config and generator, so both
    give the same traits.
    """
    return tradeoff(
        tree,
        dim=config.dim,
        tasks=config.tasks,
        sigma=config.sigma,
        selection=config.selection,
        weight_drift=config.weight_drift,
        task_spread=config.task_spread,
        root=config.root,
        correlation=config.correlation,
        rng=rng,
    )
