"""Deep Archetypal Analysis, the pieces that do not depend on the network (pure torch).

Deep AA (Keller, Samarin, Arend Torres, Wieser & Roth 2021, "Learning extremal
representations with deep archetypal analysis", IJCV 129:805-820, arXiv 2002.00815) puts
the linear archetype model in the latent space of a variational autoencoder:

- **fixed archetypes** (:func:`archetype_coordinates`): the ``k = m + 1`` archetypes of an
  ``m``-dimensional latent space are not learnt but fixed at the corners of a regular
  simplex ``Z*`` ``[k, m]``, centred at 0 with unit circumradius (any two corners have
  dot product ``-1/m``); the paper's "Z_fixed", built as in the authors' reference code
  (``create_z_fix``).
- **A head** (:func:`a_weights`): the encoder gives each of ``n`` points simplex weights
  ``A`` ``[n, k]`` (softmax over archetypes), and the latent mean is ``t = A Z*``
  (:func:`latent_mean`): every code is a convex mixture of the archetypes.
- **B head** (:func:`b_weights`): a second head gives ``B`` ``[k, n]`` (softmax over the
  points of the batch), so that ``B A Z*`` re-expresses each archetype as a convex
  mixture of the encoded points, as ``Z = B X`` does in linear AA.
- **archetype loss** (:func:`archetype_loss`): ``l_AT = mean_j |z*_j - (B A Z*)_j|^2``,
  the paper's distance-dependent archetype loss. It is zero exactly when every archetype
  is a convex mixture of the encoded points, i.e. when the archetypes stay on the convex
  hull of the data's codes (since the corners are affinely independent, this needs a
  point encoded at each corner).
- **variational form** (:func:`gaussian_kl`, :func:`reparameterise`): the posterior is
  ``q(t | x) = N(A Z*, diag sigma^2)``; with the standard normal prior its KL term is
  ``1/2 sum(sigma^2 + mu^2 - 1 - log sigma^2)`` (Kingma & Welling 2014).
- **Dirichlet-style prior** (:func:`dirichlet_prior_log_density`,
  :func:`dirichlet_prior_kl`): the paper's alternative prior puts the prior mass on the
  simplex, ``p(t) = E_{w ~ Dir(alpha)} N(t; w Z*, I)`` (a Gaussian blur of Dirichlet
  mixtures of the archetypes; the reference code draws the Dirichlet weights per batch
  element). Its KL has no closed form: here it is a Monte Carlo estimate, ``log q`` exact
  at reparameterised samples of ``q`` and ``log p`` a log-mean-exp over ``M`` Dirichlet
  draws (a consistent estimate; for finite ``M`` it is biased low, so the KL is biased
  high, which is the safe side for a penalty).

The losses combine, in the paper's (negated) objective, as reconstruction + side
information + ``l_AT`` + KL, each with its own weight. Randomness is explicit: the
functions that sample take a ``torch.Generator``; :func:`dirichlet_weights` draws prior
weights from a NumPy generator (torch's Dirichlet sampler takes no generator).

References
----------
Keller S.M., Samarin M., Arend Torres F., Wieser M., Roth V. (2021) Learning extremal
representations with deep archetypal analysis. Int. J. Comput. Vis. 129:805-820.
Reference code: github.com/bmda-unibas/DeepArchetypeAnalysis (``AT_lib/lib_at.py``:
``create_z_fix``; ``AT_lib/lib_vae.py``: ``build_encoder``; ``daa_JAFFE.py``:
``build_loss``).
Kingma D.P., Welling M. (2014) Auto-encoding variational Bayes. ICLR.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "a_weights",
    "archetype_coordinates",
    "archetype_loss",
    "b_weights",
    "dirichlet_prior_kl",
    "dirichlet_prior_log_density",
    "dirichlet_weights",
    "gaussian_kl",
    "latent_mean",
    "reparameterise",
]


def archetype_coordinates(
    latent: int, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """The fixed archetypes ``Z*`` ``[latent + 1, latent]``: a regular simplex's corners.

    Centred at 0, unit circumradius, pairwise dot products ``-1/latent``; lower-triangular
    in its first ``latent`` rows, as the reference code's ``create_z_fix`` (the Cholesky
    factor of the corners' Gram matrix, the last corner minus the sum of the others).

    Parameters
    ----------
    latent
        Latent dimension ``m >= 1`` (``m + 1`` archetypes).
    dtype, device
        Of the returned tensor.
    """
    if int(latent) != latent or latent < 1:
        raise ValueError(f"latent must be an integer >= 1, got {latent!r}")
    m = int(latent)
    gram = (1.0 + 1.0 / m) * torch.eye(m, dtype=torch.float64) - 1.0 / m
    head = torch.linalg.cholesky(gram)
    z = torch.cat([head, -head.sum(dim=0, keepdim=True)])
    return z.to(dtype=dtype, device=device)


def a_weights(logits: torch.Tensor) -> torch.Tensor:
    """The A head: ``[n, k]`` logits -> simplex weights of each point on the archetypes."""
    return torch.softmax(logits, dim=-1)


def b_weights(logits: torch.Tensor) -> torch.Tensor:
    """The B head: ``[n, k]`` logits (one column per archetype) -> ``B`` ``[k, n]``.

    Each archetype's row is a softmax over the ``n`` points of the batch, so ``B A Z*``
    writes each archetype as a convex mixture of the encoded points (reference code:
    ``softmax(transpose(weights_B_t), 1)``).
    """
    return torch.softmax(logits.transpose(-1, -2), dim=-1)


def latent_mean(a: torch.Tensor, z_fixed: torch.Tensor) -> torch.Tensor:
    """``t = A Z*``: codes ``[n, m]`` as convex mixtures of the fixed archetypes."""
    return a @ z_fixed


def archetype_loss(a: torch.Tensor, b: torch.Tensor, z_fixed: torch.Tensor) -> torch.Tensor:
    """``l_AT = mean_j |z*_j - (B A Z*)_j|^2``: how far the archetypes are from the codes' hull.

    Parameters
    ----------
    a
        ``[n, k]`` A weights (rows on the simplex).
    b
        ``[k, n]`` B weights (rows on the simplex).
    z_fixed
        ``[k, m]`` fixed archetypes.

    Returns
    -------
    torch.Tensor
        A scalar: the mean over archetypes of the squared distance (summed over latent
        coordinates; the reference code's ``mean_squared_error`` also divides by ``m``).
        Zero exactly when every archetype is a convex mixture (by ``B``) of the codes.
    """
    predicted = b @ (a @ z_fixed)  # [k, m]
    return ((z_fixed - predicted) ** 2).sum(dim=-1).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))`` per row: ``[n, m] -> [n]``.

    ``1/2 sum_i (exp(logvar_i) + mu_i^2 - 1 - logvar_i)`` (Kingma & Welling 2014, App. B).
    """
    return 0.5 * (logvar.exp() + mu**2 - 1.0 - logvar).sum(dim=-1)


def reparameterise(
    mu: torch.Tensor, logvar: torch.Tensor, *, generator: torch.Generator, samples: int = 1
) -> torch.Tensor:
    """Samples ``t = mu + exp(logvar / 2) eps`` from ``q``, ``[samples, n, m]`` (differentiable)."""
    eps = torch.randn((samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + (0.5 * logvar).exp() * eps


def dirichlet_weights(
    k: int, samples: int, *, concentration: float = 1.0, rng: np.random.Generator
) -> torch.Tensor:
    """``[samples, k]`` draws of ``Dir(concentration, ..., concentration)`` (float32)."""
    if not (np.isfinite(concentration) and concentration > 0):
        raise ValueError(f"concentration must be > 0, got {concentration!r}")
    w = rng.dirichlet(np.full(int(k), float(concentration)), size=int(samples))
    return torch.as_tensor(w, dtype=torch.float32)


def _log_normal(t: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    m = t.shape[-1]
    return -0.5 * (((t - mean) ** 2) / logvar.exp() + logvar).sum(dim=-1) - 0.5 * m * math.log(
        2 * math.pi
    )


def dirichlet_prior_log_density(
    t: torch.Tensor, z_fixed: torch.Tensor, prior_weights: torch.Tensor
) -> torch.Tensor:
    """Monte Carlo ``log p(t)`` of the Dirichlet-style prior, ``[..., m] -> [...]``.

    ``p(t) = E_{w ~ Dir} N(t; w Z*, I)``, estimated by ``log mean_s N(t; w_s Z*, I)`` over
    the given Dirichlet draws ``prior_weights`` ``[M, k]`` (:func:`dirichlet_weights`).
    """
    centres = prior_weights.to(dtype=t.dtype, device=t.device) @ z_fixed  # [M, m]
    m = t.shape[-1]
    sq = ((t.unsqueeze(-2) - centres) ** 2).sum(dim=-1)  # [..., M]
    log_n = -0.5 * sq - 0.5 * m * math.log(2 * math.pi)
    return torch.logsumexp(log_n, dim=-1) - math.log(len(centres))


def dirichlet_prior_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    z_fixed: torch.Tensor,
    prior_weights: torch.Tensor,
    *,
    generator: torch.Generator,
    samples: int = 16,
) -> torch.Tensor:
    """Monte Carlo ``KL(q(t|x) || p(t))`` for the Dirichlet-style prior, per row ``[n]``.

    ``mean_s [log q(t_s) - log p(t_s)]`` at ``samples`` reparameterised draws ``t_s ~ q``
    (differentiable in ``mu`` and ``logvar``); ``log p`` from
    :func:`dirichlet_prior_log_density`.
    """
    t = reparameterise(mu, logvar, generator=generator, samples=samples)  # [S, n, m]
    log_q = _log_normal(t, mu, logvar)
    log_p = dirichlet_prior_log_density(t, z_fixed, prior_weights)
    return (log_q - log_p).mean(dim=0)
