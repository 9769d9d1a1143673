"""AEBankSet: the species' autoencoders when they come in several architectures.

A world may give different species differently shaped AEs (``autoencoder.architectures``).
Each architecture's AEs are trained together as one :class:`~evosim.train.AEBank` (a
*group*); the set puts the groups back into the world's species order, so that later
stages see one member per (species, replicate) whatever its architecture.

Both classes share the group protocol: ``is_mixed``, ``groups``, ``group_of`` ``[S]`` and
``group_members(g)``; a plain bank is a set of one group.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evosim import runio
from evosim.train.bank import AEBank, plain_data
from evosim.train.identify import IdentifierMixin

__all__ = ["AEBankSet", "load_bank"]

_FORMAT = "evosim.aebankset"
_VERSION = 1


class AEBankSet(IdentifierMixin):
    """Species' AEs of several architectures, one :class:`AEBank` per architecture.

    Member ``m`` is species ``species[m // replicates]``, replicate ``m % replicates``,
    exactly as in an :class:`AEBank`; it lives in group ``group_of[m // replicates]``.

    Parameters
    ----------
    groups
        Single-architecture banks with the same number of replicates; every species is in
        exactly one of them.
    species
        The world's species order (default: the groups' species, group by group).
    reference_inputs
        ``[P, D]`` pooled training inputs of all species (default: the groups' pooled).
    info
        Provenance of the training.
    """

    def __init__(
        self,
        groups: Sequence[AEBank],
        species: Sequence[str] | None = None,
        *,
        reference_inputs: np.ndarray | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.groups: list[AEBank] = list(groups)
        if not self.groups:
            raise ValueError("an AEBankSet needs at least one group")
        reps = {g.replicates for g in self.groups}
        if len(reps) != 1:
            raise ValueError(f"every group must have the same replicates, got {sorted(reps)}")
        self.replicates = reps.pop()
        where: dict[str, tuple[int, int]] = {}
        for gi, g in enumerate(self.groups):
            for j, s in enumerate(g.species):
                if s in where:
                    raise ValueError(f"species {s!r} is in more than one group")
                where[s] = (gi, j)
        self.species = [str(s) for s in (species if species is not None else where)]
        if sorted(self.species) != sorted(where):
            raise ValueError("species must be exactly the groups' species")
        self.group_of = np.asarray([where[s][0] for s in self.species], dtype=np.int64)
        self._pos = np.asarray([where[s][1] for s in self.species], dtype=np.int64)
        if reference_inputs is None:
            refs = [g.reference_inputs for g in self.groups if g.reference_inputs is not None]
            reference_inputs = np.concatenate(refs) if refs else None
        self.reference_inputs = (
            None if reference_inputs is None else np.asarray(reference_inputs, dtype=np.float32)
        )
        self.info = dict(info or {})

    # ------------------------------------------------------------------ members

    @property
    def is_mixed(self) -> bool:
        """True: members come in several architectures."""
        return True

    @property
    def specs(self) -> list[Any]:
        """The architecture (:class:`~evosim.train.AESpec`) of each group."""
        return [g.spec for g in self.groups]

    @property
    def n_members(self) -> int:
        """M = S x R."""
        return len(self.species) * self.replicates

    @property
    def member_species(self) -> list[str]:
        """``[M]`` species of each member."""
        return [s for s in self.species for _ in range(self.replicates)]

    def group_members(self, group: int) -> np.ndarray:
        """Member indices (in this set) of group ``group``'s members, in the group's order."""
        r = self.replicates
        g = self.groups[group]
        index = {s: i for i, s in enumerate(self.species)}
        return np.asarray([index[s] * r + k for s in g.species for k in range(r)], dtype=np.int64)

    def locate(self, member: int) -> tuple[int, int]:
        """``(group, member index within the group)`` of member ``member``."""
        if not 0 <= int(member) < self.n_members:
            raise ValueError(f"member index must be in [0, {self.n_members}), got {member}")
        s, k = divmod(int(member), self.replicates)
        return int(self.group_of[s]), int(self._pos[s]) * self.replicates + k

    def _gather(self, per_group: list[Any], like: Any) -> Any:
        """Group-ordered rows (one array per group) -> one array in member order."""
        first = per_group[0]
        shape = (self.n_members, *first.shape[1:])
        if isinstance(first, torch.Tensor):
            out = first.new_empty(shape)
            for g, rows in enumerate(per_group):
                out[torch.as_tensor(self.group_members(g), device=rows.device)] = rows
            return out
        out = np.empty(shape, dtype=np.asarray(first).dtype)
        for g, rows in enumerate(per_group):
            out[self.group_members(g)] = rows
        return out

    @property
    def losses(self) -> dict[str, np.ndarray]:
        """``train``/``val`` ``[M]`` and ``curve`` ``[M, n_points]`` in member order."""
        keys = set.intersection(*(set(g.losses) for g in self.groups))
        out = {}
        for k in sorted(keys):
            parts = [np.asarray(g.losses[k]) for g in self.groups]
            if len({p.shape[1:] for p in parts}) == 1:
                out[k] = self._gather(parts, None)
        return out

    @property
    def diverged(self) -> np.ndarray:
        """``[M]`` bool: the member's training diverged and it was frozen."""
        return self._gather([np.asarray(g.diverged) for g in self.groups], None)

    def reconstruct_all(self, x: Any) -> Any:
        """Every member's reconstructions of the same inputs: ``[P, D] -> [M, P, D]``."""
        return self._gather([g.reconstruct_all(x) for g in self.groups], x)

    def encode_members(self, x: Any) -> list[Any]:
        """Every member's codes of the same inputs: a list of M ``[P, latent_m]`` arrays.

        Code sizes differ between architectures, hence a list rather than one array.
        """
        per_group = [g.encode_all(x) for g in self.groups]
        return [per_group[g][j] for g, j in map(self.locate, range(self.n_members))]

    def selected_features(self, species: str, *, replicate: int = 0) -> np.ndarray:
        """``[k]`` inputs selected by a concrete species' AE (:meth:`AEBank.selected_features`)."""
        return self.groups[self.group_of[self._species_index(species)]].selected_features(
            species, replicate=replicate
        )

    def bits_per_instance(self, x: Any, species: str, *, replicate: int = 0) -> np.ndarray:
        """``[P]`` bits of the codes of ``x`` under an MDL species' AE (see AEBank)."""
        return self.groups[self.group_of[self._species_index(species)]].bits_per_instance(
            x, species, replicate=replicate
        )

    def _species_index(self, species: str) -> int:
        try:
            return self.species.index(str(species))
        except ValueError:
            raise ValueError(f"unknown species {species!r}") from None

    def module(self, i: int) -> torch.nn.Module:
        """Member ``i`` as an ordinary :class:`torch.nn.Module` (see :meth:`AEBank.module`)."""
        g, j = self.locate(i)
        return self.groups[g].module(j)

    def subset(self, species: Sequence[str]) -> AEBankSet:
        """The set restricted to some species (every replicate of each is kept)."""
        species = [str(s) for s in species]
        unknown = [s for s in species if s not in set(self.species)]
        if unknown:
            raise ValueError(f"unknown species {unknown[:5]}")
        wanted = set(species)
        groups = []
        for g in self.groups:
            keep = [s for s in g.species if s in wanted]
            if keep:
                groups.append(g.subset(keep))
        return AEBankSet(groups, species, reference_inputs=self.reference_inputs, info=self.info)

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
        """Write the set atomically (plain tensors and data, ``weights_only``-loadable)."""
        payload = {
            "format": _FORMAT,
            "version": _VERSION,
            "species": list(self.species),
            "groups": [g.payload() for g in self.groups],
            "reference_inputs": None
            if self.reference_inputs is None
            else torch.as_tensor(self.reference_inputs),
            "info": plain_data(self.info),
            "provenance": plain_data(provenance),
        }
        return runio.torch_save(path, payload)

    @classmethod
    def from_payload(cls, payload: Any, source: str = "payload") -> AEBankSet:
        """Inverse of the dictionary :meth:`save` writes."""
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{source} is not an evosim AE bank set")
        ref = payload.get("reference_inputs")
        return cls(
            [AEBank.from_payload(g, source) for g in payload["groups"]],
            payload["species"],
            reference_inputs=None if ref is None else ref.numpy(),
            info=payload.get("info", {}),
        )

    @classmethod
    def load(cls, path: str | Path) -> AEBankSet:
        """Read a set written by :meth:`save`."""
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls.from_payload(payload, str(path))

    def __repr__(self) -> str:
        arch = ", ".join(
            f"{len(g.species)} x {g.spec.variant} "
            + "-".join(str(w) for w in [g.spec.input_dim, *g.spec.hidden, g.spec.latent])
            for g in self.groups
        )
        return f"AEBankSet({len(self.species)} species x {self.replicates} replicates: {arch})"


def load_bank(path: str | Path) -> AEBank | AEBankSet:
    """Read ``aes.pt``: an :class:`AEBank`, or an :class:`AEBankSet` for mixed architectures."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and payload.get("format") == _FORMAT:
        return AEBankSet.from_payload(payload, str(path))
    return AEBank.from_payload(payload, str(path))
