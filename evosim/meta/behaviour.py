"""What the MAE's decoder is trained to reproduce: each AE's behaviour on its own region.

The decoder writes the parameters of a working AE; it is trained so that the AE decoded
from a species' code does what that species' AE does, on inputs where that matters.
Everything here comes from the bank alone (its AEs and its pooled reference inputs), never
from the species' instances or the tree:

*Region points.* A trained AE reconstructs its own species' data well and other species'
worse, so among the pooled reference inputs, the ones member ``m`` reconstructs best lie
on or near its species' manifold. Their codes under ``m``'s encoder, jittered by a
Gaussian kernel (a kernel density of the codes: AE codes often lie on curves or loops,
which a single Gaussian would fill in), go through ``m``'s decoder to points of its
manifold ("points the species' AE generates from its own codes"), and Gaussian noise of
the size of ``m``'s own residual on the selected inputs moves them off the manifold as
real instances are. Region inputs are the selected reference inputs plus those generated
points; the targets are ``m``'s reconstructions of them.

*Probes.* One shared probe set (the functional representation's); the targets are every
member's reconstructions of it. They pin down behaviour between and around the species,
and make the decoded AE's functional representation (what the encoder reads) match.

``residual[m]`` (the mean squared error per coordinate of ``m`` on its selected inputs)
stands for the AE's own reconstruction error: the behaviour loss is measured in units of
it, which is what the fidelity ratio of a decoded AE to its original counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evosim.seeding import rng as make_rng

__all__ = [
    "GENERATE",
    "SELECT",
    "Behaviour",
    "behaviour_features",
    "behaviour_loss_of",
    "behaviour_targets",
    "error_profiles",
    "select_region",
]

#: Members per chunk when running the bank's AEs over the reference inputs.
CHUNK = 64
#: Region selection (see :func:`select_region`).
MIN_SELECT = 8
SELECT_FACTOR = 8.0
#: Region inputs per member: at most this many selected reference inputs, and this many
#: generated points.
SELECT = 64
GENERATE = 96
#: Error profiles: on each reference input, every member's log error above this quantile
#: of all members' is capped at it (see :func:`error_profiles`).
ERROR_CAP_QUANTILE = 0.25


@dataclass
class Behaviour:
    """Inputs and targets of the behaviour loss, one row per member of the bank.

    Attributes
    ----------
    inputs
        ``[M, n, D]`` region inputs of each member (selected reference inputs, then
        generated points).
    targets
        ``[M, n, D]`` the member's reconstructions of ``inputs``.
    probes
        ``[P, D]`` shared probes.
    probe_targets
        ``[M, P, D]`` every member's reconstructions of the probes.
    residual
        ``[M]`` mean squared error per coordinate of each member on its selected inputs.
    selected
        ``[M]`` how many distinct reference inputs each member selected (the first
        ``n_select`` region inputs repeat them cyclically).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    probes: torch.Tensor
    probe_targets: torch.Tensor
    residual: torch.Tensor
    selected: torch.Tensor

    def to(self, device: torch.device) -> Behaviour:
        return Behaviour(
            self.inputs.to(device),
            self.targets.to(device),
            self.probes.to(device),
            self.probe_targets.to(device),
            self.residual.to(device),
            self.selected,
        )

    def subset(self, members: np.ndarray) -> Behaviour:
        idx = torch.as_tensor(np.asarray(members), dtype=torch.long)
        return Behaviour(
            self.inputs[idx],
            self.targets[idx],
            self.probes,
            self.probe_targets[idx],
            self.residual[idx],
            self.selected[idx],
        )


def select_region(
    err: np.ndarray, n_max: int, *, n_min: int = MIN_SELECT, factor: float = SELECT_FACTOR
) -> np.ndarray:
    """Mask ``[M, P]`` of the reference inputs each member counts as its own region.

    A member reconstructs its species' instances well and other species' much worse (on
    quickstart, 10x and more), so a member keeps the inputs whose squared error is at most
    ``factor`` times the median of its ``n_min`` best: at least ``n_min``, at most ``n_max``
    (the best ones). ``err`` is ``[M, P]`` squared reconstruction error; ties break by
    index (stable sort), so the choice is deterministic.
    """
    n_max = min(n_max, err.shape[1])
    n_min = min(n_min, n_max)
    order = np.argsort(err, axis=1, kind="stable")
    ranked = np.take_along_axis(err, order, axis=1)
    threshold = factor * np.median(ranked[:, :n_min], axis=1)
    keep = ranked <= threshold[:, None]
    keep[:, :n_min] = True
    keep[:, n_max:] = False
    mask = np.zeros_like(keep)
    np.put_along_axis(mask, order, keep, axis=1)
    return mask


def _member_chunks(bank: Any) -> Iterator[tuple[Any, list[int], torch.Tensor]]:
    """``(group, local indices, bank member indices)`` for chunks of at most ``CHUNK``
    members of each architecture group of a bank."""
    for g, group in enumerate(bank.groups):
        members = np.asarray(bank.group_members(g))
        for a in range(0, len(members), CHUNK):
            local = list(range(a, min(a + CHUNK, len(members))))
            yield group, local, torch.as_tensor(members[local], dtype=torch.long)


def error_profiles(bank: Any, cap_quantile: float = ERROR_CAP_QUANTILE) -> np.ndarray:
    """Rows ``[M, P]`` whose distances compare which data the members' AEs model well: each
    member's log reconstruction error (mean squared error per coordinate) on every one of
    the bank's ``P`` pooled reference inputs, capped per input, centred over the inputs.

    An AE reconstructs its own species' inputs well, and those of other species the worse
    the more they differ, so two members whose errors rise and fall over the same inputs
    model the same part of the data. The log makes the profile read ratios of errors, and
    centring removes each member's overall error level, so an AE that is uniformly a little
    worse is not set apart. On each input, the log errors above the ``cap_quantile``
    quantile of all members' are set to it: how badly an AE extrapolates to data far from
    its own is mostly its own noise, and with many species most inputs are far from most
    AEs, so uncapped that noise drowns the few inputs near each species. Reads the bank
    only (its AEs and its pooled, unlabelled reference inputs), on the data's manifold,
    where shared probes partly lie off it.

    Measured with neighbour joining on these distances: at 64-1,024 species the cap at
    the lower quartile gave trees on average 0.02 nRF closer to the true ones than no
    cap, on ``large.yaml``'s world (where 0.25 was chosen) and on three worlds it was not
    chosen on. The tree in capped distances spreads over more dimensions than in the
    data's, and from 512 species an MAE's 16-dimensional codes could not keep it (its
    trees were worse than with no cap: ``meta.error_cap``).

    Parameters
    ----------
    bank
        An :class:`~evosim.train.AEBank` or :class:`~evosim.train.AEBankSet` with
        ``reference_inputs``.
    cap_quantile
        In ``(0, 1]``; 1 leaves the errors uncapped.
    """
    if not 0 < cap_quantile <= 1:
        raise ValueError(f"cap_quantile must be in (0, 1], got {cap_quantile}")
    ref = bank.reference_inputs
    if ref is None or len(ref) < 2:
        raise ValueError("the bank has no reference inputs: error profiles need them")
    ref_t = torch.as_tensor(np.asarray(ref, dtype=np.float32))
    err = torch.empty(bank.n_members, len(ref_t))
    with torch.no_grad():
        for group, local, glob in _member_chunks(bank):
            err[glob] = (group.reconstruct(ref_t, local) - ref_t).pow(2).mean(-1)
    logs = np.log(np.clip(err.numpy().astype(np.float64), 1e-12, None))
    if cap_quantile < 1:
        logs = np.minimum(logs, np.quantile(logs, cap_quantile, axis=0, keepdims=True))
    return logs - logs.mean(axis=1, keepdims=True)


def _member_keys(bank: Any) -> list[tuple[str, int]]:
    r = int(bank.replicates)
    return [(s, k) for s in bank.species for k in range(r)]


def behaviour_targets(
    bank: Any,
    probes: np.ndarray,
    *,
    n_select: int = SELECT,
    n_generated: int = GENERATE,
    seed: int,
) -> Behaviour:
    """Region inputs, probes and their targets for every member of a bank.

    Parameters
    ----------
    bank
        An :class:`~evosim.train.AEBank` or :class:`~evosim.train.AEBankSet` with
        ``reference_inputs``.
    probes
        ``[P, D]`` shared probes.
    n_select
        Reference inputs kept per member (those it reconstructs best).
    n_generated
        Points generated per member from its code distribution.
    seed
        Seeds the generated codes and noise; member ``(species, r)`` draws from the stream
        ``(seed, "mae-region", species, r)``, so its points do not depend on the others.
    """
    ref = bank.reference_inputs
    if ref is None or len(ref) < 2:
        raise ValueError("the bank has no reference inputs: the MAE needs them to probe its AEs")
    ref_t = torch.as_tensor(np.asarray(ref, dtype=np.float32))
    probes_t = torch.as_tensor(np.asarray(probes, dtype=np.float32))
    m_total = bank.n_members
    d_in = ref_t.shape[1]
    n_sel = min(n_select, len(ref_t))
    inputs = torch.empty(m_total, n_sel + n_generated, d_in)
    selected = torch.zeros(m_total, dtype=torch.long)
    targets = torch.empty_like(inputs)
    probe_targets = torch.empty(m_total, len(probes_t), d_in)
    residual = torch.empty(m_total)
    keys = _member_keys(bank)
    with torch.no_grad():
        for group, local, glob in _member_chunks(bank):
            rec = group.reconstruct(ref_t, local)  # [K, P, D]
            err = (rec - ref_t).pow(2).mean(-1)
            mask = torch.as_tensor(select_region(err.numpy(), n_sel))
            count = mask.sum(1)
            # the selected inputs first (best first), the rest cycle through them
            order = torch.argsort(err.masked_fill(~mask, float("inf")), dim=1, stable=True)
            slot = torch.arange(n_sel)[None, :] % count[:, None]
            sel = order.gather(1, slot)
            x_sel = ref_t[sel]  # [K, n_sel, D]
            w = (slot == torch.arange(n_sel)[None, :]).float()  # 1 for first copies
            res = ((err.gather(1, sel) * w).sum(1) / count).clamp_min(1e-12)
            codes = group.encode(x_sel, local)  # [K, n_sel, k]
            k = codes.shape[-1]
            # kernel density on the selected inputs' codes (bandwidth: half the mean
            # nearest-neighbour distance among them), so generated points stay on the
            # AE's manifold even where its codes lie on a curve or a loop
            d = torch.cdist(codes, codes)
            same = slot[:, :, None] == slot[:, None, :]
            nn_d = d.masked_fill(same, float("inf")).min(dim=2).values
            nn_d = nn_d.masked_fill(~torch.isfinite(nn_d), 0.0)
            h = 0.5 * (nn_d * w).sum(1) / count  # mean over distinct inputs
            pick = torch.empty(len(local), n_generated, dtype=torch.long)
            eps = torch.empty(len(local), n_generated, k)
            noise = torch.empty(len(local), n_generated, d_in)
            for j, mem in enumerate(glob.tolist()):
                gen = make_rng(seed, "mae-region", *keys[mem])
                pick[j] = torch.as_tensor(gen.integers(0, int(count[j]), n_generated))
                eps[j] = torch.as_tensor(gen.standard_normal((n_generated, k)))
                noise[j] = torch.as_tensor(gen.standard_normal((n_generated, d_in)))
            z = codes.gather(1, pick[..., None].expand(-1, -1, k)) + h[:, None, None] * eps
            gen_pts = group.decode(z, local) + res.sqrt()[:, None, None] * noise
            x = torch.cat([x_sel, gen_pts], dim=1)
            inputs[glob] = x
            targets[glob] = group.reconstruct(x, local)
            probe_targets[glob] = group.reconstruct(probes_t, local)
            residual[glob] = res
            selected[glob] = count
    return Behaviour(inputs, targets, probes_t, probe_targets, residual, selected)


def behaviour_loss_of(
    params: dict[str, torch.Tensor], spec: Any, beh: Behaviour, probe_weight: float
) -> torch.Tensor:
    """Per-member behaviour loss ``[M]`` of stacked AEs ``params`` against ``beh``'s targets.

    Region inputs plus ``probe_weight`` times probes, each in units of the member's own
    residual (see :func:`evosim.meta.losses.behaviour_loss`).
    """
    from evosim.train import model as ae_model

    pred = ae_model.reconstruct(params, spec, beh.inputs)
    loss = (pred - beh.targets).pow(2).mean(dim=(1, 2)) / beh.residual
    if probe_weight > 0:
        pp = ae_model.reconstruct(params, spec, beh.probes)
        loss = loss + probe_weight * (pp - beh.probe_targets).pow(2).mean(dim=(1, 2)) / beh.residual
    return loss


def behaviour_features(bank: Any, beh: Behaviour, *, seed: int) -> np.ndarray:
    """Rows ``[M, F]`` whose distances are the energy distances between where each
    member's AE sends the shared probes.

    Every probe is reconstructed twice by each member (``AE(AE(p))``: the first pass moves
    it onto the AE's manifold, the second settles it there), and the energy distance
    compares the members' clouds of such points. A cloud lies where the AE's own manifold
    is, so the distance compares the AEs where each models data rather than on probes far
    from them (on ``outline``, a shared-probe comparison gave NJ trees 0.1 nRF worse than
    this one; ``bench/bench_functional_view.py``). Reads the bank's AEs and probes only.

    The rows are sliced energy features
    (:func:`~evosim.analysis.baselines.sliced_energy_features`, directions and grid drawn
    from the stream ``(seed, "mae-distance")``), so the work and memory grow linearly with
    the members and a minibatch computes its own distances.
    """
    from evosim.analysis.baselines import sliced_energy_features

    once = beh.probe_targets.cpu()
    twice = torch.empty_like(once)
    with torch.no_grad():
        for group, local, glob in _member_chunks(bank):
            twice[glob] = group.reconstruct(once[glob], local)
    return sliced_energy_features(twice.numpy(), make_rng(seed, "mae-distance"))
