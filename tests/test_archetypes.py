"""Linear archetypal analysis (known answers, independent oracles) and archetype scoring."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment, minimize
from scipy.stats import chi2

from evosim import plot
from evosim.analysis.archetypal_analysis import (
    archetypal_analysis,
    project_simplex,
    simplex_least_squares,
    successive_projection,
)
from evosim.analysis.archetypes import (
    ARCHETYPE_BASELINES,
    archetype_analysis,
    archetype_baselines,
    archetype_positions,
    archetype_recovery,
    archetype_scores,
    archetypes_markdown,
    weights_summary,
)
from evosim.evolve import tradeoff
from evosim.phylo import grow_tree
from evosim.scenario import TreeConfig


def slsqp_simplex(objective, k: int) -> np.ndarray:  # noqa: ANN001
    """Independent oracle: SLSQP on the simplex from the uniform point."""
    res = minimize(
        objective,
        np.full(k, 1.0 / k),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return res.x


# ---------------------------------------------------------------------------- simplex pieces


def test_project_simplex_against_slsqp():
    rng = np.random.default_rng(0)
    v = rng.normal(0.0, 2.0, size=(40, 5))
    w = project_simplex(v)
    assert np.all(w >= 0) and np.allclose(w.sum(axis=1), 1.0)
    for row, out in zip(v, w):
        ref = slsqp_simplex(lambda x, row=row: np.sum((x - row) ** 2), 5)
        np.testing.assert_allclose(out, ref, atol=1e-6)
    inside = rng.dirichlet(np.ones(5), size=10)
    np.testing.assert_allclose(project_simplex(inside), inside, atol=1e-12)  # idempotent
    assert project_simplex(v[0]).shape == (5,)


def test_simplex_least_squares_against_slsqp():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, 6))
    x = rng.normal(0.0, 1.5, size=(12, 6))
    a = simplex_least_squares(x, z, steps=5000)
    assert np.all(a >= 0) and np.allclose(a.sum(axis=1), 1.0)
    for xi, ai in zip(x, a):
        ref = slsqp_simplex(lambda w, xi=xi: np.sum((xi - w @ z) ** 2), 4)
        f_ours, f_ref = np.sum((xi - ai @ z) ** 2), np.sum((xi - ref @ z) ** 2)
        assert f_ours <= f_ref + 1e-8 * (1 + f_ref)


def test_successive_projection_picks_the_archetypes_of_separable_data():
    # Gillis & Vavasis (2014): exact on separable data, whatever the simplex's shape.
    for seed in range(20):
        rng = np.random.default_rng(seed)
        k, d = int(rng.integers(2, 6)), 5
        v = rng.standard_normal((k, d)) * rng.uniform(0.2, 5.0, size=d)  # skewed simplices
        m = np.vstack([rng.dirichlet(np.ones(k), size=60), np.eye(k)])
        order = rng.permutation(len(m))
        x = (m @ v)[order]
        xc = x - x.mean(axis=0)
        pure = sorted(int(np.flatnonzero(order == 60 + j)[0]) for j in range(k))
        assert sorted(successive_projection(xc @ xc.T, k)) == pure


# ---------------------------------------------------------------------------- linear AA


def exact_mixtures(k: int, d: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random convex mixtures of ``k`` random archetypes, the archetypes among them."""
    rng = np.random.default_rng(seed)
    v = rng.normal(0.0, 3.0, size=(k, d))
    m = np.vstack([rng.dirichlet(np.ones(k), size=n - k), np.eye(k)])
    return rng.permutation(m) @ v, v


def recovery_bound(v: np.ndarray, sse: float) -> float:
    """Largest possible error of matched archetypes for a fit with this SSE (see below).

    Data X = M V (rows of M on the simplex) containing each vertex v_j. A fit has
    X_hat = A B X = P V with P = A B M row-stochastic, and the SSE bounds each pure
    point's residual: |v_j - P_j V| <= sqrt(SSE). Since v_j - P_j V = (1 - P_jj)(v_j - c)
    with c in the convex hull of the other vertices, 1 - P_jj <= sqrt(SSE) / h_j, where
    h_j >= the distance from v_j to the affine span of the others. P_jj is a convex
    combination (by A_j) of the archetypes' weights (B M)_ij on v_j, so some archetype i
    has (B M)_ij >= P_jj and is within (1 - P_jj) max_l |v_j - v_l| of v_j. Hence every
    vertex has an archetype within sqrt(SSE) * diam / h.
    """
    k = len(v)
    h = np.inf
    for j in range(k):
        others = np.delete(v, j, axis=0)
        span = (others[1:] - others[0]).T
        r = v[j] - others[0]
        if span.size:
            coef = np.linalg.lstsq(span, r, rcond=None)[0]
            r = r - span @ coef
        h = min(h, np.linalg.norm(r))
    diam = np.max(np.linalg.norm(v[:, None] - v[None], axis=2))
    return float(np.sqrt(sse) * diam / h)


def matched_errors(z: np.ndarray, v: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(z[:, None] - v[None], axis=2)
    rows, cols = linear_sum_assignment(d)
    return d[rows, cols]


@pytest.mark.parametrize("k,d", [(3, 5), (4, 3), (3, 2)])
def test_exact_convex_mixtures_are_recovered(k: int, d: int):
    # Known answer: the archetypes themselves (they are among the points, so the data's
    # hull is their simplex and SSE = 0 only there). Tolerance: recovery_bound above,
    # with the fit's own SSE, which must be an exact fit to solver precision.
    x, v = exact_mixtures(k, d, 150, seed=k * 10 + d)
    fit = archetypal_analysis(x, k)
    total = np.sum((x - x.mean(axis=0)) ** 2)
    assert fit.converged and fit.sse <= 1e-10 * total, (fit.sse, total)
    err = matched_errors(fit.archetypes, v)
    assert np.all(err <= recovery_bound(v, fit.sse) + 1e-9), (err, recovery_bound(v, fit.sse))


def test_recovery_from_a_poor_start():
    # Start with every archetype well inside the hull (0.6 of a vertex + 0.4 of a random
    # mixture): the fit must still reach the vertices, within the bound its SSE gives.
    k, d = 3, 4
    x, v = exact_mixtures(k, d, 120, seed=5)
    rng = np.random.default_rng(6)
    pure = [int(np.argmin(np.linalg.norm(x - vj, axis=1))) for vj in v]
    init = 0.4 * rng.dirichlet(np.ones(len(x)), size=k)
    init[np.arange(k), pure] += 0.6
    fit = archetypal_analysis(x, k, init=init)
    total = np.sum((x - x.mean(axis=0)) ** 2)
    assert fit.sse <= 1e-4 * total
    assert np.all(matched_errors(fit.archetypes, v) <= recovery_bound(v, fit.sse) + 1e-9)


def test_constraints_and_bookkeeping_on_noisy_data():
    rng = np.random.default_rng(7)
    x, _ = exact_mixtures(4, 6, 90, seed=8)
    x = x + rng.normal(0.0, 0.5, size=x.shape)
    fit = archetypal_analysis(x, 4)
    for m in (fit.weights, fit.mixing):
        assert np.all(m >= 0) and np.allclose(m.sum(axis=1), 1.0)
    assert fit.weights.shape == (90, 4) and fit.mixing.shape == (4, 90)
    np.testing.assert_allclose(fit.archetypes, fit.mixing @ x)
    assert fit.sse == pytest.approx(np.sum((x - fit.weights @ fit.archetypes) ** 2))
    assert 0.0 < fit.explained < 1.0


def test_sse_never_increases():
    x, _ = exact_mixtures(3, 3, 60, seed=9)
    x = x + np.random.default_rng(10).normal(0.0, 0.4, size=x.shape)
    sse = [archetypal_analysis(x, 3, max_iter=m, tol=0.0).sse for m in (1, 2, 4, 8, 16, 32)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(sse, sse[1:])), sse


def test_equivariant_under_translation_and_rotation():
    x, _ = exact_mixtures(3, 4, 80, seed=11)
    x = x + np.random.default_rng(12).normal(0.0, 0.3, size=x.shape)
    q, _ = np.linalg.qr(np.random.default_rng(13).standard_normal((4, 4)))
    base = archetypal_analysis(x, 3)
    moved = archetypal_analysis(x @ q + 5.0, 3)
    # The fit reads only the centred Gram matrix, which moving the data changes by
    # rounding alone; rounding can flip an adaptive-step decision, so the two runs stop at
    # equal SSE (to the stopping tolerance) but may sit apart along the SSE's nearly flat
    # directions: archetypes must agree to 1e-3 of the data's spread.
    assert moved.sse == pytest.approx(base.sse, rel=1e-8)
    spread = np.sqrt(np.mean(np.sum((x - x.mean(axis=0)) ** 2, axis=1)))
    np.testing.assert_allclose(moved.archetypes, base.archetypes @ q + 5.0, atol=1e-3 * spread)


def test_wide_data_and_bad_input():
    x = np.random.default_rng(14).standard_normal((20, 3000))
    fit = archetypal_analysis(x, 3)
    assert fit.archetypes.shape == (3, 3000) and np.allclose(fit.weights.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="k must be"):
        archetypal_analysis(x, 21)
    with pytest.raises(ValueError, match="finite"):
        archetypal_analysis(np.full((4, 2), np.nan), 2)


# ---------------------------------------------------------------------------- scoring


def test_positions_are_exact_for_exact_mixtures():
    rng = np.random.default_rng(15)
    v = rng.standard_normal((3, 5))
    w = rng.dirichlet(np.ones(3), size=30)
    np.testing.assert_allclose(archetype_positions(w, w @ v), v, atol=1e-6)
    # an archetype no species uses sits at the species' centroid
    w2 = np.column_stack([w[:, :2] / w[:, :2].sum(axis=1, keepdims=True), np.zeros(30)])
    x = w2 @ v
    p = archetype_positions(w2, x)
    np.testing.assert_allclose(p[:2], v[:2], atol=1e-6)
    np.testing.assert_allclose(p[2], x.mean(axis=0), atol=1e-6)


def test_recovery_scores_a_perfect_and_a_useless_method():
    rng = np.random.default_rng(16)
    v = rng.normal(0.0, 3.0, size=(3, 4))
    w = np.vstack([np.eye(3), rng.dirichlet(np.ones(3), size=27)])
    x = w @ v
    names = [f"s{i}" for i in range(30)]
    perm = [2, 0, 1]  # the method numbers its archetypes differently
    m = archetype_recovery(w[:, perm], x, v, true_weights=w, species=names)
    assert m["archetype_error"] == pytest.approx(0.0, abs=1e-6)
    assert m["matching"] == [1, 2, 0]  # optimum j <- archetype matching[j]
    assert m["weight_correlation"] == pytest.approx(1.0)
    assert m["nearest_species"] == ["s0", "s1", "s2"]
    assert m["explained"] == pytest.approx(1.0)
    spread = np.sqrt(np.mean(np.sum((x - x.mean(axis=0)) ** 2, axis=1)))
    assert m["spread"] == pytest.approx(spread)
    # every species the same mix: every archetype at the centroid, error = |v_j - mean| / spread
    useless = np.full((30, 3), 1 / 3)
    u = archetype_recovery(useless, x, v)
    expected = np.linalg.norm(v - x.mean(axis=0), axis=1) / spread
    assert u["archetype_error"] == pytest.approx(expected.mean(), rel=1e-6)
    with pytest.raises(ValueError, match="simplex"):
        archetype_recovery(w * 2, x, v)


def test_optima_recovered_as_vertices_under_strong_selection():
    # Strong selection (stationary sd 0.16 per trait) and fast weight drift: species sit
    # near the polytope and reach into its corners. Linear AA on their traits must find
    # each optimum to within the data's own resolution there: the distance from the
    # optimum to its nearest species (delta_j), plus twice the noise radius r (every
    # species within r of the polytope with prob. 1 - 1e-3, chi-square bound as in
    # test_tradeoff.py) for the noise that pushes hull points outward or inward.
    tree = grow_tree(TreeConfig(model="yule", n_species=300), np.random.default_rng(17))
    d, sigma, a = 6, 1.0, 20.0
    world = tradeoff(
        tree, dim=d, tasks=3, sigma=sigma, selection=a, weight_drift=2.5,
        rng=np.random.default_rng(18),
    )  # fmt: skip
    index = {n: i for i, n in enumerate(world.nodes)}
    x = world.traits[[index[s] for s in tree.extant_leaves]]
    r = np.sqrt(sigma**2 / (2 * a) * chi2.ppf(1 - 1e-3 / len(x), d))
    delta = np.linalg.norm(x[:, None] - world.optima[None], axis=2).min(axis=0)
    fit = archetypal_analysis(x, 3)
    dist = np.linalg.norm(fit.archetypes[:, None] - world.optima[None], axis=2)
    rows, cols = linear_sum_assignment(dist)
    err = np.empty(3)
    err[cols] = dist[rows, cols]
    assert np.all(err <= delta + 2 * r), (err, delta, r)
    # ... and so must the positions the scoring reads from AA's weights (the regression)
    m = archetype_recovery(fit.weights, x, world.optima)
    scored = np.array(m["archetype_errors"]) * m["spread"]
    assert np.all(scored <= delta + 2 * r), (scored, delta, r)


# ---------------------------------------------------------------------------- on a world


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # noqa: ANN201
    from evosim.scenario import parse_scenario
    from evosim.simulation import simulate
    from evosim.train import train_autoencoders

    sc = parse_scenario(
        "seed: 4\ntree: {model: yule, n_species: 12}\n"
        "traits: {model: tradeoff, dim: 4, tasks: 3}\n"
        "species: {instances: 64, ambient_dim: 8}\n"
        "autoencoder: {steps: 30, hidden: [8], device: cpu}\n"
    )
    sim = simulate(sc)
    bank = train_autoencoders(sim, sc.autoencoder, progress=False)
    return sim, bank


def test_baselines_and_scores_on_a_world(world, tmp_path: Path):
    sim, bank = world
    base = archetype_baselines(sim, bank)
    assert set(base) == {"aa_traits", "aa_data_mean", "aa_raw_weights"}
    for m in base.values():
        assert 0 <= m["archetype_error"] and len(m["archetype_errors"]) == 3
        assert len(m["nearest_species"]) == 3 and -1 <= m["weight_correlation"] <= 1
    scores = archetype_scores(sim, bank, None)
    assert scores["tasks"] == 3 and "not_applicable" in scores["mae"]
    # a MAE that has archetype weights is scored like any method
    fake = SimpleNamespace(species=list(bank.species), archetype_weights=np.full((12, 3), 1 / 3))
    assert "archetype_error" in archetype_scores(sim, bank, fake)["mae"]
    # AEs of several architectures have no common weights
    mixed = SimpleNamespace(
        species=bank.species, is_mixed=True, replicates=1, params=None, instances=None
    )
    assert "not_applicable" in archetype_baselines(sim, mixed)["aa_raw_weights"]
    # the analysis stage's part: without MAE archetypes, the oracle's weights are shown
    summary, figures = archetype_analysis(
        sim, bank, SimpleNamespace(archetype_weights=None), seed=1
    )
    assert summary["source"] == "aa_traits" and summary["tasks"] == 3
    assert "positions" not in summary["baselines"]["aa_traits"]
    assert set(figures["positions"]) == set(ARCHETYPE_BASELINES) and "instances" not in figures
    assert "## Archetypes" in "\n".join(archetypes_markdown(summary))
    paths = plot.plot_archetype_figures(figures, tmp_path)
    assert {p.name for p in paths} == {"archetype_weights.png", "archetypes.png"}
    for p in paths:
        assert p.stat().st_size > 0


def test_scores_refuse_a_world_without_tasks(world):
    sim, bank = world
    plain = SimpleNamespace(**{**sim.__dict__, "task_optima": None})
    with pytest.raises(ValueError, match="tradeoff"):
        archetype_baselines(plain, bank)


@pytest.mark.parametrize("k", [3, 5])
def test_weight_figures(tmp_path: Path, k: int):
    w = np.random.default_rng(19).dirichlet(np.ones(k), size=25)
    p = plot.plot_archetype_weights(w, tmp_path / "w.png", colour=w[:, 0] if k == 3 else None)
    assert p.stat().st_size > 0
    x = w @ np.random.default_rng(20).standard_normal((k, 4))
    q = plot.plot_archetypes(x, x[:k], {"a": x[:k] + 0.1, "b": x[:k] - 0.1}, tmp_path / "a.png")
    assert q.stat().st_size > 0


def test_weights_summary_known_answer():
    from evosim.analysis.archetypes import SPECIALIST

    pure = SPECIALIST + (1 - SPECIALIST) / 2
    w = np.array([[1.0, 0.0, 0.0], [pure, 1 - pure, 0.0], [1 / 3, 1 / 3, 1 / 3], [0, 0.2, 0.8]])
    out = weights_summary(w, ["a", "b", "c", "d"])
    assert out["k"] == 3
    np.testing.assert_allclose(out["mean_weight"], w.mean(0))
    assert out["mean_max_weight"] == pytest.approx((1 + pure + 1 / 3 + 0.8) / 4)
    special_d = int(0.8 >= SPECIALIST)
    assert out["specialists"] == [2, 0, special_d]
    assert [n["species"] for n in out["nearest_species"]] == ["a", "c", "d"]
    with pytest.raises(ValueError, match="4 rows"):
        weights_summary(w, ["a"])
