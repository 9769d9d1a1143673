"""Tree comparison: RF against DendroPy (exact), quartet/triplet against brute-force
enumeration, cophenetic correlation against scipy."""

from __future__ import annotations

import itertools

import dendropy
import networkx as nx
import numpy as np
import pytest
from dendropy.calculate import treecompare
from scipy import stats

from evosim.phylo import (
    Phylogeny,
    birth_death,
    compare_trees,
    cophenetic_correlation,
    neighbor_joining,
    quartet_distance,
    quartet_distance_estimate,
    robinson_foulds,
    triplet_distance,
    upgma,
    yule,
)


def _shuffle_leaves(t: Phylogeny, rng: np.random.Generator) -> Phylogeny:
    leaves = t.leaves
    perm = rng.permutation(len(leaves))
    tmp = t.relabel({v: f"__{i}" for i, v in enumerate(leaves)})
    return tmp.relabel({f"__{i}": leaves[perm[i]] for i in range(len(leaves))})


def _collapse(t: Phylogeny, rng: np.random.Generator, p: float) -> Phylogeny:
    """Contract each internal edge with probability p (makes polytomies)."""
    g = t.graph.copy()
    for v in list(t.internal_nodes[1:]):
        if rng.random() < p:
            parent = next(iter(g.pred[v]))
            for c in list(g.succ[v]):
                g.add_edge(parent, c, length=1.0)
            g.remove_node(v)
    for v in g.nodes:
        g.nodes[v].pop("time", None)
    return Phylogeny(g)


def _random_pair(rng: np.random.Generator, n: int, collapse: float = 0.0):
    a = yule(1.0, n, rng=rng)
    b = _shuffle_leaves(yule(1.0, n, rng=rng), rng)
    if collapse:
        a, b = _collapse(a, rng, collapse), _collapse(b, rng, collapse)
    if rng.random() < 0.5:  # sometimes very similar trees
        b = _shuffle_leaves(a, rng) if rng.random() < 0.3 else b
    return a, b


def _dendropy_rf(a: Phylogeny, b: Phylogeny, rooted: bool) -> int:
    tns = dendropy.TaxonNamespace()
    rooting = "force-rooted" if rooted else "force-unrooted"
    kw = dict(schema="newick", taxon_namespace=tns, rooting=rooting, preserve_underscores=True)
    da = dendropy.Tree.get(data=a.to_newick(internal_labels=False), **kw)
    db = dendropy.Tree.get(data=b.to_newick(internal_labels=False), **kw)
    return treecompare.symmetric_difference(da, db)


@pytest.mark.parametrize("rooted", [False, True])
@pytest.mark.parametrize("collapse", [0.0, 0.3])
def test_rf_matches_dendropy(rooted, collapse):
    rng = np.random.default_rng(int(rooted) * 10 + int(collapse * 10))
    for _ in range(25):
        n = int(rng.integers(4, 60))
        a, b = _random_pair(rng, n, collapse)
        assert robinson_foulds(a, b, rooted=rooted) == _dendropy_rf(a, b, rooted)


def test_rf_matches_definition_and_normalisation():
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(4, 30))
        a, b = _random_pair(rng, n)
        for rooted in (False, True):
            ca, cb = a.clades(rooted=rooted), b.clades(rooted=rooted)
            assert robinson_foulds(a, b, rooted=rooted) == len(ca ^ cb)
        # binary unrooted trees: the maximum is 2 (n - 3)
        assert robinson_foulds(a, b, normalized=True) == pytest.approx(
            robinson_foulds(a, b) / (2 * (n - 3))
        )
        assert robinson_foulds(a, b, rooted=True, normalized=True) == pytest.approx(
            robinson_foulds(a, b, rooted=True) / (2 * (n - 2))
        )


def test_rf_unrooted_ignores_root_position():
    rng = np.random.default_rng(6)
    t = birth_death(1.0, 0.3, 40, rng=rng).extant_tree()
    for node in (t.internal_nodes[3], t.leaves[0], t.leaves[-1]):
        r = t.reroot(node)
        assert robinson_foulds(t, r) == 0.0
    assert robinson_foulds(t, t.reroot(t.leaves[0]), rooted=True) > 0
    star = Phylogeny.from_newick("(A,B,C,D,E);")
    assert robinson_foulds(star, star, normalized=True) == 0.0


def test_different_leaf_sets_name_the_leaves():
    a = Phylogeny.from_newick("((A,B),(C,D));")
    b = Phylogeny.from_newick("((A,B),(C,E));")
    for f in (robinson_foulds, quartet_distance, triplet_distance, compare_trees):
        with pytest.raises(
            ValueError, match=r"only in the first: \['D'\].*only in the second: \['E'\]"
        ):
            f(a, b)
    with pytest.raises(ValueError, match="only in the labels"):
        cophenetic_correlation(a, np.zeros((4, 4)), labels=["A", "B", "C", "E"])


# ------------------------------------------------------------------ quartets / triplets
def _brute_quartets(a: Phylogeny, b: Phylogeny) -> int:
    """Quartet topologies by the four-point condition on edge-count path lengths."""
    leaves = sorted(a.leaves)

    def topo_dist(t):
        u = nx.Graph(t.graph.to_undirected())
        return {x: nx.single_source_shortest_path_length(u, x) for x in leaves}

    Pa, Pb = topo_dist(a), topo_dist(b)

    def topo(P, q):
        w, x, y, z = q
        s = [P[w][x] + P[y][z], P[w][y] + P[x][z], P[w][z] + P[x][y]]
        m = min(s)
        return s.index(m) if s.count(m) == 1 else 3  # 3: star

    return sum(topo(Pa, q) != topo(Pb, q) for q in itertools.combinations(leaves, 4))


def _brute_triplets(a: Phylogeny, b: Phylogeny) -> int:
    """Rooted triplets from MRCA depths (edge counts from the root)."""
    leaves = sorted(a.leaves)

    def depth_of(t):
        d = {t.root: 0}
        for v in t.preorder()[1:]:
            d[v] = d[t.parent(v)] + 1
        return d

    def topo(t, d, x, y, z):
        dxy, dxz, dyz = d[t.mrca([x, y])], d[t.mrca([x, z])], d[t.mrca([y, z])]
        if dxy > dxz:
            return 0
        if dxz > dxy:
            return 1
        if dyz > dxy:
            return 2
        return 3

    da, db = depth_of(a), depth_of(b)
    return sum(topo(a, da, *q) != topo(b, db, *q) for q in itertools.combinations(leaves, 3))


@pytest.mark.parametrize("collapse", [0.0, 0.4])
def test_quartet_and_triplet_match_brute_force(collapse):
    rng = np.random.default_rng(int(collapse * 10) + 1)
    for _ in range(12):
        n = int(rng.integers(4, 12))
        a, b = _random_pair(rng, n, collapse)
        assert quartet_distance(a, b, normalized=False) == _brute_quartets(a, b)
        assert triplet_distance(a, b, normalized=False) == _brute_triplets(a, b)
    x = Phylogeny.from_newick("((A,B,C),(D,E),F);")
    y = Phylogeny.from_newick("((A,B),(C,D),(E,F));")
    assert quartet_distance(x, y, normalized=False) == _brute_quartets(x, y)


def test_quartet_triplet_identities():
    rng = np.random.default_rng(2)
    t = yule(1.0, 30, rng=rng)
    assert quartet_distance(t, t) == 0.0
    assert quartet_distance(t, t.reroot(t.leaves[3])) == 0.0  # unrooted
    assert triplet_distance(t, t) == 0.0
    star = Phylogeny.from_newick("(" + ",".join(f"L{i}" for i in range(8)) + ");")
    cat = Phylogeny.from_newick("(" * 7 + "L0," + ",".join(f"L{i})" for i in range(1, 8)) + ";")
    assert quartet_distance(star, cat) == 1.0
    assert triplet_distance(star, cat) == 1.0
    assert quartet_distance(star, star) == 0.0


# ------------------------------------------------------------------ cophenetic
def test_cophenetic_correlation_matches_scipy():
    rng = np.random.default_rng(3)
    a = yule(1.0, 25, rng=rng)
    b = _shuffle_leaves(yule(1.0, 25, rng=rng), rng)
    labels = sorted(a.leaves)
    x = a.patristic_distances(labels)[1][np.triu_indices(25, 1)]
    y = b.patristic_distances(labels)[1][np.triu_indices(25, 1)]
    assert cophenetic_correlation(a, b) == pytest.approx(stats.pearsonr(x, y)[0], rel=1e-12)
    assert cophenetic_correlation(a, b, method="spearman") == pytest.approx(
        stats.spearmanr(x, y)[0], rel=1e-12
    )
    # tree vs matrix, with the matrix in its own row order
    order = list(rng.permutation(labels))
    M = b.patristic_distances(order)[1]
    assert cophenetic_correlation(a, M, labels=order) == pytest.approx(
        cophenetic_correlation(a, b), rel=1e-12
    )
    assert cophenetic_correlation(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="labels are required"):
        cophenetic_correlation(a, M)
    with pytest.raises(ValueError, match="method"):
        cophenetic_correlation(a, b, method="kendall")  # type: ignore[arg-type]


def test_compare_trees_reports_everything():
    rng = np.random.default_rng(4)
    true = birth_death(1.0, 0.2, 20, rng=rng).extant_tree()
    labels, D = true.patristic_distances()
    noisy = D + rng.uniform(0, 0.3, D.shape)
    noisy = noisy + noisy.T
    np.fill_diagonal(noisy, 0)
    nj = neighbor_joining(noisy, labels)
    m = compare_trees(true, nj)
    assert set(m) == {
        "rf",
        "nrf",
        "quartet",
        "triplet",
        "cophenetic_pearson",
        "cophenetic_spearman",
    }
    assert m["rf"] == robinson_foulds(true, nj)
    assert m["nrf"] == robinson_foulds(true, nj, normalized=True)
    assert m["quartet"] == quartet_distance(true, nj)
    assert m["triplet"] is None  # NJ trees are unrooted: no rooted triplets
    up = upgma(noisy, labels)
    m2 = compare_trees(true, up, rooted=True)
    assert m2["triplet"] == triplet_distance(true, up)
    assert m2["rf"] == robinson_foulds(true, up, rooted=True)
    assert 0 < m["cophenetic_pearson"] <= 1


@pytest.mark.parametrize("collapse", [0.0, 0.4])
def test_quartet_estimate_agrees_with_the_exact_count(collapse):
    rng = np.random.default_rng(41)
    for _ in range(3):
        a, b = _random_pair(rng, 40, collapse)
        exact = quartet_distance(a, b, normalized=True)
        estimate, se = quartet_distance_estimate(a, b, samples=20_000, seed=3)
        # binomial sampling: 4.5 standard errors (two-sided p ~ 7e-6 per comparison)
        bound = 4.5 * max(se, np.sqrt(exact * (1 - exact) / 20_000), 1e-12)
        assert abs(estimate - exact) <= bound, (estimate, exact, se)
    a, _ = _random_pair(rng, 30)
    assert quartet_distance_estimate(a, a)[0] == 0.0
    four_a = Phylogeny.from_newick("((A,B),(C,D));")
    four_b = Phylogeny.from_newick("((A,C),(B,D));")
    assert quartet_distance_estimate(four_a, four_b, samples=50) == (1.0, 0.0)


def test_score_tree_samples_quartets_on_large_trees(monkeypatch):
    from evosim.analysis import metrics
    from evosim.phylo import compare

    rng = np.random.default_rng(5)
    a, b = _random_pair(rng, 30)
    exact = metrics.score_tree(a, b, rooted=False)
    assert "quartet_se" not in exact
    monkeypatch.setattr(compare, "COMPARE_EXACT_MAX", 10)
    sampled = metrics.score_tree(a, b, rooted=False)
    assert sampled["quartet_se"] > 0
    assert abs(sampled["quartet"] - exact["quartet"]) <= 4.5 * sampled["quartet_se"]
