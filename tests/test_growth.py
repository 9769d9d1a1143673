"""Tree growth models against theory (fixed seeds; tolerances from the sample sizes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from evosim.phylo import Phylogeny, birth_death, coalescent, grow_tree, yule
from evosim.scenario import TreeConfig
from evosim.seeding import rng as seeded_rng

P_MIN = 1e-3  # KS tests: reject only below this p-value (fixed seeds, so deterministic)


def _normalised_waits(t: Phylogeny, birth: float, death: float) -> np.ndarray:
    """Waiting times between events times (lineages x total rate), incl. the last interval.

    Under the model (and the GSA conditioning, see evosim.phylo.growth) these are iid Exp(1).
    """
    births = [t.time(v) for v in t.internal_nodes if v != t.root]
    deaths = [t.time(v) for v in t.leaves if t.graph.nodes[v]["extinct"]]
    times = np.array(births + deaths)
    change = np.array([1] * len(births) + [-1] * len(deaths))
    order = np.argsort(times, kind="stable")
    times, change = times[order], change[order]
    k = 2 + np.concatenate([[0], np.cumsum(change)])  # lineages during each interval
    present = max(t.time(v) for v in t.extant_leaves)
    edges = np.concatenate([[0.0], times, [present]])
    return np.diff(edges) * k * (birth + death)


def test_conventions_and_names():
    rng = np.random.default_rng(0)
    t = birth_death(1.0, 0.5, 15, rng=rng)
    pre = t.preorder()
    assert t.root == "n1" and t.time("n1") == 0.0
    ext = [v for v in t.leaves if not t.graph.nodes[v]["extinct"]]
    dead = [v for v in t.leaves if t.graph.nodes[v]["extinct"]]
    assert ext == [f"s{i}" for i in range(1, 16)]  # numbered in preorder
    assert dead == [f"x{i}" for i in range(1, len(dead) + 1)]
    assert [v for v in pre if v.startswith("n")] == [
        f"n{i}" for i in range(1, len(pre) - len(t.leaves) + 1)
    ]
    present = t.time("s1")
    assert all(t.time(v) == present for v in ext)
    assert all(t.time(v) < present for v in dead)
    assert all(len(t.children(v)) == 2 for v in t.internal_nodes)  # full tree is binary
    assert t.graph.graph["rooted"] is True


@pytest.mark.parametrize("model", ["yule", "bd", "coalescent"])
def test_no_zero_length_terminal_branches(model):
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 12))
        if model == "yule":
            t = yule(2.0, n, rng=rng)
        elif model == "bd":
            t = birth_death(1.0, 0.7, n, rng=rng)
        else:
            t = coalescent(n, 1.0, rng=rng)
        assert len(t.extant_leaves) == n
        assert min(t.length(v) for v in t.leaves) > 0.0


def test_yule_waiting_times_are_exponential():
    t = yule(1.5, 3000, rng=np.random.default_rng(2))
    w = _normalised_waits(t, 1.5, 0.0)
    assert w.size == 2999
    assert stats.kstest(w, "expon").pvalue > P_MIN


def test_birth_death_waiting_times_are_exponential():
    t = birth_death(1.0, 0.5, 1000, rng=np.random.default_rng(3))
    w = _normalised_waits(t, 1.0, 0.5)
    assert w.size > 2000
    assert stats.kstest(w, "expon").pvalue > P_MIN


def test_present_falls_exponentially_after_last_event():
    # GSA: the offset of the present after the last event is Exp(n (b + d)), pooled over trees
    rng = np.random.default_rng(4)
    offsets = []
    for _ in range(600):
        t = birth_death(1.0, 0.4, 5, rng=rng)
        offsets.append(_normalised_waits(t, 1.0, 0.4)[-1])
    assert stats.kstest(offsets, "expon").pvalue > P_MIN


def test_coalescent_tmrca_mean():
    # E[TMRCA] = 2 N (1 - 1/n); Var = sum_k (2N / (k (k-1)))^2. Tolerance: 4 standard errors.
    for n, N, reps, seed in ((10, 1.0, 3000, 5), (4, 2.5, 2000, 6)):
        rng = np.random.default_rng(seed)
        tm = np.array([coalescent(n, N, rng=rng).depth() for _ in range(reps)])
        mean = 2 * N * (1 - 1 / n)
        sd = math.sqrt(sum((2 * N / (k * (k - 1))) ** 2 for k in range(2, n + 1)))
        assert abs(tm.mean() - mean) < 4 * sd / math.sqrt(reps)


def test_coalescent_waiting_times_are_exponential():
    N = 3.0
    t = coalescent(2000, N, rng=np.random.default_rng(7))
    tmrca = t.depth()
    back = np.sort(tmrca - np.array([t.time(v) for v in t.internal_nodes]))
    waits = np.diff(np.concatenate([[0.0], back]))
    k = np.arange(2000, 1, -1)
    assert stats.kstest(waits * k * (k - 1) / (2 * N), "expon").pvalue > P_MIN
    assert all(t.time(v) == tmrca for v in t.leaves)


def _weighted_extinct_reference(lam, mu, n, reps, rng):
    """Independent estimate of E[# extinct lineages | n extant] from the GSA's definition.

    Unconditioned histories from a root split (two lineages); every interval spent with n
    lineages is weighted by its length and contributes the deaths so far (the ratio
    estimator over histories). Vectorised over histories; followed until n + 45 lineages
    (returning to n from there has probability (mu/lam)^45 < 1e-13) or extinction.
    """
    top = n + 45
    k = np.full(reps, 2)
    deaths = np.zeros(reps)
    sx = np.zeros(reps)
    sy = np.zeros(reps)
    live = np.ones(reps, dtype=bool)
    while live.any():
        idx = np.flatnonzero(live)
        kk = k[idx]
        w = rng.exponential(1.0, idx.size) / (kk * (lam + mu))
        at_n = kk == n
        sx[idx[at_n]] += w[at_n] * deaths[idx[at_n]]
        sy[idx[at_n]] += w[at_n]
        up = rng.random(idx.size) < lam / (lam + mu)
        k[idx] = kk + np.where(up, 1, -1)
        deaths[idx] += ~up
        live[idx] = (k[idx] > 0) & (k[idx] < top)
    ratio = sx.sum() / sy.sum()
    se = math.sqrt(((sx - ratio * sy) ** 2).sum()) / sy.sum()
    return ratio, se


def test_birth_death_extinct_count_matches_expectation():
    lam, mu, n = 1.0, 0.5, 6
    ref, ref_se = _weighted_extinct_reference(lam, mu, n, 60000, np.random.default_rng(8))
    rng = np.random.default_rng(9)
    reps = 3000
    counts = np.array(
        [len(birth_death(lam, mu, n, rng=rng).leaves) - n for _ in range(reps)], dtype=float
    )
    se = counts.std(ddof=1) / math.sqrt(reps)
    # 4.5 combined standard errors (two-sided p ~ 7e-6 under a correct sampler)
    assert abs(counts.mean() - ref) < 4.5 * math.hypot(se, ref_se)
    assert counts.mean() > 1.0  # extinct lineages really are kept


def test_seeded_and_dispatched():
    for model in ("yule", "birth_death", "coalescent"):
        cfg = TreeConfig(model=model, n_species=12, birth_rate=2.0, death_rate=0.5)
        a = grow_tree(cfg, seeded_rng(7, "tree"))
        b = grow_tree(cfg, seeded_rng(7, "tree"))
        assert a.to_newick() == b.to_newick()
        assert len(a.extant_leaves) == 12
    c = grow_tree(TreeConfig(model="birth_death", n_species=12), seeded_rng(8, "tree"))
    assert c.to_newick() != a.to_newick()
    cfg = TreeConfig(model="newick", newick="((A:1,B:1):1,C:2);")
    assert grow_tree(cfg, np.random.default_rng(0)).leaves == ["A", "B", "C"]


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="death_rate must be < birth_rate"):
        birth_death(1.0, 1.0, 5, rng=rng)
    with pytest.raises(ValueError, match="n_species"):
        yule(1.0, 1, rng=rng)
    with pytest.raises(ValueError, match="birth_rate"):
        yule(-1.0, 5, rng=rng)
    with pytest.raises(ValueError, match="population_size"):
        coalescent(5, 0.0, rng=rng)
