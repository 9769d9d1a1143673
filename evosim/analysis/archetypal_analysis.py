"""Linear archetypal analysis: the data's principal convex hull (Cutler & Breiman 1994).

Given ``n`` points ``X [n, d]`` and a number ``k``, find ``k`` archetypes that are convex
mixtures of the points, ``Z = B X`` (``B [k, n]``, rows on the simplex), such that every
point is approximated by a convex mixture of the archetypes, ``X ~ A Z`` (``A [n, k]``,
rows on the simplex), in least squares::

    minimise  SSE(A, B) = |X - A B X|_F^2   subject to  A >= 0, A 1 = 1, B >= 0, B 1 = 1.

Solved as in PCHA (Morup & Hansen 2012): alternating projected-gradient steps on ``A``
and ``B``, each with PCHA's adaptive step length (longer after a step that lowers the SSE,
halved until one does); no step increases the SSE. Two departures from PCHA: the
projection onto the simplex is the exact Euclidean one (Held et al. 1974; Duchi et al.
2008) rather than a rescaling, and the archetypes start at the points picked by the
successive projection algorithm (SPA; Araujo et al. 2001), not FurthestSum. SPA provably
picks the true archetypes when they are among the points (Gillis & Vavasis 2014);
FurthestSum, which excludes the points already chosen, can pick an interior point beside
an archetype, and projected gradient then needs thousands of iterations to move it out.

Everything is computed from the centred Gram matrix ``K = X X'`` ``[n, n]`` (the SSE is
translation invariant because rows of ``A B`` sum to one), so wide data (e.g. ``d`` =
thousands of AE weights) costs no more than narrow data.

Nothing is random: the same data always give the same archetypes.

References
----------
Cutler A., Breiman L. (1994) Archetypal analysis. Technometrics 36:338-347.
Morup M., Hansen L.K. (2012) Archetypal analysis for machine learning and data mining.
Neurocomputing 80:54-63.
Held M., Wolfe P., Crowder H.P. (1974) Validation of subgradient optimization. Math.
Program. 6:62-88.
Araujo M.C.U. et al. (2001) The successive projections algorithm for variable selection
in spectroscopic multicomponent analysis. Chemom. Intell. Lab. Syst. 57:65-73.
Gillis N., Vavasis S.A. (2014) Fast and robust recursive algorithms for separable
nonnegative matrix factorization. IEEE Trans. Pattern Anal. Mach. Intell. 36:698-714.
Duchi J., Shalev-Shwartz S., Singer Y., Chandra T. (2008) Efficient projections onto the
l1-ball for learning in high dimensions. ICML.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ArchetypalAnalysis",
    "archetypal_analysis",
    "project_simplex",
    "simplex_least_squares",
    "successive_projection",
]


@dataclass(frozen=True)
class ArchetypalAnalysis:
    """A fitted linear archetypal analysis.

    Attributes
    ----------
    archetypes
        ``[k, d]`` the archetypes ``Z = B X``, in the data's units.
    weights
        ``[n, k]`` ``A``: each point's convex weights on the archetypes (rows sum to 1).
    mixing
        ``[k, n]`` ``B``: each archetype's convex weights on the points (rows sum to 1).
    sse
        ``|X - A Z|_F^2`` at the solution.
    explained
        ``1 - SSE / |X - mean|_F^2``: variance explained.
    iterations
        Outer (A-step + B-step) iterations run.
    converged
        Whether the relative SSE change fell below ``tol`` before ``max_iter``.
    """

    archetypes: np.ndarray
    weights: np.ndarray
    mixing: np.ndarray
    sse: float
    explained: float
    iterations: int
    converged: bool


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``v [..., m]`` onto the probability simplex.

    ``argmin_w |w - v|`` over ``w >= 0, sum w = 1``: ``w = max(v - tau, 0)`` with the
    threshold ``tau`` found by sorting (Held et al. 1974; Duchi et al. 2008).
    """
    v = np.asarray(v, dtype=np.float64)
    shape = v.shape
    flat = v.reshape(-1, shape[-1])
    m = flat.shape[1]
    u = -np.sort(-flat, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    rank = np.arange(1, m + 1)
    positive = u - css / rank > 0
    rho = m - 1 - np.argmax(positive[:, ::-1], axis=1)  # last index where positive
    tau = css[np.arange(len(flat)), rho] / (rho + 1)
    return np.maximum(flat - tau[:, None], 0.0).reshape(shape)


def _descend(
    w: np.ndarray,
    objective,  # noqa: ANN001 - callable w -> float
    grad,  # noqa: ANN001 - callable w -> gradient
    step: float,
    steps: int,
) -> tuple[np.ndarray, float]:
    """Projected-gradient steps on rows of ``w`` (each on a simplex) with an adaptive step.

    As in PCHA: a step that lowers the objective is kept and the next one is 1.2 times
    longer; one that does not is halved until it does. Returns ``(w, step)`` so that the
    next call starts from the step length that worked. The objective never increases.
    """
    f = objective(w)
    for _ in range(steps):
        g = grad(w)
        while True:
            new = project_simplex(w - step * g)
            f_new = objective(new)
            if f_new <= f or step < 1e-30:
                break
            step *= 0.5
        if f_new > f or f - f_new <= 1e-15 * abs(f):
            break  # no further progress at any step length
        w, f = new, f_new
        step *= 1.2
    return w, step


def simplex_least_squares(
    x: np.ndarray,
    z: np.ndarray,
    *,
    init: np.ndarray | None = None,
    steps: int = 500,
) -> np.ndarray:
    """Convex weights ``A [n, k]`` minimising ``|x - A z|_F^2`` (each row on the simplex).

    Each row is the projection of that point onto the convex hull of ``z``'s rows, in the
    weights of those rows. Projected gradient with an adaptive step (a convex problem: any
    start converges to the optimum).

    Parameters
    ----------
    x
        ``[n, d]`` points.
    z
        ``[k, d]`` hull vertices.
    init
        ``[n, k]`` starting weights (default: uniform).
    steps
        Gradient steps.
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    g, h = z @ z.T, x @ z.T
    a = np.full((len(x), len(z)), 1.0 / len(z)) if init is None else project_simplex(init)
    lipschitz = 2.0 * np.linalg.norm(g, 2)
    a, _ = _descend(
        a,
        lambda a_: np.sum((a_.T @ a_) * g) - 2.0 * np.sum(a_ * h),
        lambda a_: 2.0 * (a_ @ g - h),
        1.0 / lipschitz if lipschitz > 0 else 1.0,
        steps,
    )
    return a


def successive_projection(gram: np.ndarray, k: int) -> list[int]:
    """``k`` extreme points by the successive projection algorithm (SPA), on a Gram matrix.

    Each point is lifted to ``(x - mean, c)`` with ``c`` the points' RMS distance from
    their mean (so convex mixtures become conic ones); SPA then repeatedly takes the point
    of largest residual norm and projects every residual onto the orthogonal complement
    of it (Araujo et al. 2001). On separable data (every archetype among the points, the
    archetypes affinely independent, every point a convex mixture of them) it returns
    exactly the archetypes (Gillis & Vavasis 2014), and it degrades gracefully with noise.

    Parameters
    ----------
    gram
        ``[n, n]`` Gram matrix ``X X'`` of the centred points.
    k
        How many to pick, ``<= n``.
    """
    n = len(gram)
    c2 = max(float(np.trace(gram)) / n, 1e-300)
    g = np.asarray(gram, dtype=np.float64) + c2  # Gram of the lifted points
    chosen: list[int] = []
    for _ in range(k):
        norms = np.diag(g).copy()
        norms[chosen] = -np.inf
        j = int(np.argmax(norms))
        chosen.append(j)
        if norms[j] > 1e-12 * c2:
            g = g - np.outer(g[:, j], g[j, :]) / g[j, j]
    return chosen


def archetypal_analysis(
    x: np.ndarray,
    k: int,
    *,
    init: np.ndarray | None = None,
    max_iter: int = 2000,
    inner_steps: int = 10,
    tol: float = 1e-10,
) -> ArchetypalAnalysis:
    """Fit ``k`` archetypes to the rows of ``x`` (see the module for the problem and method).

    Parameters
    ----------
    x
        ``[n, d]`` data, ``n >= k``.
    k
        Number of archetypes, >= 1.
    init
        ``[k, n]`` starting ``B`` (rows projected onto the simplex); default: the points
        picked by :func:`successive_projection`.
    max_iter
        At most this many outer iterations (each: ``inner_steps`` on A, then on B).
    inner_steps
        Projected-gradient steps per block and outer iteration.
    tol
        Stop when the SSE falls by less than ``tol`` times itself in one iteration, or
        below ``tol**2`` times the data's total sum of squares (an exact fit).

    Returns
    -------
    ArchetypalAnalysis

    Raises
    ------
    ValueError
        ``x`` is not a finite 2-D array, or ``k`` is not in ``1..n``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"x must be a finite [n, d] array, got shape {x.shape}")
    n = x.shape[0]
    if int(k) != k or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in 1..{n} (the number of points), got {k!r}")
    xc = x - x.mean(axis=0)
    gram = xc @ xc.T  # [n, n]
    total = float(np.trace(gram))
    if init is None:
        b = np.zeros((k, n))
        b[np.arange(k), successive_projection(gram, k)] = 1.0
    else:
        b = np.asarray(init, dtype=np.float64)
        if b.shape != (k, n):
            raise ValueError(f"init must be [k, n] = [{k}, {n}], got shape {b.shape}")
        b = project_simplex(b)
    a = np.full((n, k), 1.0 / k)
    step_a = step_b = 1.0 / max(np.linalg.norm(gram, 2), 1e-300)

    def sse_of(a_: np.ndarray, b_: np.ndarray) -> float:
        kb = gram @ b_.T  # X X' B'  [n, k]
        return max(total - 2.0 * np.sum(a_ * kb) + np.sum((a_.T @ a_) * (b_ @ kb)), 0.0)

    sse, converged, it = np.inf, False, 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        kb = gram @ b.T  # [n, k]
        g = b @ kb  # Z Z'  [k, k]
        a, step_a = _descend(
            a,
            lambda a_, g=g, kb=kb: np.sum((a_.T @ a_) * g) - 2.0 * np.sum(a_ * kb),
            lambda a_, g=g, kb=kb: 2.0 * (a_ @ g - kb),
            step_a,
            inner_steps,
        )
        ata, atk = a.T @ a, a.T @ gram  # [k, k], [k, n]
        b, step_b = _descend(
            b,
            lambda b_, ata=ata, atk=atk: np.sum(ata * (b_ @ gram @ b_.T)) - 2.0 * np.sum(atk * b_),
            lambda b_, ata=ata, atk=atk: 2.0 * (ata @ b_ @ gram - atk),
            step_b,
            inner_steps,
        )
        new = sse_of(a, b)
        if new <= tol**2 * total or sse - new <= tol * new:
            sse, converged = new, True
            break
        sse = new
    # Report the SSE from the data itself (the Gram expression loses digits near zero).
    archetypes = b @ x
    sse = float(np.sum((x - a @ archetypes) ** 2))
    explained = 1.0 - sse / total if total > 0 else 1.0
    return ArchetypalAnalysis(
        archetypes=archetypes,
        weights=a,
        mixing=b,
        sse=sse,
        explained=float(explained),
        iterations=it,
        converged=converged,
    )
