"""The concrete and the MDL autoencoder: their layers, losses and per-step randomness.

Both are batched like every other variant (parameters ``[M, ...]``, one member per row)
and wired into :func:`evosim.train.model.member_objective` and the trainer's step.

**Concrete autoencoder** (Abid, Balin & Zou, "Concrete Autoencoders: Differentiable
Feature Selection and Reconstruction", ICML 2019). The encoder is a selector layer: ``k``
rows of logits over the ``D`` inputs. In training each row is a concrete (Gumbel-softmax)
sample ``m_j = softmax((logits_j + g_j) / T)``, ``g`` standard Gumbel noise, and the code
is ``u_j = <m_j, x>``; the temperature anneals exponentially,
``T(t) = T_0 (T_end / T_0)^(t / steps)`` (the paper's schedule). Rows may settle on the
same feature (the paper notes it); ``duplicate_weight`` times :func:`duplicate_penalty`
discourages that. Two departures from the paper, both measured on 8-species worlds where
each species' signal sits in 3 known coordinates of 20 (3 training seeds each, 24 species
in all): with the paper's ``T_end = 0.01`` and no penalty 18 of 24 species selected exactly
their 3 coordinates (the misses were duplicates); the penalty made it 23; ending at 0.1
(the authors' released code's default: the last third of the paper's schedule is a
near-hard selection that no longer explores) made it 23-24 of 24. Defaults: 10 -> 0.1,
``duplicate_weight`` 1. At test time
each row is the one-hot of its argmax, so the code is ``k`` of the instance's own
coordinates and the decoder reconstructs all ``D`` from them. As in the authors'
implementation, one Gumbel sample per member is drawn per step and shared by its minibatch.

**MDL autoencoder**, in the form of Ballé, Laparra & Simoncelli, "End-to-end optimized
image compression" (ICLR 2017): the code ``y`` is quantised to integers, ``q = round(y)``,
and described under a learned factorised prior in ``-log2 P(q)`` bits; training replaces
rounding by additive uniform noise, ``y + u``, ``u ~ U(-1/2, 1/2)``, whose density is the
prior convolved with the unit box, ``p(v) = F(v + 1/2) - F(v - 1/2)``. The objective is
``MSE + rate_weight * bits per instance``, the minimum-description-length trade of
reconstruction against code length (Hinton & Zemel 1994 is the classic form). The prior
is a logistic per code dimension with learned location and scale (Ballé et al. use a
non-parametric density; the logistic is the simplest smooth family with a closed-form
CDF). Only the code's description length is counted, not the model's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from evosim.train import ops as _ops
from evosim.train import streams

__all__ = [
    "temperature",
    "gumbel_noise",
    "concrete_selection",
    "hard_selection",
    "duplicate_penalty",
    "select",
    "selected_indices",
    "quantise",
    "uniform_noise",
    "logistic_log2_mass",
    "code_bits",
    "step_inputs",
    "init_param",
    "NON_LAYER_PARAMS",
]

Params = dict[str, torch.Tensor]

#: Parameters that are not an MLP layer's weight or bias.
NON_LAYER_PARAMS = ("selector.logits", "prior.loc", "prior.log_scale")

_LOG2 = math.log(2.0)


# ---------------------------------------------------------------------------- concrete


def temperature(step: int, steps: int, start: float, end: float) -> float:
    """The annealed temperature at ``step``: ``start * (end / start) ** (step / steps)``."""
    return float(start * (end / start) ** (step / max(1, steps)))


def gumbel_noise(keys: torch.Tensor, step: int, shape: tuple[int, ...]) -> torch.Tensor:
    """``[M, *shape]`` standard Gumbel draws ``-log(-log u)``, a pure function of (key, step)."""
    bits = streams.uniform_bits(streams.step_base(keys, streams.STREAM_GUMBEL, step), shape)
    u = ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0)  # in (0, 1), never 0 or 1
    return -torch.log(-torch.log(u))


def concrete_selection(
    logits: torch.Tensor, gumbel: torch.Tensor, temp: torch.Tensor | float
) -> torch.Tensor:
    """Relaxed one-hot rows ``softmax((logits + gumbel) / T)``, ``[M, k, D]``."""
    return torch.softmax((logits + gumbel.to(logits.dtype)) / temp, dim=-1)


def hard_selection(logits: torch.Tensor) -> torch.Tensor:
    """One-hot rows of the logits' argmax, ``[M, k, D]`` (the test-time selector)."""
    return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)


def select(x: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """Codes ``<m_j, x>``: ``x`` ``[M, B, D]`` (or ``[B, D]`` for all) -> ``[M, B, k]``."""
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(selection.shape[0], *x.shape)
    return _ops.bmm(x, selection.mT.to(x.dtype))


def duplicate_penalty(logits: torch.Tensor, temp: torch.Tensor | float) -> torch.Tensor:
    """``[M]`` penalty on features claimed by more than one selector row.

    ``sum_d relu(sum_j p_jd - 1)`` with ``p_j = softmax(logits_j / T)`` at the current
    temperature (after Strypsteen & Bertrand, J. Neural Eng. 2021, who add this term to
    concrete selection because rows otherwise settle on the same feature). Zero while the
    rows are diffuse (``sum_j p_jd = k / D < 1``); it acts as they sharpen.
    """
    p = torch.softmax(logits.float() / temp, dim=-1)
    return F.relu(p.sum(-2) - 1.0).sum(-1)


def selected_indices(logits: torch.Tensor) -> torch.Tensor:
    """``[M, k]`` input feature chosen by each selector row (argmax of its logits)."""
    return logits.argmax(-1)


# ---------------------------------------------------------------------------- MDL


def quantise(y: torch.Tensor) -> torch.Tensor:
    """``round(y)`` whose gradient is the identity's (straight-through)."""
    return y + (torch.round(y) - y).detach()


def uniform_noise(keys: torch.Tensor, step: int, shape: tuple[int, ...]) -> torch.Tensor:
    """``[M, *shape]`` draws from U(-1/2, 1/2), a pure function of (key, step)."""
    bits = streams.uniform_bits(streams.step_base(keys, streams.STREAM_QUANT, step), shape)
    return ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0) - 0.5


def logistic_log2_mass(v: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """``log2 (F(v + 1/2) - F(v - 1/2))`` for a logistic CDF F, elementwise.

    Computed in the tail where the two CDF values are small (Ballé et al.'s sign trick:
    right of the median, use survival functions), as ``log sigma(hi) + log(1 - e^(log
    sigma(lo) - log sigma(hi)))``, so neither cancellation nor a clamp cuts the gradient.
    """
    inv = torch.exp(-log_scale)
    a = (v - 0.5 - loc) * inv
    b = (v + 0.5 - loc) * inv
    right = (a + b) > 0
    hi = torch.where(right, -a, b)
    lo = torch.where(right, -b, a)
    log_hi = F.logsigmoid(hi)
    log_lo = F.logsigmoid(lo)
    return (log_hi + torch.log(-torch.expm1(log_lo - log_hi))) / _LOG2


def code_bits(code: torch.Tensor, params: Params) -> torch.Tensor:
    """Bits ``-sum_j log2 P(code_j)`` of codes ``[M, B, k]`` under each member's prior: ``[M, B]``.

    For integer codes this is the description length of the quantised code; for a noisy
    training code ``y + u`` it is Ballé et al.'s differentiable rate.
    """
    loc = params["prior.loc"].unsqueeze(1).float()
    log_scale = params["prior.log_scale"].unsqueeze(1).float()
    return -logistic_log2_mass(code.float(), loc, log_scale).sum(-1)


# ---------------------------------------------------------------------------- the trainer's side


def step_inputs(
    spec: Any, config: Any, keys: torch.Tensor, step: int, batch: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """The extra per-step inputs of :func:`~evosim.train.model.member_objective`.

    ``concrete``: ``gumbel`` ``[M, k, D]`` and the annealed ``temperature`` (a 0-d tensor, so
    a compiled step is not specialised on its value); ``mdl``: ``quant_noise`` ``[M, B, k]``.
    Empty for the other variants. Every draw is a function of (member key, step) alone.
    """
    if spec.variant == "concrete":
        temp = temperature(step, config.steps, config.temperature_start, config.temperature_end)
        return {
            "gumbel": gumbel_noise(keys, step, (spec.latent, spec.input_dim)),
            "temperature": torch.full((), temp, device=device),
        }
    if spec.variant == "mdl":
        return {"quant_noise": uniform_noise(keys, step, (batch, spec.latent))}
    return {}


def init_param(name: str, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
    """Initial value of a parameter in :data:`NON_LAYER_PARAMS`.

    Selector logits are Glorot-normal, as in the authors' implementation; the prior
    starts as the standard logistic (location 0, scale 1).
    """
    if name == "selector.logits":
        k, d = shape
        return (gen.standard_normal(shape) * math.sqrt(2.0 / (k + d))).astype(np.float32)
    if name in ("prior.loc", "prior.log_scale"):
        return np.zeros(shape, dtype=np.float32)
    raise ValueError(f"unknown parameter {name!r}")
