"""Blomberg's K: known answers, its exact expectation under Brownian motion, the shuffle test.

Tolerances: Z = 4.5 sampling sds (two-sided p = 6.8e-6 per comparison).
"""

from __future__ import annotations

import numpy as np
import pytest

from evosim.evolve import brownian
from evosim.evolve.signal import blomberg_k, blomberg_k_test, phylogenetic_covariance
from evosim.phylo import Phylogeny, grow_tree
from evosim.scenario import TreeConfig

Z = 4.5
NEWICK = "(((A:0.4,B:0.4):0.6,C:1.3):0.3,D:1.0);"
SHARED = np.array(
    [[1.3, 0.9, 0.3, 0.0], [0.9, 1.3, 0.3, 0.0], [0.3, 0.3, 1.6, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def test_phylogenetic_covariance_by_hand():
    tree = Phylogeny.from_newick(NEWICK)
    np.testing.assert_allclose(phylogenetic_covariance(tree, ["A", "B", "C", "D"]), SHARED)
    # default order: the extant leaves
    c = phylogenetic_covariance(tree)
    order = [["A", "B", "C", "D"].index(x) for x in tree.extant_leaves]
    np.testing.assert_allclose(c, SHARED[np.ix_(order, order)])


def test_star_tree_gives_exactly_one():
    # C = T I: MSE0 / MSE = T, and the expectation (n T - T) / (n - 1) = T.
    star = Phylogeny.from_newick("(A:2,B:2,C:2,D:2,E:2,F:2);")
    c = phylogenetic_covariance(star, ["A", "B", "C", "D", "E", "F"])
    x = np.random.default_rng(0).standard_normal((6, 5)) * [1, 10, 0.1, 3, 7]
    np.testing.assert_allclose(blomberg_k(x, c), 1.0, rtol=1e-12)


def test_invariances():
    tree = grow_tree(TreeConfig(model="yule", n_species=12), np.random.default_rng(1))
    c = phylogenetic_covariance(tree)
    x = np.random.default_rng(2).standard_normal(12)
    k = blomberg_k(x, c)
    assert blomberg_k(3.0 * x - 7.0, c) == pytest.approx(k, rel=1e-10)  # affine in x
    assert blomberg_k(x, 5.0 * c) == pytest.approx(k, rel=1e-10)  # tree scale
    # a stem below the root adds a constant to C and changes nothing
    assert blomberg_k(x, c + 0.8) == pytest.approx(k, rel=1e-10)


def test_expectation_is_one_under_brownian_motion():
    # E[K] = 1 exactly under BM (see evosim.evolve.signal); R independent traits on one
    # tree give R draws of K, bounded (a ratio of quadratic forms), so their mean is within
    # Z sd / sqrt(R) of 1.
    tree = grow_tree(TreeConfig(model="birth_death", n_species=25), np.random.default_rng(3))
    species = tree.extant_leaves
    r = 4000
    traits = brownian(tree, dim=r, sigma=0.7, root=2.0, rng=np.random.default_rng(4))
    x = np.stack([traits[s] for s in species])  # [S, R]
    k = blomberg_k(x, phylogenetic_covariance(tree, species))
    assert abs(k.mean() - 1.0) <= Z * k.std() / np.sqrt(r), (k.mean(), k.std())


def test_shuffle_test_is_calibrated_and_detects_signal():
    tree = grow_tree(TreeConfig(model="yule", n_species=30), np.random.default_rng(5))
    species = tree.extant_leaves
    c = phylogenetic_covariance(tree, species)
    rng = np.random.default_rng(6)
    # No signal (iid values): the values are exchangeable, so with P = 199 shuffles
    # P(p <= 0.1) = 20 / 200 exactly. 300 replicates: binomial sd sqrt(0.1 0.9 / 300).
    reps = 300
    ps = np.array(
        [
            blomberg_k_test(rng.standard_normal(30), c, permutations=199, rng=rng)[1]
            for _ in range(reps)
        ]
    )
    frac = np.mean(ps <= 0.1)
    assert abs(frac - 0.1) <= Z * np.sqrt(0.1 * 0.9 / reps), frac
    # Brownian traits: strong signal, the observed K beats all 199 shuffles in most runs.
    bm = brownian(tree, dim=20, rng=np.random.default_rng(7))
    ps = [
        blomberg_k_test(np.array([bm[s][j] for s in species]), c, permutations=199, rng=rng)[1]
        for j in range(20)
    ]
    assert np.median(ps) <= 0.01


def test_bad_input():
    c = np.eye(4)
    with pytest.raises(ValueError, match="tips"):
        blomberg_k(np.zeros(5), c)
    with pytest.raises(ValueError, match="positive definite"):
        blomberg_k(np.arange(4.0), -c)
    assert np.isnan(blomberg_k(np.ones(4), c))  # no variation: no K
