"""The concrete and MDL autoencoders: known answers, hand computations, the batched contract."""

from __future__ import annotations

import logging
import math
import shutil

import numpy as np
import pytest
import torch

from evosim.errors import ScenarioError
from evosim.scenario import AutoencoderConfig, parse_scenario
from evosim.train import AEBank, model, train_autoencoders, variants
from evosim.train.spec import AESpec


def _cfg(**kw) -> AutoencoderConfig:
    base = dict(hidden=[16], latent=2, steps=60, batch_size=32, device="cpu", compile=False)
    base.update(kw)
    return AutoencoderConfig(**base)


# ------------------------------------------------------------------ shapes and config


def test_param_shapes_of_the_new_variants():
    c = AESpec(input_dim=10, hidden=(8,), latent=3, variant="concrete")
    assert c.param_shapes() == {
        "selector.logits": (3, 10),
        "decoder.0.weight": (3, 8),
        "decoder.0.bias": (8,),
        "decoder.1.weight": (8, 10),
        "decoder.1.bias": (10,),
    }
    m = AESpec(input_dim=10, hidden=(8,), latent=3, variant="mdl")
    shapes = m.param_shapes()
    assert shapes["prior.loc"] == (3,) and shapes["prior.log_scale"] == (3,)
    assert shapes["encoder.1.weight"] == (8, 3)


def test_selected_features_sets_the_concrete_code_width():
    cfg = AutoencoderConfig(variant="concrete", latent=2, selected_features=5)
    assert AESpec.from_config(cfg, 12).latent == 5
    assert AESpec.from_config(AutoencoderConfig(variant="concrete", latent=4), 12).latent == 4
    with pytest.raises(ScenarioError, match="autoencoder.selected_features"):
        AESpec.from_config(cfg, 4)


def test_scenario_fields_validate():
    sc = parse_scenario(
        "autoencoder: {variant: concrete, selected_features: 3, temperature_end: 0.05}"
    )
    assert sc.autoencoder.selected_features == 3
    with pytest.raises(ScenarioError, match="autoencoder.temperature_end"):
        parse_scenario("autoencoder: {temperature_start: 1.0, temperature_end: 2.0}")
    with pytest.raises(ScenarioError, match="autoencoder.rate_weight"):
        parse_scenario("autoencoder: {variant: mdl, rate_weight: -1}")
    with pytest.raises(ScenarioError, match="analysis.identification"):
        parse_scenario("analysis: {identification: maybe}")


def test_temperature_schedule_is_exponential_from_start_to_end():
    assert variants.temperature(0, 100, 10.0, 0.1) == pytest.approx(10.0)
    assert variants.temperature(100, 100, 10.0, 0.1) == pytest.approx(0.1)
    assert variants.temperature(50, 100, 10.0, 0.1) == pytest.approx(1.0)  # geometric midpoint


def test_gumbel_and_uniform_noise_have_their_distributions():
    # Gumbel(0, 1): mean = Euler's gamma, variance pi^2 / 6. With n = 200k draws the sample
    # mean's sd is sqrt(pi^2/6 / n) = 0.0029 and the variance's ~ sqrt((mu4 - s^4) / n) =
    # 0.011 (excess kurtosis 12/5); 5 sd tolerances.
    keys = torch.tensor([[12345, 678]], dtype=torch.int64)
    g = variants.gumbel_noise(keys, 3, (200_000,)).double()[0]
    assert abs(g.mean().item() - 0.5772156649) < 5 * 0.0029
    assert abs(g.var().item() - math.pi**2 / 6) < 5 * 0.011
    u = variants.uniform_noise(keys, 3, (200_000,)).double()[0]
    # U(-1/2, 1/2): mean 0 (sd sqrt(1/12/n) = 0.00065), variance 1/12
    assert abs(u.mean().item()) < 5 * 0.00065 and abs(u.var().item() - 1 / 12) < 1e-3
    assert u.min() > -0.5 and u.max() < 0.5


# ------------------------------------------------------------------ MDL rate term


def _logistic_cdf(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_rate_term_matches_a_hand_computed_case():
    # code 0 under the standard logistic: P = F(1/2) - F(-1/2) = 0.2449186624; 2.0296 bits
    p0 = _logistic_cdf(0.5) - _logistic_cdf(-0.5)
    assert p0 == pytest.approx(0.2449186624, rel=1e-9)
    v = torch.tensor([0.0, 3.0, -2.0], dtype=torch.float64)
    loc = torch.tensor(0.5, dtype=torch.float64)
    log_scale = torch.tensor(math.log(2.0), dtype=torch.float64)
    got = variants.logistic_log2_mass(v, loc, log_scale)
    want = [
        math.log2(_logistic_cdf((x + 0.5 - 0.5) / 2.0) - _logistic_cdf((x - 0.5 - 0.5) / 2.0))
        for x in (0.0, 3.0, -2.0)
    ]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)
    assert variants.logistic_log2_mass(
        torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)
    ).item() == pytest.approx(math.log2(p0), rel=1e-6)
    # code_bits sums over the code and negates: one member, one instance, code (0, 3)
    params = {
        "prior.loc": torch.tensor([[0.0, 0.5]]),
        "prior.log_scale": torch.tensor([[0.0, math.log(2.0)]]),
    }
    bits = variants.code_bits(torch.tensor([[[0.0, 3.0]]]), params)
    assert bits.item() == pytest.approx(-math.log2(p0) - want[1], rel=1e-6)


def test_rate_term_is_a_distribution_and_stable_in_the_tails():
    # The masses of all integer bins sum to 1 (telescoping CDF differences).
    q = torch.arange(-200, 201, dtype=torch.float64)
    for loc, scale in [(0.3, 0.7), (-1.2, 3.0), (0.0, 0.05)]:
        mass = 2.0 ** variants.logistic_log2_mass(
            q,
            torch.tensor(loc, dtype=torch.float64),
            torch.tensor(math.log(scale), dtype=torch.float64),
        )
        assert mass.sum().item() == pytest.approx(1.0, abs=1e-12)
    # far in a tail the bits are large but finite, and so is the gradient
    v = torch.tensor([40.0, -40.0], requires_grad=True)
    bits = -variants.logistic_log2_mass(v, torch.tensor(0.0), torch.tensor(0.0))
    assert torch.isfinite(bits).all() and (bits > 50).all()
    (g,) = torch.autograd.grad(bits.sum(), v)
    assert torch.isfinite(g).all()


def test_bits_fall_as_the_code_distribution_narrows():
    # Integer codes from a discretised logistic of scale s, under that same prior: the mean
    # bits estimate its entropy H(s) (computed exactly by summing the bins), which falls
    # with s. Tolerance 5 standard errors of the mean over n = 50k draws.
    gen = np.random.default_rng(0)
    q = torch.arange(-400, 401, dtype=torch.float64)
    means, entropies = [], []
    for s in (4.0, 2.0, 1.0, 0.5, 0.1):
        y = gen.logistic(0.0, s, size=50_000)
        code = torch.as_tensor(np.round(y)).reshape(1, -1, 1)
        params = {
            "prior.loc": torch.zeros(1, 1),
            "prior.log_scale": torch.full((1, 1), math.log(s)),
        }
        bits = variants.code_bits(code, params)[0].double()
        log2p = variants.logistic_log2_mass(
            q, torch.tensor(0.0, dtype=torch.float64), torch.tensor(math.log(s)).double()
        )
        h = -(2.0**log2p * log2p).sum().item()
        assert bits.mean().item() == pytest.approx(h, abs=5 * bits.std().item() / math.sqrt(5e4))
        means.append(bits.mean().item())
        entropies.append(h)
    assert all(a > b + 0.3 for a, b in zip(entropies, entropies[1:])), entropies
    assert all(a > b for a, b in zip(means, means[1:])), means
    assert entropies[-1] < 0.15  # at s = 0.1 nearly every code is 0 and costs nearly nothing


def test_trained_mdl_bits_fall_as_the_data_narrow():
    # Three species on the same curved 2-D manifold in R^8, spread 1, 1/2, 1/4: at a fixed
    # rate weight the trained AEs describe the narrower species in fewer bits (measured:
    # about 7.1, 6.1 and 4.7 bits).
    gen = np.random.default_rng(0)
    w = gen.standard_normal((2, 8))
    x = np.stack([np.tanh(gen.uniform(-1, 1, (256, 2)) * s @ w) for s in (1.0, 0.5, 0.25)]).astype(
        np.float32
    )
    x += 0.01 * gen.standard_normal(x.shape).astype(np.float32)
    bank = train_autoencoders(
        x, _cfg(variant="mdl", hidden=[32], steps=1200, batch_size=64), seed=1, progress=False
    )
    bits = [bank.bits_per_instance(x[i], i).mean() for i in range(3)]
    assert bits[0] > bits[1] + 0.5 and bits[1] > bits[2] + 0.5, bits
    assert np.all(bank.losses["val"] < 0.02)


def test_mdl_objective_matches_hand_computation():
    spec = AESpec(input_dim=4, hidden=(5,), latent=2, activation="elu", variant="mdl")
    g = torch.Generator().manual_seed(0)
    params = {k: torch.randn((2, *s), generator=g) * 0.5 for k, s in spec.param_shapes().items()}
    x = torch.randn(2, 6, 4, generator=g)
    u = torch.rand(2, 6, 2, generator=g) - 0.5
    cfg = _cfg(variant="mdl", rate_weight=0.03)
    got = model.member_objective(params, spec, x, cfg, quant_noise=u)
    for m in range(2):
        p = {k: v[m] for k, v in params.items()}
        h = torch.nn.functional.elu(x[m] @ p["encoder.0.weight"] + p["encoder.0.bias"])
        y = h @ p["encoder.1.weight"] + p["encoder.1.bias"] + u[m]
        r = torch.nn.functional.elu(y @ p["decoder.0.weight"] + p["decoder.0.bias"])
        r = r @ p["decoder.1.weight"] + p["decoder.1.bias"]
        scale, loc = p["prior.log_scale"].exp(), p["prior.loc"]
        upper = torch.sigmoid((y + 0.5 - loc) / scale)
        lower = torch.sigmoid((y - 0.5 - loc) / scale)
        bits = -torch.log2(upper - lower).sum(-1)
        want = (r - x[m]).pow(2).mean() + 0.03 * bits.mean()
        torch.testing.assert_close(got[m], want, rtol=1e-5, atol=1e-6)


def test_mdl_code_is_quantised_and_module_matches_the_bank():
    spec = AESpec(input_dim=4, hidden=(5,), latent=2, variant="mdl")
    params = model.init_params(spec, 0, ["a", "b"], [0, 0], "independent")
    params = {k: v * 3 for k, v in params.items()}
    bank = AEBank(spec, params, ["a", "b"])
    x = np.random.default_rng(1).standard_normal((7, 4)).astype(np.float32)
    code = bank.encode(x, "b")
    np.testing.assert_array_equal(code, np.round(code))
    with torch.no_grad():
        np.testing.assert_allclose(
            bank.module(1)(torch.as_tensor(x)).numpy(),
            bank.reconstruct(x, "b"),
            rtol=1e-5,
            atol=1e-6,
        )
    hand = variants.code_bits(torch.as_tensor(code)[None], {k: v[1:] for k, v in params.items()})
    np.testing.assert_allclose(bank.bits_per_instance(x, "b"), hand[0].numpy(), rtol=1e-6)


# ------------------------------------------------------------------ concrete


def test_concrete_objective_matches_hand_computation():
    spec = AESpec(input_dim=5, hidden=(4,), latent=2, activation="tanh", variant="concrete")
    g = torch.Generator().manual_seed(2)
    params = {k: torch.randn((2, *s), generator=g) for k, s in spec.param_shapes().items()}
    x = torch.randn(2, 6, 5, generator=g)
    gumbel = torch.randn(2, 2, 5, generator=g)
    cfg = _cfg(variant="concrete", duplicate_weight=0.7)
    t = torch.tensor(0.5)
    got = model.member_objective(params, spec, x, cfg, gumbel=gumbel, temperature=t)
    for m in range(2):
        p = {k: v[m] for k, v in params.items()}
        sel = torch.softmax((p["selector.logits"] + gumbel[m]) / 0.5, -1)  # [k, D]
        code = x[m] @ sel.T
        r = torch.tanh(code @ p["decoder.0.weight"] + p["decoder.0.bias"])
        r = r @ p["decoder.1.weight"] + p["decoder.1.bias"]
        prob = torch.softmax(p["selector.logits"] / 0.5, -1)
        dup = torch.relu(prob.sum(0) - 1).sum()
        torch.testing.assert_close(got[m], (r - x[m]).pow(2).mean() + 0.7 * dup)


def test_concrete_test_time_code_is_the_selected_inputs():
    spec = AESpec(input_dim=6, hidden=(4,), latent=3, variant="concrete")
    params = model.init_params(spec, 0, ["a", "b"], [0, 0], "independent")
    bank = AEBank(spec, params, ["a", "b"])
    idx = bank.selected_features()
    assert idx.shape == (2, 3)
    np.testing.assert_array_equal(idx[1], params["selector.logits"][1].argmax(-1).numpy())
    x = np.random.default_rng(0).standard_normal((9, 6)).astype(np.float32)
    np.testing.assert_array_equal(bank.encode(x, "b"), x[:, idx[1]])
    with torch.no_grad():
        np.testing.assert_allclose(
            bank.module(1)(torch.as_tensor(x)).numpy(), bank.reconstruct(x, "b"), rtol=1e-5
        )
    with pytest.raises(ValueError, match="concrete"):
        AEBank(
            AESpec(6, (4,), 2), model.init_params(AESpec(6, (4,), 2), 0, ["a"], [0]), ["a"]
        ).selected_features("a")


def _diagnostic_world(seed: int = 0):
    """Species that differ only in which 3 of 16 coordinates carry signal.

    In species s, its 3 informative coordinates are N(mean_s, 1) (independent); every other
    coordinate is N(0, 0.2^2) noise with the same distribution in every species.
    Reconstructing a coordinate from the others is impossible (all independent), so a
    k = 3 selector reduces the error most by taking the three highest-variance ones.
    """
    gen = np.random.default_rng(seed)
    s_count, n, d = 6, 512, 16
    informative = [np.sort(gen.choice(d, 3, replace=False)) for _ in range(s_count)]
    x = 0.2 * gen.standard_normal((s_count, n, d))
    for s in range(s_count):
        x[s][:, informative[s]] = gen.standard_normal((n, 3)) + gen.normal(0, 1, 3)
    return x.astype(np.float32), informative


@pytest.mark.slow
def test_concrete_ae_selects_the_diagnostic_coordinates():
    x, informative = _diagnostic_world()
    bank = train_autoencoders(
        x,
        _cfg(
            variant="concrete",
            selected_features=3,
            hidden=[32],
            steps=3000,
            batch_size=128,
            lr=3e-3,
        ),
        seed=1,
        progress=False,
    )
    for s, want in enumerate(informative):
        assert sorted(bank.selected_features(s).tolist()) == want.tolist(), s


@pytest.mark.parametrize("variant", ["concrete", "mdl"])
def test_batched_equals_alone(variant):
    """A species' AE is the same trained among others or alone (the novelty analysis uses it)."""
    gen = np.random.default_rng(3)
    x = gen.standard_normal((3, 64, 6)).astype(np.float32)
    cfg = _cfg(variant=variant, steps=40, latent=2)
    together = train_autoencoders(x, cfg, species=["a", "b", "c"], seed=4, progress=False)
    alone = train_autoencoders(x[1:2], cfg, species=["b"], seed=4, progress=False)
    for k in together.params:
        torch.testing.assert_close(together.params[k][1:2], alone.params[k], rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["concrete", "mdl"])
def test_new_variants_learn_and_round_trip(tmp_path, variant):
    gen = np.random.default_rng(5)
    x = np.tanh(gen.standard_normal((2, 128, 1)) @ gen.standard_normal((1, 6))).astype(np.float32)
    bank = train_autoencoders(x, _cfg(variant=variant, steps=150), seed=2, progress=False)
    curve = bank.losses["curve"]
    assert np.all(curve[:, -1] < curve[:, 0])
    bank.save(tmp_path / "aes.pt")
    back = AEBank.load(tmp_path / "aes.pt")
    np.testing.assert_array_equal(back.reconstruct(x[0], "s1"), bank.reconstruct(x[0], "s1"))


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="torch.compile on the CPU needs a C++ compiler",
)
@pytest.mark.parametrize("variant", ["concrete", "mdl"])
def test_compiled_step_matches_the_eager_step(variant, caplog):
    gen = np.random.default_rng(8)
    x = np.tanh(gen.standard_normal((2, 96, 1)) @ gen.standard_normal((1, 6))).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="evosim.train.trainer"):
        fast = train_autoencoders(
            x, _cfg(variant=variant, steps=30, compile=True), seed=6, progress=False
        )
    assert "eagerly" not in caplog.text and fast.info["compiled"] is True
    slow = train_autoencoders(x, _cfg(variant=variant, steps=30), seed=6, progress=False)
    for k in slow.params:  # the same arithmetic, fused and reordered: float rounding apart
        torch.testing.assert_close(fast.params[k], slow.params[k], rtol=1e-4, atol=1e-5, msg=k)
