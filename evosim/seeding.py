"""Explicit, order-free randomness: child seeds derived from (seed, stable names).

A stream for species ``s12`` is the same whether the run has 8 or 64 species and
whatever order things run in, because it depends only on the seed and the names.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["child_seed", "rng", "torch_generator", "name_key"]


def name_key(name: str | int) -> int:
    """A stable 64-bit integer for a name (Python's ``hash`` is salted per process)."""
    digest = hashlib.blake2b(str(name).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def child_seed(seed: int, *names: str | int) -> np.random.SeedSequence:
    """The seed sequence for the stream named ``names`` under ``seed``."""
    return np.random.SeedSequence([int(seed), *(name_key(n) for n in names)])


def rng(seed: int, *names: str | int) -> np.random.Generator:
    """A NumPy generator for the stream named ``names`` under ``seed``."""
    return np.random.default_rng(child_seed(seed, *names))


def torch_generator(
    seed: int, *names: str | int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A torch generator for the stream named ``names`` under ``seed``."""
    value = int(child_seed(seed, *names).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    gen = torch.Generator(device=device)
    gen.manual_seed(value)
    return gen
