"""Deep AA pieces (evosim.meta.archetypal): fixed archetypes, heads, archetype loss, KL terms.

Monte Carlo comparisons allow Z = 4.5 sampling sds (two-sided p = 6.8e-6).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evosim.evolve.tradeoff import regular_simplex
from evosim.meta.archetypal import (
    a_weights,
    archetype_coordinates,
    archetype_loss,
    b_weights,
    dirichlet_prior_kl,
    dirichlet_prior_log_density,
    dirichlet_weights,
    gaussian_kl,
    latent_mean,
    reparameterise,
)

Z = 4.5


@pytest.mark.parametrize("m", [1, 2, 3, 8])
def test_archetype_coordinates(m: int):
    z = archetype_coordinates(m, dtype=torch.float64)
    assert z.shape == (m + 1, m)
    torch.testing.assert_close(z.sum(dim=0), torch.zeros(m, dtype=torch.float64))
    gram = (1 + 1 / m) * torch.eye(m + 1, dtype=torch.float64) - 1 / m
    torch.testing.assert_close(z @ z.T, gram)  # unit circumradius, dot products -1/m
    assert torch.all(torch.triu(z[:m], diagonal=1) == 0)  # the reference code's layout
    np.testing.assert_allclose(z.numpy(), regular_simplex(m + 1), atol=1e-12)
    with pytest.raises(ValueError, match="latent"):
        archetype_coordinates(0)


def test_heads_give_simplex_weights():
    logits = torch.tensor([[0.0, 1.0, -2.0], [1e4, -1e4, 0.0], [3.0, 3.0, 3.0], [-5.0, 2.0, 0.5]])
    a = a_weights(logits)
    b = b_weights(logits)
    assert a.shape == (4, 3) and b.shape == (3, 4)
    for w in (a, b):
        assert torch.all(w >= 0) and torch.all(torch.isfinite(w))
        torch.testing.assert_close(w.sum(dim=1), torch.ones(len(w)))
    # B's rows are distributions over the points: archetype j's row is softmax of column j
    torch.testing.assert_close(b[1], torch.softmax(logits[:, 1], dim=0))
    # codes are convex mixtures of the fixed archetypes
    z = archetype_coordinates(2)
    t = latent_mean(a, z)
    torch.testing.assert_close(t, a @ z)
    torch.testing.assert_close(latent_mean(torch.eye(3), z), z)


def test_archetype_loss_is_zero_when_the_archetypes_are_mixtures_of_codes():
    z = archetype_coordinates(2, dtype=torch.float64)  # 3 archetypes in 2-D
    # Codes: each corner once, plus mixtures. B picks each corner's point: loss exactly 0.
    a = torch.tensor(
        [[0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.4], [0.0, 1.0, 0.0]],
        dtype=torch.float64,
    )
    b = torch.zeros(3, 5, dtype=torch.float64)
    b[0, 2] = b[1, 4] = b[2, 1] = 1.0
    assert archetype_loss(a, b, z).item() == pytest.approx(0.0, abs=1e-15)
    # B mixing two corners for archetype 1: (B A)_1 = (1/2, 1/2, 0), distance^2 to z_1 is
    # |z_1/2 - z_2/2|^2 = (2 - 2(-1/2)) / 4 = 3/4, so the mean over 3 archetypes is 1/4.
    b2 = b.clone()
    b2[0] = 0.0
    b2[0, 2] = b2[0, 4] = 0.5
    assert archetype_loss(a, b2, z).item() == pytest.approx(0.25, abs=1e-12)


def test_archetype_loss_cannot_vanish_without_a_code_at_every_corner():
    # No code weighs more than 1/2 on archetype 1: then (B A)_1 has weight <= 1/2 on it,
    # and min over such w of |z_1 - w Z*|^2 is at w = (1/2, 1/4, 1/4): |3/4 z_1|^2 = 9/16
    # (using z_2 + z_3 = -z_1). The others can be exact, so min over B = 9/16 / 3 = 3/16.
    z = archetype_coordinates(2, dtype=torch.float64)
    a = torch.tensor(
        [[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.4, 0.4]],
        dtype=torch.float64,
    )
    bound = 3 / 16
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):  # any B
        b = b_weights(3.0 * torch.randn(5, 3, generator=gen, dtype=torch.float64))
        assert archetype_loss(a, b, z).item() >= bound - 1e-12
    # and the bound is reached by optimising B (through its head)
    logits = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.3)
    for _ in range(800):
        opt.zero_grad()
        loss = archetype_loss(a, b_weights(logits), z)
        loss.backward()
        opt.step()
    assert bound - 1e-12 <= loss.item() <= bound + 1e-3


def test_gaussian_kl_against_torch_distributions():
    gen = torch.Generator().manual_seed(1)
    mu = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    logvar = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(
        gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1)
    )
    assert torch.all(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_reparameterise_draws_from_q():
    mu = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, np.log(4.0)]], dtype=torch.float64)
    s = 40_000
    t = reparameterise(mu, logvar, generator=torch.Generator().manual_seed(2), samples=s)
    assert t.shape == (s, 1, 2)
    sd = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert torch.all((t.mean(dim=0)[0] - mu[0]).abs() <= Z * sd / np.sqrt(s))
    # known mean: sd of the variance estimate is var sqrt(2 / S)
    var = ((t[:, 0] - mu[0]) ** 2).mean(dim=0)
    assert torch.all((var - sd**2).abs() <= Z * sd**2 * np.sqrt(2 / s))
    again = reparameterise(mu, logvar, generator=torch.Generator().manual_seed(2), samples=s)
    assert torch.equal(t, again)


def test_dirichlet_prior_tends_to_the_standard_normal():
    # Dir(alpha) with alpha -> infinity concentrates on equal weights, whose mixture of the
    # centred archetypes is 0: p(t) -> N(0, I) and the Monte Carlo KL -> gaussian_kl.
    # Per-sample terms log q - log p have sd s_hat; their mean is within Z s_hat / sqrt(S).
    z = archetype_coordinates(3, dtype=torch.float64)
    w = dirichlet_weights(4, 64, concentration=1e7, rng=np.random.default_rng(3)).double()
    gen = torch.Generator().manual_seed(4)
    mu = torch.tensor([[0.3, -0.5, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0, 0.2, 0.0], [0.5, 0.5, -0.5]], dtype=torch.float64)
    s = 20_000
    t = reparameterise(mu, logvar, generator=gen, samples=s)
    terms = (
        -0.5 * (((t - mu) ** 2) / logvar.exp() + logvar).sum(-1)
        - dirichlet_prior_log_density(t, z, w)
        - 0.5 * 3 * np.log(2 * np.pi)
    )
    exact = gaussian_kl(mu, logvar)
    assert torch.all((terms.mean(0) - exact).abs() <= Z * terms.std(0) / np.sqrt(s))
    est = dirichlet_prior_kl(
        mu, logvar, z, w, generator=torch.Generator().manual_seed(5), samples=s
    )
    assert torch.all((est - exact).abs() <= Z * terms.std(0) / np.sqrt(s))


def test_dirichlet_prior_favours_codes_on_the_simplex():
    z = archetype_coordinates(2)
    w = dirichlet_weights(3, 256, concentration=1.0, rng=np.random.default_rng(6))
    logvar = torch.full((2, 2), -2.0)
    mu = torch.stack([0.5 * z[0], 4.0 * z[0]])  # inside the simplex vs far outside it
    kl = dirichlet_prior_kl(
        mu, logvar, z, w, generator=torch.Generator().manual_seed(7), samples=64
    )
    assert kl[0] < kl[1]
    # differentiable in the posterior's parameters
    mu = mu.clone().requires_grad_(True)
    dirichlet_prior_kl(
        mu, logvar, z, w, generator=torch.Generator().manual_seed(8)
    ).sum().backward()
    assert mu.grad is not None and torch.all(torch.isfinite(mu.grad))
    with pytest.raises(ValueError, match="concentration"):
        dirichlet_weights(3, 4, concentration=0.0, rng=np.random.default_rng(0))
