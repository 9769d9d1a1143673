"""Trait evolution: the vectorised pass against a plain loop, and every model against theory.

Statistical tests use fixed seeds and tolerances derived from the sample size. Unless
said otherwise an estimate must lie within Z = 4.5 of its sampling sd of the theoretical
value: two-sided p = 6.8e-6 per comparison, so even the largest family of comparisons
here (10 entries of a covariance matrix) has a false-alarm rate below 1e-4 under theory.

Independent replicates come from the trait dimension: with no correlation the ``dim``
traits are independent copies of the process on the same tree, so one call with
``dim = R`` gives R replicates. (Not for ``jumps``, whose jump events are shared by all
traits of a branch: there replicates are separate calls.)
"""

from __future__ import annotations

import numpy as np
import pytest

from evosim.evolve import (
    brownian,
    early_burst,
    evolve_traits,
    evolve_traits_array,
    jumps,
    node_depths,
    ou,
    propagate,
    tree_arrays,
)
from evosim.phylo import Phylogeny
from evosim.scenario import TraitsConfig

Z = 4.5

# A fixed non-ultrametric tree. Root-path lengths: A 1.3, B 1.3, C 1.6, D 1.0.
NEWICK = "(((A:0.4,B:0.4):0.6,C:1.3):0.3,D:1.0);"
TIPS = ["A", "B", "C", "D"]
# Shared root-path lengths (the Brownian covariance per unit sigma^2), by hand.
SHARED = np.array(
    [
        [1.3, 0.9, 0.3, 0.0],
        [0.9, 1.3, 0.3, 0.0],
        [0.3, 0.3, 1.6, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
# Branches on the root path of each tip, and shared between pairs (for jumps).
SHARED_BRANCHES = np.array(
    [
        [3, 2, 1, 0],
        [2, 3, 1, 0],
        [1, 1, 2, 0],
        [0, 0, 0, 1],
    ]
)


@pytest.fixture(scope="module")
def tree() -> Phylogeny:
    return Phylogeny.from_newick(NEWICK)


def tip_matrix(values: dict[str, np.ndarray]) -> np.ndarray:
    """[4 tips, R replicates]."""
    return np.stack([values[t] for t in TIPS])


def assert_cov_matches(sample: np.ndarray, sigma: np.ndarray, mean: np.ndarray | None = None):
    """Sample second moments about a KNOWN mean vs ``sigma`` (Gaussian data).

    With the mean known, S = X X^T / R is Wishart(sigma, R) / R, so
    Var(S_ij) = (sigma_ij^2 + sigma_ii sigma_jj) / R exactly.
    """
    r = sample.shape[1]
    centred = sample if mean is None else sample - mean[:, None]
    s = centred @ centred.T / r
    sd = np.sqrt((sigma**2 + np.outer(np.diag(sigma), np.diag(sigma))) / r)
    assert np.all(np.abs(s - sigma) <= Z * sd), (s, sigma, sd)


# ---------------------------------------------------------------------------- propagate


def naive_propagate(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The recursion one node at a time (parents precede children)."""
    x = np.empty_like(b)
    for i, p in enumerate(parent):
        x[i] = b[i] if p < 0 else a[i] * x[p] + b[i]
    return x


@pytest.mark.parametrize("max_levels", [4096, 0], ids=["by-level", "pointer-jumping"])
@pytest.mark.parametrize("shape", ["random", "caterpillar"])
def test_propagate_equals_sequential_recursion(shape: str, max_levels: int):
    rng = np.random.default_rng(1)
    n = 2000
    if shape == "caterpillar":  # depth n - 1: the worst case for both methods
        parent = np.arange(-1, n - 1)
    else:
        parent = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)])
    a = rng.uniform(0.5, 1.0, size=n)
    b = rng.standard_normal((n, 3))
    np.testing.assert_allclose(
        propagate(parent, a, b, max_levels=max_levels),
        naive_propagate(parent, a, b),
        rtol=1e-10,
        atol=1e-10,
    )
    # Additive case (a = 1): x is the sum of b along the root path.
    np.testing.assert_allclose(
        propagate(parent, 1.0, b, max_levels=max_levels),
        naive_propagate(parent, np.ones(n), b),
        rtol=1e-10,
        atol=1e-9,
    )


def test_node_depths():
    rng = np.random.default_rng(2)
    parent = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, 500)])
    expected = np.zeros(500, dtype=int)
    for i in range(1, 500):
        expected[i] = expected[parent[i]] + 1
    np.testing.assert_array_equal(node_depths(parent), expected)
    np.testing.assert_array_equal(node_depths(np.arange(-1, 99)), np.arange(100))


def test_tree_arrays(tree: Phylogeny):
    arr = tree_arrays(tree)
    assert arr.nodes == tree.preorder()
    assert arr.parent[0] == -1 and np.all(arr.parent[1:] < np.arange(1, arr.n))
    for i, node in enumerate(arr.nodes):
        assert arr.length[i] == pytest.approx(tree.length(node))
        assert arr.time[i] == pytest.approx(tree.time(node))


# ---------------------------------------------------------------------------- models vs theory


def test_brownian_tip_covariance_is_sigma2_times_shared_path(tree: Phylogeny):
    sigma, r = 0.7, 40_000
    x = brownian(tree, dim=r, sigma=sigma, root=0.0, rng=np.random.default_rng(11))
    assert_cov_matches(tip_matrix(x), sigma**2 * SHARED)
    # The sample mean is the root value: sd sqrt(sigma^2 T / R).
    means = tip_matrix(x).mean(axis=1)
    assert np.all(np.abs(means) <= Z * np.sqrt(sigma**2 * np.diag(SHARED) / r))


def test_brownian_correlated_traits():
    # A star tree's tips are independent replicates: tip_i ~ N(root, sigma^2 T C).
    r, t, sigma = 4000, 2.0, 0.5
    star = Phylogeny.from_newick("(" + ",".join(f"t{i}:{t}" for i in range(r)) + ");")
    corr = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.0], [-0.3, 0.0, 1.0]])
    root = np.array([1.0, -1.0, 0.5])
    x = brownian(
        star, dim=3, sigma=sigma, root=root, correlation=corr, rng=np.random.default_rng(12)
    )
    tips = np.stack([x[f"t{i}"] for i in range(r)]).T  # [3, R]
    assert_cov_matches(tips, sigma**2 * t * corr, mean=root)


def test_ou_exact_transition_matches_theory(tree: Phylogeny):
    # Short branches: the exact transition, composed along paths, against closed forms.
    alpha, sigma, theta, x0, r = 0.8, 1.2, 2.0, -1.0, 40_000
    x = ou(
        tree, dim=r, sigma=sigma, alpha=alpha, theta=theta, root=x0, rng=np.random.default_rng(13)
    )
    depth = np.diag(SHARED)
    mean = theta + (x0 - theta) * np.exp(-alpha * depth)
    # Cov(i, j) = Var(MRCA) e^{-alpha (T_i - s_ij)} e^{-alpha (T_j - s_ij)},
    # Var(MRCA) = sigma^2 / (2 alpha) (1 - e^{-2 alpha s_ij}).
    s = SHARED
    cov = (
        sigma**2
        / (2 * alpha)
        * (1 - np.exp(-2 * alpha * s))
        * np.exp(-alpha * (depth[:, None] - s))
        * np.exp(-alpha * (depth[None, :] - s))
    )
    assert_cov_matches(tip_matrix(x), cov, mean=mean)
    sample_mean = tip_matrix(x).mean(axis=1)
    assert np.all(np.abs(sample_mean - mean) <= Z * np.sqrt(np.diag(cov) / r))


def test_ou_long_branches_reach_stationarity():
    alpha, sigma, theta, r = 0.5, 1.5, 3.0, 40_000
    long = Phylogeny.from_newick("((A:30,B:30):30,C:60);")
    x = ou(
        long, dim=r, sigma=sigma, alpha=alpha, theta=theta, root=-5.0, rng=np.random.default_rng(14)
    )
    v = sigma**2 / (2 * alpha)  # the stationary variance
    for tip in "ABC":
        values = x[tip]
        assert abs(values.mean() - theta) <= Z * np.sqrt(v / r)
        # Known mean theta (e^{-15} is negligible): R S / v ~ chi^2_R, sd(S) = v sqrt(2 / R).
        s = np.mean((values - theta) ** 2)
        assert abs(s - v) <= Z * v * np.sqrt(2 / r)


def test_early_burst_tip_covariance(tree: Phylogeny):
    a, sigma, r = -1.5, 1.0, 40_000
    x = early_burst(tree, dim=r, sigma=sigma, decay=a, rng=np.random.default_rng(15))
    # Cov(i, j) = sigma^2 (e^{a s_ij} - 1) / a, with s_ij the shared path length
    # (for the tree's nodes, time since root = path length from the root).
    cov = sigma**2 * np.expm1(a * SHARED) / a
    assert_cov_matches(tip_matrix(x), cov)


def test_early_burst_rate_decays_along_a_branch():
    # Two tips on a single split at time 0 with one long branch each: variance saturates
    # at sigma^2 / |a| however long the branch.
    r = 40_000
    t = Phylogeny.from_newick("(A:50,B:0.1);")
    x = early_burst(t, dim=r, sigma=2.0, decay=-2.0, rng=np.random.default_rng(16))
    v_a, v_b = 4.0 / 2.0, 4.0 * np.expm1(-0.2) / -2.0
    for tip, v in (("A", v_a), ("B", v_b)):
        s = np.mean(x[tip] ** 2)
        assert abs(s - v) <= Z * v * np.sqrt(2 / r)


def test_jumps_tip_covariance(tree: Phylogeny):
    # Cov(i, j) = sigma^2 s_ij + p * scale^2 * (branches shared by the root paths of i, j).
    # Jumps are not Gaussian, so the sd of each sample moment is estimated from the data
    # (plug-in: sd(mean(x_i x_j)) = sd(x_i x_j) / sqrt(R)); R = 6000 calls.
    sigma, p, scale, r = 0.5, 0.3, 1.5, 6000
    rng = np.random.default_rng(17)
    samples = np.empty((4, r))
    for k in range(r):
        x = jumps(tree, dim=1, sigma=sigma, jump_probability=p, jump_scale=scale, rng=rng)
        samples[:, k] = tip_matrix(x)[:, 0]
    cov = sigma**2 * SHARED + p * scale**2 * SHARED_BRANCHES
    products = samples[:, None, :] * samples[None, :, :]  # [4, 4, R], known mean 0
    s = products.mean(axis=2)
    sd = products.std(axis=2, ddof=1) / np.sqrt(r)
    assert np.all(np.abs(s - cov) <= Z * sd), (s, cov, sd)


def test_jumps_are_punctuated():
    # With sigma tiny, a tip's change is a sum of whole jumps: the fraction of tips on a
    # star tree with (near) zero change is 1 - p (binomial sd sqrt(p (1 - p) / R)).
    r, p = 5000, 0.3
    star = Phylogeny.from_newick("(" + ",".join(f"t{i}:1" for i in range(r)) + ");")
    x = jumps(
        star, dim=2, sigma=1e-9, jump_probability=p, jump_scale=1.0, rng=np.random.default_rng(18)
    )
    still = np.mean([np.all(np.abs(x[f"t{i}"]) < 1e-6) for i in range(r)])
    assert abs(still - (1 - p)) <= Z * np.sqrt(p * (1 - p) / r)


# ---------------------------------------------------------------------------- API contract


@pytest.mark.parametrize("model", ["brownian", "ou", "early_burst", "jumps"])
def test_evolve_traits_contract(tree: Phylogeny, model: str):
    config = TraitsConfig(model=model, dim=3, root=[1.0, 2.0, 3.0])
    a = evolve_traits(tree, config, np.random.default_rng(5))
    b = evolve_traits(tree, config, np.random.default_rng(5))
    assert set(a) == set(tree.graph.nodes)  # every node, internal ones too
    for node, value in a.items():
        assert value.shape == (3,) and np.all(np.isfinite(value))
        np.testing.assert_array_equal(value, b[node])  # same seed, same values
    np.testing.assert_array_equal(a[tree.root], [1.0, 2.0, 3.0])
    c = evolve_traits(tree, config, np.random.default_rng(6))
    assert not np.array_equal(a["A"], c["A"])
    nodes, values = evolve_traits_array(tree, config, np.random.default_rng(5))
    assert nodes == tree.preorder()
    np.testing.assert_array_equal(values, np.stack([a[n] for n in nodes]))


def test_evolve_traits_dispatches_to_the_named_model(tree: Phylogeny):
    config = TraitsConfig(model="ou", dim=2, alpha=0.3, theta=1.0, sigma=0.4, root=0.5)
    via_config = evolve_traits(tree, config, np.random.default_rng(3))
    direct = ou(
        tree, dim=2, sigma=0.4, alpha=0.3, theta=1.0, root=0.5, rng=np.random.default_rng(3)
    )
    for node in via_config:
        np.testing.assert_array_equal(via_config[node], direct[node])


def test_bad_input_is_named(tree: Phylogeny):
    with pytest.raises(ValueError, match="population"):
        evolve_traits(tree, TraitsConfig(model="population"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive definite"):
        brownian(tree, dim=2, correlation=[[1, 2], [2, 1]], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="root"):
        brownian(tree, dim=3, root=[1.0, 2.0], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="decay"):
        early_burst(tree, dim=1, decay=0.5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="alpha"):
        ou(tree, dim=1, alpha=0.0, rng=np.random.default_rng(0))
