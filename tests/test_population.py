"""The population-genetic engine against theory, and its reproducibility contract.

Statistical tests use fixed seeds and tolerances derived from the sample size: an estimate
must lie within Z = 4.5 standard errors of the theoretical value (two-sided p = 6.8e-6 per
comparison, so the ~15 comparisons in this file have a family-wise false-alarm rate below
1e-4 under theory). Standard errors are estimated from independent replicates (lineages
that share no history after a burn-in, or sister lineages whose changes are independent
given their common parent population).
"""

from __future__ import annotations

import random
import subprocess
import sys
import warnings
from collections import defaultdict

import numpy as np
import pytest

from evosim.evolve import population as population_module
from evosim.evolve.population import (
    BLEND_ALPHA,
    _cx_blend,
    _mut_gaussian,
    equilibrium_variance,
    evolve_population,
    generations_on_branch,
)
from evosim.phylo import Phylogeny
from evosim.scenario import TraitsConfig

Z = 4.5


def _config(dim: int = 2, root: float | list[float] = 0.0, **population) -> TraitsConfig:
    return TraitsConfig(model="population", dim=dim, root=root, population=population)


def _star(k: int, length: float) -> Phylogeny:
    return Phylogeny.from_newick("(" + ",".join(f"s{i}:{length}" for i in range(k)) + ")root;")


def _by_node(log: list[dict]) -> dict[str, list[dict]]:
    rows = defaultdict(list)
    for row in log:
        rows[row["node"]].append(row)
    return rows


def _column(rows: list[dict], name: str, dim: int) -> np.ndarray:
    return np.array([[row[f"{name}_{j + 1}"] for j in range(dim)] for row in rows])


# ---------------------------------------------------------------------------- helpers


def test_generations_on_branch_rounds_half_up_and_keeps_short_branches() -> None:
    assert generations_on_branch(0.0, 100) == 0
    assert generations_on_branch(1e-9, 100) == 1  # a real branch runs at least one generation
    assert generations_on_branch(0.125, 100) == 13  # 12.5 rounds up, not to even
    assert generations_on_branch(0.114, 100) == 11
    assert generations_on_branch(2.0, 100) == 200
    with pytest.raises(ValueError, match="branch length"):
        generations_on_branch(-1.0, 100)


def test_equilibrium_variance_is_the_fixed_point_of_the_variance_recursion() -> None:
    n, m = 50, 0.003
    assert equilibrium_variance(n, m) == pytest.approx((n - 1) * m, rel=1e-12)  # Lynch & Hill
    for s in (0.1, 0.5, 5.0):
        v = equilibrium_variance(n, m, s)
        assert (1 - 1 / n) * (v / (1 + s * v) + m) == pytest.approx(v, rel=1e-12)
    # Large N: s V^2 - s m V - m = 0, V = m/2 + sqrt(m^2/4 + m/s) (~ sqrt(m/s), Lande 1975).
    exact = m / 2 + np.sqrt(m**2 / 4 + m / 0.5)
    assert equilibrium_variance(10**9, m, 0.5) == pytest.approx(exact, rel=1e-6)


def test_blend_recombination_keeps_pair_sums_and_variance() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    x = rng.standard_normal((n, 2))
    pair_sums = x[0::2] + x[1::2]
    y = _cx_blend(x.copy(), rng=rng, alpha=BLEND_ALPHA, cxpb=1.0)
    np.testing.assert_allclose(y[0::2] + y[1::2], pair_sums, atol=1e-12)
    # Unrelated parents of variance 1: children have variance E[(1-g)^2 + g^2] = 1 with this
    # alpha. sd of a sample variance of n Gaussian-ish values ~ sqrt(2/n) (children have
    # slightly heavier tails; the estimate below uses their actual 4th moment).
    v = y.var(axis=0)
    se = np.sqrt((np.mean(y**4, axis=0) - v**2) / n)
    assert np.all(np.abs(v - 1.0) < Z * se)
    # ...whereas a plain uniform blend (alpha = 0) would shrink it to 2/3.
    z = _cx_blend(x.copy(), rng=rng, alpha=0.0, cxpb=1.0)
    assert np.all(np.abs(z.var(axis=0) - 2 / 3) < Z * se)


def test_gaussian_mutation_adds_rate_times_sigma_squared() -> None:
    rng = np.random.default_rng(1)
    n, sigma, p = 100_000, 0.3, 0.25
    step = _mut_gaussian(np.zeros((n, 3)), rng=rng, sigma=sigma, indpb=p)
    frac = np.mean(step != 0)
    assert abs(frac - p) < Z * np.sqrt(p * (1 - p) / step.size)
    m = p * sigma**2
    var = step.var()
    se = np.sqrt((np.mean(step**4) - var**2) / step.size)
    assert abs(var - m) < Z * se


def test_cheap_clone_is_a_full_independent_copy() -> None:
    _, individual = population_module._deap_classes()
    ind = individual([0.5, -1.0, 2.0])
    ind.fitness.values = (-0.25,)
    twin = population_module._clone_individual(ind)
    assert type(twin) is type(ind) and twin == ind and twin.fitness == ind.fitness
    twin[0] = 9.0
    del twin.fitness.values
    assert ind == [0.5, -1.0, 2.0] and ind.fitness.values == (-0.25,) and ind.fitness.valid


# ---------------------------------------------------------------------------- neutral theory


def _neutral_rates(size: int, engine: str, groups: int, dim: int, seed: int) -> dict:
    """Per-generation variance of a lineage's mean change, over G = 20 and G = 80 generations.

    Tree: root -> ``groups`` internal nodes (burn-in branches of 50 generations) -> two
    leaves each, 20 and 80 generations long. For every internal node the statistic
    ``mean_j (zbar_leaf - zbar_node)^2 / G`` is one replicate; replicates of different
    internal nodes are independent (their histories share only the root).
    """
    inner = ",".join(f"(a{i}:0.2,b{i}:0.8)n{i}:0.5" for i in range(groups))
    tree = Phylogeny.from_newick(f"({inner})root;")
    sigma, p = 0.1, 0.5
    config = _config(
        dim,
        size=size,
        founder_size=size,  # no bottleneck: daughters start as copies of the parent
        fitness="neutral",
        generations_per_time=100,
        mutation_sigma=sigma,
        mutation_rate=p,
        recombination=0.3,  # pairs keep their sum: the mean's dynamics do not change
        engine=engine,
    )
    res = evolve_population(tree, config, seed, workers=1)
    m = p * sigma**2
    out = {"m": m}
    for leaf, g in (("a", 20), ("b", 80)):
        y = np.array(
            [
                np.mean((res.traits[f"{leaf}{i}"] - res.traits[f"n{i}"]) ** 2) / g
                for i in range(groups)
            ]
        )
        out[g] = (y.mean(), y.std(ddof=1) / np.sqrt(groups))
    within = np.array([res.individuals[f"n{i}"].var(axis=0).mean() for i in range(groups)])
    out["within"] = (within.mean(), within.std(ddof=1) / np.sqrt(groups))
    return out


def test_neutral_mean_diffuses_at_the_mutational_variance_whatever_the_size() -> None:
    """Neutral divergence rate (Lynch & Hill 1986), derived for this exact model.

    Per gene and generation: Wright-Fisher sampling of ``N`` parents with replacement moves
    the mean by a term of variance ``V_t / N`` (``V_t`` the within-population variance,
    divisor ``N``); blend recombination keeps each pair's sum, so it moves the mean not at
    all; mutation (``indpb = p``, ``N(0, sigma^2)``) adds ``m / N`` with
    ``m = p sigma^2``. So ``Var(mean change per generation) = (E[V_t] + m) / N``.
    Sampling keeps ``(1 - 1/N)`` of ``V`` and mutation adds ``m (1 - 1/N)``, so
    ``E[V'] = (1 - 1/N)(E[V] + m)``, whose fixed point is ``V* = (N - 1) m``. The root
    population starts at that equilibrium, so at every generation the mean's variance grows
    by ``((N - 1) m + m) / N = m``: linear in T, rate ``m``, independent of ``N``. This is
    Lynch & Hill's (1986, Evolution 40:915-935) neutral rate of divergence ``2 sigma_m^2``
    between two lineages, i.e. ``sigma_m^2`` per lineage.
    """
    rates = {n: _neutral_rates(n, "numpy", groups=150, dim=8, seed=11) for n in (10, 100)}
    for n, r in rates.items():
        m = r["m"]
        # The premise of the derivation: the within-population variance sits at V* = (N-1) m.
        within, se = r["within"]
        assert abs(within - (n - 1) * m) < Z * se, (n, within / ((n - 1) * m), se)
        for g in (20, 80):  # linear in T: the same per-generation rate at both lengths
            rate, se = r[g]
            assert abs(rate - m) < Z * se, (n, g, rate / m, se / m)
            assert se / m < 0.1  # the test has power: a 45% error would be caught
    # Independent of N: the two sizes' rates agree (difference of independent estimates).
    for g in (20, 80):
        (r10, s10), (r100, s100) = rates[10][g], rates[100][g]
        assert abs(r10 - r100) < Z * np.hypot(s10, s100)


def test_neutral_rate_with_deap_operators() -> None:
    """The same Lynch & Hill rate with DEAP's own operators (``engine: deap``)."""
    r = _neutral_rates(10, "deap", groups=60, dim=4, seed=12)
    for g in (20, 80):
        rate, se = r[g]
        assert abs(rate - r["m"]) < Z * se, (g, rate / r["m"], se / r["m"])
        assert se / r["m"] < 0.2


# ---------------------------------------------------------------------------- stabilizing selection


def _stabilizing(engine: str, k: int, length: float, size: int, seed: int):
    sigma, s = 0.05, 0.5
    config = _config(
        1,  # one trait: Lande's univariate response (several traits build up LD, the Bulmer effect)
        size=size,
        founder_size=size,
        fitness="stabilizing",
        selection_strength=s,
        optimum_sigma=0.0,  # fixed optimum...
        optimum_shift=1.5,  # ...displaced at the split, so the population must move to it
        generations_per_time=100,
        mutation_sigma=sigma,
        mutation_rate=1.0,
        engine=engine,
    )
    res = evolve_population(_star(k, length), config, seed, workers=1)
    return res, sigma**2, s


def _lande_slope(res, s: float, k: int, generations: int = 10) -> tuple[float, float]:
    """Regress the realised change of the mean over ``generations`` on Lande's prediction.

    Gaussian fitness ``exp(-s (x - theta)^2 / 2)`` on a population of variance ``V`` moves the
    mean by ``-s V / (1 + s V) (zbar - theta)`` per generation (Lande 1976), so
    ``d_G = d_0 prod_g 1 / (1 + s V_g)`` with ``V_g`` the logged variance of generation g.
    """
    rows = _by_node(res.log)
    pred, real = [], []
    for i in range(k):
        lg = rows[f"s{i}"][: generations + 1]
        theta = res.optima[f"s{i}"][0]
        d = _column(lg, "trait_mean", 1)[:, 0] - theta
        v = _column(lg, "trait_sd", 1)[:, 0] ** 2
        pred.append(d[0] * (np.prod(1 / (1 + s * v[:-1])) - 1))
        real.append(d[-1] - d[0])
    pred, real = np.array(pred), np.array(real)
    slope = (pred @ real) / (pred @ pred)
    resid = real - slope * pred
    se = np.sqrt(resid @ resid / (k - 1) / (pred @ pred))
    return slope, se


def test_stabilizing_selection_converges_to_a_fixed_optimum_with_bounded_variance() -> None:
    k, size = 160, 100
    res, m, s = _stabilizing("numpy", k, length=2.0, size=size, seed=21)
    leaves = [f"s{i}" for i in range(k)]
    v_eq = equilibrium_variance(size, m, s)

    # 1. The first 10 generations follow Lande's response to selection.
    slope, se = _lande_slope(res, s, k)
    assert abs(slope - 1.0) < Z * se and se < 0.05, (slope, se)

    # 2. After 200 generations the mean sits at the optimum: its deviation d is the stationary
    # AR(1) d' = (1 - c) d + drift, c = sV/(1+sV), drift variance (V + m)/N, so
    # E[d^2] = ((V + m)/N) / (1 - (1 - c)^2). The k leaves are independent replicates:
    # the mean of k squared Gaussians has relative sd sqrt(2/k).
    d0 = np.array([res.optima[n][0] - res.traits["root"][0] for n in leaves])
    d = np.array([res.traits[n][0] - res.optima[n][0] for n in leaves])
    v = np.array([res.individuals[n].var() for n in leaves])
    c = s * v.mean() / (1 + s * v.mean())
    expected = (v.mean() + m) / size / (1 - (1 - c) ** 2)
    assert abs(np.mean(d**2) / expected - 1) < Z * np.sqrt(2 / k)
    assert np.mean(d**2) < 0.02 * np.mean(d0**2)

    # 3. The variance stays bounded, at the mutation-selection-drift balance (Gaussian
    # approximation, Bulmer 1980; measured 1.03 V_eq here), far below the neutral (N-1) m.
    se_v = v.std(ddof=1) / np.sqrt(k)
    assert abs(v.mean() - v_eq) < Z * se_v + 0.1 * v_eq  # sampling + 10% for the approximation
    # Through time, the variance averaged over the k lineages never leaves [0.5, 1.5] V_eq
    # (measured 0.72-1.07: directional selection first trims it), while neutral drift would
    # carry it to (N-1) m = 4 V_eq.
    rows = _by_node(res.log)
    v_t = np.mean([_column(rows[n], "trait_sd", 1)[:, 0] ** 2 for n in leaves], axis=0)
    assert 0.5 * v_eq < v_t.min() and v_t.max() < 1.5 * v_eq < 0.5 * (size - 1) * m


def test_stabilizing_selection_with_deap_operators_and_tournaments() -> None:
    res, _, s = _stabilizing("deap", 60, length=0.1, size=30, seed=22)
    slope, se = _lande_slope(res, s, 60)
    assert abs(slope - 1.0) < Z * se and se < 0.1, (slope, se)
    # Tournaments only see ranks: the mean still climbs to the optimum.
    config = _config(
        1,
        size=30,
        founder_size=30,
        selection="tournament",
        tournament_size=3,
        optimum_sigma=0.0,
        optimum_shift=2.0,
        mutation_sigma=0.05,
        generations_per_time=100,
    )
    res = evolve_population(_star(20, 1.0), config, 23, workers=1)
    d0 = np.array([res.optima[f"s{i}"][0] - res.traits["root"][0] for i in range(20)])
    d = np.array([res.traits[f"s{i}"][0] - res.optima[f"s{i}"][0] for i in range(20)])
    assert np.mean(d**2) < 0.01 * np.mean(d0**2)


# ---------------------------------------------------------------------------- environment, founders


def test_optimum_moves_as_brownian_motion_plus_shift() -> None:
    k, length, sig, shift = 300, 0.5, 0.8, 0.3
    config = _config(
        4, size=4, founder_size=4, optimum_sigma=sig, optimum_shift=shift, generations_per_time=20
    )
    res = evolve_population(_star(k, length), config, 31, workers=1)
    delta = np.array([res.optima[f"s{i}"] for i in range(k)]).ravel()  # root optimum is 0
    var = sig**2 * length + shift**2
    # k * dim independent N(0, var): the sample mean square has relative sd sqrt(2 / n).
    assert abs(np.mean(delta**2) / var - 1) < Z * np.sqrt(2 / delta.size)
    assert abs(delta.mean()) < Z * np.sqrt(var / delta.size)


def test_founders_are_a_sample_of_the_parent_population() -> None:
    tree = Phylogeny.from_newick("((a:0,b:0)n:1,c:1)root;")
    res = evolve_population(tree, _config(3, size=40, founder_size=5), 41, workers=1)
    parent = {tuple(r) for r in res.individuals["n"]}
    for leaf in ("a", "b"):
        genomes = {tuple(r) for r in res.individuals[leaf]}
        assert len(genomes) == 5 and genomes <= parent
    assert res.generations == {"root": 0, "n": 100, "a": 0, "b": 0, "c": 100}


# ---------------------------------------------------------------- the result, reproducibility


TREE = "(((A:0.31,B:0.2):0.4,(C:0.05,D:0.9):0.1):0.5,(E:1.2,(F:0.3,G:0.45):0.2):0.15)root;"


def test_result_covers_every_node_and_the_log_matches_it() -> None:
    tree = Phylogeny.from_newick(TREE)
    dim, size = 3, 20
    config = _config(dim, size=size, founder_size=8, root=[1.0, -2.0, 0.5], recombination=0.5)
    res = evolve_population(tree, config, 5, workers=1)
    rows = _by_node(res.log)
    assert list(rows) == tree.preorder()
    columns = ["node", "generation", "time"]
    columns += [f"trait_mean_{j + 1}" for j in range(dim)] + [
        f"trait_sd_{j + 1}" for j in range(dim)
    ]
    columns += ["fitness_mean", "fitness_sd"]
    for node in tree.preorder():
        assert res.traits[node].shape == (dim,)
        assert res.individuals[node].shape == (size, dim)
        np.testing.assert_allclose(res.traits[node], res.individuals[node].mean(axis=0))
        lg = rows[node]
        assert list(lg[0]) == columns
        assert [r["generation"] for r in lg] == list(range(res.generations[node] + 1))
        assert lg[-1]["time"] == tree.time(node)
        np.testing.assert_allclose(_column(lg[-1:], "trait_mean", dim)[0], res.traits[node])
        np.testing.assert_allclose(
            _column(lg[-1:], "trait_sd", dim)[0], res.individuals[node].std(axis=0)
        )
        assert 0 < lg[-1]["fitness_mean"] <= 1
    np.testing.assert_allclose(res.traits["root"], [1.0, -2.0, 0.5], atol=1.0)
    assert res.generations["D"] == 90 and res.generations["C"] == 5


def _same(a, b) -> None:
    assert a.log == b.log
    for node in a.traits:
        np.testing.assert_array_equal(a.individuals[node], b.individuals[node])
        np.testing.assert_array_equal(a.traits[node], b.traits[node])
        np.testing.assert_array_equal(a.optima[node], b.optima[node])


@pytest.mark.parametrize("engine", ["numpy", "deap"])
def test_same_seed_same_result_serial_or_parallel(engine: str) -> None:
    tree = Phylogeny.from_newick(TREE)
    config = _config(
        2, size=30, founder_size=10, recombination=0.4, optimum_shift=0.2, engine=engine
    )
    state = random.getstate()
    serial = evolve_population(tree, config, 7, workers=1)
    assert random.getstate() == state  # DEAP's global random is restored
    parallel = evolve_population(tree, config, 7, workers=2)
    _same(serial, parallel)
    # Order-free: a branch's result depends on its name and its parent only, so relabelling
    # an unrelated subtree changes nothing on the others.
    other = evolve_population(tree.relabel({"E": "E2"}), config, 7, workers=1)
    for node in ("A", "B", "C", "D", "F", "G"):
        np.testing.assert_array_equal(other.individuals[node], serial.individuals[node])
    different = evolve_population(tree, config, 8, workers=1)
    assert not np.array_equal(different.traits["A"], serial.traits["A"])


_REIMPORT = """
import importlib, warnings
warnings.simplefilter("error")
from evosim.phylo import Phylogeny
from evosim.scenario import TraitsConfig
import evosim.evolve.population as p
tree = Phylogeny.from_newick("(A:0.1,B:0.1)root;")
config = TraitsConfig(model="population", dim=2, population={"size": 10, "engine": "deap",
                                                             "founder_size": 10})
a = p.evolve_population(tree, config, 3, workers=1)
p = importlib.reload(p)
b = p.evolve_population(tree, config, 3, workers=1)
assert a.log == b.log
print("ok")
"""


def test_no_deap_warnings_on_reimport_or_rerun() -> None:
    # A fresh interpreter: first creation of the creator classes, then a re-import.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _REIMPORT], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    # In this process (classes possibly made by earlier tests): a second run is silent too.
    tree = Phylogeny.from_newick("(A:0.1,B:0.1)root;")
    config = _config(2, size=10, founder_size=10, engine="deap")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = evolve_population(tree, config, 3, workers=1)
        second = evolve_population(tree, config, 3, workers=1)
    _same(first, second)


def test_bad_workers_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="workers"):
        evolve_population(_star(2, 1.0), _config(), 0, workers=0)


def test_plot_population_from_rows_and_from_csv(tmp_path) -> None:
    import csv

    from evosim.plot import plot_population

    tree = Phylogeny.from_newick(TREE)
    res = evolve_population(tree, _config(3, size=10, founder_size=5), 1, workers=1)
    png = plot_population(res.log, tree, tmp_path / "pop.png", extinct=["C"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(res.log[0]))
        writer.writeheader()
        writer.writerows(res.log)
    png = plot_population(tmp_path / "log.csv", tree, tmp_path / "pop2.png")
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="empty"):
        plot_population([], tree, tmp_path / "pop3.png")
