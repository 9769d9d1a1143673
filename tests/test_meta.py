"""The meta-autoencoder: representations, behaviour targets, losses, fitting, decoding, files."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from evosim.errors import FileFormatError, ScenarioError
from evosim.meta import (
    MetaResult,
    RepresentationMap,
    align_params,
    fit_meta_autoencoder,
    make_probes,
    represent,
)
from evosim.meta.behaviour import (
    behaviour_features,
    behaviour_targets,
    error_profiles,
    select_region,
)
from evosim.meta.losses import code_law_energy, distance_stress, nt_xent
from evosim.meta.representation import whitened_code_distances
from evosim.scenario import AutoencoderConfig, DecodeArchitecture, MetaConfig
from evosim.train import AEBank, AEBankSet, AESpec, train_autoencoders

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


def _mse(bank: AEBank, x: np.ndarray, members: list[int]) -> np.ndarray:
    """Reconstruction MSE of member ``members[i]`` on ``x[i]`` -> ``[K]``."""
    out = bank.reconstruct(x, members)
    return ((out - x) ** 2).mean(axis=(1, 2))


# ---------------------------------------------------------------------------- representations


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


def test_whitened_code_distances_are_mahalanobis_and_invariant():
    g = np.random.default_rng(4)
    z = g.standard_normal((1, 60, 3))
    a = g.standard_normal((3, 3)) + 3 * np.eye(3)
    d1 = whitened_code_distances(z)
    d2 = whitened_code_distances(z @ a + g.standard_normal(3))
    np.testing.assert_allclose(d1, d2, rtol=1e-3, atol=1e-4)
    # oracle: scipy's Mahalanobis distance under the codes' own (biased) covariance / sqrt(k)
    from scipy.spatial.distance import mahalanobis

    zc = z[0] - z[0].mean(0)
    vi = np.linalg.inv(zc.T @ zc / 60)
    want = mahalanobis(z[0, 0], z[0, 1], vi) / np.sqrt(3)
    assert d1[0, 0] == pytest.approx(want, rel=1e-4)
    # a tensor in gives a differentiable tensor out
    zt = torch.as_tensor(z, dtype=torch.float32).requires_grad_(True)
    whitened_code_distances(zt).sum().backward()
    assert torch.isfinite(zt.grad).all()


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


# ---------------------------------------------------------------------------- losses, targets


def test_nt_xent_known_value():
    # Two groups of identical unit codes, orthogonal across groups (tau = 0.5):
    # for each anchor the positive has logit 2, the two negatives 0.
    z = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    got = nt_xent(z, torch.tensor([0, 0, 1, 1]))
    want = -np.log(np.exp(2) / (np.exp(2) + 2))
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_code_law_energy_known_values():
    # Energy distance (Szekely & Rizzo): zero when the particles are the codes themselves,
    # and for 1-D point masses at 0 (codes) and d (particles): 2 d - 0 - 0 over E|X - X'|.
    g = np.random.default_rng(7)
    codes = torch.as_tensor(g.standard_normal((1, 40, 2)))
    assert abs(float(code_law_energy(codes, codes.clone()))) < 1e-12
    c = torch.tensor([[[0.0], [0.0], [1.0], [1.0]]])  # E|X - X'| = 0.5 (V-statistic)
    p = torch.tensor([[[0.0], [1.0]]])  # the same law: distance 0
    assert float(code_law_energy(c, p)) == pytest.approx(0.0, abs=1e-12)
    far = torch.tensor([[[3.0], [4.0]]])  # E|X-Y| = 3, E|Y-Y'| = 0.5 -> (6 - 0.5 - 0.5) / 0.5
    assert float(code_law_energy(c, far)) == pytest.approx(10.0)


def test_particle_sampling_follows_the_kernel_density():
    from evosim.meta.network import particle_bandwidth, particle_sample

    # 4 particles on a unit square's corners: nearest-neighbour distance 1, bandwidth 0.5
    p = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    assert float(particle_bandwidth(p)[0]) == pytest.approx(0.5)
    x = particle_sample(p, 20000, torch.Generator().manual_seed(0))[0].numpy()
    # mean 0.5 per axis; variance 0.25 (the corners) + 0.25 (the kernel) = 0.5; with n = 2e4
    # the sample mean has sd 0.005 and the variance sd ~0.005: tolerance 5 sd
    np.testing.assert_allclose(x.mean(0), [0.5, 0.5], atol=0.025)
    np.testing.assert_allclose(x.var(0), [0.5, 0.5], atol=0.025)


def test_select_region_keeps_the_low_error_cluster():
    # member 0: 5 inputs at error ~1e-3 (its species), the rest 50x worse; member 1: all alike
    err = np.array(
        [
            [1e-3, 0.05, 2e-3, 0.06, 1.5e-3, 0.07, 1e-3, 0.08, 1.2e-3, 0.09, 0.1, 0.2],
            [1.0] * 12,
        ]
    )
    mask = select_region(err, 10, n_min=3, factor=8.0)
    assert (
        mask[0].tolist() == [True, False, True, False, True, False, True, False, True] + [False] * 3
    )
    assert mask[1].sum() == 10  # every input qualifies: capped at n_max, the first ones
    assert mask[1, :10].all()


def test_behaviour_targets_are_each_ae_on_its_region():
    bank = random_bank(s=3, r=2)
    probes = make_probes(bank, 16, 0.25, seed=0)
    beh = behaviour_targets(bank, probes, n_select=12, n_generated=20, seed=3)
    assert beh.inputs.shape == (6, 32, SPEC.input_dim)
    for m in range(6):
        np.testing.assert_allclose(
            beh.targets[m].numpy(), bank.reconstruct(beh.inputs[m].numpy(), m), atol=1e-5
        )
        np.testing.assert_allclose(
            beh.probe_targets[m].numpy(), bank.reconstruct(probes, m), atol=1e-5
        )
    # a member's points do not depend on the other members (streams named by species)
    two = behaviour_targets(bank.subset(["s1"]), probes, n_select=12, n_generated=20, seed=3)
    np.testing.assert_array_equal(two.inputs[0].numpy(), beh.inputs[2].numpy())


def _energy(a: np.ndarray, b: np.ndarray) -> float:
    """Energy distance of two point sets (V-statistics, float64): the textbook formula."""
    from scipy.spatial.distance import cdist

    e = 2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean()
    return float(np.sqrt(max(e, 0.0)))


def test_behaviour_features_compare_where_each_ae_sends_the_probes_twice():
    bank = random_bank(s=3, r=2)
    # member 1 a copy of member 0: the same function, so the same cloud, distance 0
    params = {k: v.clone() for k, v in bank.params.items()}
    for v in params.values():
        v[1] = v[0]
    bank = AEBank.from_params(
        SPEC, params, list(bank.species), 2, reference_inputs=bank.reference_inputs
    )
    probes = make_probes(bank, 64, 0.25, seed=0)
    beh = behaviour_targets(bank, probes, n_select=12, n_generated=20, seed=3)
    rows = behaviour_features(bank, beh, seed=5).astype(np.float64)
    d = np.sqrt(((rows[:, None] - rows[None]) ** 2).sum(-1))
    clouds = [bank.reconstruct(bank.reconstruct(probes, m), m).astype(np.float64) for m in range(6)]
    oracle = np.array([[_energy(a, b) for b in clouds] for a in clouds])
    assert d[0, 1] == 0.0 and oracle[0, 2] > 0.1
    iu = np.triu_indices(6, 1)
    far = oracle[iu] > 0
    # sliced energy features (tests/test_analysis.py): within 1% (median) by design
    assert np.median(np.abs(d[iu][far] / oracle[iu][far] - 1)) < 0.01
    assert np.corrcoef(d[iu], oracle[iu])[0, 1] > 0.99


def test_error_profiles_are_each_members_capped_centred_log_errors_on_the_reference_inputs():
    bank = random_bank(s=3, r=2, seed=2)
    # member 5 a copy of member 0: the same function, so the same profile
    params = {k: v.clone() for k, v in bank.params.items()}
    for v in params.values():
        v[5] = v[0]
    bank = AEBank.from_params(
        SPEC, params, list(bank.species), 2, reference_inputs=bank.reference_inputs
    )
    ref = bank.reference_inputs.astype(np.float64)
    # the oracle: the bank's own reconstruct, one member at a time, in float64
    recon = [bank.reconstruct(bank.reference_inputs, m).astype(np.float64) for m in range(6)]
    logs = np.log(np.stack([((x - ref) ** 2).mean(-1) for x in recon]))
    uncapped = error_profiles(bank, cap_quantile=1.0)
    assert uncapped.shape == (6, len(ref))
    np.testing.assert_allclose(uncapped, logs - logs.mean(1, keepdims=True), rtol=1e-4, atol=1e-4)
    # capped: on each input, errors above the lower quartile of the 6 members' (linear
    # interpolation between the 2nd and 3rd smallest) are set to it
    srt = np.sort(logs, axis=0)
    cap = srt[1] + 0.25 * (srt[2] - srt[1])
    capped = np.minimum(logs, cap)
    rows = error_profiles(bank)
    np.testing.assert_allclose(rows, capped - capped.mean(1, keepdims=True), rtol=1e-4, atol=1e-4)
    # at most 2 of 6 members lie below the cap on any input; the others sit at it
    assert ((logs < cap - 1e-9).sum(0) <= 2).all()
    for r in (rows, uncapped):
        np.testing.assert_allclose(r[5], r[0], atol=1e-12)
        assert np.abs(r[1] - r[0]).max() > 0.1
    with pytest.raises(ValueError, match="cap_quantile"):
        error_profiles(bank, cap_quantile=0.0)


def test_distance_target_errors_keeps_the_error_profiles_distances():
    from evosim.meta.fit import _distance_rows

    bank = random_bank(s=8, r=1, seed=3)
    target = torch.as_tensor(error_profiles(bank))

    def rows_for(config: MetaConfig) -> torch.Tensor:
        return _distance_rows(config, np.zeros((8, 2)), bank, None, 1, torch.device("cpu"))

    rows = rows_for(MetaConfig(distance_target="errors"))
    np.testing.assert_allclose(rows.numpy(), target.numpy(), rtol=1e-6, atol=1e-6)
    uncapped = rows_for(MetaConfig(distance_target="errors", error_cap=1.0))
    np.testing.assert_allclose(uncapped.numpy(), error_profiles(bank, 1.0), rtol=1e-6, atol=1e-6)
    assert not np.allclose(uncapped.numpy(), target.numpy(), atol=1e-3)

    def stress(weight: float) -> float:
        config = MetaConfig(
            latent=2, steps=150, probes=64, distance_weight=weight, distance_target="errors"
        )
        z = torch.as_tensor(fit_meta_autoencoder(bank, config, seed=1, progress=False).latents)
        return float(distance_stress(target, z))

    # as with the behaviour target (above): a heavy term must more than halve the stress
    # the other losses leave (0.74 -> 0.06 here)
    assert stress(100.0) < 0.5 * stress(0.0)


def test_distance_stress_is_scale_free():
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(7, 5, generator=g), torch.randn(7, 2, generator=g)
    own = distance_stress(x, z)
    assert own > 0
    # the target's units do not matter, and codes at the target's shape score 0
    assert distance_stress(3 * x, z) == pytest.approx(float(own))
    assert float(distance_stress(z, z)) == pytest.approx(0, abs=1e-9)
    assert float(distance_stress(x, 2 * x)) == pytest.approx(0, abs=1e-9)


def test_distance_term_with_behaviour_target_pulls_codes_toward_it():
    bank = random_bank(s=8, r=1, seed=3)
    probes = make_probes(bank, 64, 0.25, seed=1)
    target = torch.as_tensor(
        behaviour_features(bank, behaviour_targets(bank, probes, seed=1), seed=1)
    )

    def stress(weight: float) -> float:
        config = MetaConfig(
            latent=2,
            steps=150,
            probes=64,
            distance_weight=weight,
            distance_target="behaviour",
            device="cpu",
        )
        z = torch.as_tensor(fit_meta_autoencoder(bank, config, seed=1, progress=False).latents)
        return float(distance_stress(target, z))

    # 8 codes in 2-D cannot take 8 members' distances exactly; a heavy term must still
    # more than halve the stress the MAE's other losses leave (0.12 -> 0.04 here)
    assert stress(100.0) < 0.5 * stress(0.0)


def test_tree_dims_hold_only_the_leading_coordinates_to_the_distances(monkeypatch, tmp_path):
    import evosim.meta.fit as fit_module

    bank = random_bank(s=8, r=1, seed=3)
    probes = make_probes(bank, 64, 0.25, seed=1)
    target = torch.as_tensor(
        behaviour_features(bank, behaviour_targets(bank, probes, seed=1), seed=1)
    )
    widths = []

    def spy(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        widths.append(z.shape[1])
        return distance_stress(x, z)

    monkeypatch.setattr(fit_module.losses, "distance_stress", spy)

    def fit(weight: float) -> MetaResult:
        config = MetaConfig(
            latent=6, tree_dims=2, steps=150, probes=64, distance_weight=weight, device="cpu"
        )
        return fit_meta_autoencoder(bank, config, seed=1, progress=False)

    held = fit(100.0)
    assert set(widths) == {2}  # the term sees the two leading coordinates, never the rest
    assert held.tree_dims == 2 and held.latent_dim == 6
    np.testing.assert_array_equal(held.tree_latents, held.latents[:, :2])

    def stress(z: np.ndarray) -> float:
        return float(distance_stress(target, torch.as_tensor(z)))

    # as for the whole code (above), the heavy term must more than halve the stress the
    # other losses leave, here on the leading coordinates; the others are not held to it
    free = fit(0.0)
    assert stress(held.tree_latents) < 0.5 * stress(free.tree_latents)
    assert stress(held.latents[:, 2:]) > 2 * stress(held.tree_latents)
    again = MetaResult.load(held.save(tmp_path / "mae.pt"))
    assert again.tree_dims == 2


def test_drop_tail_zeroes_the_tail_of_a_share_of_rows():
    from evosim.meta.fit import _drop_tail

    n, rate = 4000, 0.3
    z = torch.randn(n, 6, generator=torch.Generator().manual_seed(0)) + 5.0  # no zeros
    out = _drop_tail(z, 2, rate, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out[:, :2], z[:, :2])  # the tree coordinates are never touched
    dropped = (out[:, 2:] == 0).all(dim=1)
    kept = (out[:, 2:] == z[:, 2:]).all(dim=1)
    assert bool((dropped | kept).all())  # a row's tail goes whole or not at all
    # binomial share: within 4 standard errors of the rate
    assert abs(float(dropped.double().mean()) - rate) < 4 * (rate * (1 - rate) / n) ** 0.5
    assert _drop_tail(z, 2, 0.0, torch.Generator()) is z
    assert _drop_tail(z, 6, 0.5, torch.Generator()) is z  # no tail: the whole code is the tree


def test_tail_dropout_makes_the_tree_coordinates_decode_alone():
    from evosim.meta.behaviour import behaviour_loss_of

    bank = random_bank(s=8, r=1, seed=3)

    def head_alone_loss(rate: float) -> tuple[float, float]:
        config = MetaConfig(
            latent=6, tree_dims=2, tail_dropout=rate, steps=200, probes=64, device="cpu"
        )
        meta = fit_meta_autoencoder(bank, config, seed=1, progress=False)
        beh = behaviour_targets(bank, meta.probes, seed=meta.seed)
        z = torch.as_tensor(meta.member_latents, dtype=torch.float32)
        head = torch.cat([z[:, :2], torch.zeros_like(z[:, 2:])], dim=1)
        with torch.no_grad():
            alone = behaviour_loss_of(meta.decoder(head), meta.spec, beh, config.probe_weight)
            whole = behaviour_loss_of(meta.decoder(z), meta.spec, beh, config.probe_weight)
        return float(alone.mean()), float(whole.mean())

    alone_off, whole_off = head_alone_loss(0.0)
    alone_on, whole_on = head_alone_loss(0.5)
    # without dropout the decoder leans on the tail; with it, the two tree coordinates
    # alone must decode the members at least twice as closely (134 -> 36 here), and the
    # whole code must still decode them within twice the loss it had without (19 -> 27)
    assert alone_on < 0.5 * alone_off
    assert whole_on < 2 * whole_off


def test_distance_target_both_weighs_the_two_distances_equally():
    from evosim.meta.fit import _distance_rows

    bank = random_bank(s=6, r=1, seed=4)
    probes = make_probes(bank, 32, 0.25, seed=1)
    beh = behaviour_targets(bank, probes, seed=1)
    x = np.random.default_rng(0).standard_normal((6, 9)) * 5.0  # any representation
    cpu = torch.device("cpu")

    def sq(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        return ((rows[:, None] - rows[None]) ** 2).sum(-1)

    def config(target: str, weight: float = 1.0) -> MetaConfig:
        return MetaConfig(distance_weight=weight, distance_target=target)

    both = sq(_distance_rows(config("both"), x, bank, beh, 1, cpu).numpy())
    d_rep = sq(x)
    d_beh = sq(_distance_rows(config("behaviour"), x, bank, beh, 1, cpu).numpy())
    # each part scaled to a mean squared distance of 1 over all ordered pairs
    want = d_rep / d_rep.mean() + d_beh / d_beh.mean()
    np.testing.assert_allclose(both, want, rtol=1e-4, atol=1e-6)
    assert _distance_rows(config("representation"), x, bank, beh, 1, cpu) is None
    assert _distance_rows(config("both", weight=0.0), x, bank, beh, 1, cpu) is None


@pytest.mark.parametrize("target", ["behaviour", "errors", "representation", "both"])
def test_distance_target_rows_are_the_rows_the_fit_held_the_codes_to(monkeypatch, target):
    import evosim.meta.fit as fit_module

    bank = random_bank(s=5, r=2, seed=5)
    used = []
    original = fit_module._distance_rows

    def spy(config: MetaConfig, x: np.ndarray, *args: object) -> torch.Tensor | None:
        rows = original(config, x, *args)
        used.append(np.asarray(x) if rows is None else rows.cpu().numpy())
        return rows

    monkeypatch.setattr(fit_module, "_distance_rows", spy)
    config = MetaConfig(latent=2, steps=2, probes=32, distance_target=target, error_cap=0.5)
    meta = fit_meta_autoencoder(bank, config, seed=1, progress=False)
    monkeypatch.undo()
    rows = fit_module.distance_target_rows(meta, bank)
    assert rows.shape[0] == 10
    np.testing.assert_allclose(rows, used[-1], rtol=1e-5, atol=1e-6)
    off = dataclasses.replace(meta, config=config.model_copy(update={"distance_weight": 0}))
    assert fit_module.distance_target_rows(off, bank) is None


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
    bank = train_autoencoders(data, config, seed=0, progress=False)
    meta = fit_meta_autoencoder(
        bank, MetaConfig(latent=1, steps=400, probes=64, device="cpu"), progress=False
    )
    return radii, data, bank, meta


def _radius(points: np.ndarray) -> float:
    """Mean distance from the centre every circle of this world shares (the origin)."""
    return float(np.linalg.norm(points, axis=1).mean())


def test_circles_latent_orders_species_by_radius(circles):
    radii, _, _, meta = circles
    assert meta.latents.shape == (10, 1)
    assert meta.info["seed"] == 0  # taken from the bank, not a hidden default
    rho = spearmanr(meta.latents[:, 0], radii).statistic
    assert abs(rho) >= 0.95


def test_circles_decoded_ae_reconstructs_its_circle(circles):
    radii, data, bank, meta = circles
    decoded = meta.decode(meta.latents)
    assert isinstance(decoded, AEBank) and decoded.species[0] == "decoded_1"
    assert decoded.spec == bank.spec  # the architecture every species has
    for i in range(10):
        out = decoded.reconstruct(data[i], i)
        # The points come back on circle i (mean radius within 10%) and close to the data
        # (MSE below 1% of its variance; the trained AEs themselves are at ~0.1-0.3%).
        assert abs(np.linalg.norm(out, axis=1).mean() - radii[i]) < 0.10 * radii[i]
        assert ((out - data[i]) ** 2).mean() < 0.01 * data[i].var(axis=0).mean()


def test_circles_decoding_between_species_gives_an_intermediate_circle(circles):
    radii, _, _, meta = circles
    for i, j in ((0, 9), (2, 6), (5, 9)):
        mid = (meta.latents[i] + meta.latents[j]) / 2
        pts = meta.generate(mid, 500, seed=1)
        assert pts.shape == (500, 2) and np.isfinite(pts).all()
        r = _radius(pts)
        # strictly between the two radii (by 2% of their gap: more than the radius
        # estimate's sampling error, sd ~0.001 for 500 points with noise 0.02)
        gap = radii[j] - radii[i]
        assert radii[i] + 0.02 * gap < r < radii[j] - 0.02 * gap, (i, j, r)
    # generated instances of a species' own code lie on its circle (within 15% of its
    # radius; they need not cover all of it: with a 2-D code for 2-D data these AEs are
    # close to the identity around their circle, so the arcs they reconstruct best, which
    # the MAE takes as the species' region, may be a part of it)
    for i in (0, 5, 9):
        assert _radius(meta.generate(meta.latents[i], 500)) == pytest.approx(radii[i], rel=0.15)


# ---------------------------------------------------------------------------- round trips


@pytest.fixture(scope="module")
def small_world():
    """Six species of 2-D Gaussian blobs along a line, through 6 -> 8 -> 2 AEs."""
    g = np.random.default_rng(1)
    s, n = 8, 256
    centres = np.linspace(-2, 2, s)
    basis = g.standard_normal((2, 6))
    u = g.uniform(-1, 1, (s, n, 2))
    data = np.tanh(
        (u + centres[:, None, None] * np.array([1.0, 0.5])) @ basis
    ) + 0.01 * g.standard_normal((s, n, 6))
    data = data.astype(np.float32)
    config = AutoencoderConfig(
        hidden=[16], latent=2, steps=600, batch_size=64, lr=3e-3, device="cpu"
    )
    bank = train_autoencoders(data, config, seed=4, progress=False)
    meta = fit_meta_autoencoder(
        bank, MetaConfig(latent=2, steps=400, probes=64, device="cpu"), progress=False
    )
    return data, bank, meta


def test_decode_encode_gives_working_aes(small_world):
    data, bank, meta = small_world
    round_trip = meta.decode(meta.encode(bank, steps=0))
    own = _mse(bank, data, list(range(8)))
    dec = _mse(round_trip, data, list(range(8)))
    # The behaviour loss is the decoded AE's mean squared deviation from the original AE on
    # the species' region, in units of the original's own error L; if the two AEs' errors
    # on an instance are uncorrelated the decoded AE's error is L (1 + loss). The fit ends
    # near loss 1 on this small world (400 steps), so we require at most 3 L (loss 2) for
    # every species, and the median within 2 L.
    ratio = dec / own
    assert ratio.max() <= 3.0 and np.median(ratio) <= 2.0, ratio
    # encode(decode(z)) lands near z: closer to its own species' code than to any other
    # species' (the round trip keeps the species' identity), and within a fifth of the
    # latents' mean distance from their centre (measured: at most 0.17 with the default
    # cycle weight, 0.37 without the cycle term)
    again = meta.encode(round_trip, steps=0)
    d = np.linalg.norm(again[:, None, :] - meta.latents[None, :, :], axis=2)
    assert (d.argmin(axis=1) == np.arange(8)).all()
    spread = np.linalg.norm(meta.latents - meta.latents.mean(0), axis=1).mean()
    assert np.diag(d).max() <= 0.2 * spread


def _behaviour_loss(meta, bank, z):
    """The behaviour loss of each member of ``bank`` decoded from codes ``z`` (float64 sums)."""
    from evosim.meta.behaviour import behaviour_loss_of

    beh = behaviour_targets(bank, meta.probes, seed=meta.seed)
    with torch.no_grad():
        params = meta.decoder(torch.as_tensor(np.asarray(z, dtype=np.float32)))
        return behaviour_loss_of(params, meta.spec, beh, meta.config.probe_weight).numpy()


def test_encoding_refines_to_the_code_that_reproduces_a_decoded_ae(small_world):
    # Known answer: the AE decoded at a code z* is reproduced exactly by the decoder at z*,
    # so its behaviour loss there is 0. AEs decoded between and beyond the species' codes
    # are encoded: the refined codes must bring the loss near that optimum, far below the
    # encoder's one-pass guess, and decode AEs that behave like the ones encoded.
    data, bank, meta = small_world
    z = meta.latents
    targets = np.stack([(z[1] + z[2]) / 2, (z[4] + z[6]) / 2, z[7] + 0.3 * (z[7] - z[6])])
    params = meta.decode_params(targets)
    decoded = AEBank.from_params(
        meta.spec, params, ["a", "b", "c"], reference_inputs=bank.reference_inputs
    )
    guess = meta.encode(decoded, steps=0)
    refined = meta.encode(decoded)
    at_guess = _behaviour_loss(meta, decoded, guess)
    at_refined = _behaviour_loss(meta, decoded, refined)
    assert _behaviour_loss(meta, decoded, targets).max() < 1e-9
    assert np.all(at_refined <= at_guess), (at_refined, at_guess)
    assert at_refined.max() < 0.05 * max(at_guess.max(), 1e-6) + 1e-4, (at_refined, at_guess)
    # here the decoder is one-to-one near z*: the codes themselves come back (measured
    # within 1e-7; the guess is 0.14 off, a fifth of the latents' sd)
    np.testing.assert_allclose(refined, targets, atol=0.01 * z.std())
    # refining is deterministic
    np.testing.assert_array_equal(meta.encode(decoded), refined)


def test_refining_a_code_does_not_depend_on_the_other_members(small_world):
    data, bank, meta = small_world
    every = meta.encode(bank, steps=50)
    some = meta.encode(bank.subset([bank.species[i] for i in (2, 5)]), steps=50)
    np.testing.assert_allclose(some, every[[2, 5]], atol=1e-4)
    # the training members' codes move little: they were fitted with the decoder (measured:
    # at most 0.09 of the latents' mean distance from their centre)
    spread = np.linalg.norm(meta.latents - meta.latents.mean(0), axis=1).mean()
    assert np.linalg.norm(every - meta.member_latents, axis=1).max() < 0.25 * spread


def test_a_bank_without_inputs_gets_the_encoders_guess_with_a_warning(small_world, caplog):
    data, bank, meta = small_world
    decoded = meta.decode(meta.latents[:2])  # decoded AEs keep no reference inputs
    with caplog.at_level("WARNING", logger="evosim.meta.result"):
        z = meta.encode(decoded)
    np.testing.assert_array_equal(z, meta.encode(decoded, steps=0))
    assert "no reference inputs" in caplog.text


def test_decoded_off_species_points_run_and_generate(small_world):
    data, bank, meta = small_world
    z = meta.latents
    far = z.mean(0) + 1.5 * (z.max(0) - z.min(0))  # outside every species' code
    between = (z[0] + z[1]) / 2
    for point in (between, far):
        ae = meta.decode(point)
        out = ae.reconstruct(data[0], 0)
        assert np.isfinite(out).all()
        gen = meta.generate(point, 100)
        assert gen.shape == (100, 6) and np.isfinite(gen).all()
    particles, bandwidth = meta.code_law(z)
    assert particles.shape[0] == 8 and particles.shape[2] == 2 and np.all(bandwidth > 0)
    # generate is reproducible and seeded
    np.testing.assert_array_equal(meta.generate(z[:2], 5, seed=3), meta.generate(z[:2], 5, seed=3))
    assert not np.array_equal(meta.generate(z[:2], 5, seed=3), meta.generate(z[:2], 5, seed=4))


def test_between_two_species_the_decoded_ae_fits_the_data_between(small_world):
    # Species 3's data lie between species 2's and 4's (centres on a line). An MAE fitted
    # without species 3 decodes the midpoint of 2 and 4 into an AE that reconstructs
    # species 3 better than the worse of its neighbours' AEs.
    data, bank, meta = small_world
    keep = [s for s in bank.species if s != bank.species[3]]
    sub = fit_meta_autoencoder(bank.subset(keep), meta.config, seed=meta.seed, progress=False)
    mid = (sub.latents[2] + sub.latents[3]) / 2  # species 2 and 4 in the subset
    dec = _mse(sub.decode(mid), data[3:4], [0])[0]
    neighbours = _mse(bank, np.stack([data[3], data[3]]), [2, 4])
    assert dec < neighbours.max()


# ---------------------------------------------------------------------------- architectures


def test_mixed_architectures_share_one_latent_space():
    g = np.random.default_rng(2)
    s, n = 9, 200
    centres = np.linspace(-1.5, 1.5, s)
    data = (g.standard_normal((s, n, 5)) * 0.3 + centres[:, None, None]).astype(np.float32)
    names = [f"s{i}" for i in range(s)]
    a_idx, b_idx = [0, 2, 3, 5, 7], [1, 4, 6, 8]
    small = AutoencoderConfig(hidden=[8], latent=2, steps=200, batch_size=32, device="cpu")
    deep = AutoencoderConfig(
        hidden=[12, 6], latent=3, activation="tanh", steps=200, batch_size=32, device="cpu"
    )
    bank_a = train_autoencoders(
        data[a_idx], small, species=[names[i] for i in a_idx], seed=1, progress=False
    )
    bank_b = train_autoencoders(
        data[b_idx], deep, species=[names[i] for i in b_idx], seed=1, progress=False
    )
    mixed = AEBankSet([bank_a, bank_b], names, info={"seed": 5})
    meta = fit_meta_autoencoder(
        mixed, MetaConfig(latent=2, steps=150, probes=32, device="cpu"), progress=False
    )
    assert meta.latents.shape == (9, 2) and np.isfinite(meta.latents).all()
    assert meta.info["seed"] == 5
    assert meta.spec == bank_a.spec  # the most common architecture (5 of 9 species)
    decoded = meta.decode(meta.latents)
    assert decoded.spec == bank_a.spec and np.isfinite(decoded.reconstruct_all(data[0])).all()
    np.testing.assert_allclose(meta.encode(mixed, steps=0), meta.member_latents, atol=1e-5)
    # an architecture no species has: decoded AEs of it, trained by behaviour
    other = DecodeArchitecture(hidden=[10], latent=2, activation="tanh")
    meta2 = fit_meta_autoencoder(
        mixed,
        MetaConfig(latent=2, steps=150, probes=32, device="cpu", decode_architecture=other),
        progress=False,
    )
    assert meta2.spec.hidden == (10,) and meta2.spec.activation == "tanh"
    assert meta2.info["theta0"] == "fresh initialisation"
    assert np.isfinite(meta2.decode(meta2.latents).reconstruct_all(data[0])).all()
    with pytest.raises(ScenarioError, match="meta.representation"):
        fit_meta_autoencoder(mixed, MetaConfig(representation="raw"), progress=False)


# ---------------------------------------------------------------------------- options


@pytest.mark.parametrize("representation", ["raw", "aligned"])
def test_weight_representations_and_replicates(representation):
    bank = random_bank(s=6, r=2)
    config = MetaConfig(
        representation=representation,
        latent=2,
        steps=60,
        contrastive_weight=0.5,
        distance_weight=1.0,
        device="cpu",
    )
    meta = fit_meta_autoencoder(bank, config, seed=2, progress=False)
    assert meta.member_latents.shape == (12, 2) and meta.latents.shape == (6, 2)
    np.testing.assert_allclose(meta.latents, meta.member_latents.reshape(6, 2, 2).mean(1))
    np.testing.assert_allclose(meta.encode(bank, steps=0), meta.member_latents, atol=1e-5)
    assert isinstance(meta.decode(meta.latents), AEBank)
    twin = fit_meta_autoencoder(bank, config, seed=2, progress=False)
    np.testing.assert_array_equal(twin.member_latents, meta.member_latents)


def test_variational_prior_pulls_the_codes_toward_the_standard_normal():
    # The KL term is the only difference: a heavy one must shrink the posterior means
    # toward the prior's 0 (on these 6 random AEs, codes fitted without it spread far wider)
    bank = random_bank(s=6, r=1)

    def fit(kl_weight: float) -> MetaResult:
        config = MetaConfig(
            latent=3, prior="variational", kl_weight=kl_weight, steps=400, probes=32, device="cpu"
        )
        return fit_meta_autoencoder(bank, config, seed=1, progress=False)

    free, pulled = fit(0.0), fit(100.0)
    assert free.latents.shape == (6, 3) and np.isfinite(free.latents).all()
    rms = [float(np.sqrt(np.mean(m.latents**2))) for m in (free, pulled)]
    assert rms[1] < 0.5 * rms[0], rms
    # the codes are the posterior means: deterministic, the same as encoding the bank again
    np.testing.assert_allclose(pulled.encode(bank, steps=0), pulled.member_latents, atol=1e-5)
    assert free.archetype_weights is None and free.archetype_latents is None
    with pytest.raises(ValueError, match="no archetypes"):
        free.decode_archetypes()


def test_archetypal_prior_code_size_follows_the_archetypes():
    assert MetaConfig(prior="archetypal", archetypes=5).latent == 4
    assert MetaConfig(prior="archetypal", latent=2).archetypes == 3
    with pytest.raises(ValueError, match="archetypes - 1 = 2"):
        MetaConfig(prior="archetypal", archetypes=3, latent=3)
    with pytest.raises(ValueError, match="not auto"):
        MetaConfig(prior="archetypal", latent="auto")


@pytest.mark.parametrize("archetype_prior", ["gaussian", "dirichlet"])
def test_archetypal_prior_codes_are_mixtures_of_fixed_simplex_corners(archetype_prior, tmp_path):
    bank = random_bank(s=6, r=1)
    config = MetaConfig(
        prior="archetypal",
        archetypes=3,
        archetype_prior=archetype_prior,
        steps=50,
        probes=32,
        device="cpu",
    )
    meta = fit_meta_autoencoder(bank, config, seed=1, progress=False)
    corners = meta.archetype_latents
    # the corners of a regular simplex: centred, unit circumradius, all pairs equally apart
    assert corners.shape == (3, 2)
    np.testing.assert_allclose(corners.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(corners, axis=1), 1.0, atol=1e-6)
    gaps = [np.linalg.norm(corners[i] - corners[j]) for i, j in [(0, 1), (0, 2), (1, 2)]]
    np.testing.assert_allclose(gaps, np.sqrt(3.0), atol=1e-6)
    # every code is a convex mixture of them, weights on the simplex
    w = meta.archetype_weights
    assert w.shape == (6, 3) and (w >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(meta.latents, w @ corners, atol=1e-5)
    np.testing.assert_allclose(
        meta.encode_weights(bank) @ corners, meta.encode(bank, steps=0), atol=1e-5
    )
    # the archetypes decode to working AEs, which save and load with the rest
    archetypes = meta.decode_archetypes()
    assert isinstance(archetypes, AEBank)
    assert archetypes.species == ["archetype_1", "archetype_2", "archetype_3"]
    meta.save(tmp_path / "mae.pt")
    again = MetaResult.load(tmp_path / "mae.pt")
    np.testing.assert_array_equal(again.archetype_weights, w)
    np.testing.assert_allclose(again.archetype_latents, corners)


def test_side_information_is_predicted_from_the_code(tmp_path):
    bank = random_bank(s=6, r=1)
    values = np.linspace(-3.0, 3.0, 6)[:, None] + 10.0
    config = MetaConfig(
        latent=2, steps=300, probes=32, device="cpu", side_information="trait_1", side_weight=5.0
    )
    meta = fit_meta_autoencoder(bank, config, seed=1, progress=False, side_information=values)
    predicted = meta.predict_side(meta.latents)
    # in the variable's own units, and far closer to it than its mean is
    assert predicted.shape == (6, 1)
    assert np.mean((predicted - values) ** 2) < 0.1 * np.var(values)
    meta.save(tmp_path / "mae.pt")
    np.testing.assert_allclose(
        MetaResult.load(tmp_path / "mae.pt").predict_side(meta.latents), predicted, atol=1e-6
    )
    plain = fit_meta_autoencoder(bank, MetaConfig(latent=2, steps=5, probes=16, device="cpu"))
    with pytest.raises(ValueError, match="without side information"):
        plain.predict_side(plain.latents)


def test_latent_auto_reports_choice():
    bank = random_bank(s=8, r=1)
    meta = fit_meta_autoencoder(
        bank, MetaConfig(latent="auto", steps=20, probes=32, device="cpu"), seed=1, progress=False
    )
    sel = meta.info["latent_selection"]
    assert set(sel) <= {"2", "4", "8", "16"} and meta.latent_dim == meta.info["latent"]
    best = min(sel.values())
    assert sel[str(meta.latent_dim)] <= 1.05 * best + 1e-12


def test_seed_comes_from_the_bank():
    bank = random_bank(s=4, r=1)
    bank.info["seed"] = 11
    config = MetaConfig(latent=2, steps=10, probes=16, device="cpu")
    a = fit_meta_autoencoder(bank, config, progress=False)
    b = fit_meta_autoencoder(bank, config, seed=11, progress=False)
    assert a.info["seed"] == 11
    np.testing.assert_array_equal(a.latents, b.latents)
    # no seed anywhere: one is drawn and recorded, so the fit can be repeated
    bank.info.pop("seed")
    c = fit_meta_autoencoder(bank, config, progress=False)
    again = fit_meta_autoencoder(bank, config, seed=c.info["seed"], progress=False)
    np.testing.assert_array_equal(c.latents, again.latents)


# ---------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    bank = random_bank(s=5, r=1)
    meta = fit_meta_autoencoder(
        bank, MetaConfig(latent=2, steps=20, probes=16, device="cpu"), seed=3, progress=False
    )
    path = tmp_path_factory.mktemp("mae") / "mae.pt"
    meta.save(path, provenance={"software": {"name": "evosim"}, "seed": 3})
    return bank, meta, path


def test_save_load_round_trip_with_weights_only(saved):
    bank, meta, path = saved
    raw = torch.load(path, weights_only=True)  # tensors and plain data only
    assert raw["provenance"] == {"software": {"name": "evosim"}, "seed": 3}
    again = MetaResult.load(path)
    np.testing.assert_array_equal(again.latents, meta.latents)
    np.testing.assert_allclose(again.encode(bank), meta.encode(bank), atol=1e-6)
    for k, v in meta.decode_params(meta.latents).items():
        torch.testing.assert_close(again.decode_params(meta.latents)[k], v)
    np.testing.assert_array_equal(again.generate(meta.latents, 4), meta.generate(meta.latents, 4))
    np.testing.assert_allclose(again.untrained_encode(bank), meta.untrained_encode(bank))


class _Planted:
    """Unpickling this object would create the file ``marker`` (code execution)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_hostile_truncated_and_foreign_files_are_refused(saved, tmp_path):
    _, _, path = saved
    marker = tmp_path / "pwned"
    planted = tmp_path / "planted.pt"
    torch.save({"format": "evosim.mae", "x": _Planted(marker)}, planted)
    with pytest.raises(FileFormatError, match="planted.pt") as err:
        MetaResult.load(planted)
    assert not marker.exists()  # the pickle's code never ran
    assert "\n" not in str(err.value)
    truncated = tmp_path / "truncated.pt"
    blob = path.read_bytes()
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FileFormatError, match="truncated.pt"):
        MetaResult.load(truncated)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty.pt"):
        MetaResult.load(empty)
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something else", "weights": torch.zeros(3)}, foreign)
    with pytest.raises(FileFormatError, match="foreign.pt"):
        MetaResult.load(foreign)
    damaged = tmp_path / "damaged.pt"
    payload = torch.load(path, weights_only=True)
    del payload["encoder"]
    torch.save(payload, damaged)
    with pytest.raises(FileFormatError, match="damaged.pt"):
        MetaResult.load(damaged)


def test_frame_above_the_exact_size_keeps_the_exact_principal_subspace() -> None:
    """The randomised frame (more rows and columns than EXACT_FRAME_UP_TO) against a full SVD.

    A spectrum decaying as 1/i keeps a gap of about 1/k^2 relative at the 256th axis: a
    subspace iteration loses at most rounding there, so the kept variance must match the
    exact top-256 subspace's to 1e-6 relative, and the coordinates' scale with it.
    """
    from evosim.meta.representation import EXACT_FRAME_UP_TO, Frame

    rows, cols = EXACT_FRAME_UP_TO + 76, EXACT_FRAME_UP_TO + 26
    g = np.random.default_rng(3)
    u, _ = np.linalg.qr(g.standard_normal((rows, cols)))
    v, _ = np.linalg.qr(g.standard_normal((cols, cols)))
    x = (u * (1.0 / np.arange(1, cols + 1))) @ v.T + 5.0
    frame = Frame.fit(x, max_components=256, seed=7)
    assert frame.dim == 256
    centred = x - x.mean(axis=0)
    exact_axes = np.linalg.svd(centred, full_matrices=False)[2][:256].T
    basis = frame.basis.double().numpy()
    np.testing.assert_allclose(basis.T @ basis, np.eye(256), atol=1e-6)
    kept = np.sum((centred @ basis) ** 2)
    exact = np.sum((centred @ exact_axes) ** 2)
    assert abs(kept - exact) <= 1e-6 * exact
    assert frame.scale == pytest.approx(np.sqrt(exact / (rows * 256)), rel=1e-6)
    again = Frame.fit(x, max_components=256, seed=7)
    assert torch.equal(frame.basis, again.basis)


def test_mae_steps_stop_growing_above_full_passes_size() -> None:
    """Up to FULL_PASSES_UP_TO members every member gets ``meta.steps`` passes; above,
    the optimiser takes as many steps as at that size (to the rounding of one pass)."""
    from evosim.meta.fit import BATCH, FULL_PASSES_UP_TO, passes

    assert passes(1000, 10) == passes(1000, FULL_PASSES_UP_TO) == 1000
    at_full = 1000 * FULL_PASSES_UP_TO / BATCH
    for members in (300, 1024, 4096, 10_000, 100_000):
        steps = passes(1000, members) * members / BATCH
        assert abs(steps - at_full) <= 0.5 * members / BATCH
    assert passes(10, 1_000_000) == 1


def test_mae_steps_run_on_one_thread_and_the_setting_comes_back(monkeypatch) -> None:
    import evosim.meta.fit as fit_module

    seen: list[int] = []
    original = fit_module._behaviour_terms

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module, "_behaviour_terms", recording)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fit_meta_autoencoder(
            random_bank(),
            MetaConfig(steps=3, probes=16, latent=2, device="cpu"),
            seed=0,
            progress=False,
        )
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
