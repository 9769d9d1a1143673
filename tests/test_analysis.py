"""Analysis: metrics on hand-checked cases, baselines, support, report, no leak of the truth."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy.stats import energy_distance, pearsonr

from evosim.analysis import BASELINES, METRICS, Report, analyse, mantel, score_distances
from evosim.analysis.baselines import (
    _random_directions,
    _sphere_constant,
    distribution_distances,
    energy_distances,
    sliced_energy_features,
    weight_statistics,
)
from evosim.analysis.metrics import euclidean, patristic
from evosim.analysis.support import bootstrap_support, noise_floor, splits, support_newick
from evosim.meta import fit_meta_autoencoder
from evosim.phylo import Phylogeny
from evosim.scenario import (
    BASELINE_NAMES,
    AnalysisConfig,
    AutoencoderConfig,
    MetaConfig,
    Scenario,
    SpeciesConfig,
    TraitsConfig,
    TreeConfig,
    dump_scenario,
)
from evosim.simulation import simulate
from evosim.train import train_autoencoders

TRUE = Phylogeny.from_newick("((A:1,B:1):2,((C:1,D:1):1,E:2):1);")


def _d(tree: Phylogeny, labels: list[str]) -> np.ndarray:
    return patristic(tree, labels)


# ---------------------------------------------------------------------------- metrics


def test_perfect_distances_score_perfectly():
    labels = ["A", "B", "C", "D", "E"]
    d = _d(TRUE, labels)
    for method in ("nj", "upgma"):
        tree, m = score_distances(
            d, labels, TRUE, method=method, mantel_permutations=0, rng=np.random.default_rng(0)
        )
        assert set(m) == set(METRICS)
        assert m["rf"] == 0 and m["nrf"] == 0 and m["quartet"] == 0
        assert m["cophenetic_pearson"] == pytest.approx(1.0)
        assert m["cophenetic_spearman"] == pytest.approx(1.0)
        # triplets need a rooted inferred tree: UPGMA of an ultrametric matrix is exact
        assert m["triplet"] == (0.0 if method == "upgma" else None)


def test_wrong_tree_hand_checked():
    # Inferred ((A,C),(B,D),E) vs true ((A,B),((C,D),E)): unrooted splits AB|CDE, CD|ABE
    # against AC|BDE, BD|ACE share nothing: RF = 4, nRF = 4 / (2 (5 - 3)) = 1. Each of
    # the 5 quartets resolves differently (AB|CD vs AC|BD, AB|CE vs AC|BE, AB|DE vs BD|AE,
    # CD|AE vs AC|DE, CD|BE vs BD|CE), so the normalised quartet distance is 1.
    labels = ["A", "B", "C", "D", "E"]
    wrong = Phylogeny.from_newick("((A:1,C:1):1,(B:1,D:1):1,E:2);")
    _, m = score_distances(
        _d(wrong, labels),
        labels,
        TRUE,
        method="nj",
        mantel_permutations=0,
        rng=np.random.default_rng(0),
    )
    assert m["rf"] == 4 and m["nrf"] == 1.0 and m["quartet"] == 1.0


def test_mantel_against_scipy_and_null_calibration():
    g = np.random.default_rng(1)
    pts = g.standard_normal((10, 3))
    a = euclidean(pts)
    b = euclidean(pts + 0.1 * g.standard_normal((10, 3)))
    r, p = mantel(a, b, 999, np.random.default_rng(2))
    iu = np.triu_indices(10, 1)
    assert r == pytest.approx(pearsonr(a[iu], b[iu]).statistic, abs=1e-12)
    assert p <= 0.01
    # Under independence the permutation p-value is uniform on {1/100, ..., 1}: P(p <= 0.1)
    # = 0.1 exactly. 400 trials: sd sqrt(0.1 * 0.9 / 400) = 0.015; tolerance 4 sd (p ~ 6e-5).
    hits = 0
    for _ in range(400):
        x, y = euclidean(g.standard_normal((8, 2))), euclidean(g.standard_normal((8, 2)))
        hits += mantel(x, y, 99, g)[1] <= 0.1
    assert abs(hits / 400 - 0.1) < 4 * 0.015


def test_energy_distance_matches_scipy_in_1d():
    g = np.random.default_rng(3)
    x = np.stack([g.normal(0, 1, 64), g.normal(1, 1, 64), g.normal(0, 2, 64)])[:, :, None]
    ours = energy_distances(x, np.random.default_rng(0), n_max=64)
    for i in range(3):
        for j in range(3):
            # scipy: sqrt(2) x the L2 distance of the empirical CDFs, which equals
            # sqrt(2E|X-Y| - E|X-X'| - E|Y-Y'|) with V-statistic means (Szekely & Rizzo)
            want = energy_distance(x[i, :, 0], x[j, :, 0])
            assert ours[i, j] == pytest.approx(want, rel=1e-4, abs=1e-6)


def _clouds(seed: int, s: int = 5, n: int = 60, d: int = 6) -> np.ndarray:
    """Gaussian clouds of different centres, spreads and shapes."""
    g = np.random.default_rng(seed)
    scale = g.uniform(0.5, 2.0, (s, 1, d))
    return g.standard_normal((s, n, d)) * scale + g.standard_normal((s, 1, d))


def _exact_energy(x: np.ndarray) -> np.ndarray:
    return energy_distances(x, np.random.default_rng(0), n_max=x.shape[1]).astype(np.float64)


def test_sphere_constant_makes_the_mean_projection_a_length():
    # |v| = c_d E|theta . v|: c_1 = 1, c_2 = pi / 2, c_3 = 2
    assert _sphere_constant(1) == pytest.approx(1.0)
    assert _sphere_constant(2) == pytest.approx(np.pi / 2)
    assert _sphere_constant(3) == pytest.approx(2.0)
    theta = _random_directions(5, 40_000, np.random.default_rng(0))
    assert np.allclose(np.linalg.norm(theta, axis=1), 1.0)
    proj = np.abs(theta[:, 0])
    # the sample mean of |theta_1| within 4 standard errors of 1 / c_5
    assert abs(proj.mean() - 1 / _sphere_constant(5)) < 4 * proj.std() / np.sqrt(len(proj))


def test_sliced_energy_with_every_point_an_edge_is_exact_for_its_directions():
    x = _clouds(1)
    f = sliced_energy_features(x, np.random.default_rng(7), n_directions=12, n_cells=None)
    theta = _random_directions(x.shape[2], 12, np.random.default_rng(7))
    c = _sphere_constant(x.shape[2])
    for i in range(len(x)):
        for j in range(len(x)):
            # scipy's energy_distance is sqrt(2 * integral (F - G)^2): the 1-D distance
            one_d = [energy_distance(x[i] @ t, x[j] @ t) ** 2 for t in theta]
            got = float(np.sum((f[i].astype(np.float64) - f[j]) ** 2))
            assert got == pytest.approx(c * np.mean(one_d), rel=1e-4, abs=1e-6)


def test_sliced_energy_approaches_the_energy_distance():
    """The mean over directions is the energy distance (Szekely & Rizzo): within 4
    standard errors, the error of a mean over independent directions (the drawn ones
    are rows of rotations, which vary less)."""
    x = _clouds(2)
    exact2 = _exact_energy(x) ** 2
    n_dir = 64
    f = sliced_energy_features(x, np.random.default_rng(3), n_directions=n_dir, n_cells=None)
    c = _sphere_constant(x.shape[2])
    spread = _random_directions(x.shape[2], 400, np.random.default_rng(9))
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            per = [c * energy_distance(x[i] @ t, x[j] @ t) ** 2 for t in spread]
            assert np.mean(per) == pytest.approx(exact2[i, j], abs=4 * np.std(per) / 20)
            got = float(np.sum((f[i].astype(np.float64) - f[j]) ** 2))
            assert abs(got - exact2[i, j]) < 4 * np.std(per) / np.sqrt(n_dir)


def test_sliced_energy_defaults_keep_the_accuracy_they_document():
    x = _clouds(4, s=8, n=200, d=8)
    exact = _exact_energy(x)
    f = sliced_energy_features(x, np.random.default_rng(5))
    got = np.sqrt(((f[:, None, :].astype(np.float64) - f[None, :, :]) ** 2).sum(-1))
    iu = np.triu_indices(len(x), 1)
    rel = np.abs(got[iu] / exact[iu] - 1)
    assert np.median(rel) < 0.01  # the docstring's figure
    assert np.allclose(np.diag(got), 0.0)
    # a copy of a cloud is at distance 0, whatever the grid
    twin = sliced_energy_features(np.concatenate([x, x[:1]]), np.random.default_rng(5))
    assert np.array_equal(twin[0], twin[-1])


def test_data_distribution_reads_every_instance(monkeypatch):
    import evosim.analysis.baselines as baselines

    x = _clouds(4, s=8, n=200, d=8)  # the clouds of the sliced defaults' accuracy test
    exact = _exact_energy(x)
    within = distribution_distances(x, np.random.default_rng(2))
    np.testing.assert_allclose(within, exact, rtol=1e-5, atol=1e-6)
    # over the budget: the sliced features of every instance, not a subsample
    monkeypatch.setattr(baselines, "ENERGY_BUDGET", 8.0**2 * 199**2)
    over = distribution_distances(x, np.random.default_rng(2))
    rows = sliced_energy_features(x, np.random.default_rng(2))
    np.testing.assert_allclose(over, euclidean(rows.astype(np.float64)), rtol=1e-12)
    iu = np.triu_indices(len(x), 1)
    assert np.median(np.abs(over[iu] / exact[iu] - 1)) < 0.01  # as documented


def test_sliced_energy_features_run_where_they_are_told():
    x = _clouds(3, s=4, n=30, d=3)
    a = sliced_energy_features(x, np.random.default_rng(1))
    b = sliced_energy_features(x, np.random.default_rng(1), device=torch.device("cpu"))
    np.testing.assert_array_equal(a, b)
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError)):
            sliced_energy_features(x, np.random.default_rng(1), device="cuda")


def test_weight_statistics_ignore_hidden_permutation():
    g = np.random.default_rng(4)
    p = {
        "encoder.0.weight": g.standard_normal((1, 5, 7)),
        "encoder.0.bias": g.standard_normal((1, 7)),
        "encoder.1.weight": g.standard_normal((1, 7, 2)),
    }
    perm = g.permutation(7)
    q = {
        "encoder.0.weight": p["encoder.0.weight"][:, :, perm],
        "encoder.0.bias": p["encoder.0.bias"][:, perm],
        "encoder.1.weight": p["encoder.1.weight"][:, perm, :],
    }
    np.testing.assert_allclose(weight_statistics(p), weight_statistics(q), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- support


def test_splits_noise_floor_and_support():
    labels = ["A", "B", "C", "D", "E"]
    sp = {frozenset(s) for s in splits(TRUE).values()}
    # each split named by the side without "A": AB|CDE (twice, the two root edges) and CD|ABE
    assert sp == {frozenset({"C", "D"}), frozenset({"C", "D", "E"})}
    # noise floor by hand: 1-D replicates at 0, 1 (species 1) and 10, 11 (species 2)
    nf = noise_floor(np.array([[0.0], [1.0], [10.0], [11.0]]), 2)
    assert nf["within"] == 1.0 and nf["between"] == 10.0 and nf["ratio"] == 0.1
    # replicates scattered tightly around points that follow the tree: full support
    g = np.random.default_rng(5)
    d = _d(TRUE, labels)
    # classical MDS of the true distances: points whose distances are the patristic ones
    j = np.eye(5) - 1 / 5
    w, v = np.linalg.eigh(-0.5 * j @ (d**2) @ j)
    pts = v[:, w > 1e-9] * np.sqrt(w[w > 1e-9])
    z = np.repeat(pts, 3, axis=0) + 0.01 * g.standard_normal((15, pts.shape[1]))
    tree, _ = score_distances(
        euclidean(pts), labels, TRUE, method="nj", mantel_permutations=0, rng=g
    )
    sup = bootstrap_support(z, labels, 3, tree, "nj", 20, g)
    assert sup and all(v == 1.0 for v in sup.values())
    nwk = support_newick(tree, sup)
    assert "1.00" in nwk
    again = Phylogeny.from_newick(nwk)
    assert sorted(again.leaves) == labels


# ---------------------------------------------------------------------------- end to end


def tiny_scenario(seed: int = 3) -> Scenario:
    return Scenario(
        name="tiny",
        seed=seed,
        tree=TreeConfig(model="yule", n_species=10),
        traits=TraitsConfig(dim=4),
        species=SpeciesConfig(instances=64, ambient_dim=8, development_hidden=16),
        autoencoder=AutoencoderConfig(
            hidden=[16], latent=2, steps=150, batch_size=32, device="cpu", replicates=2
        ),
        meta=MetaConfig(steps=150, probes=32, device="cpu", latent=4),
        analysis=AnalysisConfig(mantel_permutations=99, random_trees=10, generative_folds=2),
    )


@pytest.fixture(scope="module")
def tiny():
    sc = tiny_scenario()
    sim = simulate(sc)
    bank = train_autoencoders(sim, sc.autoencoder, progress=False)
    meta = fit_meta_autoencoder(bank, sc.meta, seed=sc.seed, progress=False)
    return sc, sim, bank, meta


def test_analyse_end_to_end_and_files(tiny, tmp_path):
    from evosim.pipeline import draw_figures

    sc, sim, bank, meta = tiny
    report = analyse(sim, bank, meta, sc.analysis, seed=sc.seed, progress=False)
    assert set(report.baselines) == set(BASELINES)
    for scores in [report.metrics, *report.baselines.values()]:
        assert set(scores) == set(METRICS) and scores["triplet"] is None
        assert 0 <= scores["nrf"] <= 1 and 0 <= scores["quartet"] <= 1
    assert report.baselines["random"]["nrf"] > 0.6  # random trees on 10 leaves: ~0.9
    assert report.support and report.support_summary["n_true"] + report.support_summary[
        "n_false"
    ] == len(report.support)
    assert 0 < report.noise_floor["ratio"]
    report.timings["train"] = 1.0
    written = report.write(tmp_path)
    assert not [p for p in written if p.suffix in (".png", ".svg")]  # Report writes data only
    for name in (
        "inferred_tree.nwk",
        "latents.csv",
        "metrics.json",
        "report.md",
        "trees.nex",
        "latent_distances.tsv",
        "true_distances.tsv",
        *(f"baselines/{b}.nwk" for b in BASELINES if b != "random"),
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert set(data["mae"]) == set(METRICS) and set(data["baselines"]) == set(BASELINES)
    assert data["mae"]["nrf"] == pytest.approx(report.metrics["nrf"])
    assert "| **MAE** |" in (tmp_path / "report.md").read_text()
    header = (tmp_path / "latents.csv").read_text().splitlines()[0]
    assert header == "species," + ",".join(f"z_{i + 1}" for i in range(meta.latent_dim))
    inferred = Phylogeny.from_newick((tmp_path / "inferred_tree.nwk").read_text())
    assert sorted(inferred.leaves) == sorted(sim.species)
    assert not inferred.rooted  # NJ: written with [&U], so `evosim compare` reads it unrooted
    # `evosim plot` redraws from the files alone
    (tmp_path / "true_tree.nwk").write_text(sim.extant_tree().to_newick())
    (tmp_path / "scenario.yaml").write_text(dump_scenario(sc))
    back = Report.from_run_dir(tmp_path)
    assert back.species == report.species and back.metrics == data["mae"]
    assert bool(back.identification) == bool(report.identification)
    assert back.generative == data["generative"]
    np.testing.assert_allclose(back.latents, report.latents, rtol=1e-7)
    np.testing.assert_array_equal(back.latent_distances, report.latent_distances)
    paths = draw_figures(back, tmp_path / "figures")
    # five figures, generative.png, and two more from species identification when it ran
    assert len(paths) == 6 + (2 if report.identification else 0)
    for png in paths:
        assert png.suffix == ".png" and png.with_suffix(".svg").stat().st_size > 0


def test_distance_matrices_are_read_by_scikit_bio_and_trees_nexus_by_dendropy(tiny, tmp_path):
    dendropy = pytest.importorskip("dendropy")
    skbio = pytest.importorskip("skbio")
    sc, sim, bank, meta = tiny
    report = analyse(sim, bank, meta, sc.analysis, progress=False)
    report.write(tmp_path)
    for name, d in (
        ("latent_distances", report.latent_distances),
        ("true_distances", report.true_distances),
    ):
        dm = skbio.DistanceMatrix.read(str(tmp_path / f"{name}.tsv"), format="lsmat")
        assert list(dm.ids) == report.species
        np.testing.assert_array_equal(dm.data, d)  # repr floats: exact round trip
    trees = dendropy.TreeList.get(path=str(tmp_path / "trees.nex"), schema="nexus")
    labels = [t.label for t in trees]
    assert labels[:2] == ["true", "inferred"]
    assert trees[0].is_rooted and not trees[1].is_rooted  # [&R] true tree, [&U] NJ tree
    assert {f"baseline_{b}" for b in BASELINES if b != "random"} <= set(labels)
    for tree in trees:
        assert sorted(t.label for t in tree.taxon_namespace) == sorted(report.species)


def test_report_shows_quartet_se_and_not_applicable_baselines(tmp_path):
    # Large trees get a sampled quartet distance with its standard error: both reach
    # metrics.json and report.md; a baseline that cannot apply says why in its row.
    tree = Phylogeny.from_newick("((A:1,B:1):1,(C:1,D:1):1);")
    metrics = {k: 0.5 for k in METRICS} | {"triplet": None, "quartet_se": 0.0123}
    report = Report(
        inferred_tree=tree,
        metrics=metrics,
        baselines={"raw_weights": {"not_applicable": "mixed AE architectures"}},
        species=["A", "B", "C", "D"],
        latents=np.zeros((4, 2)),
        true_tree=tree,
        method="nj",
    )
    report.write(tmp_path)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["mae"]["quartet_se"] == 0.0123
    assert data["baselines"]["raw_weights"] == {"not_applicable": "mixed AE architectures"}
    text = (tmp_path / "report.md").read_text()
    assert "0.500 ± 0.012" in text
    assert "| raw weights | not applicable: mixed AE architectures |" in text
    assert "`quartet_se`" in text


@pytest.mark.slow
def test_no_leak_relabelling_truth_changes_scores_not_latents(tiny):
    sc, sim, bank, meta = tiny
    # Shuffle the extant leaf labels of the true tree; the data under each name is unchanged.
    names = list(sim.species)
    shuffled = names[1:] + names[:1]
    fake = dataclasses.replace(sim, tree=sim.tree.relabel(dict(zip(names, shuffled))), _extant=None)
    bank2 = train_autoencoders(fake, sc.autoencoder, progress=False)
    for k in bank.params:
        torch.testing.assert_close(bank2.params[k], bank.params[k], rtol=0, atol=0)
    meta2 = fit_meta_autoencoder(bank2, sc.meta, seed=sc.seed, progress=False)
    np.testing.assert_array_equal(meta2.latents, meta.latents)
    # the decoder too: the same AEs decoded from the same codes, the same generated instances
    for k, v in meta.decode_params(meta.latents).items():
        torch.testing.assert_close(meta2.decode_params(meta.latents)[k], v, rtol=0, atol=0)
    np.testing.assert_array_equal(meta2.generate(meta.latents, 8), meta.generate(meta.latents, 8))
    a = analyse(sim, bank, meta, sc.analysis, seed=sc.seed)
    b = analyse(fake, bank2, meta2, sc.analysis, seed=sc.seed)
    assert a.inferred_tree.to_newick() == b.inferred_tree.to_newick()
    assert a.metrics != b.metrics
    assert a.baselines["data_mean"] != b.baselines["data_mean"]
    # generative scores: what reads only the AEs and data agrees, what reads the tree does not
    assert a.generative["fidelity"] == b.generative["fidelity"]
    assert a.generative["ancestors"] != b.generative["ancestors"]


def test_bad_input(tiny):
    sc, sim, bank, meta = tiny
    with pytest.raises(ValueError, match="unknown baseline"):
        analyse(sim, bank, meta, AnalysisConfig(baselines=["nope"]))


def test_mae_target_baseline_is_the_distance_terms_target_species_by_species(tiny):
    from scipy.spatial.distance import cdist

    from evosim.analysis.baselines import baseline_distances, not_applicable
    from evosim.meta.behaviour import behaviour_features, behaviour_targets, error_profiles

    sc, sim, bank, meta = tiny
    r = bank.replicates

    def species_rows(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        return rows.reshape(len(bank.species), r, -1).mean(1)

    def target(config: MetaConfig) -> np.ndarray:
        m = dataclasses.replace(meta, config=config)
        return baseline_distances("mae_target", sim, bank, m, seed=sc.seed)

    # the default target: the behaviour rows of the MAE's own probes and seed
    assert meta.config.distance_target == "behaviour" and meta.config.distance_weight > 0
    beh = behaviour_targets(bank, meta.probes, seed=meta.seed)
    rows = species_rows(behaviour_features(bank, beh, seed=meta.seed))
    np.testing.assert_allclose(target(meta.config), cdist(rows, rows), rtol=1e-5, atol=1e-6)
    errors = meta.config.model_copy(update={"distance_target": "errors", "error_cap": 0.5})
    rows = species_rows(error_profiles(bank, cap_quantile=0.5))
    np.testing.assert_allclose(target(errors), cdist(rows, rows), rtol=1e-5, atol=1e-6)
    # no distance term, no target: reported as not applicable, with the field to change
    off = dataclasses.replace(meta, config=meta.config.model_copy(update={"distance_weight": 0}))
    assert "meta.distance_weight: 0" in not_applicable("mae_target", bank, off)
    assert not_applicable("mae_target", bank, meta) is None
    cfg = sc.analysis.model_copy(update={"baselines": ["mae_target"], "mantel_permutations": 0})
    report = analyse(sim, bank, off, cfg, progress=False)
    assert "distance_weight" in report.baselines["mae_target"]["not_applicable"]


def test_scenario_knows_every_baseline():
    # analysis.baselines is checked by `evosim validate` against this list.
    assert tuple(BASELINE_NAMES) == tuple(BASELINES)


def test_analyse_takes_the_runs_seed_and_an_explicit_device(tiny):
    sc, sim, bank, meta = tiny
    cfg = sc.analysis.model_copy(update={"baselines": ["data_distribution", "random"]})
    implicit = analyse(sim, bank, meta, cfg, progress=False)
    explicit = analyse(sim, bank, meta, cfg, seed=sc.seed, device="cpu", progress=False)
    other = analyse(sim, bank, meta, cfg, seed=sc.seed + 1, progress=False)
    assert implicit.metrics == explicit.metrics and implicit.baselines == explicit.baselines
    # the seed is used: the random trees differ
    assert implicit.baselines["random"] != other.baselines["random"]
    assert implicit.seed == sc.seed and explicit.devices == {"analysis": "cpu"}
    with pytest.raises(TypeError):
        analyse(sim, bank, meta, cfg, sc.seed)  # options are keyword-only


def test_energy_distances_run_where_they_are_told():
    x = np.random.default_rng(0).normal(size=(3, 20, 2)).astype(np.float32)
    a = energy_distances(x, np.random.default_rng(1), device="cpu")
    b = energy_distances(x, np.random.default_rng(1), device=torch.device("cpu"))
    np.testing.assert_array_equal(a, b)
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError)):
            energy_distances(x, np.random.default_rng(1), device="cuda")  # no silent fallback


def test_random_tree_expected_quartet_is_two_thirds():
    # The analytic value used for large trees: each quartet of a label-shuffled random
    # tree matches the true resolution with probability 1/3. 200 sampled trees on 12
    # leaves: the per-tree distance has sd ~0.07-0.08 (measured, 300 trees; take 0.09), so
    # the mean's sd < 0.09 / sqrt(200) = 0.0064; tolerance 5 sd (p < 1e-6).
    from evosim.analysis.random_trees import random_tree_scores
    from evosim.phylo import yule

    g = np.random.default_rng(8)
    true = yule(1.0, 12, rng=g)
    sp = true.extant_leaves
    s = random_tree_scores(
        true,
        sp,
        n_trees=200,
        method="upgma",
        mantel_permutations=0,
        rng=g,
        true_distances=patristic(true, sp),
    )
    assert s["quartet"] == pytest.approx(2 / 3, abs=5 * 0.0064)
    assert s["triplet"] == pytest.approx(2 / 3, abs=5 * 0.0064)


def test_random_tree_mantel_p_has_its_null_mean():
    # Shuffled labels: the observed statistic's rank among P + 1 is uniform, so the mean
    # p-value is (P + 2) / (2 (P + 1)) = 21/40 for P = 19. p is uniform on {1/20, ..., 1}
    # (sd 0.288), so 400 sampled trees give the mean to sd 0.0144; tolerance 4 sd.
    from evosim.analysis.metrics import mantel_null_mean
    from evosim.analysis.random_trees import EXACT_RANDOM_MAX, random_tree_scores
    from evosim.phylo import yule

    g = np.random.default_rng(11)
    true = yule(1.0, 12, rng=g)
    sp = true.extant_leaves
    s = random_tree_scores(
        true,
        sp,
        n_trees=400,
        method="nj",
        mantel_permutations=19,
        rng=g,
        true_distances=patristic(true, sp),
    )
    assert s["mantel_p"] == pytest.approx(21 / 40, abs=4 * 0.0144)
    # above EXACT_RANDOM_MAX leaves the expectation of the sequential test (99 permutations,
    # stopping at 20 reaching r) is used instead of sampling
    big = yule(1.0, EXACT_RANDOM_MAX + 2, rng=g)
    sp = big.extant_leaves
    s = random_tree_scores(
        big,
        sp,
        n_trees=2,
        method="nj",
        mantel_permutations=999,
        rng=g,
        true_distances=patristic(big, sp),
    )
    assert s["mantel_p"] == mantel_null_mean(99)
    assert s["cophenetic_pearson"] == s["distance_spearman"] == 0.0


def test_nexus_keeps_underscores_and_rooting_for_strict_readers(tmp_path):
    dendropy = pytest.importorskip("dendropy")
    from evosim.analysis.report import _nexus

    rooted = "((Homo_sapiens:1,Pan_troglodytes:1)0.9:1,'Gorilla gorilla':2);"
    unrooted = "[&U] (Homo_sapiens:1,Pan_troglodytes:1,'Gorilla gorilla':2);"
    path = tmp_path / "t.nex"
    taxa = ["Homo_sapiens", "Pan_troglodytes", "Gorilla gorilla"]
    path.write_text(_nexus(taxa, [("true_tree", rooted, True), ("nj_tree", unrooted, False)]))
    trees = dendropy.TreeList.get(path=str(path), schema="nexus")
    assert [t.label for t in trees] == ["true_tree", "nj_tree"]
    assert trees[0].is_rooted and not trees[1].is_rooted
    assert sorted(t.label for t in trees.taxon_namespace) == sorted(taxa)


def test_write_lsmat_streams_blocks_that_read_back_exactly(tmp_path, monkeypatch):
    from evosim.analysis import report as report_module

    g = np.random.default_rng(5)
    d = euclidean(g.normal(size=(10, 3)) * 10.0 ** g.integers(-8, 8, size=(10, 1)))
    labels = [f"sp {i}" for i in range(10)]
    monkeypatch.setattr(report_module, "_LSMAT_ROWS", 3)  # blocks of 3, 3, 3 and 1 rows
    path = report_module.write_lsmat(tmp_path / "d.tsv", labels, d)
    got_labels, got = report_module.read_lsmat(path)
    assert got_labels == labels and np.array_equal(got, d)
    # each value is the shortest text that reads back to it, as repr writes it
    second = path.read_text().splitlines()[2].split("\t")
    assert second == ["sp 1", *(repr(float(v)) for v in d[1])]


def test_write_lsmat_bytes_equal_a_per_value_repr_writer(tmp_path, monkeypatch):
    # every magnitude, sign, integer and subnormal: the file is what repr per value writes
    from evosim.analysis import report as report_module

    g = np.random.default_rng(8)
    n = 37
    d = g.standard_normal((n, n)) * 10.0 ** g.integers(-300, 300, size=(n, n))
    d[0, :5] = [0.0, 1.0, 5e-324, -2.5, 1e16]
    labels = [f"species_{i}" for i in range(n)]
    monkeypatch.setattr(report_module, "_LSMAT_ROWS", 8)
    path = report_module.write_lsmat(tmp_path / "d.tsv", labels, d)
    expected = "\t" + "\t".join(labels) + "\n"
    rows = ("\t".join([label, *(repr(float(v)) for v in row)]) for label, row in zip(labels, d))
    expected += "".join(row + "\n" for row in rows)
    assert path.read_bytes() == expected.encode()


def test_methods_scored_side_by_side_score_as_one_at_a_time(tiny):
    # the analysis scores methods on up to SCORING_THREADS threads: 1 and 2 agree
    import torch

    sc, sim, bank, meta = tiny
    cfg = sc.analysis.model_copy(update={"generative": False})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = analyse(sim, bank, meta, cfg, progress=False)
        torch.set_num_threads(2)
        together = analyse(sim, bank, meta, cfg, progress=False)
    finally:
        torch.set_num_threads(before)
    assert list(together.baselines) == list(alone.baselines)
    assert together.metrics == alone.metrics and together.baselines == alone.baselines
    assert together.inferred_tree.to_newick() == alone.inferred_tree.to_newick()


def test_tree_dims_make_the_analysis_read_the_codes_leading_coordinates(tiny, monkeypatch):
    import evosim.analysis.generative as generative
    from evosim.analysis.baselines import _pca_scores, baseline_distances, species_means

    sc, sim, bank, meta = tiny
    assert meta.latent_dim == 4 and meta.tree_dims == 4  # default: the whole code
    np.testing.assert_array_equal(meta.tree_latents, meta.latents)
    head = dataclasses.replace(meta, config=meta.config.model_copy(update={"tree_dims": 2}))
    np.testing.assert_array_equal(head.tree_latents, meta.latents[:, :2])
    np.testing.assert_array_equal(head.tree_member_latents, meta.member_latents[:, :2])
    cfg = sc.analysis.model_copy(
        update={
            "baselines": ["pca", "untrained_mae"],
            "mantel_permutations": 0,
            "generative": False,
        }
    )
    report = analyse(sim, bank, head, cfg, seed=sc.seed, progress=False)
    # the tree, the latent figures and the support read the two leading coordinates only
    np.testing.assert_allclose(report.latent_distances, euclidean(meta.latents[:, :2]))
    np.testing.assert_array_equal(report.latents, meta.latents[:, :2])
    whole = analyse(sim, bank, meta, cfg, seed=sc.seed, progress=False)
    assert not np.allclose(whole.latent_distances, report.latent_distances)
    assert report.noise_floor != whole.noise_floor
    report.scenario["meta"]["tree_dims"] = 2
    assert "code 4 (asked: 4), tree from its first 2 coordinates, prior" in report.markdown()
    assert "tree from" not in whole.markdown()
    # the code-sized baselines take as many coordinates as the tree
    r = bank.replicates
    x = meta.represent(bank)
    expected = euclidean(species_means(_pca_scores(x, 2), r))
    np.testing.assert_allclose(baseline_distances("pca", sim, bank, head, seed=sc.seed), expected)
    untrained = species_means(meta.untrained_encode(x)[:, :2], r)
    np.testing.assert_allclose(
        baseline_distances("untrained_mae", sim, bank, head, seed=sc.seed), euclidean(untrained)
    )
    # trait recovery reads them too
    seen = {}

    def spy(sim_, species, features, *, seed):
        seen.update(features)
        return {}

    monkeypatch.setattr(generative, "trait_recovery", spy)
    generative.generative_scores(sim, bank, head, distances={}, folds=0, seed=sc.seed)
    np.testing.assert_array_equal(seen["mae"], meta.latents[:, :2])
