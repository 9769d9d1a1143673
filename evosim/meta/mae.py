"""The meta-autoencoder: an autoencoder over the representations of trained AEs.

Each trained AE (a member of an :class:`~evosim.train.AEBank`) becomes one vector
(:mod:`evosim.meta.representation`); the MAE compresses those vectors to a small code,
one point per member, averaged over replicates into one point per species. Its decoder
maps any code back to a representation, and for ``raw``/``aligned`` representations
on to the parameters of a working AE.

Few training points (one per species or replicate) make overfitting the main risk:
AdamW weight decay, and with replicates early stopping on held-out replicates
(the number of steps is chosen on held-out replicates, then the model is refitted on
every member for that many steps).

Input frame. The M representations span at most M - 1 dimensions; the MAE reads their
principal-axis coordinates (at most 256, one global scale) instead of the F >> M raw
features. Nothing is lost for the members it is fitted on, the first layer shrinks from
F x hidden to r x hidden, and decoding maps back through the same axes. (The axes are
computed from every member, held-out replicates included: early stopping and the
``auto`` code size therefore see the held-out members' directions, though never their
codes.)

Options (:class:`~evosim.scenario.MetaConfig`):

- ``distance_weight`` (default 1): a scale-free stress term that keeps the pairwise
  distances of the codes proportional to those of the representations (as in
  metric-MDS regularised autoencoders). Without it an MLP code is free to bend and
  stretch the few training points, and tree recovery from code distances suffers
  most at small code sizes (bench_recovery.py; report of the meta helper).

- ``latent``: code size, or ``"auto"`` to choose among :data:`AUTO_LATENTS` by held-out
  reconstruction error (one replicate held out per species when there are replicates,
  else 4-fold cross-validation over species); the choice is in ``result.info``.
- ``prior``: ``none``; ``variational`` (a Gaussian posterior with a KL term toward
  N(0, I), Kingma & Welling 2014; latents are posterior means); ``archetypal`` (Deep
  Archetypal Analysis, Keller et al. 2021: the code is a convex combination, by softmax
  weights, of ``archetypes`` learnt points).
- ``contrastive_weight``: NT-Xent (Chen et al. 2020) on the codes, with the replicates of
  one species as positive pairs, as in hyper-representations (Schuerholt et al. 2021).
- ``functional_weight``: for ``raw``/``aligned``, the AE decoded from the MAE's output
  must reproduce the original AE's reconstructions of probe inputs (differentiably:
  the decoded parameters drive a batched forward pass).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evosim.devices import resolve_device
from evosim.meta.representation import RepresentationMap, make_probes
from evosim.runio import torch_load, torch_save
from evosim.scenario import MetaConfig
from evosim.seeding import rng as make_rng
from evosim.seeding import torch_generator
from evosim.train.model import activation_fn

__all__ = ["AUTO_LATENTS", "MetaResult", "ae_reconstruct", "fit_meta_autoencoder"]

log = logging.getLogger(__name__)

#: Candidate code sizes for ``latent: auto``.
AUTO_LATENTS = (2, 4, 8, 16)
#: Evaluate the held-out loss every this many steps.
EVAL_EVERY = 25
#: Members per minibatch (smaller sets train full-batch).
BATCH = 256
#: Probes used by the functional loss term.
FUNCTIONAL_PROBES = 64
#: NT-Xent temperature.
TEMPERATURE = 0.5
#: At most this many principal axes of the representation enter the MAE.
MAX_COMPONENTS = 256


@contextlib.contextmanager
def _single_thread(device: torch.device) -> Iterator[None]:
    """Run the MAE's tiny matrix products on one CPU thread, then restore the setting.

    The MAE's layers are at most a few hundred wide; splitting such products across
    threads costs more than it saves, and on a busy machine (other processes on the
    cores) the threads' spin-waits made fits ~9x slower than one thread.
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


# ---------------------------------------------------------------------------- AE forward


def ae_reconstruct(params: dict[str, torch.Tensor], spec: Any, x: torch.Tensor) -> torch.Tensor:
    """Batched AE reconstruction from stacked parameters: ``x [P, D] -> [n, P, D]``.

    Mirrors :class:`~evosim.train.AESpec`: hidden layers use ``spec.activation``; code and
    output layers are linear; a ``variational`` encoder's output is ``[mu, logvar]`` and
    reconstruction uses ``mu``. Differentiable in ``params``.
    """
    act = activation_fn(spec.activation)
    n = next(iter(params.values())).shape[0]
    h = x.unsqueeze(0).expand(n, *x.shape)
    for part in ("encoder", "decoder"):
        idx = sorted(int(k.split(".")[1]) for k in params if k.startswith(part) and "weight" in k)
        for j, i in enumerate(idx):
            h = torch.baddbmm(
                params[f"{part}.{i}.bias"].unsqueeze(1), h, params[f"{part}.{i}.weight"]
            )
            if j < len(idx) - 1:
                h = act(h)
        if part == "encoder" and spec.variant == "variational":
            h = h[..., : spec.latent]
    return h


# ---------------------------------------------------------------------------- the network


def _linear(n_in: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default init drawn from ``gen`` (not the global RNG)."""
    layer = nn.Linear(n_in, n_out)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)
    return layer


class _MAE(nn.Module):
    def __init__(
        self,
        n_features: int,
        hidden: list[int],
        latent: int,
        prior: str,
        archetypes: int,
        gen: torch.Generator,
    ) -> None:
        super().__init__()
        self.prior = prior
        self.latent = latent
        head = {"none": latent, "variational": 2 * latent, "archetypal": archetypes}[prior]
        widths = [n_features, *hidden]
        self.encoder = nn.ModuleList(
            [_linear(a, b, gen) for a, b in zip(widths[:-1], widths[1:])]
            + [_linear(widths[-1], head, gen)]
        )
        dwidths = [latent, *reversed(hidden), n_features]
        self.decoder = nn.ModuleList(
            [_linear(a, b, gen) for a, b in zip(dwidths[:-1], dwidths[1:])]
        )
        if prior == "archetypal":
            self.archetypes = nn.Parameter(torch.empty(archetypes, latent))
            with torch.no_grad():
                self.archetypes.normal_(0.0, 1.0, generator=gen)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(code mean [n, k], logvar or archetype weights or None)``."""
        h = x
        for layer in self.encoder[:-1]:
            h = F.elu(layer(h))
        h = self.encoder[-1](h)
        if self.prior == "variational":
            return h[:, : self.latent], h[:, self.latent :]
        if self.prior == "archetypal":
            w = torch.softmax(h, dim=1)
            return w @ self.archetypes, w
        return h, None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.decoder[:-1]:
            h = F.elu(layer(h))
        return self.decoder[-1](h)


@dataclass
class _Frame:
    """Principal-axis coordinates of the representation: ``c = (x - mean) V / scale``.

    The M training representations span at most M - 1 dimensions, so rotating them onto
    their principal axes loses nothing for them (and projects new ones onto that span),
    while the MAE's first layer shrinks from F inputs to at most ``MAX_COMPONENTS``.
    One global ``scale`` makes the coordinates unit-RMS without changing their geometry.
    """

    mean: torch.Tensor  # [F]
    basis: torch.Tensor  # [F, r]
    scale: float

    @classmethod
    def fit(cls, x: np.ndarray) -> _Frame:
        t = torch.as_tensor(x, dtype=torch.float64)
        mean = t.mean(dim=0)
        _, sv, vt = torch.linalg.svd(t - mean, full_matrices=False)
        keep = int((sv > 1e-6 * sv.max().clamp_min(1e-300)).sum().clamp_min(1))
        keep = min(keep, MAX_COMPONENTS)
        basis = vt[:keep].T
        coords = (t - mean) @ basis
        scale = float(coords.pow(2).mean().sqrt().clamp_min(1e-12))
        return cls(mean.float(), basis.float().contiguous(), scale)

    def to(self, device: torch.device) -> _Frame:
        return _Frame(self.mean.to(device), self.basis.to(device), self.scale)

    def coords(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.basis / self.scale

    def features(self, c: torch.Tensor) -> torch.Tensor:
        return c * self.scale @ self.basis.T + self.mean


def _distance_loss(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Scale-free stress between pairwise distances of inputs ``x`` and codes ``z``."""
    n = x.shape[0]
    if n < 3:
        return z.new_zeros(())
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    dx = torch.cdist(x, x)[iu[0], iu[1]]
    dz = (z[:, None, :] - z[None, :, :]).pow(2).sum(-1).add(1e-12).sqrt()[iu[0], iu[1]]
    return (dz / dz.mean().clamp_min(1e-12) - dx / dx.mean().clamp_min(1e-12)).pow(2).mean()


def _nt_xent(z: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """NT-Xent over codes ``[n, k]``; members with the same group id are positives."""
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


@dataclass
class _Problem:
    """Everything a training run needs, on the training device."""

    x: torch.Tensor  # [M, r] principal-axis coordinates of the representation
    groups: torch.Tensor  # [M] species index
    rep: RepresentationMap
    frame: _Frame
    spec: Any = None
    probes: torch.Tensor | None = None  # [P_f, D] for the functional term
    targets: torch.Tensor | None = None  # [M, P_f, D] original reconstructions


def _loss(
    model: _MAE,
    prob: _Problem,
    idx: torch.Tensor,
    config: MetaConfig,
    gen: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, representation reconstruction MSE) on members ``idx``."""
    x = prob.x[idx]
    mu, extra = model.encode(x)
    z = mu
    total = x.new_zeros(())
    if config.prior == "variational":
        assert extra is not None
        if gen is not None:
            eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * extra)
        kl = 0.5 * (mu.pow(2) + extra.exp() - 1.0 - extra).sum(dim=1).mean()
        total = total + config.kl_weight * kl
    out = model.decode(z)
    rec = F.mse_loss(out, x)
    total = total + rec
    if config.distance_weight > 0:
        total = total + config.distance_weight * _distance_loss(x, mu)
    if config.contrastive_weight > 0:
        total = total + config.contrastive_weight * _nt_xent(mu, prob.groups[idx])
    if config.functional_weight > 0 and prob.targets is not None:
        params = prob.rep.to_params(prob.frame.features(out))
        pred = ae_reconstruct(params, prob.spec, prob.probes)
        total = total + config.functional_weight * F.mse_loss(pred, prob.targets[idx])
    return total, rec


def _batches(
    groups: np.ndarray, rng: np.random.Generator, steps: int, batch: int
) -> list[np.ndarray] | None:
    """Minibatches of whole species (so replicates can be positive pairs); None = full batch."""
    if len(groups) <= batch:
        return None
    uniq = np.unique(groups)
    per = max(1, int(round(batch * len(uniq) / len(groups))))
    out = []
    for _ in range(steps):
        chosen = rng.choice(uniq, size=min(per, len(uniq)), replace=False)
        out.append(np.flatnonzero(np.isin(groups, chosen)))
    return out


def _train(
    prob: _Problem,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    config: MetaConfig,
    latent: int,
    steps: int,
    seed: int,
    tag: str,
    progress: bool,
) -> tuple[_MAE, dict[str, Any], dict[str, Any]]:
    """One MAE fit; returns (model at its best/last step, init state, curve info)."""
    device = prob.x.device
    gen = torch_generator(seed, "mae", "init", tag)
    model = _MAE(prob.x.shape[1], list(config.hidden), latent, config.prior, config.archetypes, gen)
    init_state = copy.deepcopy(model.state_dict())
    model.to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True
    )
    noise = torch_generator(seed, "mae", "noise", tag, device=device)
    order = make_rng(seed, "mae", "batches", tag)
    batches = _batches(prob.groups.cpu().numpy()[train_idx], order, steps, BATCH)
    tr = torch.as_tensor(train_idx, device=device)
    va = torch.as_tensor(val_idx, device=device) if val_idx is not None else None
    curve_step, curve_train, curve_val = [], [], []
    best = (math.inf, 0, None)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"MAE {tag}", leave=False)
    for step in range(1, steps + 1):
        model.train()
        idx = tr if batches is None else tr[torch.as_tensor(batches[step - 1], device=device)]
        loss, rec = _loss(model, prob, idx, config, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % EVAL_EVERY == 0 or step == steps:
            curve_step.append(step)
            curve_train.append(float(rec.detach()))
            if va is not None:
                model.eval()
                with torch.no_grad():
                    _, vrec = _loss(model, prob, va, config, None)
                v = float(vrec)
                curve_val.append(v)
                if v < best[0]:
                    best = (v, step, copy.deepcopy(model.state_dict()))
            if bar is not None:
                bar.update(step - bar.n)
    if bar is not None:
        bar.close()
    info: dict[str, Any] = {
        "step": np.asarray(curve_step),
        "train": np.asarray(curve_train),
        "val": np.asarray(curve_val),
        "best_step": steps,
        "best_val": float("nan"),
    }
    if va is not None and best[2] is not None:
        info["best_step"], info["best_val"] = best[1], best[0]
        model.load_state_dict(best[2])
    return model.cpu(), init_state, info


# ---------------------------------------------------------------------------- result


@dataclass
class MetaResult:
    """A fitted meta-autoencoder and the latent point of every member and species.

    Attributes
    ----------
    latents
        ``[S, k]`` species means of the member codes (species in ``species`` order).
    member_latents
        ``[M, k]`` one code per member (species-major, like the bank).
    species, replicates
        As in the bank the MAE was fitted on.
    losses
        ``{"step": [n], "train": [n], "val": [n] (empty without replicates)}``: the
        representation reconstruction MSE (standardised units) of the final fit.
    info
        Chosen code size, early stopping, latent-size selection scores, timings.
    config
        The :class:`~evosim.scenario.MetaConfig` used.
    """

    config: MetaConfig
    representation: RepresentationMap
    frame: _Frame
    model: _MAE
    init_state: dict[str, torch.Tensor]
    spec: Any
    species: list[str]
    replicates: int
    member_latents: np.ndarray
    latents: np.ndarray
    losses: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def latent_dim(self) -> int:
        """k, the code size."""
        return int(self.member_latents.shape[1])

    @property
    def kind(self) -> str:
        """The representation the MAE reads (``raw``, ``aligned`` or ``functional``)."""
        return self.representation.kind

    def represent(self, bank: Any) -> np.ndarray:
        """The MAE's input for a bank: standardised representation ``[M, F]``."""
        return self.representation.transform(bank)

    def encode_features(self, x: np.ndarray) -> np.ndarray:
        """Codes ``[n, k]`` (posterior means) of standardised representations ``[n, F]``."""
        self.model.eval()
        with torch.no_grad():
            c = self.frame.coords(torch.as_tensor(np.asarray(x, dtype=np.float32)))
            mu, _ = self.model.encode(c)
        return mu.numpy()

    def encode(self, bank: Any) -> np.ndarray:
        """Codes ``[M, k]`` of the members of any bank of the same AE architecture."""
        return self.encode_features(self.represent(bank))

    def untrained_encode(self, bank_or_features: Any) -> np.ndarray:
        """Codes from the MAE encoder at its random initialisation (a baseline)."""
        x = bank_or_features
        if not isinstance(x, np.ndarray):
            x = self.represent(x)
        fresh = copy.deepcopy(self.model)
        fresh.load_state_dict(self.init_state)
        fresh.eval()
        with torch.no_grad():
            mu, _ = fresh.encode(
                self.frame.coords(torch.as_tensor(np.asarray(x, dtype=np.float32)))
            )
        return mu.numpy()

    def decode_features(self, z: np.ndarray) -> np.ndarray:
        """Standardised representations ``[n, F]`` decoded from codes ``[n, k]``."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float32))
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"codes must have {self.latent_dim} columns, got shape {z.shape}")
        self.model.eval()
        with torch.no_grad():
            return self.frame.features(self.model.decode(torch.as_tensor(z))).numpy()

    def decode(self, z: np.ndarray, *, species: list[str] | None = None) -> Any:
        """Working AEs decoded from codes.

        Parameters
        ----------
        z
            ``[n, k]`` codes (e.g. ``latents`` or any point of the latent space).
        species
            Names of the decoded AEs (default ``decoded_1`` .. ``decoded_n``).

        Returns
        -------
        AEBank or np.ndarray
            For ``raw``/``aligned``: an :class:`~evosim.train.AEBank` of ``n`` working
            AEs. For ``functional`` there are no weights to decode: the array
            ``[n, P, D]`` of decoded reconstructions of the probe inputs
            (``self.representation.probes``), with a ``UserWarning`` saying so.
        """
        x = self.decode_features(z)
        n = x.shape[0]
        if self.kind == "functional":
            warnings.warn(
                "functional representation: decode() returns the decoded AEs' reconstructions "
                "of the probe inputs [n, P, D], not an AEBank (there are no weights to decode)",
                UserWarning,
                stacklevel=2,
            )
            probes = self.representation.probes
            assert probes is not None
            recon = self.representation.inverse(x)[:, : self.representation.n_recon_features]
            return np.asarray(recon, dtype=np.float32).reshape(n, *probes.shape)
        from evosim.train import AEBank

        params = {
            k: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float32)
            for k, v in self.representation.to_params(x).items()
        }
        names = species if species is not None else [f"decoded_{i + 1}" for i in range(n)]
        if len(names) != n:
            raise ValueError(f"species must have {n} names, got {len(names)}")
        return AEBank.from_params(self.spec, params, list(names), replicates=1)

    def save(self, path: str | Path) -> Path:
        """Write everything needed to :meth:`load` it (``mae.pt``), atomically."""
        return torch_save(
            path,
            {
                "format": "evosim.mae/1",
                "config": self.config.model_dump(mode="json"),
                "representation": self.representation.state(),
                "frame": {
                    "mean": self.frame.mean,
                    "basis": self.frame.basis,
                    "scale": self.frame.scale,
                },
                "arch": {
                    "n_features": int(self.frame.basis.shape[1]),
                    "latent": self.latent_dim,
                },
                "model": self.model.state_dict(),
                "init_state": self.init_state,
                "spec": self.spec.to_dict() if hasattr(self.spec, "to_dict") else self.spec,
                "species": list(self.species),
                "replicates": int(self.replicates),
                "member_latents": self.member_latents,
                "latents": self.latents,
                "losses": self.losses,
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> MetaResult:
        """Read a file written by :meth:`save`."""
        d = torch_load(path)
        if not isinstance(d, dict) or d.get("format") != "evosim.mae/1":
            raise ValueError(f"{path}: not an evosim MAE file")
        config = MetaConfig.model_validate(d["config"])
        model = _MAE(
            d["arch"]["n_features"],
            list(config.hidden),
            d["arch"]["latent"],
            config.prior,
            config.archetypes,
            torch.Generator(),
        )
        model.load_state_dict(d["model"])
        spec = d["spec"]
        if isinstance(spec, dict):
            from evosim.train import AESpec

            spec = AESpec.from_dict(spec)
        return cls(
            config=config,
            representation=RepresentationMap.from_state(d["representation"]),
            frame=_Frame(**d["frame"]),
            model=model,
            init_state=d["init_state"],
            spec=spec,
            species=d["species"],
            replicates=d["replicates"],
            member_latents=d["member_latents"],
            latents=d["latents"],
            losses=d["losses"],
            info=d["info"],
        )


# ---------------------------------------------------------------------------- fitting


def _folds(groups: np.ndarray, replicates: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Held-out splits: one replicate per species (R > 1) or 4 folds over species (R = 1)."""
    m = len(groups)
    if replicates > 1:
        rep = np.arange(m) % replicates
        held = [replicates - 1 - i for i in range(min(replicates, 2))]
        return [(np.flatnonzero(rep != r), np.flatnonzero(rep == r)) for r in held]
    k = min(4, m)
    perm = make_rng(seed, "mae", "folds").permutation(m)
    parts = np.array_split(perm, k)
    return [
        (np.sort(np.concatenate(parts[:i] + parts[i + 1 :])), np.sort(p))
        for i, p in enumerate(parts)
    ]


def fit_meta_autoencoder(
    bank: Any, config: MetaConfig | None = None, *, seed: int = 0, progress: bool = True
) -> MetaResult:
    """Fit a meta-autoencoder over the members of an AE bank.

    Parameters
    ----------
    bank
        An :class:`~evosim.train.AEBank` (``M = S * R`` members).
    config
        :class:`~evosim.scenario.MetaConfig` (representation, code size, prior, loss
        weights, steps...). Default: ``MetaConfig()``.
    seed
        Seeds probes, initialisation, minibatches and the variational noise.
    progress
        Show a progress bar on stderr.

    Returns
    -------
    MetaResult
        ``latents [S, k]``, ``member_latents [M, k]``, ``encode``, ``decode``, ``save``.

    Notes
    -----
    Nothing here sees a tree: only the bank's parameters, species labels (to average
    replicates and pair them) and reference inputs (for probes).
    """
    config = config if config is not None else MetaConfig()
    t0 = time.perf_counter()
    if config.functional_weight > 0 and config.representation == "functional":
        raise ValueError(
            "meta.functional_weight needs a weight representation (raw or aligned); "
            "a functional representation already is the probe outputs"
        )
    device = resolve_device(config.device, "meta.device")
    rep, x = RepresentationMap.fit_transform(
        bank,
        config.representation,
        n_probes=config.probes,
        off_manifold_fraction=config.off_manifold_fraction,
        seed=seed,
        standardize=config.standardize,
    )
    frame = _Frame.fit(x)
    m = x.shape[0]
    species = list(bank.species)
    replicates = int(bank.replicates)
    if m != len(species) * replicates:
        raise ValueError(f"bank has {m} members, expected {len(species)} species x {replicates}")
    groups = np.arange(m) // replicates
    with torch.no_grad():
        coords = frame.coords(torch.as_tensor(x))
    prob = _Problem(
        x=coords.to(device),
        groups=torch.as_tensor(groups, device=device),
        rep=rep,
        frame=frame.to(device),
        spec=bank.spec,
    )
    if config.functional_weight > 0:
        probes = make_probes(bank, FUNCTIONAL_PROBES, config.off_manifold_fraction, seed)
        with torch.no_grad():
            params = {k: torch.as_tensor(v) for k, v in bank.params.items()}
            targets = ae_reconstruct(params, bank.spec, torch.as_tensor(probes))
        prob.probes = torch.as_tensor(probes, device=device)
        prob.targets = targets.to(device)
    info: dict[str, Any] = {
        "representation": config.representation,
        "n_features": int(x.shape[1]),
        "n_components": int(frame.basis.shape[1]),
    }

    with _single_thread(device):
        return _fit(bank, config, seed, progress, rep, x, frame, coords, prob, groups, info, t0)


def _fit(
    bank: Any,
    config: MetaConfig,
    seed: int,
    progress: bool,
    rep: RepresentationMap,
    x: np.ndarray,
    frame: _Frame,
    coords: torch.Tensor,
    prob: _Problem,
    groups: np.ndarray,
    info: dict[str, Any],
    t0: float,
) -> MetaResult:
    m = x.shape[0]
    species = list(bank.species)
    replicates = int(bank.replicates)
    device = prob.x.device
    folds = _folds(groups, replicates, seed)
    steps = config.steps
    if config.latent == "auto":
        candidates = [k for k in AUTO_LATENTS if k <= coords.shape[1]] or [1]
        scores: dict[int, float] = {}
        stop_steps: dict[int, int] = {}
        for k in candidates:
            vals, bests = [], []
            for f, (tr, va) in enumerate(folds):
                _, _, c = _train(prob, tr, va, config, k, steps, seed, f"auto{k}-{f}", progress)
                vals.append(c["best_val"] if replicates > 1 else float(c["val"][-1]))
                bests.append(c["best_step"])
            scores[k] = float(np.mean(vals))
            stop_steps[k] = int(np.median(bests))
        best = min(scores.values())
        # The smallest code within 2% of the best held-out error: extra dimensions must pay.
        latent = min(k for k in candidates if scores[k] <= best * 1.02 + 1e-12)
        info["latent_selection"] = {str(k): v for k, v in scores.items()}
        if replicates > 1:
            steps = max(EVAL_EVERY, stop_steps[latent])
    else:
        latent = int(config.latent)
        if replicates > 1:
            tr, va = folds[0]
            _, _, c = _train(prob, tr, va, config, latent, steps, seed, "earlystop", progress)
            steps = max(EVAL_EVERY, int(c["best_step"]))
            info["early_stopping"] = {"best_step": steps, "best_val": c["best_val"]}
            info["early_stopping_curve"] = {"step": c["step"], "train": c["train"], "val": c["val"]}
    info["latent"] = latent
    info["steps"] = steps

    model, init_state, curve = _train(
        prob, np.arange(m), None, config, latent, steps, seed, "final", progress
    )
    model.eval()
    with torch.no_grad():
        mu, _ = model.encode(coords)
    member_latents = mu.numpy().astype(np.float64)
    latents = member_latents.reshape(len(species), replicates, latent).mean(axis=1)
    info["final_train_mse"] = float(curve["train"][-1]) if len(curve["train"]) else float("nan")
    info["seconds"] = time.perf_counter() - t0
    info["device"] = str(device)
    log.info("MAE: %s representation, %d features, code size %d", rep.kind, x.shape[1], latent)
    return MetaResult(
        config=config,
        representation=rep,
        frame=frame,
        model=model,
        init_state=init_state,
        spec=bank.spec,
        species=species,
        replicates=replicates,
        member_latents=member_latents,
        latents=latents,
        losses={"step": curve["step"], "train": curve["train"], "val": curve["val"]},
        info=info,
    )
