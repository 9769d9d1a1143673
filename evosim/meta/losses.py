"""The MAE's loss terms, each a small function of tensors (see :mod:`evosim.meta.fit`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "behaviour_loss",
    "code_law_energy",
    "distance_stress",
    "gaussian_kl",
    "nt_xent",
]

#: NT-Xent temperature.
TEMPERATURE = 0.5


def behaviour_loss(pred: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mean over members of ``MSE(pred_m, target_m) / scale_m``.

    ``pred``/``target`` are ``[B, n, D]`` outputs of the decoded and the original AEs on
    the same inputs; ``scale [B]`` is each original AE's own reconstruction error, so the
    loss reads "the decoded AE's extra error, in units of the original's". If the two
    AEs' errors on an instance are uncorrelated, a decoded AE at loss ``L`` has
    reconstruction error about ``(1 + L)`` times the original's.
    """
    return ((pred - target).pow(2).mean(dim=(1, 2)) / scale).mean()


def code_law_energy(codes: torch.Tensor, particles: torch.Tensor) -> torch.Tensor:
    """Energy distance between a decoded AE's codes and its predicted particles, per member.

    ``codes [B, n, c]`` are the decoded AE's codes of its species' region inputs (treated
    as data: no gradient flows into them), ``particles [B, K, c]`` the predicted law. The
    squared energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Szekely & Rizzo 2013) is
    zero exactly when the two laws agree; each member's is divided by the mean distance
    between its codes, so the term is scale-free. Averaged over members.
    """
    codes = codes.detach()
    xy = torch.cdist(particles, codes).mean(dim=(1, 2))
    yy = torch.cdist(particles, particles).mean(dim=(1, 2))
    xx = torch.cdist(codes, codes).mean(dim=(1, 2))
    return ((2 * xy - yy - xx) / xx.clamp_min(1e-8)).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over codes, averaged over rows."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()


def distance_stress(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Scale-free stress between pairwise distances of inputs ``x`` and codes ``z``."""
    n = z.shape[0]
    if n < 3:
        return z.new_zeros(())
    iu = torch.triu_indices(n, n, offset=1, device=z.device)
    dx = torch.cdist(x, x)[iu[0], iu[1]].to(z.dtype)
    dz = (z[:, None, :] - z[None, :, :]).pow(2).sum(-1).add(1e-12).sqrt()[iu[0], iu[1]]
    return (dz / dz.mean().clamp_min(1e-12) - dx / dx.mean().clamp_min(1e-12)).pow(2).mean()


def nt_xent(z: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """NT-Xent (Chen et al. 2020) over codes ``[n, k]``; members of one group are positives."""
    zn = F.normalize(z, dim=1)
    sim = zn @ zn.T / TEMPERATURE
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    pos = (groups[:, None] == groups[None, :]) & ~eye
    has = pos.any(dim=1)
    if not bool(has.any()):
        return z.new_zeros(())
    logp = sim.masked_fill(eye, float("-inf")).log_softmax(dim=1)
    per = -(logp.masked_fill(~pos, 0.0).sum(dim=1) / pos.sum(dim=1).clamp_min(1))
    return per[has].mean()
