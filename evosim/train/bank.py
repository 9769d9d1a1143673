"""AEBank: every species' trained autoencoder, stacked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evosim import runio
from evosim.train import model as _model
from evosim.train import variants as _variants
from evosim.train.identify import IdentifierMixin
from evosim.train.spec import AESpec

__all__ = ["AEBank", "plain_data"]

_FORMAT = "evosim.aebank"
_VERSION = 1


def _to_torch(x: Any) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, True
    return torch.as_tensor(np.asarray(x, dtype=np.float32)), False


def _back(y: torch.Tensor, was_torch: bool) -> Any:
    return y if was_torch else y.detach().cpu().numpy()


class AEBank(IdentifierMixin):
    """M = S x R trained autoencoders with stacked parameters (species-major members).

    Member ``m`` is species ``species[m // replicates]``, replicate ``m % replicates``.

    Attributes
    ----------
    spec : AESpec
    params : dict[str, torch.Tensor]
        CPU float32, each ``[M, ...]``; weights are ``[M, in, out]``; keys in layer order.
    species : list[str]
        The S species, in order.
    replicates : int
        R.
    losses : dict[str, np.ndarray]
        ``"train"`` and ``"val"`` ``[M]``: reconstruction MSE of the deterministic
        reconstruction on the member's training / validation instances (NaN when there
        are no validation instances); ``"curve"`` ``[M, n_points]``: the training objective
        averaged over consecutive blocks of steps (NaN after a member diverged).
    diverged : np.ndarray
        ``[M]`` bool: the member's loss became NaN/inf and it was frozen there.
    reference_inputs : np.ndarray or None
        ``[P, D]`` float32, a pooled sample of training inputs (probes for later stages).
    info : dict
        Provenance (seed, config, steps, device, precision, ...).

    Inputs and outputs of :meth:`encode` and friends keep their type: NumPy in, NumPy out;
    torch in, torch out (differentiable, on the input's device).

    :meth:`identify` names the species of new instances (after
    :meth:`calibrate_identification`); :meth:`selected_features` (concrete AEs) and
    :meth:`bits_per_instance` (MDL AEs) read what those variants learned.
    """

    def __init__(
        self,
        spec: AESpec,
        params: dict[str, torch.Tensor],
        species: Sequence[str],
        replicates: int = 1,
        *,
        losses: dict[str, np.ndarray] | None = None,
        diverged: np.ndarray | None = None,
        reference_inputs: np.ndarray | None = None,
        info: dict[str, Any] | None = None,
    ):
        self.spec = spec
        shapes = spec.param_shapes()
        if list(params) != list(shapes):
            raise ValueError(f"params keys must be {list(shapes)} in order, got {list(params)}")
        self.species = [str(s) for s in species]
        if len(set(self.species)) != len(self.species):
            raise ValueError("species names must be unique")
        self.replicates = int(replicates)
        if self.replicates < 1:
            raise ValueError(f"replicates must be >= 1, got {replicates}")
        m = len(self.species) * self.replicates
        self.params = {}
        for k, v in params.items():
            v = torch.as_tensor(v).detach().to("cpu", torch.float32)
            if tuple(v.shape) != (m, *shapes[k]):
                raise ValueError(
                    f"params[{k!r}] must have shape {(m, *shapes[k])}, got {tuple(v.shape)}"
                )
            self.params[k] = v.contiguous()
        nan = np.full(m, np.nan)
        self.losses = (
            losses
            if losses is not None
            else {"train": nan.copy(), "val": nan.copy(), "curve": np.full((m, 0), np.nan)}
        )
        self.diverged = (
            np.zeros(m, dtype=bool) if diverged is None else np.asarray(diverged, dtype=bool)
        )
        self.reference_inputs = (
            None if reference_inputs is None else np.asarray(reference_inputs, dtype=np.float32)
        )
        self.info = dict(info or {})
        self._device_params: dict[str, dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_params(
        cls,
        spec: AESpec,
        params: dict[str, torch.Tensor],
        species: Sequence[str],
        replicates: int = 1,
        *,
        reference_inputs: np.ndarray | None = None,
    ) -> AEBank:
        """A bank from stacked parameters alone (losses NaN, nothing diverged)."""
        return cls(spec, params, species, replicates, reference_inputs=reference_inputs)

    # ------------------------------------------------------------------ members

    @property
    def n_members(self) -> int:
        """M = S x R."""
        return len(self.species) * self.replicates

    @property
    def member_species(self) -> list[str]:
        """``[M]`` species of each member."""
        return [s for s in self.species for _ in range(self.replicates)]

    def member_index(self, species: str, replicate: int = 0) -> int:
        """The member index of ``(species, replicate)``."""
        try:
            i = self.species.index(species)
        except ValueError:
            raise ValueError(f"unknown species {species!r}") from None
        if not 0 <= replicate < self.replicates:
            raise ValueError(f"replicate must be in [0, {self.replicates}), got {replicate}")
        return i * self.replicates + replicate

    def _members(self, species: Any, replicate: int) -> tuple[list[int], bool]:
        """Member indices for a ``species`` selector, and whether it was a single one."""
        if species is None:
            return [self.member_index(s, replicate) for s in self.species], False
        if isinstance(species, (str, int, np.integer)):
            return self._members([species], replicate)[0], True
        out = []
        for s in species:
            if isinstance(s, str):
                out.append(self.member_index(s, replicate))
            else:
                i = int(s)
                if not 0 <= i < self.n_members:
                    raise ValueError(f"member index must be in [0, {self.n_members}), got {i}")
                out.append(i)
        return out, False

    def _params_on(
        self, device: torch.device, members: list[int] | None = None
    ) -> dict[str, torch.Tensor]:
        key = str(device)
        if key not in self._device_params:
            self._device_params[key] = {k: v.to(device) for k, v in self.params.items()}
        p = self._device_params[key]
        if members is None:
            return p
        idx = torch.as_tensor(members, device=device)
        return {k: v.index_select(0, idx) for k, v in p.items()}

    def _apply(self, fn: str, x: Any, species: Any, replicate: int) -> Any:
        members, single = self._members(species, replicate)
        xt, was_torch = _to_torch(x)
        params = self._params_on(xt.device, members)
        inputs = xt.to(torch.float32)
        if inputs.dim() == 3 and inputs.shape[0] != len(members):
            raise ValueError(f"x has {inputs.shape[0]} input sets for {len(members)} members")
        if single and inputs.dim() == 2:
            inputs = inputs.unsqueeze(0)
        with torch.set_grad_enabled(was_torch and torch.is_grad_enabled()):
            y = getattr(_model, fn)(params, self.spec, inputs)
        if single:
            y = y[0]
        return _back(y, was_torch)

    def encode(self, x: Any, species: Any = None, *, replicate: int = 0) -> Any:
        """Codes of ``x`` under the selected members' encoders.

        Parameters
        ----------
        x
            ``[P, D]`` inputs (shared by every selected member) or ``[K, P, D]`` (one set per
            selected member).
        species
            A species name (returns ``[P, latent]``), a member index (int), a list of names
            / member indices (returns ``[K, P, latent]``), or None for every species
            (``[S, P, latent]``). Names select replicate ``replicate``.
        replicate
            Which replicate a species name means.
        """
        return self._apply("encode", x, species, replicate)

    def decode(self, z: Any, species: Any = None, *, replicate: int = 0) -> Any:
        """Reconstructions of codes ``z`` (``[P, latent]`` or ``[K, P, latent]``); see encode."""
        return self._apply("decode", z, species, replicate)

    def reconstruct(self, x: Any, species: Any = None, *, replicate: int = 0) -> Any:
        """``decode(encode(x))`` (the posterior mean's decoding for a VAE); see encode."""
        return self._apply("reconstruct", x, species, replicate)

    def encode_all(self, x: Any) -> Any:
        """Every member's codes of the same inputs: ``[P, D] -> [M, P, latent]``."""
        return self.encode(x, list(range(self.n_members)))

    def reconstruct_all(self, x: Any) -> Any:
        """Every member's reconstructions of the same inputs: ``[P, D] -> [M, P, D]``."""
        return self.reconstruct(x, list(range(self.n_members)))

    def module(self, i: int) -> torch.nn.Module:
        """Member ``i`` as an ordinary :class:`torch.nn.Module` (CPU, float32).

        ``module(i)(x)`` equals ``reconstruct(x, i)``; it also has ``.encode`` and ``.decode``.
        """
        if not 0 <= int(i) < self.n_members:
            raise ValueError(f"member index must be in [0, {self.n_members}), got {i}")
        return _model.SpeciesAE(self.spec, {k: v[int(i)] for k, v in self.params.items()})

    def subset(self, members: Sequence[int] | Sequence[str]) -> AEBank:
        """A bank of some members.

        Parameters
        ----------
        members
            Species names (every replicate of each is kept) or member indices. Indices must
            come in whole, equal-sized, species-major groups (e.g. all of a species'
            replicates, or one replicate of each species).
        """
        members = list(members)
        if members and all(isinstance(m, str) for m in members):
            idx = [self.member_index(s, r) for s in members for r in range(self.replicates)]
            species, reps = list(members), self.replicates
        else:
            idx = [int(m) for m in members]
            if any(not 0 <= i < self.n_members for i in idx):
                raise ValueError(f"member indices must be in [0, {self.n_members})")
            ms = self.member_species
            species = []
            for i in idx:
                if not species or species[-1] != ms[i]:
                    species.append(ms[i])
            reps = len(idx) // max(len(species), 1)
            if (
                len(set(species)) != len(species)
                or reps * len(species) != len(idx)
                or any(ms[i] != species[j // reps] for j, i in enumerate(idx))
            ):
                raise ValueError(
                    "members must form equal-sized groups of one species each, species-major"
                )
        t = torch.as_tensor(idx, dtype=torch.long)
        return AEBank(
            self.spec,
            {k: v.index_select(0, t) for k, v in self.params.items()},
            species,
            reps,
            losses={k: np.asarray(v)[idx] for k, v in self.losses.items()},
            diverged=self.diverged[idx],
            reference_inputs=self.reference_inputs,
            info=self.info,
        )

    # ------------------------------------------------------------------ variants

    def selected_features(self, species: Any = None, *, replicate: int = 0) -> np.ndarray:
        """Input features a concrete AE selects (argmax of each selector row's logits).

        Parameters
        ----------
        species
            A species name or member index (returns ``[k]``), a list of them
            (``[K, k]``), or None for every species (``[S, k]``).
        replicate
            Which replicate a species name means.

        Returns
        -------
        np.ndarray
            int64 indices into the D inputs, in selector-row order (two rows may pick
            the same feature).
        """
        if self.spec.variant != "concrete":
            raise ValueError(f"selected_features needs concrete AEs, not {self.spec.variant!r}")
        members, single = self._members(species, replicate)
        logits = self.params["selector.logits"][torch.as_tensor(members, dtype=torch.long)]
        out = _variants.selected_indices(logits).numpy()
        return out[0] if single else out

    def bits_per_instance(self, x: Any, species: Any = None, *, replicate: int = 0) -> np.ndarray:
        """Description length in bits of each instance's quantised code, for MDL AEs.

        ``-sum_j log2 P(q_j)`` of the integer code ``q = round(encoder(x))`` under the
        member's learned prior (:mod:`evosim.train.variants`).

        Parameters
        ----------
        x
            ``[P, D]`` instances, or ``[K, P, D]`` (one set per selected member).
        species
            As in :meth:`selected_features`.

        Returns
        -------
        np.ndarray
            ``[P]`` for one species, else ``[K, P]`` (float64).
        """
        if self.spec.variant != "mdl":
            raise ValueError(f"bits_per_instance needs mdl AEs, not {self.spec.variant!r}")
        members, single = self._members(species, replicate)
        xt, _ = _to_torch(x)
        xt = xt.detach().to("cpu", torch.float32)
        if single and xt.dim() == 2:
            xt = xt.unsqueeze(0)
        params = self._params_on(torch.device("cpu"), members)
        with torch.inference_mode():
            bits = _variants.code_bits(_model.encode(params, self.spec, xt), params)
        out = bits.double().numpy()
        return out[0] if single else out

    # ------------------------------------------------------------------ groups

    @property
    def is_mixed(self) -> bool:
        """False: every member shares one architecture (see :class:`~evosim.train.AEBankSet`)."""
        return False

    @property
    def groups(self) -> list[AEBank]:
        """The single-architecture banks this bank is made of: ``[self]``."""
        return [self]

    @property
    def group_of(self) -> np.ndarray:
        """``[S]`` index into :attr:`groups` of each species' architecture (all 0)."""
        return np.zeros(len(self.species), dtype=np.int64)

    def group_members(self, group: int) -> np.ndarray:
        """Member indices (in this bank) of group ``group``'s members, in the group's order."""
        if group != 0:
            raise ValueError(f"group must be 0 for a single-architecture bank, got {group}")
        return np.arange(self.n_members)

    # ------------------------------------------------------------------ files

    def payload(self) -> dict[str, Any]:
        """Plain tensors and data (what :meth:`save` writes; safe for ``weights_only``)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "spec": self.spec.to_dict(),
            "params": {k: v.contiguous() for k, v in self.params.items()},
            "species": list(self.species),
            "replicates": self.replicates,
            "losses": {
                k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in self.losses.items()
            },
            "diverged": torch.as_tensor(self.diverged, dtype=torch.bool),
            "reference_inputs": None
            if self.reference_inputs is None
            else torch.as_tensor(self.reference_inputs),
            "info": plain_data(self.info),
        }

    @classmethod
    def from_payload(cls, payload: Any, source: str = "payload") -> AEBank:
        """Inverse of :meth:`payload`; ``source`` names the file in the error raised."""
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{source} is not an evosim AE bank")
        ref = payload.get("reference_inputs")
        return cls(
            AESpec.from_dict(payload["spec"]),
            payload["params"],
            payload["species"],
            payload["replicates"],
            losses={k: v.numpy() for k, v in payload["losses"].items()},
            diverged=payload["diverged"].numpy(),
            reference_inputs=None if ref is None else ref.numpy(),
            info=payload.get("info", {}),
        )

    def save(self, path: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
        """Write ``aes.pt`` atomically: spec, parameters and results as plain tensors/data.

        Loadable on a CPU-only machine with ``torch.load(path, weights_only=True)``.
        ``provenance`` (plain data) is stored beside the bank.
        """
        payload = self.payload()
        payload["provenance"] = plain_data(provenance)
        return runio.torch_save(path, payload)

    @classmethod
    def load(cls, path: str | Path) -> AEBank:
        """Read a bank written by :meth:`save` (onto the CPU, whatever device wrote it)."""
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls.from_payload(payload, str(path))

    def __repr__(self) -> str:
        s = self.spec
        arch = "-".join(str(w) for w in [s.input_dim, *s.hidden, s.latent])
        return (
            f"AEBank({len(self.species)} species x {self.replicates} replicates, "
            f"{s.variant} {arch} {s.activation}, {int(self.diverged.sum())} diverged)"
        )


def plain_data(x: Any) -> Any:
    """Provenance as JSON-like data (safe for ``weights_only`` loading)."""
    if isinstance(x, dict):
        return {str(k): plain_data(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_data(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)
