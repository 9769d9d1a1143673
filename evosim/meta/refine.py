"""Encoding by fitting: refine codes until their decoded AEs reproduce given AEs.

The MAE's encoder gives a code in one pass, from what it learnt on the training species.
For an AE it was not fitted on, that guess is off the decoder's best code for it. Refining
the code by gradient descent through the fixed decoder, on the same behaviour loss the
MAE was fitted with, moves it to where the decoded AE best reproduces the AE (the
"semi-amortised" encoding of Kim et al., 2018). It reads only the AE: its outputs on its
own region and on the shared probes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from evosim.meta.behaviour import Behaviour, behaviour_loss_of
from evosim.meta.network import HyperDecoder

__all__ = ["REFINE_LR", "refine_codes"]

#: Adam's step size for the codes, in units of the spread (sd) of the training latents.
REFINE_LR = 0.02


def refine_codes(
    decoder: HyperDecoder,
    spec: Any,
    behaviour: Behaviour,
    start: np.ndarray,
    *,
    steps: int,
    probe_weight: float,
    spread: float,
) -> np.ndarray:
    """Codes ``[M, k]`` moved from ``start`` by ``steps`` Adam steps on the behaviour loss.

    Parameters
    ----------
    decoder
        The MAE's hypernetwork; held fixed (its parameters get no gradient).
    spec
        The architecture of the decoded AEs.
    behaviour
        The members' region inputs, probes and targets
        (:func:`~evosim.meta.behaviour.behaviour_targets`).
    start
        ``[M, k]`` starting codes (the encoder's).
    steps
        Adam steps; 0 returns ``start``.
    probe_weight
        Weight of the probes in the loss, as in the MAE's fit.
    spread
        The training latents' sd; sets the step size (``REFINE_LR * spread``).

    Notes
    -----
    The loss is a sum of per-member terms and Adam's update is elementwise, so each code
    moves as it would alone (up to rounding): one member's code does not depend on the others.
    """
    if steps <= 0:
        return np.asarray(start, dtype=np.float64)
    z = torch.tensor(np.asarray(start, dtype=np.float32), requires_grad=True)
    opt = torch.optim.Adam([z], lr=REFINE_LR * (spread or 1.0))
    was_training = decoder.training
    decoder.eval()
    frozen = [p for p in decoder.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            loss = behaviour_loss_of(decoder(z), spec, behaviour, probe_weight).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
        decoder.train(was_training)
    return z.detach().numpy().astype(np.float64)
