"""Species families: shapes, exact geometry, per-species recomputability, and trait signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from evosim.scenario import SpeciesConfig
from evosim.species import Circles, Development, Outline, make_family, outline_radius

FAMILIES = ["development", "circles", "outline"]


def config(family: str, **kw) -> SpeciesConfig:
    base = dict(family=family, instances=64, ambient_dim=12, outline_points=16)
    base.update(kw)
    return SpeciesConfig(**base)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_gives_finite_n_by_d(family: str):
    f = make_family(config(family), trait_dim=5, seed=3)
    expected_d = {"development": 12, "circles": 2, "outline": 32}[family]
    assert f.dim == expected_d
    traits = np.random.default_rng(0).normal(0, 2, size=5)
    x = f.instances("s1", traits)
    assert x.shape == (64, expected_d) and x.dtype == np.float32
    assert np.all(np.isfinite(x))
    # Works with a single trait too (circles/outline read what is there).
    g = make_family(config(family), trait_dim=1, seed=3)
    assert g.instances("s1", np.array([0.3])).shape == (64, g.dim)


@pytest.mark.parametrize("family", FAMILIES)
def test_instances_depend_only_on_seed_name_and_traits(family: str):
    traits = np.linspace(-1, 1, 4)
    rng = np.random.default_rng(1)
    small = make_family(config(family), 4, seed=9)
    first = small.instances("s7", traits)
    # A second family object (a world with many more species), generating other species
    # first: species s7 is unchanged.
    big = make_family(config(family), 4, seed=9)
    for i in range(64):
        big.instances(f"s{i + 100}", rng.normal(size=4))
    np.testing.assert_array_equal(big.instances("s7", traits), first)
    # Another name, or another seed, gives other instances.
    assert not np.array_equal(small.instances("s8", traits), first)
    assert not np.array_equal(
        make_family(config(family), 4, seed=10).instances("s7", traits), first
    )


def test_circles_geometry():
    f = Circles(config("circles", noise=0.0, individual_variation=0.0, instances=500), 4, seed=1)
    traits = np.array([0.8, 1.5, -2.0, 9.0])  # trait 4 is unused
    x = f.instances("a", traits).astype(np.float64)
    r = np.hypot(x[:, 0] - 1.5, x[:, 1] + 2.0)
    np.testing.assert_allclose(r, np.exp(0.8 / 4), rtol=1e-6)
    # Angles uniform: the mean of cos is 0 with sd sqrt(1/2 / N); within 4.5 sd.
    angle = np.arctan2(x[:, 1] + 2.0, x[:, 0] - 1.5)
    assert abs(np.cos(angle).mean()) < 4.5 * np.sqrt(0.5 / 500)


def test_circles_noise_and_individual_variation():
    # Radius of an individual: exp(g1 / 4) with g1 ~ N(t1, v^2): log radius sd = v / 4.
    n, v = 4000, 0.4
    f = Circles(config("circles", noise=0.0, individual_variation=v, instances=n), 1, seed=2)
    x = f.instances("a", np.array([0.0])).astype(np.float64)
    log_r = np.log(np.hypot(x[:, 0], x[:, 1]))
    # sample sd of a normal: relative sd 1 / sqrt(2 (n - 1)); 4.5 sd band.
    assert abs(log_r.std(ddof=1) / (v / 4) - 1) < 4.5 / np.sqrt(2 * (n - 1))


def test_outline_shape_from_harmonics():
    m = 16
    f = Outline(config("outline", noise=0.0, individual_variation=0.0, outline_points=m), 5, seed=1)
    zero = f.instances("a", np.zeros(5)).astype(np.float64).reshape(-1, m, 2)
    np.testing.assert_allclose(np.hypot(zero[..., 0], zero[..., 1]), 1.0, rtol=1e-6)  # unit circle
    traits = np.array([0.5, 1.0, -0.5, 0.3, 2.0])
    pts = f.instances("b", traits).astype(np.float64).reshape(-1, m, 2)[0]
    angles = 2 * np.pi * np.arange(m) / m
    np.testing.assert_allclose(np.arctan2(pts[:, 1], pts[:, 0]) % (2 * np.pi), angles, atol=1e-6)
    # log r = 0.12 t1 + 0.12 (2/2)(t2 cos 2phi + t3 sin 2phi)
    #               + 0.12 (2/3)(t4 cos 3phi + t5 sin 3phi)
    expected = np.exp(
        0.12
        * (
            0.5
            + (1.0 * np.cos(2 * angles) - 0.5 * np.sin(2 * angles))
            + (2 / 3) * (0.3 * np.cos(3 * angles) + 2.0 * np.sin(3 * angles))
        )
    )
    np.testing.assert_allclose(np.hypot(pts[:, 0], pts[:, 1]), expected, rtol=1e-6)
    np.testing.assert_allclose(outline_radius(traits[None], angles)[0], expected, rtol=1e-12)


def test_development_laws_are_shared_and_seeded():
    c = config("development")
    a, b = Development(c, 6, seed=4), Development(c, 6, seed=4)
    np.testing.assert_array_equal(a.w1g, b.w1g)
    np.testing.assert_array_equal(a.w3, b.w3)
    assert not np.array_equal(Development(c, 6, seed=5).w1g, a.w1g)


def test_development_output_scale_and_latent_manifold():
    c = config(
        "development",
        instances=2000,
        ambient_dim=32,
        individual_variation=0.05,
        noise=0.01,
        instance_latent=1,
    )
    f = Development(c, 16, seed=7)
    rng = np.random.default_rng(0)
    x = f.instances("s1", rng.normal(0, 2, size=16)).astype(np.float64)
    assert 0.05 < x.std() < 5  # O(1) coordinates
    # One latent dimension: the instances lie near a curve, so the leading principal
    # component dominates the within-species variance.
    ev = np.linalg.eigvalsh(np.cov(x.T))[::-1]
    assert ev[0] / ev.sum() > 0.6


def test_development_carries_the_trait_signal():
    # Species close in trait space must have similar instance distributions: distances
    # between species' mean instances track distances between their traits.
    c = config("development", instances=256, ambient_dim=32)
    f = Development(c, 16, seed=7)
    rng = np.random.default_rng(1)
    base = rng.normal(0, 2, size=16)
    # Species at a range of distances from each other (as on a tree).
    traits = base + rng.normal(size=(30, 16)) * rng.uniform(0.1, 2.0, size=(30, 1))
    means = np.stack([f.instances(f"s{i}", t).mean(axis=0) for i, t in enumerate(traits)])
    rho = spearmanr(pdist(traits), pdist(means))[0]
    assert rho > 0.6, rho
    # And a species differs from another far more than from a resample of itself (same
    # traits, another name: fresh individuals and latents).
    again = f.instances("resample", traits[0]).mean(axis=0)
    assert np.linalg.norm(means[0] - again) < 0.2 * np.median(pdist(means))


def test_individuals_are_drawn_from_the_given_genotypes():
    f = Circles(config("circles", noise=0.0, instances=300), 1, seed=1)
    individuals = np.array([[0.0], [4.0]])
    x = f.instances("a", np.array([2.0]), individuals=individuals).astype(np.float64)
    r = np.hypot(x[:, 0], x[:, 1])
    on = np.isclose(r, 1.0, rtol=1e-5) | np.isclose(r, np.e, rtol=1e-5)
    assert on.all()  # no further individual deviation
    # Uniform choice between the two: binomial sd sqrt(0.25 / 300), 4.5 sd band.
    assert abs(np.isclose(r, 1.0, rtol=1e-5).mean() - 0.5) < 4.5 * np.sqrt(0.25 / 300)


def test_bad_input_is_named():
    f = make_family(config("development"), 3, seed=0)
    with pytest.raises(ValueError, match="shape"):
        f.instances("s1", np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        f.instances("s1", np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="individuals"):
        f.instances("s1", np.zeros(3), individuals=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="trait_dim"):
        make_family(config("circles"), 0, seed=0)
