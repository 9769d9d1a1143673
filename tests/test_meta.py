"""The meta-autoencoder and the representations of AEs it reads."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from evosim.meta import (
    MetaResult,
    RepresentationMap,
    ae_reconstruct,
    align_params,
    fit_meta_autoencoder,
    make_probes,
    represent,
)
from evosim.meta.mae import _nt_xent
from evosim.meta.representation import whitened_code_distances
from evosim.scenario import AutoencoderConfig, MetaConfig
from evosim.train import AEBank, AESpec, train_autoencoders

SPEC = AESpec(input_dim=6, hidden=(8,), latent=2)


def random_bank(s: int = 5, r: int = 2, seed: int = 0, spec: AESpec = SPEC) -> AEBank:
    """Species-level random parameters plus small replicate noise (no training)."""
    g = np.random.default_rng(seed)
    params = {}
    for k, shape in spec.param_shapes().items():
        base = g.standard_normal((s, 1, *shape))
        v = base + 0.05 * g.standard_normal((s, r, *shape))
        params[k] = torch.as_tensor(v.reshape(s * r, *shape), dtype=torch.float32)
    ref = g.standard_normal((200, spec.input_dim)).astype(np.float32)
    return AEBank.from_params(spec, params, [f"s{i}" for i in range(s)], r, reference_inputs=ref)


# ---------------------------------------------------------------------------- representations


def test_forward_matches_trainer():
    # Oracle: the trainer's own batched reconstruction.
    bank = random_bank()
    x = np.random.default_rng(1).standard_normal((7, SPEC.input_dim)).astype(np.float32)
    ours = ae_reconstruct(bank.params, bank.spec, torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(ours, bank.reconstruct_all(x), rtol=1e-5, atol=1e-5)


def _permuted(params: dict, member: int, perm_enc: np.ndarray, perm_dec: np.ndarray) -> dict:
    p = {k: v[member].numpy().copy() for k, v in params.items()}
    p["encoder.0.weight"] = p["encoder.0.weight"][:, perm_enc]
    p["encoder.0.bias"] = p["encoder.0.bias"][perm_enc]
    p["encoder.1.weight"] = p["encoder.1.weight"][perm_enc, :]
    p["decoder.0.weight"] = p["decoder.0.weight"][:, perm_dec]
    p["decoder.0.bias"] = p["decoder.0.bias"][perm_dec]
    p["decoder.1.weight"] = p["decoder.1.weight"][perm_dec, :]
    return p


def test_alignment_undoes_a_known_permutation():
    bank = random_bank(s=1, r=1)
    g = np.random.default_rng(3)
    perm = _permuted(bank.params, 0, g.permutation(8), g.permutation(8))
    stacked = {k: np.stack([bank.params[k][0].numpy(), perm[k]]) for k in perm}
    aligned = align_params(stacked, 0)
    for k in stacked:
        np.testing.assert_array_equal(aligned[k][1], stacked[k][0])
    # and the raw representation tells them apart while the aligned one does not
    two = AEBank.from_params(SPEC, {k: torch.as_tensor(v) for k, v in stacked.items()}, ["a", "b"])
    raw = represent(two, "raw", standardize="feature")
    assert np.abs(raw[0] - raw[1]).max() > 0.1
    rep = RepresentationMap.fit(two, "aligned")
    feats = rep.features(two)
    np.testing.assert_array_equal(feats[0], feats[1])


def test_alignment_keeps_each_function():
    bank = random_bank(s=4, r=1)
    aligned = align_params(bank.params, 2)
    again = AEBank.from_params(
        SPEC, {k: torch.as_tensor(v) for k, v in aligned.items()}, bank.species
    )
    x = np.random.default_rng(2).standard_normal((9, SPEC.input_dim)).astype(np.float32)
    np.testing.assert_allclose(again.reconstruct_all(x), bank.reconstruct_all(x), atol=1e-5)


def test_whitened_code_distances_invariant_to_invertible_maps():
    g = np.random.default_rng(4)
    z = g.standard_normal((1, 60, 3))
    a = g.standard_normal((3, 3)) + 3 * np.eye(3)
    d1 = whitened_code_distances(z)
    d2 = whitened_code_distances(z @ a + g.standard_normal(3))
    np.testing.assert_allclose(d1, d2, rtol=1e-3, atol=1e-4)


def test_functional_representation_ignores_weight_symmetries():
    # Member b = member a with hidden units permuted AND the linear bottleneck mixed by an
    # invertible A (encoder W A, b A; decoder A^-1 W): the same function, other weights.
    bank = random_bank(s=1, r=1)
    g = np.random.default_rng(5)
    p = _permuted(bank.params, 0, g.permutation(8), g.permutation(8))
    a = g.standard_normal((2, 2)) + 2 * np.eye(2)
    p["encoder.1.weight"] = p["encoder.1.weight"] @ a
    p["encoder.1.bias"] = p["encoder.1.bias"] @ a
    p["decoder.0.weight"] = np.linalg.inv(a) @ p["decoder.0.weight"]
    stacked = {
        k: torch.as_tensor(np.stack([bank.params[k][0].numpy(), p[k]]), dtype=torch.float32)
        for k in p
    }
    two = AEBank.from_params(SPEC, stacked, ["a", "b"], reference_inputs=bank.reference_inputs)
    feats = RepresentationMap.fit(two, "functional", n_probes=40).features(two)
    np.testing.assert_allclose(feats[0], feats[1], rtol=1e-3, atol=2e-3)
    aligned = RepresentationMap.fit(two, "aligned").features(two)
    assert np.abs(aligned[0] - aligned[1]).max() > 0.1  # alignment cannot undo the mixing


def test_make_probes_mix_and_spread():
    # Off-manifold probes: Gaussian with the pooled mean and 4x the pooled covariance.
    g = np.random.default_rng(6)
    ref = (g.standard_normal((5000, 3)) * [1.0, 2.0, 0.5]).astype(np.float32)
    bank = random_bank()
    bank.reference_inputs = ref
    probes = make_probes(bank, 4000, 0.5, seed=1)
    assert probes.shape == (4000, 3) and probes.dtype == np.float32
    on, off = probes[:2000], probes[2000:]
    assert np.isin(on[:, 0], ref[:, 0]).all()  # on-manifold probes are reference inputs
    # trace of the sample covariance of n=2000 Gaussian draws: relative sd
    # sqrt(2 sum l_i^2) / sum l_i / sqrt(n) ~ 0.029 here; allow 5 sigma (p < 1e-6).
    ratio = np.trace(np.cov(off, rowvar=False)) / (4 * np.trace(np.cov(ref, rowvar=False)))
    assert abs(ratio - 1) < 5 * 0.029
    np.testing.assert_array_equal(probes, make_probes(bank, 4000, 0.5, seed=1))
    with pytest.raises(ValueError, match="off_manifold_fraction"):
        make_probes(bank, 10, 1.5, seed=0)


def test_standardisation_inverts():
    bank = random_bank()
    for standardize in ("block", "feature"):
        rep, x = RepresentationMap.fit_transform(bank, "raw", standardize=standardize)
        np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
        params = rep.to_params(x)
        for k in params:
            np.testing.assert_allclose(params[k], bank.params[k].numpy(), atol=1e-5)
    _, xb = RepresentationMap.fit_transform(bank, "raw", standardize="block")
    # block scaling: every parameter tensor has unit mean variance per feature
    np.testing.assert_allclose((xb[:, :48].std(axis=0) ** 2).mean(), 1.0, rtol=1e-4)


def test_nt_xent_known_value():
    # Two groups of identical unit codes, orthogonal across groups (tau = 0.5):
    # for each anchor the positive has logit 2, the two negatives 0.
    z = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    got = _nt_xent(z, torch.tensor([0, 0, 1, 1]))
    want = -np.log(np.exp(2) / (np.exp(2) + 2))
    assert float(got) == pytest.approx(want, rel=1e-6)


# ---------------------------------------------------------------------------- the circles


@pytest.fixture(scope="module")
def circles():
    """The MAE paper's example: species = circles whose radius is the trait."""
    g = np.random.default_rng(0)
    s, n = 10, 256
    radii = np.linspace(0.5, 2.0, s)
    angle = g.uniform(0, 2 * np.pi, (s, n))
    data = np.stack([radii[:, None] * np.cos(angle), radii[:, None] * np.sin(angle)], -1)
    data = (data + 0.02 * g.standard_normal((s, n, 2))).astype(np.float32)
    # A denoising AE learns to project onto its circle, so its function encodes the radius.
    config = AutoencoderConfig(
        variant="denoising",
        corruption=0.1,
        hidden=[16],
        latent=2,
        steps=400,
        batch_size=64,
        lr=3e-3,
        device="cpu",
    )
    bank = train_autoencoders(data, config, progress=False)
    return radii, data, bank


@pytest.mark.parametrize("representation", ["aligned", "functional"])
def test_circles_latent_orders_species_by_radius(circles, representation):
    radii, _, bank = circles
    # The paper's MAE: reconstruction loss only. (The default distance term keeps code
    # distances proportional to representation distances, which helps tree recovery but
    # works against unrolling a curved one-parameter family onto a line: with it, 1 of 3
    # seeds gave |rho| = 0.61 on the functional representation.)
    config = MetaConfig(
        representation=representation,
        latent=1,
        steps=500,
        hidden=[32],
        probes=64,
        distance_weight=0.0,
        device="cpu",
    )
    meta = fit_meta_autoencoder(bank, config, seed=1, progress=False)
    assert meta.latents.shape == (10, 1)
    rho = spearmanr(meta.latents[:, 0], radii).statistic
    assert abs(rho) >= 0.95


def test_circles_decoded_ae_reconstructs_its_circle(circles):
    radii, data, bank = circles
    config = MetaConfig(representation="aligned", latent=1, steps=1000, hidden=[32], device="cpu")
    meta = fit_meta_autoencoder(bank, config, seed=1, progress=False)
    decoded = meta.decode(meta.latents)
    assert isinstance(decoded, AEBank) and decoded.species[0] == "decoded_1"
    for i in range(10):
        out = decoded.reconstruct(data[i], species=decoded.species[i])
        # The points come back on circle i (mean radius within 10%; the trained AEs
        # themselves are within 8%), and close to the data (MSE < 1% of its variance).
        assert abs(np.linalg.norm(out, axis=1).mean() - radii[i]) < 0.10 * radii[i]
        assert ((out - data[i]) ** 2).mean() < 0.01 * data[i].var(axis=0).mean()

    # decode(encode(AE)) versus the original AE, on that species' data x (variance V).
    # Bound: by Minkowski's inequality sqrt(L_dec) <= sqrt(L_orig) + sqrt(Delta), where
    # Delta is the mean squared difference between the two AEs' outputs. The MAE only
    # approximately reconstructs the weights, so Delta is not 0; we require the decoded
    # AE's outputs to stay within 10% of the data's RMS spread of the original's
    # (Delta <= 0.01 V), hence L_dec <= (sqrt(L_orig) + 0.1 sqrt(V))^2. Measured Delta is
    # about 6x below that; L_orig is itself ~1e-3 V, so the bound says "close" on the
    # data's scale, not a ratio of two tiny numbers.
    round_trip = meta.decode(meta.encode(bank))
    for i in range(10):
        x = data[i]
        v = x.var(axis=0).mean()
        orig = bank.reconstruct(x, species=bank.species[i])
        dec = round_trip.reconstruct(x, species=round_trip.species[i])
        l_orig = ((orig - x) ** 2).mean()
        l_dec = ((dec - x) ** 2).mean()
        delta = ((dec - orig) ** 2).mean()
        assert delta <= 0.01 * v
        assert l_dec <= (np.sqrt(l_orig) + 0.1 * np.sqrt(v)) ** 2


# ---------------------------------------------------------------------------- options


def test_replicates_early_stopping_contrastive_and_reload(tmp_path):
    bank = random_bank(s=6, r=2)
    config = MetaConfig(
        representation="raw",
        latent=2,
        steps=200,
        contrastive_weight=0.5,
        distance_weight=1.0,
        device="cpu",
    )
    meta = fit_meta_autoencoder(bank, config, seed=2, progress=False)
    assert meta.member_latents.shape == (12, 2) and meta.latents.shape == (6, 2)
    np.testing.assert_allclose(meta.latents, meta.member_latents.reshape(6, 2, 2).mean(1))
    es = meta.info["early_stopping"]
    assert 25 <= es["best_step"] <= 200 and meta.info["steps"] == es["best_step"]
    np.testing.assert_allclose(meta.encode(bank), meta.member_latents, atol=1e-4)
    meta.save(tmp_path / "mae.pt")
    again = MetaResult.load(tmp_path / "mae.pt")
    np.testing.assert_allclose(again.encode(bank), meta.encode(bank), atol=1e-6)
    assert isinstance(again.decode(again.latents), AEBank)
    # same seed, same result
    twin = fit_meta_autoencoder(bank, config, seed=2, progress=False)
    np.testing.assert_array_equal(twin.member_latents, meta.member_latents)


@pytest.mark.parametrize("prior", ["variational", "archetypal"])
def test_priors_run(prior):
    bank = random_bank(s=6, r=1)
    meta = fit_meta_autoencoder(
        bank,
        MetaConfig(
            representation="aligned", latent=3, prior=prior, steps=100, archetypes=3, device="cpu"
        ),
        progress=False,
    )
    assert meta.latents.shape == (6, 3) and np.isfinite(meta.latents).all()
    if prior == "archetypal":
        # codes are convex combinations of the archetypes: inside their bounding box
        arch = meta.model.archetypes.detach().numpy()
        assert (meta.latents >= arch.min(0) - 1e-5).all()
        assert (meta.latents <= arch.max(0) + 1e-5).all()


def test_latent_auto_reports_choice():
    bank = random_bank(s=8, r=1)
    meta = fit_meta_autoencoder(
        bank,
        MetaConfig(representation="raw", latent="auto", steps=60, device="cpu"),
        progress=False,
    )
    sel = meta.info["latent_selection"]
    assert set(sel) <= {"2", "4", "8", "16"} and meta.latent_dim == meta.info["latent"]
    best = min(sel.values())
    assert sel[str(meta.latent_dim)] <= 1.02 * best + 1e-12


def test_functional_loss_and_functional_decode():
    bank = random_bank(s=4, r=1)
    meta = fit_meta_autoencoder(
        bank,
        MetaConfig(representation="raw", latent=2, steps=50, functional_weight=1.0, device="cpu"),
        progress=False,
    )
    assert np.isfinite(meta.latents).all()
    fmeta = fit_meta_autoencoder(
        bank,
        MetaConfig(representation="functional", latent=2, steps=50, probes=32, device="cpu"),
        progress=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fmeta.decode(fmeta.latents[:3])
    assert out.shape == (3, 32, SPEC.input_dim)
    assert any("not an AEBank" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="functional_weight"):
        fit_meta_autoencoder(
            bank, MetaConfig(representation="functional", functional_weight=1.0), progress=False
        )
