"""The sped-up phylogenetics and analysis against the previous implementation.

``bench/legacy`` keeps the code of commit 4eb2ace (networkx-backed trees, fixed-size
Mantel test, sampled random trees). Every part that was rewritten for speed must give the
same result on known-answer and random cases: identical trees, distances, splits and RF;
Mantel p-values within their Monte Carlo error; exact expectations within the sampling
error of the old averages.
"""

from __future__ import annotations

import importlib
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from evosim.analysis import metrics
from evosim.analysis.mantel import mantel_tests
from evosim.analysis.metrics import euclidean, mantel, mantel_null_mean
from evosim.analysis.random_trees import expected_random_rf
from evosim.errors import ResourceError
from evosim.phylo import (
    NewickError,
    Phylogeny,
    compare_trees,
    neighbor_joining,
    quartet_distance_estimate,
    robinson_foulds,
    shared_splits,
    triplet_distance,
    triplet_distance_estimate,
    upgma,
    yule,
)

mantel_module = importlib.import_module("evosim.analysis.mantel")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
legacy = pytest.importorskip("legacy.phylo")
legacy_metrics = pytest.importorskip("legacy.analysis.metrics")
legacy_support = pytest.importorskip("legacy.analysis.support")


def _old(t: Phylogeny):
    return legacy.Phylogeny.from_newick(t.to_newick())


def _random_tree(rng: np.random.Generator, n: int, *, polytomies: bool = False) -> Phylogeny:
    t = yule(1.0, n, rng=rng)
    text = t.to_newick()
    if polytomies:  # contract some internal edges by removing their parentheses in Newick
        g = t.graph.copy()
        for v in t.internal_nodes[1:]:
            if rng.random() < 0.3:
                p = next(iter(g.pred[v]))
                for c in list(g.succ[v]):
                    g.add_edge(p, c, length=1.0)
                g.remove_node(v)
        for v in g.nodes:
            g.nodes[v].pop("time", None)
        text = Phylogeny(g).to_newick()
    return Phylogeny.from_newick(text)


def _inputs(rng: np.random.Generator, n: int) -> dict[str, tuple[list[str], np.ndarray]]:
    labels, D = yule(1.0, n, rng=rng).patristic_distances()
    noise = rng.uniform(0.0, 0.05 * D.mean(), D.shape)
    D = D + noise + noise.T
    np.fill_diagonal(D, 0.0)
    return {"tree-like": (labels, D), "points": (labels, euclidean(rng.normal(size=(n, 16))))}


# ---------------------------------------------------------------------------- trees
@pytest.mark.parametrize("seed", range(4))
def test_newick_parse_and_write_as_before(seed):
    rng = np.random.default_rng(seed)
    t = _random_tree(rng, int(rng.integers(2, 300)), polytomies=seed % 2 == 1)
    for text in (t.to_newick(), t.to_newick(lengths=False), "[&U] " + t.to_newick()):
        new, old = Phylogeny.from_newick(text), legacy.Phylogeny.from_newick(text)
        assert new.preorder() == old.preorder()
        assert [new.parent(v) for v in new.preorder()] == [old.parent(v) for v in old.preorder()]
        np.testing.assert_array_equal(new.times(), old.times())
        assert new.to_newick() == old.to_newick()
        assert new.rooted == old.rooted
        assert new.postorder() == old.postorder()
        assert new.leaves == old.leaves and new.internal_nodes == old.internal_nodes


@pytest.mark.parametrize(
    "text",
    [
        "((A:1,B:2)ab:1,(C,D)'x y':0.5)root:0.1;",
        "(A,B,(C,D)E)F;",
        "((,),(,));",
        "();",
        "A;",
        "  ( A : 1 , B : 2 ) ;\n",
        "((A:1e-3,B:-2.5E+2):1,C);",
        "[&R] ((A,B),C);",
    ],
)
def test_newick_known_strings_as_before(text):
    new, old = Phylogeny.from_newick(text), legacy.Phylogeny.from_newick(text)
    assert new.to_newick() == old.to_newick()
    assert new.preorder() == old.preorder()


def test_duplicate_leaf_names_raise_newick_error_naming_them():
    with pytest.raises(NewickError, match="duplicate leaf labels: 'A'"):
        Phylogeny.from_newick("((A,B),(A,C));")
    with pytest.raises(NewickError, match="'A'.*'B'"):
        Phylogeny.from_newick("(A,B,A,B);")


@pytest.mark.parametrize("seed", range(3))
def test_distances_prune_splits_as_before(seed):
    rng = np.random.default_rng(10 + seed)
    t = _random_tree(rng, 120, polytomies=seed == 2)
    o = _old(t)
    lab, D = t.patristic_distances()
    lab_o, D_o = o.patristic_distances()
    assert lab == lab_o
    np.testing.assert_array_equal(D, D_o)
    keep = list(rng.choice(t.leaves, 40, replace=False))
    p, po = t.prune(keep), o.prune(keep)
    assert p.to_newick() == po.to_newick()
    for rooted in (True, False):
        assert t.clades(rooted=rooted) == o.clades(rooted=rooted)
    assert t.splits() == legacy_support.splits(o)
    assert t.mrca(keep[:5]) == o.mrca(keep[:5])


@pytest.mark.parametrize("seed", range(6))
def test_rf_and_shared_splits_as_before(seed):
    rng = np.random.default_rng(20 + seed)
    n = int(rng.integers(5, 200))
    a = _random_tree(rng, n, polytomies=seed % 3 == 0)
    b = _random_tree(rng, n, polytomies=seed % 2 == 0)
    b = b.relabel(dict(zip(b.leaves, a.leaves)))
    oa, ob = _old(a), _old(b)
    for rooted in (False, True):
        for norm in (False, True):
            assert robinson_foulds(a, b, rooted=rooted, normalized=norm) == (
                legacy.robinson_foulds(oa, ob, rooted=rooted, normalized=norm)
            )
        found = shared_splits(a, b, rooted=rooted)
        theirs = b.clades(rooted=rooted)
        for node, side in a.splits(rooted=rooted).items():
            assert found[node] == (side in theirs)
    assert triplet_distance(a, b) == legacy.triplet_distance(oa, ob)
    assert quartet_distance_estimate(a, b, seed=3) == legacy.quartet_distance_estimate(
        oa, ob, seed=3
    )


@pytest.mark.parametrize("n", [60, 250, 700])
def test_nj_and_upgma_give_the_same_trees(n):
    rng = np.random.default_rng(n)
    for labels, D in _inputs(rng, n).values():
        # the same unrooted tree with the same branch lengths (the centre's children may
        # be listed in another order)
        new, old = neighbor_joining(D, labels), legacy.neighbor_joining(D, labels)
        assert not new.rooted
        assert robinson_foulds(new, _from_old(old)) == 0
        np.testing.assert_allclose(
            new.patristic_distances(labels)[1], old.patristic_distances(labels)[1], atol=1e-9
        )
        new, old = upgma(D, labels), legacy.upgma(D, labels)
        assert robinson_foulds(new, _from_old(old), rooted=True) == 0
        np.testing.assert_allclose(
            new.patristic_distances(labels)[1], old.patristic_distances(labels)[1], atol=1e-12
        )


def _from_old(t) -> Phylogeny:  # noqa: ANN001
    return Phylogeny.from_newick(t.to_newick())


# ---------------------------------------------------------------------------- estimates
def test_triplet_estimate_agrees_with_the_exact_count():
    rng = np.random.default_rng(5)
    a, b = _random_tree(rng, 40), _random_tree(rng, 40)
    b = b.relabel(dict(zip(b.leaves, a.leaves)))
    exact = triplet_distance(a, b)
    est, se = triplet_distance_estimate(a, b, samples=20_000, seed=1)
    # binomial sampling: 4.5 standard errors (two-sided p ~ 7e-6)
    assert abs(est - exact) <= 4.5 * max(se, math.sqrt(exact * (1 - exact) / 20_000))


def test_compare_trees_on_huge_caterpillars_refuses_up_front_or_runs_bounded():
    n = 100_000
    text = "(" * (n - 1) + "L0," + ",".join(f"L{i})" for i in range(1, n)) + ";"
    a = Phylogeny.from_newick(text)
    b = Phylogeny.from_newick(text)
    with pytest.raises(ResourceError, match="100,000 leaves.*GiB"):
        compare_trees(a, b)
    m = compare_trees(a, b, cophenetic=False)
    assert m["rf"] == 0 and m["quartet"] == 0 and m["triplet"] == 0
    assert m["quartet_se"] == 0 and m["cophenetic_pearson"] is None


def test_compare_and_the_analysis_agree_on_the_same_trees():
    rng = np.random.default_rng(6)
    true = yule(1.0, 30, rng=rng)
    labels, D = true.patristic_distances()
    noisy = euclidean(rng.normal(size=(30, 4))) + D
    for method in ("nj", "upgma"):
        tree, m = metrics.score_distances(
            noisy, labels, true, method=method, mantel_permutations=0, rng=rng
        )
        # what `evosim compare true_tree.nwk inferred_tree.nwk` reads back
        from evosim.analysis.support import support_newick

        again = Phylogeny.from_newick(support_newick(tree))
        c = compare_trees(again, Phylogeny.from_newick(true.to_newick()))
        for k in ("rf", "nrf", "quartet", "triplet", "cophenetic_pearson", "cophenetic_spearman"):
            assert (
                c[k] == pytest.approx(m[k], rel=1e-12, abs=1e-12)
                if m[k] is not None
                else (c[k] is None)
            ), k


# ---------------------------------------------------------------------------- Mantel
def _mantel_cases(rng: np.random.Generator, n: int):
    t = yule(1.0, n, rng=rng)
    _, A = t.patristic_distances()
    pts = euclidean(rng.normal(size=(n, 6)))
    yield A, A + 0.5 * pts / pts.mean() * A.mean()  # strong
    yield A, A + 4.0 * pts / pts.mean() * A.mean()  # weak
    yield A, pts  # none


@pytest.mark.parametrize("n", [12, 90])
def test_mantel_p_within_monte_carlo_error_of_the_fixed_test(n):
    rng = np.random.default_rng(n)
    for A, B in _mantel_cases(rng, n):
        r_new, p_new = mantel(A, B, 999, np.random.default_rng(1))
        r_old, p_old = legacy_metrics.mantel(A, B, 999, np.random.default_rng(2))
        assert r_new == pytest.approx(r_old, abs=1e-12)
        # standard errors: binomial for the fixed test; the sequential one stops with h =
        # 20 hits, so its relative error is about 1 / sqrt(h) (Besag & Clifford 1991)
        se_old = math.sqrt(max(p_old * (1 - p_old), 1e-3) / 999)
        se_new = max(p_new / math.sqrt(metrics.MANTEL_HITS), math.sqrt(1e-3 / 999))
        assert abs(p_new - p_old) <= 4.5 * math.hypot(se_old, se_new), (p_new, p_old)


def _reference_mantel(A, B, permutations, rng, stop_after):
    """The sequential test written out plainly: B permuted, one permutation at a time."""
    iu = np.triu_indices(A.shape[0], 1)
    r = np.corrcoef(A[iu], B[iu])[0, 1]
    hits = 0
    for drawn in range(1, permutations + 1):
        q = np.argsort(rng.random((1, A.shape[0])), axis=1)[0]
        hits += np.corrcoef(A[iu], B[np.ix_(q, q)][iu])[0, 1] >= r - 1e-12
        if hits == stop_after:
            return r, stop_after / drawn
    return r, (1 + hits) / (1 + permutations)


@pytest.mark.parametrize("n", [7, 40, 150])
def test_mantel_equals_the_plain_sequential_test(n):
    # Same generator state, same permutations: the p-values are identical, not just close.
    rng = np.random.default_rng(n)
    for A, B in _mantel_cases(rng, n):
        for stop_after in (5, 20, 1000):
            r, p = mantel(A, B, 199, np.random.default_rng(4), stop_after=stop_after)
            r0, p0 = _reference_mantel(A, B, 199, np.random.default_rng(4), stop_after)
            assert r == pytest.approx(r0, abs=1e-12)
            assert p == p0, (n, stop_after, p, p0)


def test_mantel_tests_share_permutations_and_match_each_test_alone(monkeypatch):
    # Several matrices against one reference on one stream give, for each, the p-value of
    # its own test from a generator in the same state, whatever the blocking of rows.
    rng = np.random.default_rng(11)
    cases = list(_mantel_cases(rng, 120))
    ref = cases[0][0]
    others = [B for _, B in cases] + [ref]
    alone = [mantel(ref, B, 299, np.random.default_rng(5)) for B in others]
    monkeypatch.setattr(mantel_module, "_BLOCK_BYTES", 8 * 120 * 64 * 7)  # 7-row blocks
    shared = mantel_tests(ref, others, 299, np.random.default_rng(5))
    assert shared == alone
    assert shared[-1][1] == 1 / 300  # a matrix against itself: no permutation beats it


def test_mantel_enumerates_small_problems_exactly():
    rng = np.random.default_rng(7)
    A = euclidean(rng.normal(size=(5, 2)))
    B = euclidean(rng.normal(size=(5, 2)))
    r, p = mantel(A, B, 999, rng)
    iu = np.triu_indices(5, 1)
    count = 0
    for perm in itertools.permutations(range(5)):
        q = np.asarray(perm)
        count += np.corrcoef(A[iu], B[np.ix_(q, q)][iu])[0, 1] >= r - 1e-12
    assert p == count / 120


def test_sequential_mantel_null_mean():
    # Under the null (independent random matrices) the mean p-value of the sequential test
    # is mantel_null_mean. P = 49, h = 5: p lies in [0.02, 1] with sd < 0.3, so 600 trials
    # give the mean to sd < 0.0123; tolerance 4 sd.
    g = np.random.default_rng(8)
    ps = [
        mantel(euclidean(g.normal(size=(9, 2))), euclidean(g.normal(size=(9, 2))), 49, g,
               stop_after=5)[1]
        for _ in range(600)
    ]  # fmt: skip
    assert np.mean(ps) == pytest.approx(mantel_null_mean(49, 5), abs=4 * 0.0123)
    assert mantel_null_mean(99, 100) == pytest.approx(101 / 200)  # the fixed-size test


def test_mantel_device_is_explicit(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # even if CUDA were there
    A = euclidean(np.random.default_rng(0).normal(size=(300, 3)))
    r, p = mantel(A, A, 19, np.random.default_rng(0))  # runs on the CPU by default
    assert r == pytest.approx(1.0) and p == 1 / 20


def test_mantel_leaves_torch_the_threads_it_was_given():
    """numba's OpenMP pool shares the process's OpenMP runtime with torch, and starting it
    reset torch to every core: a sweep task pinned to one thread ran the rest of its
    analysis on two, with other sums. The pool starts once per process, hence a fresh one."""
    import subprocess

    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "from evosim.analysis.metrics import euclidean, mantel\n"
        "x = euclidean(np.random.default_rng(0).normal(size=(12, 2)))\n"
        "mantel(x, x, 99, np.random.default_rng(1))\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "1"


# ---------------------------------------------------------------------------- random trees
def test_expected_random_rf_matches_sampling():
    # The exact expectation against 1,500 label-shuffled Yule trees on 40 leaves: nRF has
    # sd < 0.02 here (measured 0.011), so the mean is within 4 * 0.02 / sqrt(1500) = 0.0021.
    g = np.random.default_rng(9)
    for true in (yule(1.0, 40, rng=g), _random_tree(g, 40, polytomies=True)):
        vals = []
        for _ in range(1500):
            t = yule(1.0, 40, rng=g)
            t = t.relabel(dict(zip(t.leaves, g.permutation(true.leaves).tolist())))
            vals.append(robinson_foulds(t, true, normalized=True))
        rf, nrf = expected_random_rf(true)
        assert nrf == pytest.approx(np.mean(vals), abs=4 * 0.02 / math.sqrt(1500))
        four = Phylogeny.from_newick("((A,B),(C,D));")
    assert expected_random_rf(four) == pytest.approx((4 / 3, 2 / 3))


def test_score_distances_keeps_the_standard_errors_of_sampled_distances(monkeypatch):
    from evosim.phylo import compare

    rng = np.random.default_rng(12)
    true = yule(1.0, 30, rng=rng)
    labels, D = true.patristic_distances()
    noisy = D + euclidean(rng.normal(size=(30, 3)))
    for method in ("nj", "upgma"):
        monkeypatch.setattr(compare, "COMPARE_EXACT_MAX", 256)
        _, exact = metrics.score_distances(
            noisy, labels, true, method=method, mantel_permutations=0, rng=rng
        )
        assert "quartet_se" not in exact and "triplet_se" not in exact
        monkeypatch.setattr(compare, "COMPARE_EXACT_MAX", 10)
        _, m = metrics.score_distances(
            noisy, labels, true, method=method, mantel_permutations=0, rng=rng
        )
        # binomial sampling of 20,000 quartets (triplets): 4.5 standard errors
        assert m["quartet_se"] > 0
        assert abs(m["quartet"] - exact["quartet"]) <= 4.5 * m["quartet_se"]
        assert ("triplet_se" in m) == (method == "upgma")
        if method == "upgma":
            assert abs(m["triplet"] - exact["triplet"]) <= 4.5 * max(m["triplet_se"], 1e-3)
