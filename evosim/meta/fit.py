"""Fitting the meta-autoencoder: :func:`fit_meta_autoencoder`.

One training run (:func:`train_mae`) fits the encoder and the hypernetwork decoder
together. Each step takes a minibatch of members (whole species, so replicates stay
together), encodes their representations, perturbs the codes (``code_noise``), decodes
every parameter of an AE from each code and runs it on the member's region inputs and
on shared probes (:mod:`evosim.meta.behaviour`). The loss is

* the behaviour loss (:func:`~evosim.meta.losses.behaviour_loss`) on region inputs plus
  ``probe_weight`` times the same on probes: the decoded AE must do what the member's AE
  does, in units of the member's own reconstruction error;
* the KL between the decoded AE's code distribution on the region inputs and the one the
  decoder predicts (what :meth:`~evosim.meta.MetaResult.generate` samples);
* ``distance_weight`` times a stress that keeps code distances like the energy distances
  between where the members' AEs send the probes (``distance_target: behaviour``, the
  default: :func:`~evosim.meta.behaviour.behaviour_features`), like the distances of the
  members' error profiles on the reference inputs (``errors``:
  :func:`~evosim.meta.behaviour.error_profiles`), like representation distances
  (``representation``), or like representation and behaviour at once (``both``); with
  ``tree_dims``, only the code's leading ``tree_dims`` coordinates keep them (the tree is
  read from those) and the rest of the code is left to the decoder, which decodes a
  ``tail_dropout`` share of the members from the tree coordinates alone;
* optional: the prior's KL (``variational``), ``contrastive_weight`` times NT-Xent over
  replicates.

With ``prior: archetypal`` the MAE is a Deep Archetypal Analysis (Keller et al. 2021;
:mod:`evosim.meta.archetypal`): the encoder's A head gives each member simplex weights on
``k = latent + 1`` archetypes fixed at the corners of a regular simplex ``Z*``, the code's
posterior is ``N(A Z*, diag sigma^2)`` (decoded from a reparameterised sample), and the
loss adds ``kl_weight`` times its KL to the prior (standard normal, or the Dirichlet-style
prior) and ``archetype_weight`` times the archetype loss, which asks the B head to write
each archetype as a convex mixture of the minibatch's codes (so the archetypes stay on
the hull of the species' codes, and the species nearest the corners are the extremes).
Optional side information (``meta.side_information``) adds ``side_weight`` times the MSE of
a small head predicting that species-level variable from the code.

Regularisation for decoding species the MAE was not fitted on: multiplicative code noise
(the decoder must work in a neighbourhood of every code, not only at it), AdamW weight
decay, and a small code (chosen by ``latent: auto`` on held-out species).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from evosim.devices import resolve_device
from evosim.meta import archetypal, losses
from evosim.meta.behaviour import (
    Behaviour,
    behaviour_features,
    behaviour_targets,
    error_profiles,
)
from evosim.meta.network import Encoder, HyperDecoder, SideHead
from evosim.meta.representation import (
    Frame,
    RepresentationMap,
    make_probes,
    medoid,
    whitened_code_distances,
)
from evosim.meta.result import MetaResult, decode_spec
from evosim.scenario import MetaConfig
from evosim.seeding import rng as make_rng
from evosim.seeding import torch_generator
from evosim.train import model as ae_model
from evosim.train.model import init_params
from evosim.train.spec import AESpec

__all__ = [
    "AUTO_LATENTS",
    "distance_target_rows",
    "fit_meta_autoencoder",
    "resolve_seed",
    "train_mae",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Candidate code sizes for ``latent: auto``.
AUTO_LATENTS = (2, 4, 8, 16)
#: Evaluate the training (and held-out) loss every this many steps.
EVAL_EVERY = 100
#: Members per minibatch; banks of up to this many members train full-batch.
BATCH = 64
#: Region inputs and probes per member and step.
POINTS = 48
PROBES_PER_STEP = 32
#: Banks of up to this many members get ``meta.steps`` passes; larger ones fewer (:func:`passes`).
FULL_PASSES_UP_TO = 256
#: Members per step whose decoded AEs are re-encoded (the cycle-consistency term).
CYCLE_MEMBERS = 8
#: Folds over species for ``latent: auto``.
FOLDS = 4
#: Dirichlet-style prior: Dirichlet draws per step for its density, and reparameterised
#: samples per code for its Monte Carlo KL.
DIRICHLET_DRAWS = 256
DIRICHLET_KL_SAMPLES = 8


@contextlib.contextmanager
def _single_thread(device: torch.device) -> Iterator[None]:
    """Run the MAE's small products on one CPU thread, then restore the setting.

    The MAE's layers are a few hundred wide; splitting such products across threads costs
    more than it saves, and on a busy machine the threads' spin-waits made fits ~9x slower.
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _steps_on_one_thread(fit: Callable[..., T]) -> Callable[..., T]:
    """Run ``fit(prob, ...)`` inside :func:`_single_thread` on the problem's device."""

    @functools.wraps(fit)
    def wrapped(prob: Problem, *args: Any, **kwargs: Any) -> T:
        with _single_thread(prob.coords.device):
            return fit(prob, *args, **kwargs)

    return wrapped


def resolve_seed(bank: Any, seed: int | None) -> int:
    """``seed``, else the run's seed recorded in the bank, else one drawn now (and logged)."""
    if seed is not None:
        return int(seed)
    info = getattr(bank, "info", None) or {}
    if info.get("seed") is not None:
        return int(info["seed"])
    drawn = secrets.randbelow(2**31)
    log.info("the bank records no seed; the MAE draws seed %d (stored in its info)", drawn)
    return drawn


# ---------------------------------------------------------------------------- the problem


@dataclass
class Problem:
    """Everything a training run needs, on the training device."""

    coords: torch.Tensor  # [M, r] the representation's principal-axis coordinates
    features: torch.Tensor  # [M, F] standardised representation (for the distance term)
    groups: torch.Tensor  # [M] species index of each member
    behaviour: Behaviour
    spec: AESpec
    theta0: dict[str, torch.Tensor]
    kind: str = "functional"  # the representation the encoder reads
    rep_mean: torch.Tensor | None = None  # [F] its standardisation
    rep_scale: torch.Tensor | None = None  # [F]
    frame: Frame | None = None
    law_codes: torch.Tensor | None = None  # [N, c] theta0's codes of the probes
    side: torch.Tensor | None = None  # [M, q] standardised side information per member
    # [M, G] rows whose distances the distance term keeps, if not ``features``'
    distance_rows: torch.Tensor | None = None

    @property
    def n_members(self) -> int:
        return int(self.coords.shape[0])


def _unit_rms(rows: np.ndarray) -> np.ndarray:
    """``rows`` scaled so that their root-mean-square pairwise distance is 1."""
    rows = np.asarray(rows, dtype=np.float64)
    ms = 2.0 * float(rows.var(axis=0).sum())  # mean squared distance over all pairs
    return rows / np.sqrt(ms) if ms > 1e-24 else rows


def _distance_rows(
    config: MetaConfig,
    x: np.ndarray | None,
    bank: Any,
    beh: Behaviour | None,
    seed: int,
    device: torch.device,
) -> torch.Tensor | None:
    """Rows whose distances the distance term keeps, where they are not the representation's
    (``x``): the behaviour rows, the error profiles, or (``both``) the representation's
    and the behaviour rows side by side, each scaled to unit root-mean-square distance so
    that each counts equally."""
    if config.distance_weight == 0 or config.distance_target == "representation":
        return None
    if config.distance_target == "errors":
        rows = error_profiles(bank, cap_quantile=config.error_cap)
        return torch.as_tensor(rows, dtype=torch.float32).to(device)
    assert beh is not None, "the behaviour targets are needed for this distance target"
    rows = behaviour_features(bank, beh, seed=seed)
    if config.distance_target == "both":
        assert x is not None, "the representation is needed for this distance target"
        rows = np.concatenate([_unit_rms(x), _unit_rms(rows)], axis=1)
    return torch.as_tensor(rows, dtype=torch.float32).to(device)


def distance_target_rows(
    meta: MetaResult, bank: Any, meta_input: np.ndarray | None = None
) -> np.ndarray | None:
    """The rows whose distances a fitted MAE's distance term held its codes to.

    Parameters
    ----------
    meta
        The fitted MAE; its ``config`` (``distance_target``, ``error_cap``), seed and
        probes say which rows.
    bank
        The bank it was fitted on.
    meta_input
        The MAE's input ``[M, F]`` (``meta.represent(bank)``), if already computed; it is
        read only by the ``representation`` and ``both`` targets.

    Returns
    -------
    numpy.ndarray or None
        ``[M, G]`` one row per member (species-major, like the bank), the same rows the
        fit used; ``None`` if the MAE had no distance term (``distance_weight: 0``).
    """
    config = meta.config
    if config.distance_weight == 0:
        return None
    x = meta_input
    if x is None and config.distance_target in ("representation", "both"):
        x = meta.represent(bank)
    beh = None
    if config.distance_target in ("behaviour", "both"):
        beh = behaviour_targets(bank, meta.probes, seed=meta.seed)
    rows = _distance_rows(config, x, bank, beh, meta.seed, torch.device("cpu"))
    return x if rows is None else rows.numpy().astype(np.float64)


def _theta0(bank: Any, spec: AESpec, seed: int) -> tuple[dict[str, torch.Tensor], str]:
    """The decoder's starting AE: the medoid (raw weights) of the bank's members of
    ``spec``'s architecture; a fresh initialisation if no member has it."""
    for g, group in enumerate(bank.groups):
        if group.spec == spec:
            flat = torch.cat([v.reshape(v.shape[0], -1) for v in group.params.values()], dim=1)
            j = medoid(flat.numpy())
            member = int(np.asarray(bank.group_members(g))[j])
            return {k: v[j].clone() for k, v in group.params.items()}, f"medoid member {member}"
    params = init_params(spec, seed, ["mae-theta0"], [0])
    return {k: v[0] for k, v in params.items()}, "fresh initialisation"


def _batches(groups: np.ndarray, rng: np.random.Generator, batch: int) -> Iterator[np.ndarray]:
    """Endless minibatches of whole species (epochs of a random species order)."""
    uniq = np.unique(groups)
    per = max(1, int(round(batch * len(uniq) / len(groups))))
    while True:
        order = rng.permutation(uniq)
        for a in range(0, len(order), per):
            yield np.flatnonzero(np.isin(groups, order[a : a + per]))


def _behaviour_terms(
    decoder: HyperDecoder,
    z: torch.Tensor,
    beh: Behaviour,
    idx: torch.Tensor,
    cols: torch.Tensor | None,
    probe_cols: torch.Tensor | None,
    config: MetaConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(region loss, probe loss, code-law KL) of the AEs decoded from ``z`` for members ``idx``."""
    params, particles = decoder.decode_all(z)
    spec = decoder.spec
    if cols is None:
        inputs, targets = beh.inputs[idx], beh.targets[idx]
    else:
        inputs = beh.inputs[idx[:, None], cols[None, :]]
        targets = beh.targets[idx[:, None], cols[None, :]]
    scale = beh.residual[idx]
    codes = ae_model.encode(params, spec, inputs)
    pred = ae_model.decode(params, spec, codes)
    region = losses.behaviour_loss(pred, targets, scale)
    law = losses.code_law_energy(codes, particles)
    probe = region.new_zeros(())
    if config.probe_weight > 0:
        probes = beh.probes if probe_cols is None else beh.probes[probe_cols]
        ptarg = (
            beh.probe_targets[idx]
            if probe_cols is None
            else beh.probe_targets[idx[:, None], probe_cols[None, :]]
        )
        probe = losses.behaviour_loss(ae_model.reconstruct(params, spec, probes), ptarg, scale)
    return region, probe, law


def _reencode(
    encoder: Encoder, decoder: HyperDecoder, z: torch.Tensor, prob: Problem
) -> torch.Tensor:
    """Codes the encoder gives the AEs decoded from ``z`` (differentiably): the cycle
    code -> AE -> representation -> code. ``functional``: the decoded AEs' outputs on the
    probes and their whitened code distances; ``raw``: their flattened parameters."""
    assert prob.frame is not None and prob.rep_mean is not None and prob.rep_scale is not None
    if prob.kind == "functional":
        params = decoder(z)
        probes = prob.behaviour.probes
        codes = ae_model.encode(params, decoder.spec, probes)
        recon = ae_model.decode(params, decoder.spec, codes)
        feats = torch.cat(
            [recon.reshape(len(z), -1), whitened_code_distances(codes.double()).float()], dim=1
        )
    else:
        feats = decoder.flat(z)
    coords = prob.frame.coords((feats - prob.rep_mean) / prob.rep_scale)
    again, _ = encoder(coords)
    return again


def evaluate(
    encoder: Encoder,
    decoder: HyperDecoder,
    prob: Problem,
    members: np.ndarray,
    config: MetaConfig,
) -> float:
    """Behaviour loss (region + probes, no noise) of members decoded from their own codes."""
    encoder.eval()
    decoder.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for a in range(0, len(members), 256):
            idx = torch.as_tensor(members[a : a + 256], device=prob.coords.device)
            mu, _ = encoder(prob.coords[idx])
            region, probe, _ = _behaviour_terms(
                decoder, mu, prob.behaviour, idx, None, None, config
            )
            total += float(region + config.probe_weight * probe) * len(idx)
            count += len(idx)
    return total / max(count, 1)


@_steps_on_one_thread
def train_mae(
    prob: Problem,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    config: MetaConfig,
    latent: int,
    seed: int,
    tag: str,
    *,
    progress: bool = False,
) -> tuple[Encoder, HyperDecoder, dict[str, torch.Tensor], dict[str, Any], SideHead | None]:
    """One fit on members ``train_idx``; returns (encoder, decoder, encoder init, curves,
    side-information head or ``None``).

    ``val_idx`` members (held-out species) are only evaluated: encoded by the encoder,
    decoded, and scored by the behaviour loss. The steps run on one CPU thread; the
    set-up's large products (representation, frame, targets) keep torch's thread count.
    """
    device = prob.coords.device
    gen = torch_generator(seed, "mae", "init", tag)
    encoder = Encoder(
        prob.coords.shape[1], list(config.hidden), latent, config.prior, config.archetypes, gen
    )
    decoder = HyperDecoder(
        latent, list(config.decoder_hidden), prob.spec, prob.theta0, gen, prob.law_codes
    )
    # made after the two networks, so that they start as they would without it
    side_head = SideHead(latent, prob.side.shape[1], gen) if prob.side is not None else None
    encoder_init = copy.deepcopy(encoder.state_dict())
    encoder.to(device)
    decoder.to(device)
    params = [*encoder.parameters(), *decoder.parameters()]
    if side_head is not None:
        side_head.to(device)
        params += list(side_head.parameters())
    opt = torch.optim.AdamW(
        params,
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=True,
    )
    noise = torch_generator(seed, "mae", "noise", tag, device=device)
    order = make_rng(seed, "mae", "batches", tag)
    dirichlet = make_rng(seed, "mae", "dirichlet", tag)
    groups = prob.groups.cpu().numpy()
    batches = _batches(groups[train_idx], order, BATCH)
    tr = torch.as_tensor(train_idx, device=device)
    n_batches = math.ceil(
        len(np.unique(groups[train_idx]))
        / max(1, int(round(BATCH * len(np.unique(groups[train_idx])) / len(train_idx))))
    )
    steps = passes(config.steps, len(train_idx)) * n_batches
    # constant, then a cosine decay to 5% over the second half: Adam's steps at a constant
    # rate leave the fit at a noise floor that a decaying rate gets below
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: (
            1.0
            if i < 0.5 * steps
            else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (i - 0.5 * steps) / (0.5 * steps)))
        ),
    )
    beh = prob.behaviour
    tree = latent if config.tree_dims is None else min(int(config.tree_dims), latent)
    n_pts = beh.inputs.shape[1]
    n_probes = beh.probes.shape[0]
    curve: dict[str, list[float]] = {"step": [], "train": [], "val": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # disable=None: no bar when stderr is not a terminal (cluster logs)
        bar = tqdm(total=steps, desc=f"MAE {tag}", leave=False, disable=None)
    for step in range(1, steps + 1):
        encoder.train()
        decoder.train()
        idx = tr[torch.as_tensor(next(batches), device=device)]
        mu, extra = encoder(prob.coords[idx])
        z = mu
        total = mu.new_zeros(())
        if config.prior == "variational":
            assert extra is not None
            eps = torch.randn(mu.shape, generator=noise, device=device)
            z = mu + eps * torch.exp(0.5 * extra)
            total = total + config.kl_weight * losses.gaussian_kl(mu, extra)
        elif config.prior == "archetypal":
            z, terms = _archetypal_terms(encoder, mu, extra, config, noise, dirichlet)
            total = total + terms
        if config.code_noise > 0:
            # multiplicative in the codes' own spread, so the scale of the codes is free
            rms = mu.detach().std(dim=0).pow(2).mean().sqrt().clamp_min(1e-6)
            eps = torch.randn(mu.shape, generator=noise, device=device)
            z = z + config.code_noise * rms * eps
        cols = torch.randperm(n_pts, generator=noise, device=device)[: min(POINTS, n_pts)]
        pcols = torch.randperm(n_probes, generator=noise, device=device)[
            : min(PROBES_PER_STEP, n_probes)
        ]
        region, probe, law = _behaviour_terms(
            decoder, _drop_tail(z, tree, config.tail_dropout, noise), beh, idx, cols, pcols, config
        )
        total = total + region + config.probe_weight * probe + config.law_weight * law
        if config.cycle_weight > 0 and prob.kind != "aligned":
            sub = idx[: min(CYCLE_MEMBERS, len(idx))]
            again = _reencode(encoder, decoder, z[: len(sub)], prob)
            target = mu[: len(sub)].detach()
            spread = mu.detach().var(dim=0).sum().clamp_min(1e-8)
            total = total + config.cycle_weight * (again - target).pow(2).sum(1).mean() / spread
        if config.distance_weight > 0:
            rows = prob.features if prob.distance_rows is None else prob.distance_rows
            # with tree_dims, only the leading coordinates (the tree's) keep the distances
            stress = losses.distance_stress(rows[idx], mu[:, :tree])
            total = total + config.distance_weight * stress
        if config.contrastive_weight > 0:
            total = total + config.contrastive_weight * losses.nt_xent(mu, prob.groups[idx])
        if side_head is not None and config.side_weight > 0:
            assert prob.side is not None
            total = total + config.side_weight * (side_head(z) - prob.side[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        if step % (EVAL_EVERY * n_batches) == 0 or step == steps:
            curve["step"].append(step)
            curve["train"].append(evaluate(encoder, decoder, prob, train_idx, config))
            if val_idx is not None:
                curve["val"].append(evaluate(encoder, decoder, prob, val_idx, config))
            if bar is not None:
                bar.update(step - bar.n)
    if bar is not None:
        bar.close()
    encoder.eval()
    decoder.eval()
    if side_head is not None:
        side_head.eval()
        side_head.cpu()
    curves = {k: np.asarray(v) for k, v in curve.items()}
    return encoder.cpu(), decoder.cpu(), encoder_init, curves, side_head


def _drop_tail(z: torch.Tensor, tree: int, rate: float, noise: torch.Generator) -> torch.Tensor:
    """``z`` with the coordinates after the first ``tree`` zeroed for a random ``rate`` of
    its rows (``tail_dropout``): those members are decoded from the tree coordinates alone,
    so those coordinates must carry what the AEs do, not only their distances."""
    if rate <= 0 or tree >= z.shape[1]:
        return z
    keep = torch.rand((z.shape[0], 1), generator=noise, device=z.device) >= rate
    return torch.cat([z[:, :tree], z[:, tree:] * keep.to(z.dtype)], dim=1)


def _archetypal_terms(
    encoder: Encoder,
    mu: torch.Tensor,
    extra: dict[str, torch.Tensor],
    config: MetaConfig,
    noise: torch.Generator,
    dirichlet: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deep AA's terms for one minibatch: (posterior sample, KL + archetype loss).

    ``mu = A Z*`` and ``extra`` come from the encoder's archetypal head. The KL is to the
    standard normal, or Monte Carlo to the Dirichlet-style prior; the archetype loss uses
    the B head's weights over the minibatch's codes.
    """
    z_fixed = encoder.z_fixed
    logvar = extra["logvar"]
    eps = torch.randn(mu.shape, generator=noise, device=mu.device)
    z = mu + eps * torch.exp(0.5 * logvar)
    if config.archetype_prior == "dirichlet":
        w = archetypal.dirichlet_weights(
            encoder.k,
            DIRICHLET_DRAWS,
            concentration=config.dirichlet_concentration,
            rng=dirichlet,
        ).to(mu.device)
        kl = archetypal.dirichlet_prior_kl(
            mu, logvar, z_fixed, w, generator=noise, samples=DIRICHLET_KL_SAMPLES
        ).mean()
    else:
        kl = archetypal.gaussian_kl(mu, logvar).mean()
    b = archetypal.b_weights(extra["b_logits"])
    at = archetypal.archetype_loss(extra["weights"], b, z_fixed)
    return z, config.kl_weight * kl + config.archetype_weight * at


def passes(steps: int, members: int) -> int:
    """Passes over the members for ``meta.steps`` on a bank of ``members`` members.

    ``steps`` passes up to :data:`FULL_PASSES_UP_TO` members; beyond, the passes shrink in
    proportion, so that the optimiser takes as many steps as at that size (``4 * steps``
    minibatches of :data:`BATCH` members) whatever the number of species. The encoder and
    the decoder are shared by all species, so the work of fitting them need not grow
    with the species. Measured at 10,000 species (bench/RESULTS.md): 4x as many steps
    lowered the final behaviour loss from 0.296 to 0.230 and nRF from 0.703 to 0.684; a
    user who wants that can raise ``meta.steps``. Twice the steps also decode held-out
    species 11-13% more closely at 1,024-10,000 species, with the same trees (session 14);
    the rule stays, because at 10,000 species the fit and its held-out refit would then
    take the end-to-end run to 30 minutes or more on a 2-core CPU.
    """
    if members <= FULL_PASSES_UP_TO:
        return steps
    return max(1, int(round(steps * FULL_PASSES_UP_TO / members)))


def _species_folds(groups: np.ndarray, seed: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train members, held-out members) for k folds over species."""
    uniq = np.unique(groups)
    k = min(k, len(uniq))
    perm = make_rng(seed, "mae", "folds").permutation(uniq)
    parts = np.array_split(perm, k)
    out = []
    for p in parts:
        held = np.isin(groups, p)
        out.append((np.flatnonzero(~held), np.flatnonzero(held)))
    return out


# ---------------------------------------------------------------------------- public


def fit_meta_autoencoder(
    bank: Any,
    config: MetaConfig | None = None,
    *,
    seed: int | None = None,
    progress: bool = True,
    side_information: Any = None,
) -> MetaResult:
    """Fit a meta-autoencoder over the AEs of a bank: codes in, working AEs out.

    Parameters
    ----------
    bank
        An :class:`~evosim.train.AEBank`, or an :class:`~evosim.train.AEBankSet` of several
        architectures (then the representation must be ``functional``).
    config
        :class:`~evosim.scenario.MetaConfig` (representation, code size, prior, decoder,
        loss weights, steps...). Default: ``MetaConfig()``.
    seed
        Seeds probes, region points, initialisation, minibatches and noise. ``None``: the
        run's seed recorded in the bank (``bank.info["seed"]``).
    progress
        Show a progress bar on stderr.
    side_information
        Only with ``meta.side_information`` set: the species-level variable the code must
        predict, a mapping species -> ``[q]`` values (or a number) covering the bank's
        species, or an ``[S, q]`` array in the bank's species order
        (:func:`evosim.pipeline.side_information_of` reads it from a simulation).

    Returns
    -------
    MetaResult
        ``latents [S, k]``, ``member_latents [M, k]``, ``encode``, ``decode`` (working AEs
        of ``meta.decode_architecture``), ``generate``, ``save``; with ``prior:
        archetypal`` also ``archetype_weights [S, k + 1]``, ``archetype_latents`` and
        ``decode_archetypes``.

    Notes
    -----
    Nothing here sees a tree or a trait: only the bank's AEs, its species labels (to keep
    replicates together and average them) and its pooled reference inputs; and, only
    when the user asks for it with ``meta.side_information``, the given side information.
    """
    config = config if config is not None else MetaConfig()
    t0 = time.perf_counter()
    seed = resolve_seed(bank, seed)
    device = resolve_device(config.device, "meta.device")
    rep, x = RepresentationMap.fit_transform(
        bank,
        config.representation,
        n_probes=config.probes,
        off_manifold_fraction=config.off_manifold_fraction,
        seed=seed,
        standardize=config.standardize,
    )
    frame = Frame.fit(x, seed=seed)
    m = x.shape[0]
    species = list(bank.species)
    replicates = int(bank.replicates)
    if m != len(species) * replicates:
        raise ValueError(f"bank has {m} members, expected {len(species)} species x {replicates}")
    probes = (
        rep.probes
        if rep.probes is not None
        else make_probes(bank, config.probes, config.off_manifold_fraction, seed)
    )
    spec = decode_spec(bank, config)
    theta0, theta0_from = _theta0(bank, spec, seed)
    beh = behaviour_targets(bank, probes, seed=seed)
    groups = np.arange(m) // replicates
    side_values = _side_matrix(side_information, species, config)
    side = None
    if side_values is not None:
        side_mean = side_values.mean(axis=0)
        side_scale = side_values.std(axis=0)
        side_scale = np.where(side_scale > 1e-12, side_scale, 1.0)
        standard = (side_values - side_mean) / side_scale
        side = torch.as_tensor(np.repeat(standard, replicates, axis=0), dtype=torch.float32)
    with torch.no_grad():
        coords = frame.coords(torch.as_tensor(x))
    prob = Problem(
        coords=coords.to(device),
        features=torch.as_tensor(x).to(device),
        groups=torch.as_tensor(groups, device=device),
        behaviour=beh.to(device),
        spec=spec,
        theta0={k: v.to(device) for k, v in theta0.items()},
        kind=rep.kind,
        rep_mean=torch.as_tensor(rep.mean).to(device),
        rep_scale=torch.as_tensor(rep.scale).to(device),
        frame=frame.to(device),
        law_codes=ae_model.encode(
            {k: v[None] for k, v in theta0.items()}, spec, torch.as_tensor(probes)
        )[0].detach(),
        side=None if side is None else side.to(device),
        distance_rows=_distance_rows(config, x, bank, beh, seed, device),
    )
    info: dict[str, Any] = {
        "seed": seed,
        "representation": config.representation,
        "n_features": int(x.shape[1]),
        "n_components": frame.dim,
        "decode_architecture": spec.to_dict(),
        "theta0": theta0_from,
    }
    if config.latent == "auto":
        candidates = [k for k in AUTO_LATENTS if k <= max(1, frame.dim)] or [1]
        folds = _species_folds(groups, seed, FOLDS)
        scores: dict[int, float] = {}
        for k in candidates:
            vals = []
            for f, (tr, va) in enumerate(folds):
                enc, dec, *_ = train_mae(prob, tr, None, config, k, seed, f"auto{k}-{f}")
                vals.append(evaluate(enc.to(device), dec.to(device), prob, va, config))
            scores[k] = float(np.mean(vals))
        best = min(scores.values())
        # The smallest code within 5% of the best held-out loss: extra dimensions must pay.
        latent = min(k for k in candidates if scores[k] <= best * 1.05 + 1e-12)
        info["latent_selection"] = {str(k): v for k, v in scores.items()}
    else:
        latent = int(config.latent)
    info["latent"] = latent
    encoder, decoder, encoder_init, curve, side_head = train_mae(
        prob, np.arange(m), None, config, latent, seed, "final", progress=progress
    )
    info["steps"] = int(curve["step"][-1]) if len(curve["step"]) else 0
    info["final_train_loss"] = float(curve["train"][-1]) if len(curve["train"]) else math.nan
    with torch.no_grad():
        mu, extra = encoder(coords)
    member_latents = mu.numpy().astype(np.float64)
    latents = member_latents.reshape(len(species), replicates, latent).mean(axis=1)
    member_weights = weights = None
    if config.prior == "archetypal":
        member_weights = extra["weights"].numpy().astype(np.float64)
        # the mean of simplex rows is on the simplex, and A Z* is linear: the species'
        # code is its mean weights times Z*
        weights = member_weights.reshape(len(species), replicates, -1).mean(axis=1)
    info["seconds"] = time.perf_counter() - t0
    info["device"] = str(device)
    log.info(
        "MAE: %s representation, %d features, code size %d, final behaviour loss %.3g",
        rep.kind,
        x.shape[1],
        latent,
        info["final_train_loss"],
    )
    return MetaResult(
        config=config,
        representation=rep,
        frame=frame,
        probes=np.asarray(probes, dtype=np.float32),
        encoder=encoder,
        decoder=decoder,
        encoder_init=encoder_init,
        spec=spec,
        species=species,
        replicates=replicates,
        member_latents=member_latents,
        latents=latents,
        losses={"step": curve["step"], "train": curve["train"], "val": curve["val"]},
        info=info,
        archetype_weights=weights,
        member_archetype_weights=member_weights,
        side_head=side_head,
        side_information=(
            None
            if side_values is None
            else {
                "name": config.side_information,
                "species": list(species),
                "values": side_values.tolist(),
                "mean": side_mean.tolist(),
                "scale": side_scale.tolist(),
            }
        ),
    )


def _side_matrix(
    side_information: Any, species: list[str], config: MetaConfig
) -> np.ndarray | None:
    """``[S, q]`` side information in ``species`` order, or ``None`` (checked against config)."""
    wanted = config.side_information != "none"
    if side_information is None:
        if wanted:
            raise ValueError(
                f"meta.side_information is {config.side_information!r} but no side "
                "information was given (pass side_information=, e.g. from "
                "evosim.pipeline.side_information_of(sim, config))"
            )
        return None
    if not wanted:
        raise ValueError(
            "side_information was given but meta.side_information is none: set it to say "
            "what the values are"
        )
    if isinstance(side_information, dict):
        missing = [s for s in species if s not in side_information]
        if missing:
            raise ValueError(f"side_information has no value for species {missing[0]!r}")
        rows = [np.atleast_1d(np.asarray(side_information[s], dtype=np.float64)) for s in species]
        values = np.stack(rows)
    else:
        values = np.asarray(side_information, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
    if values.ndim != 2 or values.shape[0] != len(species):
        raise ValueError(
            f"side_information must be [S, q] with S = {len(species)}, got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError("side_information must be finite")
    return values
