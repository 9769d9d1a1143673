"""The identification analysis: classical baselines, the gate, and the report pieces."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import norm

from evosim import simulate
from evosim.analysis.identification import (
    GaussianClassifier,
    NearestMeanClassifier,
    fresh_specimens,
    identification_enabled,
    identification_scores,
    identification_summary,
    ledoit_wolf,
)
from evosim.analysis.report import Report
from evosim.pipeline import draw_figures
from evosim.scenario import parse_scenario
from evosim.species import make_family
from evosim.train import train_autoencoders


def test_ledoit_wolf_matches_scikit_learn():
    pytest.importorskip("sklearn")
    from sklearn.covariance import ledoit_wolf as sk_lw

    gen = np.random.default_rng(0)
    x = gen.standard_normal((3, 40, 6)) @ gen.standard_normal((6, 6))
    cov, shrink = ledoit_wolf(x)
    for s in range(3):
        want_cov, want_shrink = sk_lw(x[s])
        np.testing.assert_allclose(cov[s], want_cov, rtol=1e-10, atol=1e-12)
        assert shrink[s] == pytest.approx(want_shrink, rel=1e-10)


def test_gaussian_classifier_reaches_the_bayes_accuracy():
    # Two unit-covariance Gaussians in R^3 whose means are 2 apart: the Bayes classifier is
    # right with probability Phi(1) = 0.8413. With n = 20,000 test points the accuracy's sd
    # is sqrt(0.84 * 0.16 / n) = 0.0026; fitting on 2,000 points per class costs < 0.005
    # (plug-in QDA's excess error is O(D^2 / n)); tolerance 5 sd + 0.005 = 0.018.
    gen = np.random.default_rng(1)
    means = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    train = means[:, None, :] + gen.standard_normal((2, 2000, 3))
    test = means[:, None, :] + gen.standard_normal((2, 10_000, 3))
    labels = np.repeat([0, 1], 10_000)
    idx, m2 = GaussianClassifier(train).predict(test.reshape(-1, 3))
    assert abs(np.mean(idx == labels) - norm.cdf(1.0)) < 0.018
    # equal covariances: the nearest mean is the Bayes rule too
    nm = NearestMeanClassifier(train).predict(test.reshape(-1, 3))
    assert abs(np.mean(nm == labels) - norm.cdf(1.0)) < 0.018
    # a class's own points: Mahalanobis^2 ~ chi^2(3), mean 3 (sd of the mean ~0.02)
    own = m2[(idx == labels)]
    assert 2.5 < own.mean() < 3.0  # the right-classified half-space trims the tail


def test_identification_gate_rule():
    sc = parse_scenario("tree: {n_species: 32}\nautoencoder: {steps: 1500, batch_size: 128}")
    assert identification_enabled("auto", 32, sc)
    # S * 96 <= 0.75 * 1500 * 128 = 144,000  <=>  S <= 1,500
    assert identification_enabled("auto", 1500, sc)
    assert not identification_enabled("auto", 1501, sc)
    assert identification_enabled(True, 10**6, sc) and not identification_enabled(False, 4, sc)


def _world(variant: str, **ae):
    text = f"""
name: tiny
seed: 5
tree: {{model: yule, n_species: 6}}
traits: {{model: brownian, dim: 4}}
species: {{family: development, instances: 128, ambient_dim: 8}}
autoencoder: {{variant: {variant}, hidden: [16], latent: 2, steps: 60, device: cpu,
  compile: false}}
"""
    sc = parse_scenario(text)
    sc = sc.model_copy(update={"autoencoder": sc.autoencoder.model_copy(update=ae)})
    sim = simulate(sc, progress=False)
    return sim, train_autoencoders(sim, sc.autoencoder, progress=False)


def test_fresh_specimens_come_from_the_same_world():
    sim, _ = _world("plain")
    sc = sim.scenario
    # the re-made family is the world's: under a species' own name it gives its instances
    fam = make_family(sc.species, sc.traits.dim, sc.seed)
    np.testing.assert_array_equal(
        fam.instances(sim.species[2], sim.traits[sim.species[2]]), sim.instances[2]
    )
    a = fresh_specimens(sim, 20, stream="test")
    assert a.shape == (6, 20, 8)
    np.testing.assert_array_equal(a, fresh_specimens(sim, 20, stream="test"))
    # new individuals: no specimen is one of the training instances
    assert np.abs(a[0][:, None, :] - sim.instances[0][None]).max(-1).min() > 1e-3
    assert not np.allclose(a, fresh_specimens(sim, 20, stream="calibration"))


@pytest.mark.parametrize("variant", ["concrete", "mdl"])
def test_identification_scores_on_a_small_world(tmp_path, variant):
    sim, bank = _world(variant, selected_features=3 if variant == "concrete" else None)
    res = identification_scores(sim, bank, specimens=16, calibration_specimens=8, device="cpu")
    assert res["order"] == [s for s in sim.extant_tree().leaves]
    conf = np.asarray(res["confusion"])
    np.testing.assert_allclose(conf.sum(1), 1.0)
    # the diagonal in tree order is each species' accuracy
    per = res["per_species_accuracy"]
    np.testing.assert_allclose(np.diag(conf), [per[s] for s in res["order"]])
    assert res["accuracy"] == pytest.approx(np.mean(list(per.values())))
    assert 0 <= res["ece"] <= 1 and res["temperature"] > 0
    nov = res["novelty"]
    assert len(nov["held_out_species"]) == 2  # round(0.25 * 6)
    assert 0 <= nov["auroc"] <= 1 and 0 <= res["baselines"]["gaussian"]["novelty_auroc"] <= 1
    if variant == "concrete":
        sel = np.asarray(res["concrete"]["selected"])
        assert sel.shape == (6, 8) and np.all(sel.sum(1) >= 1) and np.all(sel.sum(1) <= 3)
        assert -1 <= res["concrete"]["jaccard_patristic_spearman"] <= 1
    else:
        assert res["mdl"]["bits_per_instance"] > 0
    # reproducible for the same seed
    again = identification_scores(sim, bank, specimens=16, calibration_specimens=8)
    assert again["accuracy"] == res["accuracy"] and again["novelty"]["auroc"] == nov["auroc"]
    assert bank.calibration is None  # the analysis leaves the bank as it was

    # the report: metrics.json key, report.md section, figures, and a redraw from files
    tree = sim.extant_tree()
    rep = Report(
        inferred_tree=tree,
        metrics={},
        baselines={},
        species=list(sim.species),
        latents=np.random.default_rng(0).standard_normal((6, 2)),
        true_tree=tree,
        method="nj",
        newick=tree.to_newick(),
        identification=res,
    )
    rep.write(tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["identification"] == json.loads(json.dumps(identification_summary(res)))
    assert "## Species identification" in (tmp_path / "report.md").read_text()
    names = {"identification_confusion.png", "identification_scores.png"}
    if variant == "concrete":
        names.add("selected_features.png")
    assert names <= {p.name for p in draw_figures(rep, tmp_path / "figures")}
    # redrawn from identification.json alone, as `evosim plot` does
    for p in (tmp_path / "figures").iterdir():
        p.unlink()
    rep.identification = json.loads((tmp_path / "identification.json").read_text())
    assert names <= {p.name for p in draw_figures(rep, tmp_path / "figures")}
    assert not math.isnan(metrics["identification"]["accuracy"])
