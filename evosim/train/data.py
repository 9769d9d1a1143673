"""What each member sees: the species' instances, its split, its sampling table, its noise.

All of it is a function of ``(seed, species name, replicate)``, never of a member's
position among the others, so a species' AE does not depend on which species it is
trained with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evosim.seeding import rng

__all__ = ["TrainingData", "resolve_data", "member_splits", "noise_pool", "reference_inputs"]

log = logging.getLogger(__name__)

REFERENCE_INPUTS = 1024


@dataclass(frozen=True)
class TrainingData:
    """The instances to train on, resolved from a Simulation or an array.

    Attributes
    ----------
    instances
        ``[S, N, D]`` float32, C-contiguous.
    species
        The S names.
    seed
        The run's seed.
    architectures
        ``[S]`` architecture index of each species, when the data carries an assignment
        (``Simulation.architectures``), else None.
    """

    instances: np.ndarray
    species: list[str]
    seed: int
    architectures: np.ndarray | None = None


def resolve_data(data: Any, species: Sequence[str] | None, seed: int | None) -> TrainingData:
    """Instances, names and seed from a Simulation (duck-typed) or an ``[S, N, D]`` array.

    A Simulation gives its seed (``data.scenario.seed``) and its architecture assignment;
    ``species`` picks a subset of its species (in that order). For an array, ``species``
    names its rows (default ``s1..sS``) and the seed defaults to 0.
    """
    assignment = None
    if hasattr(data, "instances"):  # a Simulation (duck-typed)
        instances = np.asarray(data.instances, dtype=np.float32)
        names = [str(s) for s in data.species]
        if seed is None:
            seed = int(data.scenario.seed)
        found = getattr(data, "architectures", None)
        if found is not None:
            assignment = np.asarray(found, dtype=np.int64)
            if assignment.shape != (len(names),):
                raise ValueError(
                    f"the simulation assigns architectures to {assignment.size} species, "
                    f"it has {len(names)}"
                )
        if species is not None:
            index = {s: i for i, s in enumerate(names)}
            missing = [s for s in species if s not in index]
            if missing:
                raise ValueError(f"species not in the simulation: {missing[:5]}")
            rows = [index[s] for s in species]
            instances = instances[rows]
            names = [str(s) for s in species]
            if assignment is not None:
                assignment = assignment[rows]
    else:
        instances = np.asarray(data, dtype=np.float32)
        if instances.ndim != 3:
            raise ValueError(
                f"data must be a Simulation or an array [S, N, D], got shape {instances.shape}"
            )
        names = (
            [f"s{i + 1}" for i in range(instances.shape[0])]
            if species is None
            else [str(s) for s in species]
        )
        if seed is None:
            seed = 0
    if instances.ndim != 3:
        raise ValueError(f"instances must be [S, N, D], got shape {instances.shape}")
    s, n, d = instances.shape
    if s < 1 or n < 2 or d < 1:
        raise ValueError(f"instances [S, N, D] need S >= 1, N >= 2, D >= 1, got {instances.shape}")
    if len(names) != s:
        raise ValueError(f"got {len(names)} species names for {s} species")
    if len(set(names)) != s:
        raise ValueError("species names must be unique")
    bad = ~np.isfinite(instances).reshape(s, -1).all(1)
    if bad.any():
        log.warning(
            "non-finite instances for %d species (e.g. %s); their AEs will diverge",
            int(bad.sum()),
            [names[i] for i in np.flatnonzero(bad)[:5]],
        )
    return TrainingData(np.ascontiguousarray(instances), names, int(seed), assignment)


def member_splits(
    seed: int, species: Sequence[str], replicates: int, n: int, validation_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each member's training instances, validation instances and sampling table.

    Member ``(species, r)`` permutes its species' N instances with
    ``rng(seed, "ae-split", species, r)``; the first ``round(N * validation_fraction)`` are
    held out. With ``replicates > 1`` every replicate samples its minibatches from a
    bootstrap resample of its training instances (``rng(seed, "ae-bootstrap", species, r)``),
    so replicates see different subsamples.

    Returns
    -------
    train : ``[M, n_train]`` int64, val : ``[M, n_val]`` int64, table : ``[M, n_train]`` int64
        Instance indices within the species; minibatches draw uniformly from ``table``.
    """
    n_val = int(round(n * validation_fraction))
    n_val = min(n_val, n - 1)
    m = len(species) * replicates
    train = np.empty((m, n - n_val), dtype=np.int64)
    val = np.empty((m, n_val), dtype=np.int64)
    table = np.empty_like(train)
    i = 0
    for s in species:
        for r in range(replicates):
            perm = rng(seed, "ae-split", s, r).permutation(n)
            val[i], train[i] = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            if replicates > 1:
                boot = rng(seed, "ae-bootstrap", s, r).integers(0, n - n_val, size=n - n_val)
                table[i] = train[i][boot]
            else:
                table[i] = train[i]
            i += 1
    return train, val, table


def noise_pool(seed: int, dim: int) -> torch.Tensor:
    """``[Q, dim]`` standard-normal rows from ``(seed, "ae-noise-pool")`` for denoising.

    Hashing a fresh normal for every input element every step costs more than the AE's
    own step on a CPU; a member instead picks, per sample, one of Q = 2**16 (fewer for very
    wide inputs) fixed noise rows by its counter stream. With 2000 steps of 128 samples a
    member reuses a row about 4 times, each time on a random instance.
    """
    q = int(min(65536, max(4096, (1 << 23) // dim)))
    return torch.from_numpy(rng(seed, "ae-noise-pool").standard_normal((q, dim), dtype=np.float32))


def reference_inputs(
    instances: np.ndarray, train_idx: np.ndarray, replicates: int, seed: int
) -> np.ndarray:
    """``[P, D]`` training inputs pooled over the species (probes for later stages).

    P = min(1024, S x n_train) draws from ``rng(seed, "ae-reference-inputs")``: a species,
    then one of its first replicate's training instances.
    """
    s_count = instances.shape[0]
    ref_rng = rng(seed, "ae-reference-inputs")
    p = min(REFERENCE_INPUTS, s_count * train_idx.shape[1])
    sp = ref_rng.integers(0, s_count, size=p)
    pos = ref_rng.integers(0, train_idx.shape[1], size=p)
    return instances[sp, train_idx[sp * replicates, pos]]
