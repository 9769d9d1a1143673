"""Scores of the MAE's generative side: ridge R^2, MDS, MMD, cherries, the whole section."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evosim.analysis import analyse
from evosim.analysis.generative import (
    RIDGE_ALPHAS,
    ancestor_scores,
    cherries,
    classical_mds,
    generative_markdown,
    mmd2,
    ridge_cv_r2,
)
from evosim.analysis.metrics import euclidean
from evosim.analysis.midpoint_bound import brownian_midpoint_wins
from evosim.meta import fit_meta_autoencoder
from evosim.phylo import Phylogeny
from evosim.pipeline import draw_figures
from evosim.scenario import (
    AnalysisConfig,
    AutoencoderConfig,
    MetaConfig,
    Scenario,
    SpeciesConfig,
    TraitsConfig,
    TreeConfig,
)
from evosim.simulation import simulate
from evosim.train import train_autoencoders


def test_classical_mds_recovers_euclidean_configurations():
    g = np.random.default_rng(0)
    x = g.standard_normal((12, 3))
    y = classical_mds(euclidean(x))
    assert y.shape == (12, 3)
    np.testing.assert_allclose(euclidean(y), euclidean(x), atol=1e-9)


def test_ridge_leave_one_out_shortcut_matches_brute_force():
    # The exact LOO residual of ridge on centred data is e_i / (1 - h_ii); compare with
    # refitting without each row (centring uses all rows in both, as in ridge_cv_r2).
    g = np.random.default_rng(1)
    x = g.standard_normal((15, 4))
    y = x @ g.standard_normal(4) + 0.3 * g.standard_normal(15)
    xc, yc = x - x.mean(0), y - y.mean()
    a = 0.7
    h = xc @ np.linalg.solve(xc.T @ xc + a * np.eye(4), xc.T)
    short = (yc - h @ yc) / (1 - np.diag(h))
    brute = []
    for i in range(15):
        keep = np.arange(15) != i
        b = np.linalg.solve(xc[keep].T @ xc[keep] + a * np.eye(4), xc[keep].T @ yc[keep])
        brute.append(yc[i] - xc[i] @ b)
    np.testing.assert_allclose(short, brute, rtol=1e-10)
    assert RIDGE_ALPHAS.min() < 1e-3 < 1 < RIDGE_ALPHAS.max()


def test_ridge_r2_known_answers():
    g = np.random.default_rng(2)
    x = g.standard_normal((60, 5))
    beta = g.standard_normal((5, 3))
    # an exact linear relation: R^2 -> 1 (the smallest penalty leaves ~1e-4 of bias)
    assert ridge_cv_r2(x, x @ beta, rng=np.random.default_rng(0)) > 0.999
    # signal-to-noise 1 on every target: population R^2 = 0.5; the cross-validated
    # estimate on 60 rows has sd ~0.1, so 0.5 +- 0.3 (3 sd)
    y = x @ beta
    y = y + g.standard_normal(y.shape) * y.std(0)
    assert 0.2 < ridge_cv_r2(x, y, rng=np.random.default_rng(0)) < 0.8
    # features independent of the targets: no better than predicting the mean
    assert ridge_cv_r2(g.standard_normal((60, 5)), y, rng=np.random.default_rng(0)) < 0.1


def test_mmd2_matches_direct_sum_and_vanishes_for_one_law():
    g = np.random.default_rng(3)
    x, y = g.standard_normal((30, 2)), g.standard_normal((40, 2)) + 1.0
    bw = 1.3

    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * bw**2))

    kxx, kyy = k(x, x), k(y, y)
    want = (
        (kxx.sum() - np.trace(kxx)) / (30 * 29)
        + (kyy.sum() - np.trace(kyy)) / (40 * 39)
        - 2 * k(x, y).mean()
    )
    assert mmd2(x, y, bw) == pytest.approx(want, rel=1e-10)
    # the unbiased estimate of two samples of one law has mean 0: averaged over 50 pairs
    # of 100-point samples its sd is below 0.002 here (measured sd per pair < 0.01)
    same = [mmd2(g.standard_normal((100, 2)), g.standard_normal((100, 2)), 1.0) for _ in range(50)]
    assert abs(np.mean(same)) < 0.006
    assert mmd2(x, y, bw) > 0.1


def test_cherries_of_a_hand_tree():
    # ((A,B)ab,((C,D)cd,E)cde)root with an extinct sister X of E: the extant tree's cherries
    # are (A,B) and (C,D); E's parent after pruning X is not a cherry with anything.
    tree = Phylogeny.from_newick("((A:1,B:1)ab:1,((C:1,D:1)cd:1,(E:1,X:0.5)ex:1)cde:1)root;")
    tree.graph.nodes["X"]["extinct"] = True

    class Sim:
        def __init__(self, t):
            self.tree = t

        def extant_tree(self):
            return self.tree.extant_tree()

    assert cherries(Sim(tree)) == [("A", "B", "ab"), ("C", "D", "cd")]


# ---------------------------------------------------------------------------- end to end


def small_scenario(seed: int = 5, family: str = "development") -> Scenario:
    return Scenario(
        name="gen",
        seed=seed,
        tree=TreeConfig(model="yule", n_species=10),
        traits=TraitsConfig(dim=3, sigma=0.8),
        species=SpeciesConfig(family=family, instances=96, ambient_dim=8, development_hidden=16),
        autoencoder=AutoencoderConfig(
            hidden=[16], latent=2, steps=200, batch_size=32, device="cpu"
        ),
        meta=MetaConfig(steps=120, probes=32, latent=3, device="cpu"),
        analysis=AnalysisConfig(mantel_permutations=0, random_trees=5, generative_folds=2),
    )


@pytest.fixture(scope="module")
def world():
    sc = small_scenario()
    sim = simulate(sc)
    bank = train_autoencoders(sim, sc.autoencoder, progress=False)
    meta = fit_meta_autoencoder(bank, sc.meta, progress=False)
    return sc, sim, bank, meta


@pytest.mark.slow
def test_generative_section_end_to_end(world, tmp_path):
    sc, sim, bank, meta = world
    report = analyse(sim, bank, meta, sc.analysis, seed=sc.seed)
    gen = report.generative
    fid = gen["fidelity"]
    assert fid["instances"] == "validation"
    assert fid["train"]["median"] > 0 and np.isfinite(fid["train"]["max"])
    held = fid["heldout"]
    assert held["folds"] == 2 and held["mae"]["median"] > 0
    # held-out species at the MAE's encoding (refined) and at the encoder's guess alone
    assert held["encode_steps"] == meta.config.encode_steps > 0
    assert held["mae_encoder_only"]["median"] > 0
    assert held["pca_of_aligned_weights"]["median"] > 0
    assert set(gen["trait_r2"]) >= {"mae", "data_mean", "functional", "raw_weights"}
    anc = gen["ancestors"]
    assert anc["cherries"] == len(cherries(sim)) > 0
    assert 0 <= anc["midpoint_beats_both_sisters"]["mse"] <= 1
    # the yardstick: the true traits' own midpoint, on the same cherries
    truth = anc["true_traits_midpoint_beats_both_sisters"]
    tr = sim.traits
    wins = [
        np.linalg.norm((tr[a] + tr[b]) / 2 - tr[p])
        < min(np.linalg.norm(tr[a] - tr[p]), np.linalg.norm(tr[b] - tr[p]))
        for a, b, p in cherries(sim)
    ]
    assert truth["these_cherries"] == pytest.approx(np.mean(wins))
    assert truth["brownian_expectation"] == brownian_midpoint_wins(sc.traits.dim)
    # against the sisters' decoded AEs: each cherry's three codes decoded here, one at a time
    z = {s: meta.latents[i] for i, s in enumerate(bank.species)}

    def mse_on(code: np.ndarray, x: np.ndarray) -> float:
        return float(np.mean((meta.decode(code[None]).reconstruct(x, 0) - x) ** 2))

    decoded_wins, best_decoded = [], []
    for a, b, p in cherries(sim):
        xp = np.asarray(sim.instances_of(p), dtype=np.float32)
        sisters = [mse_on(z[a], xp), mse_on(z[b], xp)]
        decoded_wins.append(mse_on((z[a] + z[b]) / 2, xp) < min(sisters))
        best_decoded.append(min(sisters))
    assert anc["midpoint_beats_both_decoded_sisters"]["mse"] == pytest.approx(np.mean(decoded_wins))
    assert anc["mse"]["best_decoded_sister"] == pytest.approx(np.mean(best_decoded), rel=1e-4)
    assert 0 <= anc["midpoint_beats_both_decoded_sisters"]["mmd2"] <= 1
    report.write(tmp_path)
    draw_figures(report, tmp_path / "figures")
    assert (tmp_path / "figures" / "generative.png").stat().st_size > 0
    assert "generative" in (tmp_path / "metrics.json").read_text()
    text = (tmp_path / "report.md").read_text()
    assert "## The MAE's decoder" in text
    assert f"both sisters' are in {truth['these_cherries']:.0%} of these cherries" in text
    decoded = anc["midpoint_beats_both_decoded_sisters"]
    assert f"it wins in {decoded['mse']:.0%} of cherries by MSE" in text


def test_generative_scores_read_the_truth_only_to_score(world):
    # Shuffle the true traits among the extant species: the MAE and its decoded AEs do not
    # change (they never saw the traits), the trait recovery does.
    sc, sim, bank, meta = world
    names = list(sim.species)
    shuffled = dict(sim.traits)
    for a, b in zip(names, names[3:] + names[:3]):
        shuffled[a] = sim.traits[b]
    fake = dataclasses.replace(sim, traits=shuffled)
    bank2 = train_autoencoders(fake, sc.autoencoder, progress=False)
    meta2 = fit_meta_autoencoder(bank2, sc.meta, progress=False)
    np.testing.assert_array_equal(meta2.latents, meta.latents)
    for k, v in meta.decode_params(meta.latents).items():
        np.testing.assert_array_equal(meta2.decode_params(meta.latents)[k].numpy(), v.numpy())
    config = sc.analysis.model_copy(update={"generative_folds": 0, "baselines": ["data_mean"]})
    a = analyse(sim, bank, meta, config, seed=sc.seed).generative
    b = analyse(fake, bank2, meta2, config, seed=sc.seed).generative
    assert a["fidelity"] == b["fidelity"]
    assert a["trait_r2"]["mae"] != b["trait_r2"]["mae"]


def test_circles_latent_line():
    sc = small_scenario(seed=6, family="circles")
    sc = sc.model_copy(
        update={
            "autoencoder": sc.autoencoder.model_copy(update={"variant": "denoising"}),
            "meta": sc.meta.model_copy(update={"latent": 2}),
            "analysis": sc.analysis.model_copy(
                update={"generative_folds": 0, "baselines": ["data_mean"]}
            ),
        }
    )
    sim = simulate(sc)
    bank = train_autoencoders(sim, sc.autoencoder, progress=False)
    meta = fit_meta_autoencoder(bank, sc.meta, progress=False)
    report = analyse(sim, bank, meta, sc.analysis, seed=sc.seed)
    line = report.generative["latent_line"]
    assert len(line["radius"]) == 7 and -1 <= line["radius_spearman"] <= 1
    assert report.generative_figures["latent_line"]["generated"].shape == (7, 200, 2)


def test_classical_mds_double_centres_like_the_centring_matrix():
    # non-Euclidean distances: negative eigenvalues dropped, the kept axes as J D^2 J gives
    g = np.random.default_rng(4)
    d = g.uniform(0.5, 2.0, (30, 30))
    d = np.triu(d, 1) + np.triu(d, 1).T
    j = np.eye(30) - 1.0 / 30
    w, _ = np.linalg.eigh(-0.5 * j @ (d**2) @ j)
    kept = w[w > 1e-9 * w.max()]
    y = classical_mds(d)
    assert y.shape[1] == len(kept) < 30
    np.testing.assert_allclose(np.sort((y**2).sum(axis=0)), np.sort(kept), rtol=1e-10)


def test_large_worlds_hold_out_and_score_traits_on_seeded_samples(world, monkeypatch):
    """Above LARGE_WORLD one refit holds out at most MAX_HELDOUT species; above
    MAX_TRAIT_SPECIES trait recovery runs on that many; the report says so."""
    import evosim.analysis.generative as gen_module

    sc, sim, bank, meta = world
    monkeypatch.setattr(gen_module, "LARGE_WORLD", 4)
    monkeypatch.setattr(gen_module, "MAX_HELDOUT", 2)
    monkeypatch.setattr(gen_module, "MAX_TRAIT_SPECIES", 6)
    means = np.asarray(sim.instances).mean(axis=1)
    summary, figures = gen_module.generative_scores(
        sim, bank, meta, distances={"data_mean": euclidean(means)}, folds=2, seed=3
    )
    held = summary["fidelity"]["heldout"]
    assert held["refits"] == 1 and held["species"] == 2
    assert np.isfinite(held["mae"]["median"])
    assert summary["trait_species"] == 6
    assert set(summary["trait_r2"]) == {"mae", "data_mean"}
    text = "\n".join(gen_module.generative_markdown(summary))
    assert "one refit, a sample of 2 species" in text
    assert "on a seeded sample of 6 species" in text


def test_report_of_scores_from_before_the_decoded_sisters(world):
    # a run scored by an earlier evosim has no decoded-sister figures: its report still
    # renders, without them
    sc, sim, bank, meta = world
    anc, _ = ancestor_scores(sim, bank, meta, seed=sc.seed)
    old = {**anc, "mse": dict(anc["mse"]), "mmd2": dict(anc["mmd2"])}
    for table in ("mse", "mmd2"):
        del old[table]["best_decoded_sister"]
    del old["midpoint_beats_both_decoded_sisters"]
    text = "\n".join(generative_markdown({"ancestors": old}))
    assert "decoded midpoint" in text
    assert "decoded AE" not in text
    full = "\n".join(generative_markdown({"ancestors": anc}))
    assert "better sister's decoded AE" in full


def test_report_of_heldout_scores_new_and_from_before_encoding_refined():
    # held-out species are scored at the MAE's encoding (refined) and at the encoder's
    # guess; a run scored by an earlier evosim has the guess and "codes fitted" instead
    stats = {"median": 2.0, "mean": 2.5, "q90": 4.0, "max": 5.0}
    common = {
        "folds": 4,
        "refits": 4,
        "species": 8,
        "nearest_training_ae": stats,
        "pca_of_aligned_weights": stats,
        "mae_below_nearest": 0.75,
    }
    new = {"encode_steps": 300, "mae": stats, "mae_encoder_only": stats, **common}
    old = {"mae": stats, "mae_fitted_codes": stats, **common}
    for held, wanted, absent in (
        (new, ["encoded (300 refining steps)", "the encoder's guess alone"], "codes fitted"),
        (old, ["), encoder |", "codes fitted"], "refining"),
    ):
        text = "\n".join(generative_markdown({"fidelity": {"train": stats, "heldout": held}}))
        assert all(w in text for w in wanted), text
        assert absent not in text
        assert "beats the nearest training species' AE for 75%" in text
