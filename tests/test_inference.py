"""Neighbor joining and UPGMA: exact recovery from tree metrics, a published worked
example, and scikit-bio / scipy as independent oracles on noisy matrices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import cophenet, linkage
from scipy.spatial.distance import squareform
from skbio import DistanceMatrix
from skbio.tree import nj as skbio_nj

from evosim.phylo import (
    Phylogeny,
    coalescent,
    neighbor_joining,
    robinson_foulds,
    upgma,
    yule,
)


def _random_binary_tree(n: int, rng: np.random.Generator, *, ultrametric: bool) -> Phylogeny:
    """Random topology (random joins) with random positive branch lengths."""
    if ultrametric:
        return coalescent(n, float(rng.uniform(0.5, 3.0)), rng=rng)
    t = yule(1.0, n, rng=rng)
    g = t.graph.copy()
    for _, _, e in g.edges(data=True):
        e["length"] = float(rng.uniform(0.01, 2.0))
    for v in g.nodes:
        g.nodes[v].pop("time")
    return Phylogeny(g)


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 40), st.integers(0, 2**32 - 1))
def test_nj_recovers_any_additive_matrix(n, seed):
    rng = np.random.default_rng(seed)
    true = _random_binary_tree(n, rng, ultrametric=False)
    labels, D = true.patristic_distances()
    perm = rng.permutation(n)  # row order must not matter
    labels = [labels[i] for i in perm]
    D = D[np.ix_(perm, perm)]
    est = neighbor_joining(D, labels)
    assert est.graph.graph["rooted"] is False
    assert robinson_foulds(true, est) == 0.0
    np.testing.assert_allclose(est.patristic_distances(labels)[1], D, rtol=1e-9, atol=1e-9)
    # identical pendant branch lengths (internal ones follow from distances + topology); a
    # leaf beside the true root has, unrooted, one edge through the root to its sibling
    for leaf in labels:
        expected = true.length(leaf)
        if true.parent(leaf) == true.root:
            expected = sum(true.length(c) for c in true.children(true.root))
        assert est.length(leaf) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n,seed", [(150, 1), (400, 2)])
def test_nj_recovers_large_additive_matrices(n, seed):
    # large enough to exercise the bounded search (not just the final full scans)
    rng = np.random.default_rng(seed)
    true = _random_binary_tree(n, rng, ultrametric=False)
    labels, D = true.patristic_distances()
    est = neighbor_joining(D, labels)
    assert robinson_foulds(true, est) == 0.0
    np.testing.assert_allclose(est.patristic_distances(labels)[1], D, rtol=1e-9, atol=1e-9)
    assert est.to_newick().startswith("[&U] ")
    assert not Phylogeny.from_newick(est.to_newick()).rooted


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**32 - 1))
def test_upgma_recovers_any_ultrametric_matrix(n, seed):
    rng = np.random.default_rng(seed)
    true = _random_binary_tree(n, rng, ultrametric=True)
    labels, D = true.patristic_distances()
    perm = rng.permutation(n)
    labels = [labels[i] for i in perm]
    D = D[np.ix_(perm, perm)]
    est = upgma(D, labels)
    assert est.rooted
    assert robinson_foulds(true, est, rooted=True) == 0.0
    np.testing.assert_allclose(est.patristic_distances(labels)[1], D, rtol=1e-9, atol=1e-9)
    assert np.allclose([est.time(v) for v in est.leaves], true.depth(), rtol=1e-9)


def test_nj_worked_example_saitou_nei():
    # The 5-taxon example of Wikipedia's "Neighbor joining" article (after Saitou & Nei
    # 1987): join a,b (2, 3), then u,c (3, 4), then d,e (2, 1) with v-w = 2.
    labels = ["a", "b", "c", "d", "e"]
    D = np.array(
        [
            [0, 5, 9, 9, 8],
            [5, 0, 10, 10, 9],
            [9, 10, 0, 8, 7],
            [9, 10, 8, 0, 3],
            [8, 9, 7, 3, 0],
        ],
        dtype=float,
    )
    t = neighbor_joining(D, labels)
    assert {x: t.length(x) for x in labels} == pytest.approx(
        {"a": 2.0, "b": 3.0, "c": 4.0, "d": 2.0, "e": 1.0}
    )
    expected = Phylogeny.from_newick("(((a:2,b:3):3,c:4):2,(d:2,e:1));")
    assert robinson_foulds(t, expected) == 0.0
    np.testing.assert_allclose(t.patristic_distances(labels)[1], D)


@pytest.mark.parametrize("n", [5, 30, 120, 400])
def test_nj_agrees_with_scikit_bio_on_noisy_matrices(n):
    rng = np.random.default_rng(n)
    labels, D = yule(1.0, n, rng=rng).patristic_distances()
    noise = rng.uniform(0, 0.2, D.shape)
    D = D + (noise + noise.T)
    np.fill_diagonal(D, 0.0)
    ours = neighbor_joining(D, labels)
    theirs = Phylogeny.from_newick(
        str(skbio_nj(DistanceMatrix(D, labels), neg_as_zero=False)).strip()
    )
    assert robinson_foulds(ours, theirs) == 0.0
    np.testing.assert_allclose(
        ours.patristic_distances(labels)[1], theirs.patristic_distances(labels)[1], atol=1e-9
    )


def test_nj_keeps_negative_lengths_exactly():
    # Non-additive matrix; by hand: R = (14, 8, 15, 13), Q(b,c) = Q(a,d) = -21 is minimal,
    # l_b = 1/2 + (8 - 15)/4 = -1.25, l_c = 2.25, l_a = 3/2 + (14 - 13)/4 = 1.75, l_d = 1.25,
    # and the central edge (5 + 4.5 - 3)/2 = 3.25. NJ's negative estimate is kept as is.
    labels = ["a", "b", "c", "d"]
    D = np.array([[0, 6, 5, 3], [6, 0, 1, 1], [5, 1, 0, 9], [3, 1, 9, 0]], dtype=float)
    t = neighbor_joining(D, labels)
    assert {x: t.length(x) for x in labels} == pytest.approx(
        {"a": 1.75, "b": -1.25, "c": 2.25, "d": 1.25}
    )
    inner = [t.length(v) for v in t.internal_nodes if v != t.root]
    assert inner == pytest.approx([3.25])


def test_upgma_agrees_with_scipy_average_linkage():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(60, 4))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    labels = [f"t{i}" for i in range(60)]
    t = upgma(D, labels)
    coph = squareform(cophenet(linkage(squareform(D, checks=False), method="average")))
    # scipy reports merge distances; UPGMA puts a merge at half of it, so path = distance
    np.testing.assert_allclose(t.patristic_distances(labels)[1], coph, rtol=1e-10)
    assert all(t.length(v) >= 0 for v in t.preorder())


def test_small_and_bad_inputs():
    t = neighbor_joining(np.array([[0.0, 2.0], [2.0, 0.0]]), ["x", "y"])
    assert sorted(t.leaves) == ["x", "y"] and t.patristic_distances()[1][0, 1] == 2.0
    t = neighbor_joining(np.zeros((1, 1)), ["x"])
    assert t.leaves == ["x"]
    D3 = np.array([[0, 3, 4], [3, 0, 5], [4, 5, 0]], dtype=float)
    np.testing.assert_allclose(neighbor_joining(D3, "abc").patristic_distances(list("abc"))[1], D3)
    # generated internal names avoid labels
    t = upgma(D3, ["n1", "n2", "n3"])
    assert len(set(t.preorder())) == 5
    with pytest.raises(ValueError, match="square"):
        neighbor_joining(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        neighbor_joining(np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="symmetric"):
        upgma(np.array([[0, 1.0], [2.0, 0]]), ["a", "b"])
    with pytest.raises(ValueError, match="diagonal"):
        upgma(np.array([[1.0, 1.0], [1.0, 0]]), ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        upgma(np.array([[0, np.nan], [np.nan, 0]]), ["a", "b"])
    with pytest.raises(ValueError, match="negative"):
        upgma(np.array([[0, -1.0], [-1.0, 0]]), ["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        upgma(np.zeros((2, 2)), ["a", "a"])


def test_nj_bounded_search_equals_full_scan(monkeypatch):
    # The row-bound search must find exactly the pair a full scan finds, every time.
    import evosim.phylo.inference as inference

    # 700 taxa: the first 444 steps search bounded rows, the last 256 clusters scan all pairs
    rng = np.random.default_rng(12)
    labels, D = yule(1.0, 700, rng=rng).patristic_distances()
    noise = rng.uniform(0, 0.1, D.shape)
    D = D + (noise + noise.T)
    np.fill_diagonal(D, 0.0)
    fast = [neighbor_joining(D, labels).to_newick() for _ in range(2)]
    monkeypatch.setattr(inference, "_FULL_SCAN", 10**9)
    slow = neighbor_joining(D, labels).to_newick()
    assert fast[0] == fast[1]
    assert robinson_foulds(Phylogeny.from_newick(fast[0]), Phylogeny.from_newick(slow)) == 0.0
