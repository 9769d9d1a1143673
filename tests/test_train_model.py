"""The stacked AE's pieces against independent oracles (autograd, torch.distributions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evosim.scenario import AutoencoderConfig
from evosim.train import model
from evosim.train.spec import ACTIVATIONS, AESpec


def _params(spec: AESpec, m: int, seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn((m, *s), generator=g, dtype=dtype) * 0.7
        for k, s in spec.param_shapes().items()
    }


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_grad_matches_autograd(activation):
    x = torch.linspace(-30, 30, 2001, dtype=torch.float64, requires_grad=True)
    y = model.activation_fn(activation)(x)
    (auto,) = torch.autograd.grad(y.sum(), x)
    closed = model.activation_grad(activation, x.detach())
    torch.testing.assert_close(closed, auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden", [(), (6,), (6, 5)])
def test_contractive_penalty_equals_autograd_jacobian(activation, hidden):
    spec = AESpec(
        input_dim=4, hidden=hidden, latent=3, activation=activation, variant="contractive"
    )
    m, b = 3, 5
    params = _params(spec, m)
    x = torch.randn(m, b, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    pres: list[torch.Tensor] = []
    model._mlp(params, "encoder", model.activation_fn(activation), x, pres)
    got = model.contractive_penalty(params, spec, pres, b)
    assert got.shape == (m, b)
    for i in range(m):
        member = {k: v[i : i + 1] for k, v in params.items()}
        for j in range(b):
            jac = torch.autograd.functional.jacobian(
                lambda v, member=member: model.encode(member, spec, v.reshape(1, 1, 4)).reshape(3),
                x[i, j],
            )
            torch.testing.assert_close(got[i, j], jac.pow(2).sum(), rtol=1e-10, atol=1e-12)


def test_contractive_penalty_gradient_matches_double_backprop():
    """The penalty's parameter gradient equals differentiating the autograd Jacobian."""
    spec = AESpec(input_dim=3, hidden=(5,), latent=2, activation="tanh", variant="contractive")
    params = {k: v.requires_grad_(True) for k, v in _params(spec, 1, seed=3).items()}
    x = torch.randn(1, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    pres: list[torch.Tensor] = []
    model._mlp(params, "encoder", torch.tanh, x, pres)
    ours = torch.autograd.grad(
        model.contractive_penalty(params, spec, pres, 4).sum(),
        list(params.values()),
        allow_unused=True,
    )
    total = 0
    for j in range(4):
        jac = torch.autograd.functional.jacobian(
            lambda v: model.encode(params, spec, v.reshape(1, 1, 3)).reshape(2),
            x[0, j],
            create_graph=True,
        )
        total = total + jac.pow(2).sum()
    oracle = torch.autograd.grad(total, list(params.values()), allow_unused=True)
    for a, o in zip(ours, oracle):
        if o is None:  # decoder parameters do not enter the penalty
            assert a is None
        else:
            torch.testing.assert_close(a, o, rtol=1e-9, atol=1e-12)


def test_gaussian_kl_equals_closed_form():
    g = torch.Generator().manual_seed(5)
    mu = torch.randn(4, 7, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 7, 3, generator=g, dtype=torch.float64)
    oracle = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()),
        torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu)),
    ).sum(-1)
    torch.testing.assert_close(model.gaussian_kl(mu, logvar), oracle, rtol=1e-12, atol=1e-12)
    assert torch.all(model.gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_sparse_kl_equals_bernoulli_kl():
    g = torch.Generator().manual_seed(6)
    code = torch.randn(2, 50, 3, generator=g, dtype=torch.float64)
    rho = 0.05
    rho_hat = torch.sigmoid(code).mean(1)
    oracle = torch.distributions.kl_divergence(
        torch.distributions.Bernoulli(probs=torch.full_like(rho_hat, rho)),
        torch.distributions.Bernoulli(probs=rho_hat),
    ).sum(-1)
    torch.testing.assert_close(model.sparse_kl(code, rho), oracle, rtol=1e-10, atol=1e-12)


def test_member_objective_variants_match_hand_computation():
    spec = AESpec(input_dim=4, hidden=(5,), latent=2, activation="elu", variant="plain")
    params = _params(spec, 2, dtype=torch.float32)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 6, 4, generator=g)
    cfg = AutoencoderConfig(sparsity_weight=0.3, corruption=0.2, contractive_weight=0.1)
    recon = model.reconstruct(params, spec, x)
    mse = (recon - x).pow(2).mean((1, 2))
    torch.testing.assert_close(model.member_objective(params, spec, x, cfg), mse)
    code = model.encode(params, spec, x)
    sparse = AESpec(**{**spec.to_dict(), "variant": "sparse"})
    torch.testing.assert_close(
        model.member_objective(params, sparse, x, cfg), mse + 0.3 * code.abs().sum(-1).mean(1)
    )
    noise = torch.randn(2, 6, 4, generator=g)
    den = AESpec(**{**spec.to_dict(), "variant": "denoising"})
    noisy = model.decode(params, spec, model.encode(params, spec, x + 0.2 * noise)) - x
    torch.testing.assert_close(
        model.member_objective(params, den, x, cfg, noise=noise), noisy.pow(2).mean((1, 2))
    )
    vae = AESpec(**{**spec.to_dict(), "variant": "variational"})
    vparams = _params(vae, 2, dtype=torch.float32)
    eps = torch.randn(2, 6, 2, generator=g)
    out = model._mlp(vparams, "encoder", model.activation_fn("elu"), x)
    mu, logvar = out[..., :2], out[..., 2:]
    z = mu + (0.5 * logvar).exp() * eps
    expect = (model.decode(vparams, vae, z) - x).pow(2).mean((1, 2)) + cfg.kl_weight * (
        model.gaussian_kl(mu, logvar).mean(1)
    )
    torch.testing.assert_close(model.member_objective(vparams, vae, x, cfg, eps=eps), expect)
    # the variational code is the posterior mean
    torch.testing.assert_close(model.encode(vparams, vae, x), mu)


def test_init_params_shared_independent_and_distribution():
    spec = AESpec(input_dim=16, hidden=(32,), latent=4)
    names = ["a", "b", "c"]
    shared = model.init_params(spec, 3, names, [0, 0, 0], "shared")
    for v in shared.values():
        assert torch.equal(v[0], v[1]) and torch.equal(v[1], v[2])
    rep = model.init_params(spec, 3, names, [0, 1, 2], "shared")
    assert not torch.equal(rep["encoder.0.weight"][0], rep["encoder.0.weight"][1])
    ind = model.init_params(spec, 3, names, [0, 0, 0], "independent")
    assert not torch.equal(ind["encoder.0.weight"][0], ind["encoder.0.weight"][1])
    # position-free: "b" alone gets the weights it gets among others
    alone = model.init_params(spec, 3, ["b"], [0], "independent")
    for k in spec.param_shapes():
        assert torch.equal(alone[k][0], ind[k][1])
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)): variance bound^2/3. n = 3*16*32 = 1536 draws; the
    # sample variance's sd is sqrt((E x^4 - var^2)/n) = var*sqrt(0.8/n); 5 sd = p < 1e-6.
    w = ind["encoder.0.weight"].double()
    bound = 1 / np.sqrt(16)
    assert w.abs().max() <= bound
    var = bound**2 / 3
    n = w.numel()
    assert abs(w.pow(2).mean().item() - var) < 5 * var * np.sqrt(0.8 / n)
    assert abs(w.mean().item()) < 5 * np.sqrt(var / n)
    with pytest.raises(ValueError, match="init"):
        model.init_params(spec, 3, names, [0, 0, 0], "bogus")


def test_species_module_matches_functional():
    spec = AESpec(input_dim=5, hidden=(7, 6), latent=2, activation="gelu", variant="variational")
    params = _params(spec, 3, dtype=torch.float32)
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(8))
    batched = model.reconstruct(params, spec, x)
    for i in range(3):
        mod = model.SpeciesAE(spec, {k: v[i] for k, v in params.items()})
        torch.testing.assert_close(mod(x), batched[i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            mod.encode(x), model.encode(params, spec, x)[i], rtol=1e-5, atol=1e-6
        )


def test_spec_validation_and_round_trip():
    spec = AESpec(input_dim=3, hidden=[4, 5], latent=2, activation="tanh", variant="sparse")
    assert spec.hidden == (4, 5)
    assert AESpec.from_dict(spec.to_dict()) == spec
    assert spec.n_params == 3 * 4 + 4 + 4 * 5 + 5 + 5 * 2 + 2 + 2 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3
    with pytest.raises(ValueError, match="activation"):
        AESpec(input_dim=3, hidden=(), latent=2, activation="swish")
    with pytest.raises(ValueError, match="variant"):
        AESpec(input_dim=3, hidden=(), latent=2, variant="vq")
    with pytest.raises(ValueError, match="widths"):
        AESpec(input_dim=0, hidden=(), latent=2)
