"""The midpoint yardstick: known answers, and the Brownian formula against simulation.

The statistical tests use a fixed seed and a tolerance of Z = 4.5 binomial standard
errors (two-sided p = 6.8e-6 per comparison), as the trait-evolution tests do.
"""

from __future__ import annotations

import numpy as np
import pytest

from evosim.analysis.midpoint_bound import brownian_midpoint_wins, midpoint_wins
from evosim.evolve import brownian
from evosim.phylo import Phylogeny

Z = 4.5


def test_midpoint_wins_known_answers():
    parent = np.zeros((3, 2))
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.2], [-1.0, 0.0]])
    # midpoints (0.5, 0.5): 0.5 < 1 wins; (1, 0.1): 1.01 > 1 loses; (0, 0): wins
    assert midpoint_wins(parent, a, b).tolist() == [True, False, True]


def test_a_tie_is_a_loss_and_shapes_must_agree():
    # midpoint (1, 0) is as far from the parent as sister a
    assert not midpoint_wins([0.0, 0.0], [1.0, 0.0], [1.0, 0.0])[0]
    with pytest.raises(ValueError, match="share a shape"):
        midpoint_wins(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 2)))


def test_brownian_formula_closed_forms():
    # k = 1: P(|C| < 1/2) for a standard Cauchy C; k = 2: P(F(1, 2) < 1/2) = 1 / sqrt 5
    assert brownian_midpoint_wins(1) == pytest.approx(2 * np.arctan(0.5) / np.pi, rel=1e-12)
    assert brownian_midpoint_wins(2) == pytest.approx(1 / np.sqrt(5), rel=1e-12)
    values = [brownian_midpoint_wins(k) for k in range(1, 64)]
    assert np.all(np.diff(values) > 0) and values[-1] < 1
    assert brownian_midpoint_wins(7) < 0.8 < brownian_midpoint_wins(8)
    with pytest.raises(ValueError, match="k must be >= 1"):
        brownian_midpoint_wins(0)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_brownian_formula_matches_gaussian_displacements(k: int):
    n = 200_000
    g = np.random.default_rng(k)
    # any common scale (rate times branch length): only equal branches matter
    a, b = 0.3 * g.standard_normal((n, k)), 0.3 * g.standard_normal((n, k))
    p = brownian_midpoint_wins(k)
    share = midpoint_wins(np.zeros((n, k)), a, b).mean()
    assert abs(share - p) <= Z * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("k", [3, 8])
def test_brownian_formula_matches_evosims_brownian_motion_on_cherries(k: int):
    # 3,000 cherries under the root, sister branches 0.7, stems of varied length
    c = 3000
    stems = np.random.default_rng(0).uniform(0.1, 2.0, c)
    newick = "(" + ",".join(f"(a{i}:0.7,b{i}:0.7)p{i}:{s:.3f}" for i, s in enumerate(stems)) + ");"
    tree = Phylogeny.from_newick(newick)
    x = brownian(tree, dim=k, sigma=1.3, root=0.0, rng=np.random.default_rng(20 + k))
    wins = midpoint_wins(*(np.stack([x[f"{n}{i}"] for i in range(c)]) for n in "pab"))
    p = brownian_midpoint_wins(k)
    assert abs(wins.mean() - p) <= Z * np.sqrt(p * (1 - p) / c)
