"""Counter-based random streams for the batched trainer.

Every random number a member uses at a training step (its minibatch, its denoising
noise, its VAE noise) is a pure function of ``(member key, stream, step, element)``,
where the member key comes from ``(seed, species name, replicate)`` via
:mod:`evosim.seeding`. So a member draws the same numbers whatever its position in
the batch, whatever the chunking, on any device, and a resumed run needs no
generator state. The hash is Chris Wellons' ``lowbias32`` integer mixer, evaluated
in int64 with every product kept below 2**63, so it is bit-exact on CPU and CUDA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from evosim.seeding import child_seed

__all__ = ["member_keys", "step_base", "uniform_bits", "randint", "normal"]

_MASK = 0xFFFFFFFF
STREAM_BATCH = 1
STREAM_NOISE = 2
STREAM_EPS = 3
STREAM_GUMBEL = 4  # concrete AE selector noise
STREAM_QUANT = 5  # MDL AE quantisation noise


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for ``0 <= x < 2**32`` without int64 overflow."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 mixer on int64 tensors holding values in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def member_keys(seed: int, species: Sequence[str], replicates: Sequence[int]) -> torch.Tensor:
    """``[M, 2]`` int64 keys (two 32-bit words) for members ``(species[m], replicates[m])``."""
    words = [
        child_seed(seed, "ae-train", s, int(r)).generate_state(2, dtype=np.uint32)
        for s, r in zip(species, replicates)
    ]
    return torch.as_tensor(np.asarray(words, dtype=np.int64).reshape(-1, 2))


def step_base(keys: torch.Tensor, stream: int, step: int | torch.Tensor) -> torch.Tensor:
    """``[M]`` per-member hash of ``(key, stream, step)``; cheap, computed once per step.

    ``step`` is one int, or an ``[M]`` int64 tensor (a step per row of ``keys``).
    """
    h = hash32(keys[:, 0] ^ hash32(torch.full_like(keys[:, 0], stream)))
    h = hash32(h ^ keys[:, 1])
    return hash32(h ^ (step & _MASK))


_COUNTERS: dict[tuple, torch.Tensor] = {}


def _counter(shape: Sequence[int], device: torch.device) -> torch.Tensor:
    key = (tuple(shape), str(device))
    c = _COUNTERS.get(key)
    if c is None:
        n = math.prod(shape)
        c = hash32(torch.arange(n, dtype=torch.int64, device=device) + 0x9E3779B9).reshape(shape)
        if len(_COUNTERS) > 64:
            _COUNTERS.clear()
        _COUNTERS[key] = c
    return c


def uniform_bits(base: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``[M, *shape]`` int64 uniform 32-bit words: ``hash(base[m] ^ hash(counter))``."""
    counter = _counter(shape, base.device)
    view = base.reshape(-1, *([1] * len(shape)))
    return hash32(view ^ counter)


def randint(base: torch.Tensor, shape: Sequence[int], high: int) -> torch.Tensor:
    """``[M, *shape]`` integers uniform on ``[0, high)`` (multiply-shift, bias < high / 2**32)."""
    if not 0 < high < 2**31:
        raise ValueError(f"high must be in [1, 2**31), got {high}")
    return (uniform_bits(base, shape) * high) >> 32


def normal(
    base: torch.Tensor, shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``[M, *shape]`` standard normal draws (Box-Muller on two 24-bit uniforms)."""
    shape = tuple(shape)
    bits = uniform_bits(base, (*shape, 2))
    u = ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0)
    u1, u2 = u[..., 0], u[..., 1]
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)).to(dtype)
