"""The MAE's loss terms, each a small function of tensors (see :mod:`evosim.meta.fit`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "behaviour_loss",
    "code_law_kl",
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


def code_law_kl(
    codes: torch.Tensor, mean: torch.Tensor, chol: torch.Tensor, *, ridge: float = 1e-4
) -> torch.Tensor:
    """``KL(N(m, C) || N(mean, L L^T))`` averaged over members; ``m, C`` the codes' moments.

    ``codes [B, n, c]`` are a decoded AE's codes of its species' region inputs (treated as
    data: no gradient flows into them); ``mean [B, c]`` and ``chol [B, c, c]`` the predicted
    law. The KL between Gaussians is scale-free, so the term weighs every AE alike.
    """
    codes = codes.detach()
    b, n, c = codes.shape
    m = codes.mean(1)
    x = codes - m[:, None]
    cov = x.transpose(1, 2) @ x / max(n - 1, 1)
    cov = cov + ridge * torch.diagonal(cov, dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(
        c, device=codes.device, dtype=codes.dtype
    )
    # KL = 0.5 [tr(S^-1 C) + (mu - m)^T S^-1 (mu - m) - c + log det S - log det C]
    eye = torch.eye(c, device=codes.device, dtype=codes.dtype).expand(b, c, c)
    inv_l = torch.linalg.solve_triangular(chol, eye, upper=False)
    s_inv = inv_l.transpose(1, 2) @ inv_l
    diff = (mean - m)[:, :, None]
    trace = torch.diagonal(s_inv @ cov, dim1=1, dim2=2).sum(-1)
    maha = (diff.transpose(1, 2) @ s_inv @ diff)[:, 0, 0]
    logdet_s = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1)
    logdet_c = torch.linalg.slogdet(cov)[1]
    return (0.5 * (trace + maha - c + logdet_s - logdet_c)).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over codes, averaged over rows."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()


def distance_stress(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Scale-free stress between pairwise distances of inputs ``x`` and codes ``z``."""
    n = x.shape[0]
    if n < 3:
        return z.new_zeros(())
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    dx = torch.cdist(x, x)[iu[0], iu[1]]
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
