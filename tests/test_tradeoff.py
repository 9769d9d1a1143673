"""The trade-off trait model against what it promises.

Statistical tests use fixed seeds. Unless said otherwise an estimate must lie within
Z = 4.5 of its sampling sd of the theoretical value (two-sided p = 6.8e-6 per comparison;
the largest family here, 10 covariance entries, has a false-alarm rate below 1e-4).
Independent replicates of the trait noise come from the trait dimension: given the task
weights (shared by all traits of a lineage), the ``dim`` coordinates of the noise are
independent copies of one OU process.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls
from scipy.stats import chi2

from evosim.evolve import evolve_tradeoff, evolve_traits, evolve_traits_array, tradeoff
from evosim.evolve.signal import blomberg_k_test, phylogenetic_covariance
from evosim.evolve.tradeoff import regular_simplex, task_optima
from evosim.phylo import Phylogeny, grow_tree
from evosim.scenario import ScenarioError, TraitsConfig, TreeConfig, parse_scenario

Z = 4.5
NEWICK = "(((A:0.4,B:0.4):0.6,C:1.3):0.3,D:1.0);"
TIPS = ["A", "B", "C", "D"]
SHARED = np.array(
    [[1.3, 0.9, 0.3, 0.0], [0.9, 1.3, 0.3, 0.0], [0.3, 0.3, 1.6, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


@pytest.fixture(scope="module")
def small_tree() -> Phylogeny:
    return Phylogeny.from_newick(NEWICK)


def yule(n: int, seed: int) -> Phylogeny:
    return grow_tree(TreeConfig(model="yule", n_species=n), np.random.default_rng(seed))


def reference_simplex(m: int) -> np.ndarray:
    """Keller et al.'s ``create_z_fix`` recursion, retyped: [m + 1, m] simplex corners."""
    z = np.zeros((m, m + 1))
    for k in range(m):
        z[k, k] = np.sqrt(1.0 - np.sum(z[:k, k] ** 2))
        for j in range(k + 1, m + 1):
            z[k, j] = (-1.0 / m - np.sum(z[:k, k] * z[:k, j])) / z[k, k]
    return z.T


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_regular_simplex(k: int):
    v = regular_simplex(k)
    assert v.shape == (k, k - 1)
    np.testing.assert_allclose(v.sum(axis=0), 0.0, atol=1e-12)
    gram = (1 + 1 / (k - 1)) * np.eye(k) - 1 / (k - 1)
    np.testing.assert_allclose(v @ v.T, gram, atol=1e-12)
    np.testing.assert_allclose(v, reference_simplex(k - 1), atol=1e-12)


def test_task_optima_geometry():
    centre = np.arange(6.0)
    o = task_optima(4, 6, spread=2.5, centre=centre, rng=np.random.default_rng(1))
    assert o.shape == (4, 6)
    np.testing.assert_allclose(o.mean(axis=0), centre, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(o - centre, axis=1), 2.5)
    d = np.linalg.norm(o[:, None] - o[None], axis=2)[np.triu_indices(4, 1)]
    np.testing.assert_allclose(d, 2.5 * np.sqrt(2 * 4 / 3))
    other = task_optima(4, 6, spread=2.5, centre=centre, rng=np.random.default_rng(2))
    assert not np.allclose(o, other)  # the orientation is drawn
    with pytest.raises(ValueError, match="dim \\+ 1"):
        task_optima(5, 3, spread=1.0, rng=np.random.default_rng(0))


def test_contract(small_tree: Phylogeny):
    config = TraitsConfig(model="tradeoff", dim=3, tasks=3, root=[1.0, 2.0, 3.0])
    world = evolve_tradeoff(small_tree, config, np.random.default_rng(5))
    again = evolve_tradeoff(small_tree, config, np.random.default_rng(5))
    assert world.nodes == small_tree.preorder()
    np.testing.assert_array_equal(world.traits, again.traits)
    np.testing.assert_array_equal(world.optima, again.optima)
    # evolve_traits draws the same numbers and gives the same traits
    traits = evolve_traits(small_tree, config, np.random.default_rng(5))
    for node, value in world.traits_dict().items():
        np.testing.assert_array_equal(traits[node], value)
    nodes, values = evolve_traits_array(small_tree, config, np.random.default_rng(5))
    np.testing.assert_array_equal(values, world.traits)
    # weights on the simplex; the root is the generalist at the optima's centroid
    assert np.all(world.weights >= 0)
    np.testing.assert_allclose(world.weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(world.weights[0], 1 / 3)
    np.testing.assert_allclose(world.traits[0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(world.optima.mean(axis=0), [1.0, 2.0, 3.0])
    # no drift: every lineage stays a generalist
    still = tradeoff(small_tree, dim=3, weight_drift=0.0, rng=np.random.default_rng(1))
    np.testing.assert_allclose(still.weights, 1 / 3)


def test_scenario_fields():
    sc = parse_scenario("traits: {model: tradeoff, dim: 2, tasks: 3}\n")
    assert sc.traits.tasks == 3 and sc.traits.selection > 0
    with pytest.raises(ScenarioError, match="traits.tasks.*dim \\+ 1"):
        parse_scenario("traits: {model: tradeoff, dim: 2, tasks: 4}\n")
    with pytest.raises(ScenarioError, match="traits.selection"):
        parse_scenario("traits: {model: tradeoff, selection: 0}\n")
    with pytest.raises(ScenarioError, match="traits.weight_drift"):
        parse_scenario("traits: {model: tradeoff, weight_drift: -1}\n")
    with pytest.raises(ScenarioError, match="traits.task_spread"):
        parse_scenario("traits: {model: tradeoff, task_spread: 0}\n")
    # tasks only constrains the tradeoff model
    assert parse_scenario("traits: {model: brownian, dim: 2, tasks: 5}\n").traits.tasks == 5


def test_traits_given_the_weights_are_an_exact_ou(small_tree: Phylogeny):
    # Given the weights, traits = (a deterministic mean) + (an OU with theta = 0 from 0).
    a, sigma, r = 1.5, 0.8, 20_000
    world = tradeoff(
        small_tree,
        dim=r,
        tasks=3,
        sigma=sigma,
        selection=a,
        weight_drift=2.0,
        rng=np.random.default_rng(11),
    )
    # The conditional mean by a plain loop over the preorder (parents before children).
    index = {n: i for i, n in enumerate(world.nodes)}
    mean = np.empty_like(world.traits)
    for node in world.nodes:
        i = index[node]
        theta = world.weights[i] @ world.optima
        parent = small_tree.parent(node)
        if parent is None:
            mean[i] = theta
        else:
            decay = np.exp(-a * small_tree.length(node))
            mean[i] = theta + (mean[index[parent]] - theta) * decay
    # ... lies in the polytope: a convex combination of the optima
    for i in range(len(world.nodes)):
        assert hull_distance(mean[i], world.optima) < 1e-6
    resid = np.stack([world.traits[index[t]] - mean[index[t]] for t in TIPS])  # [4, R]
    depth = np.diag(SHARED)
    s = SHARED
    cov = (
        sigma**2
        / (2 * a)
        * (1 - np.exp(-2 * a * s))
        * np.exp(-a * (depth[:, None] - s))
        * np.exp(-a * (depth[None, :] - s))
    )
    assert np.all(np.abs(resid.mean(axis=1)) <= Z * np.sqrt(np.diag(cov) / r))
    # Known mean 0: sample covariance entries have sd sqrt((c_ii c_jj + c_ij^2) / R).
    sample = resid @ resid.T / r
    sd = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / r)
    iu = np.triu_indices(4)
    assert np.all(np.abs(sample - cov)[iu] <= Z * sd[iu]), (sample, cov)


def test_weights_do_a_logistic_normal_brownian_walk():
    # clr(w) = log w - mean(log w) equals the centred log-weights, whose increment over a
    # branch of length t is N(0, drift^2 t (I - J/k)): independent across branches.
    tree, k, drift = yule(2000, 3), 4, 0.7
    world = tradeoff(tree, dim=k, tasks=k, weight_drift=drift, rng=np.random.default_rng(4))
    clr = np.log(world.weights)
    clr -= clr.mean(axis=1, keepdims=True)
    index = {n: i for i, n in enumerate(world.nodes)}
    child = np.array([index[c] for _, c in tree.graph.edges])
    parent = np.array([index[p] for p, _ in tree.graph.edges])
    length = np.array([tree.length(world.nodes[c]) for c in child])
    step = (clr[child] - clr[parent]) / np.sqrt(length)[:, None]  # [B, k]
    b = len(child)
    var = drift**2 * (1 - 1 / k)
    assert np.all(np.abs(step.mean(axis=0)) <= Z * np.sqrt(var / b))
    # Known mean 0: B s^2 / var ~ chi^2_B, sd(s^2) = var sqrt(2 / B).
    assert np.all(np.abs((step**2).mean(axis=0) - var) <= Z * var * np.sqrt(2 / b))
    # The k centred coordinates sum to zero and covary at -var / (k - 1).
    c = step.T @ step / b
    off = c[~np.eye(k, dtype=bool)]
    assert np.all(np.abs(off + var / (k - 1)) <= Z * var * np.sqrt(2 / b))


def hull_distance(x: np.ndarray, vertices: np.ndarray, big: float = 1e4) -> float:
    """Distance from x to the convex hull of the vertices (NNLS with a heavy sum-to-one row)."""
    a = np.vstack([vertices.T, big * np.ones(len(vertices))])
    w, _ = nnls(a, np.append(x, big))
    return float(np.linalg.norm(x - w @ vertices))


def test_extant_species_lie_near_the_polytope():
    # Given the weights, species i's traits are (a point of the polytope) + noise whose d
    # coordinates are iid N(0, v_i), v_i <= v = sigma^2 / (2 a). The distance to the
    # polytope is at most |noise|, and |noise|^2 / v_i ~ chi^2_d, so every one of S species
    # is within sqrt(v chi2_d(1 - p / S)) with probability >= 1 - p (Bonferroni); p = 1e-3.
    tree, d, sigma, a = yule(200, 8), 8, 1.0, 4.0
    world = tradeoff(tree, dim=d, tasks=3, sigma=sigma, selection=a, rng=np.random.default_rng(21))
    index = {n: i for i, n in enumerate(world.nodes)}
    x = world.traits[[index[s] for s in tree.extant_leaves]]
    s = len(x)
    bound = np.sqrt(sigma**2 / (2 * a) * chi2.ppf(1 - 1e-3 / s, d))
    dist = np.array([hull_distance(xi, world.optima) for xi in x])
    assert dist.max() <= bound, (dist.max(), bound)
    # ... and they spread over it: for every optimum some species is nearer to it than the
    # generalist ancestor (the centroid, at distance task_spread = 3) is.
    to_optima = np.linalg.norm(x[:, None] - world.optima[None], axis=2).min(axis=0)
    assert np.all(to_optima < 3.0), to_optima


def test_spread_off_the_polytope_is_the_ou_variance():
    # The conditional mean lies in the optima's affine span exactly, so the part of
    # x - o_1 orthogonal to that span is pure noise: |P x|^2 / v_i ~ chi^2_{d - k + 1},
    # v_i = sigma^2 / (2 a) (1 - e^{-2 a T_i}). With d large each ratio to its mean has
    # sd sqrt(2 / (d - k + 1)).
    tree, d, k, sigma, a = yule(20, 5), 3000, 3, 1.3, 2.0
    world = tradeoff(tree, dim=d, tasks=k, sigma=sigma, selection=a, rng=np.random.default_rng(22))
    index = {n: i for i, n in enumerate(world.nodes)}
    span = (world.optima[1:] - world.optima[0]).T  # [d, k-1]
    q, _ = np.linalg.qr(span)
    dof = d - (k - 1)
    for leaf in tree.extant_leaves:
        r = world.traits[index[leaf]] - world.optima[0]
        r = r - q @ (q.T @ r)
        v = sigma**2 / (2 * a) * -np.expm1(-2 * a * tree.time(leaf))
        ratio = (r @ r) / (dof * v)
        assert abs(ratio - 1) <= Z * np.sqrt(2 / dof), (leaf, ratio)


def test_phylogenetic_signal_is_well_above_zero():
    # Blomberg's K of the main axis of variation (the first principal component of the
    # extant traits), against 999 shuffles of the tips: it must beat every one (p = 0.001).
    tree = yule(64, 31)
    world = evolve_tradeoff(
        tree, TraitsConfig(model="tradeoff", dim=8, tasks=3), np.random.default_rng(32)
    )
    index = {n: i for i, n in enumerate(world.nodes)}
    species = tree.extant_leaves
    x = world.traits[[index[s] for s in species]]
    x = x - x.mean(axis=0)
    pc1 = x @ np.linalg.svd(x, full_matrices=False)[2][0]
    cov = phylogenetic_covariance(tree, species)
    k, p = blomberg_k_test(pc1, cov, permutations=999, rng=np.random.default_rng(33))
    assert p == pytest.approx(1 / 1000), (k, p)
    assert k > 0.5, k


# ---------------------------------------------------------------------------- the world


TINY = """\
name: tiny_tradeoff
seed: 12
tree: {model: yule, n_species: 8}
traits: {model: tradeoff, dim: 4, tasks: 3}
species: {instances: 64, ambient_dim: 8}
autoencoder: {hidden: [16], steps: 40, batch_size: 32, device: cpu}
meta: {latent: 2, steps: 100, prior: archetypal, archetypes: 3, device: cpu}
analysis: {mantel_permutations: 9, random_trees: 5}
"""


def test_simulation_records_the_truth_and_reads_it_back(tmp_path):
    from evosim.simulation import load_simulation, simulate, write_simulation

    sim = simulate(parse_scenario(TINY))
    assert sim.task_optima.shape == (3, 4)
    assert set(sim.task_weights) == set(sim.traits)
    write_simulation(sim, tmp_path)
    header = (tmp_path / "task_optima.csv").read_text().splitlines()[0]
    assert header == "task,trait_1,trait_2,trait_3,trait_4"
    back = load_simulation(tmp_path)
    np.testing.assert_array_equal(back.task_optima, sim.task_optima)  # 17 digits: exact
    for node, w in sim.task_weights.items():
        np.testing.assert_array_equal(back.task_weights[node], w)
    # other worlds carry no tasks
    plain = simulate(parse_scenario(TINY.replace("model: tradeoff", "model: brownian")))
    assert plain.task_optima is None and plain.task_weights is None


@pytest.mark.slow
def test_run_scores_archetypes(tmp_path):
    import json

    import evosim

    evosim.run(parse_scenario(TINY), tmp_path / "run", progress=False)
    scores = json.loads((tmp_path / "run" / "metrics.json").read_text())["archetypes"]
    assert (tmp_path / "run" / "archetypes.json").exists()  # the figures' data
    assert scores["tasks"] == 3
    assert set(scores["baselines"]) == {"aa_traits", "aa_data_mean", "aa_raw_weights"}
    assert (tmp_path / "run" / "figures" / "archetypes.png").exists()
