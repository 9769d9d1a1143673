"""Specimen identification and novelty detection with a bank of species autoencoders.

An AE trained on one species reconstructs that species' instances well and others
badly; reconstruction error is the standard anomaly score of an autoencoder (e.g.
Japkowicz, Myers & Gluck 1995; Sakurada & Yairi 2014). Across a bank, an instance is
identified as the species whose AE reconstructs it best, with:

* a **calibrated score**, the probability that the identified species is the right one,
  in two steps fitted on held-out instances of known species. First the softmax over
  species of ``-log(error) / tau``: for Gaussian residuals of unknown variance,
  ``-(D / 2) log(error)`` is a species' profile log-likelihood, so this is a posterior
  under a uniform prior; the one temperature ``tau`` absorbs ``D / 2`` and the model's
  misfit and minimises the negative log-likelihood of the true species (temperature
  scaling, Guo, Pleiss, Sun & Weinberger, ICML 2017). Its argmax is the smallest error
  whatever ``tau``. A single temperature is too rigid to calibrate the top probability
  (expected calibration error 0.03-0.09 on the overlapping classes of
  ``tests/test_identify.py``), so, second, that top probability is mapped through an
  isotonic regression on whether the held-out instances were identified right
  (Zadrozny & Elkan, KDD 2002; pool-adjacent-violators, linear between the blocks),
  which brings it to 0.02, the sampling floor of that test. The map is monotone: it
  never reorders the instances' scores. ``probabilities`` stay the temperature softmax;
* a **novelty score**: how far the best error lies above the predicted species' own
  held-out errors, as a robust z-score of the log error,
  ``(log e - median_s) / (1.4826 MAD_s)`` over that species' held-out instances.

Errors are computed in one batched pass over all members, chunked over instances so
memory stays under a budget whatever the number of instances; a mixed-architecture
:class:`~evosim.train.AEBankSet` is handled group by group (reconstruction error needs no
shared architecture).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from evosim.train import model as _model

__all__ = [
    "IdentifierMixin",
    "Calibration",
    "Identification",
    "calibrate",
    "fit_temperature",
    "isotonic_fit",
    "identify",
    "reconstruction_errors",
    "CHUNK_BYTES",
]

#: Activations of one chunk of instances, over all members, stay under this many bytes.
CHUNK_BYTES = 256 << 20
#: Floor of a species' log-error spread (a species with identical held-out errors).
MIN_LOG_SCALE = 1e-3
#: Errors are floored here before the log (an exact reconstruction).
MIN_ERROR = 1e-12


@dataclass
class Calibration:
    """What :func:`calibrate` fitted on held-out instances (plain data: see :meth:`to_dict`).

    Attributes
    ----------
    species
        The bank's species, in order.
    temperature
        ``tau`` of the softmax over ``-log(error)``.
    centre, scale
        ``[S]`` median and ``1.4826 * MAD`` (floored at :data:`MIN_LOG_SCALE`) of the log
        reconstruction error of each species' held-out instances under its own AE.
    n_held_out
        ``[S]`` held-out instances of each species.
    nll
        Mean negative log-likelihood of the true species at ``temperature``.
    score_knots, score_values
        The isotonic map of the softmax's top probability to the calibrated score
        (increasing knots; linear between them, constant beyond). Empty: the identity.
    """

    species: list[str]
    temperature: float
    centre: np.ndarray
    scale: np.ndarray
    n_held_out: np.ndarray
    nll: float = float("nan")
    score_knots: np.ndarray = field(default_factory=lambda: np.zeros(0))
    score_values: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def score(self, top: np.ndarray) -> np.ndarray:
        """The calibrated score of softmax top probabilities ``top``."""
        top = np.asarray(top, dtype=np.float64)
        if len(self.score_knots) == 0:
            return top
        return np.interp(top, self.score_knots, self.score_values)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON- and ``weights_only``-safe)."""
        return {
            "species": list(self.species),
            "temperature": float(self.temperature),
            "centre": [float(v) for v in self.centre],
            "scale": [float(v) for v in self.scale],
            "n_held_out": [int(v) for v in self.n_held_out],
            "nll": float(self.nll),
            "score_knots": [float(v) for v in self.score_knots],
            "score_values": [float(v) for v in self.score_values],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        return cls(
            species=[str(s) for s in d["species"]],
            temperature=float(d["temperature"]),
            centre=np.asarray(d["centre"], dtype=np.float64),
            scale=np.asarray(d["scale"], dtype=np.float64),
            n_held_out=np.asarray(d["n_held_out"], dtype=np.int64),
            nll=float(d.get("nll", float("nan"))),
            score_knots=np.asarray(d.get("score_knots", []), dtype=np.float64),
            score_values=np.asarray(d.get("score_values", []), dtype=np.float64),
        )


@dataclass
class Identification:
    """What :func:`identify` found for P instances.

    Attributes
    ----------
    species
        The bank's S species (the columns of ``probabilities`` and ``errors``).
    index
        ``[P]`` index into ``species`` of the species whose AE reconstructs best.
    score
        ``[P]`` calibrated probability that that species is right.
    novelty
        ``[P]`` robust z-score of the best log error under that species' held-out errors
        (about N(0, 1) for the species' own instances; large for none of the bank's).
    best_error
        ``[P]`` the smallest reconstruction MSE.
    probabilities, errors
        ``[P, S]`` calibrated probabilities and reconstruction MSEs, when asked for.
    """

    species: list[str]
    index: np.ndarray
    score: np.ndarray
    novelty: np.ndarray
    best_error: np.ndarray
    probabilities: np.ndarray | None = field(default=None, repr=False)
    errors: np.ndarray | None = field(default=None, repr=False)

    @property
    def predicted(self) -> list[str]:
        """``[P]`` the predicted species' names."""
        return [self.species[i] for i in self.index]


# ---------------------------------------------------------------------------- errors


def _as_tensor(x: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    t = t.detach().to(torch.float32)
    if t.dim() != 2:
        raise ValueError(f"instances must be [P, D], got shape {tuple(t.shape)}")
    return t


def _groups(bank: Any) -> list[tuple[Any, np.ndarray]]:
    """``(single-architecture bank, column of each of its species in bank.species)``."""
    index = {s: i for i, s in enumerate(bank.species)}
    return [(g, np.asarray([index[s] for s in g.species], dtype=np.int64)) for g in bank.groups]


def _chunk_size(bank: Any, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)
    per_instance = sum(
        4 * g.n_members * (sum(g.spec.encoder_widths) + sum(g.spec.decoder_widths))
        for g in bank.groups
    )
    return max(1, CHUNK_BYTES // max(per_instance, 1))


def _error_chunks(
    bank: Any, x: torch.Tensor, device: torch.device, chunk_size: int | None
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, errors [c, S])`` on ``device`` for consecutive chunks of the instances."""
    groups = _groups(bank)
    params = [g._params_on(device) for g, _ in groups]
    cols = [torch.as_tensor(c, device=device) for _, c in groups]
    c = _chunk_size(bank, chunk_size)
    s_count = len(bank.species)
    for a in range(0, x.shape[0], c):
        xc = x[a : a + c].to(device, non_blocking=True)
        out = torch.empty(xc.shape[0], s_count, dtype=torch.float32, device=device)
        for (g, _), p, col in zip(groups, params, cols):
            r = _model.reconstruct(p, g.spec, xc)  # [M_g, c, D]
            err = (r - xc).pow(2).mean(-1)  # [M_g, c]
            err = err.reshape(len(g.species), g.replicates, -1).mean(1)  # [S_g, c]
            out[:, col] = err.T
        yield a, out


def reconstruction_errors(
    bank: Any, x: Any, *, device: str | torch.device = "cpu", chunk_size: int | None = None
) -> np.ndarray:
    """``[P, S]`` reconstruction MSE of every instance under every species' AE.

    Parameters
    ----------
    bank
        An :class:`~evosim.train.AEBank` or :class:`~evosim.train.AEBankSet`.
    x
        ``[P, D]`` instances (NumPy or torch).
    device
        Where to compute.
    chunk_size
        Instances per batched pass (default: as many as keep the activations under
        :data:`CHUNK_BYTES`).

    Notes
    -----
    The MSE is the mean over the D coordinates, and over a species' replicates. For a
    variational AE the reconstruction is the posterior mean's decoding, for a concrete AE
    the decoding of the selected features, for an MDL AE that of the quantised code.
    """
    device = torch.device(device)
    xt = _as_tensor(x)
    out = np.empty((xt.shape[0], len(bank.species)), dtype=np.float32)
    with torch.inference_mode():
        for a, err in _error_chunks(bank, xt, device, chunk_size):
            out[a : a + err.shape[0]] = err.cpu().numpy()
    return out


# ---------------------------------------------------------------------------- calibration


def _held_out(bank: Any, held_out: Any) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-species held-out instances into ``([n, D], labels [n])``."""
    parts = list(held_out)
    if len(parts) != len(bank.species):
        raise ValueError(f"held_out has {len(parts)} species, the bank {len(bank.species)}")
    arrays = [np.asarray(p, dtype=np.float32) for p in parts]
    for s, arr in zip(bank.species, arrays):
        if arr.ndim != 2 or arr.shape[0] < 2:
            raise ValueError(
                f"held_out instances of {s!r} must be [n >= 2, D], got shape {arr.shape}"
            )
    labels = np.concatenate([np.full(len(a), i) for i, a in enumerate(arrays)])
    return np.concatenate(arrays), labels


def _nll(log_err: np.ndarray, labels: np.ndarray, tau: float) -> float:
    logits = -log_err / tau
    logits = logits - logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits).sum(1))
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nondecreasing least-squares fit of ``y`` on ``x`` by pool-adjacent-violators.

    Returns
    -------
    (knots, values)
        One knot per pooled block: the block's mean ``x`` and mean ``y`` (both increasing;
        blocks of equal ``x`` are pooled too). ``np.interp(x, knots, values)`` evaluates it.
    """
    order = np.argsort(np.asarray(x, dtype=np.float64), kind="stable")
    xs = np.asarray(x, dtype=np.float64)[order]
    ys = np.asarray(y, dtype=np.float64)[order]
    vals: list[float] = []
    wts: list[float] = []
    means: list[float] = []
    for xi, yi in zip(xs.tolist(), ys.tolist()):
        vals.append(yi)
        wts.append(1.0)
        means.append(xi)
        while len(vals) > 1 and (vals[-2] >= vals[-1] or means[-2] >= means[-1]):
            w = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            m = (means[-2] * wts[-2] + means[-1] * wts[-1]) / w
            vals[-2:], wts[-2:], means[-2:] = [v], [w], [m]
    return np.asarray(means), np.asarray(vals)


def _top(log_err: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    logits = -log_err / tau
    logits = logits - logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p.max(1) / p.sum(1), p.argmax(1)


def fit_temperature(log_err: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The ``tau`` minimising the mean NLL of ``labels`` under ``softmax(-log_err / tau)``.

    Parameters
    ----------
    log_err
        ``[n, S]`` log reconstruction errors of n labelled instances.
    labels
        ``[n]`` true species index of each.

    Returns
    -------
    (tau, mean NLL at tau)
        A bounded one-dimensional search over ``log tau`` in ``[-10, 10]``.
    """
    log_err = np.asarray(log_err, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if log_err.shape[1] < 2:
        return 1.0, 0.0
    res = minimize_scalar(
        lambda lt: _nll(log_err, labels, float(np.exp(lt))),
        bounds=(-10.0, 10.0),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(res.x)), float(res.fun)


def calibrate(
    bank: Any,
    held_out: Sequence[Any] | np.ndarray,
    *,
    device: str | torch.device = "cpu",
    chunk_size: int | None = None,
) -> Calibration:
    """Fit the identification temperature and each species' error distribution.

    Parameters
    ----------
    bank
        An :class:`~evosim.train.AEBank` or :class:`~evosim.train.AEBankSet`.
    held_out
        For every species of the bank, in order, ``[n_s, D]`` instances its AE did not
        train on (n_s >= 2; an array ``[S, n, D]`` works too).
    device, chunk_size
        As in :func:`reconstruction_errors`.

    Returns
    -------
    Calibration
        The temperature minimises the mean negative log-likelihood of the held-out
        instances' true species (:func:`fit_temperature`); the score map is the isotonic
        regression of "identified right" on the softmax's top probability
        (:func:`isotonic_fit`); centre and scale are the median and ``1.4826 * MAD`` of
        each species' own log errors.
    """
    x, labels = _held_out(bank, held_out)
    err = reconstruction_errors(bank, x, device=device, chunk_size=chunk_size)
    log_err = np.log(np.maximum(err.astype(np.float64), MIN_ERROR))
    s_count = len(bank.species)
    own = log_err[np.arange(len(labels)), labels]
    centre = np.empty(s_count)
    scale = np.empty(s_count)
    counts = np.bincount(labels, minlength=s_count)
    for s in range(s_count):
        v = own[labels == s]
        centre[s] = np.median(v)
        scale[s] = max(1.4826 * np.median(np.abs(v - centre[s])), MIN_LOG_SCALE)
    tau, nll = fit_temperature(log_err, labels)
    top, pred = _top(log_err, tau)
    knots, values = isotonic_fit(top, pred == labels)
    return Calibration(list(bank.species), tau, centre, scale, counts, nll, knots, values)


# ---------------------------------------------------------------------------- identification


def identify(
    bank: Any,
    x: Any,
    calibration: Calibration,
    *,
    device: str | torch.device = "cpu",
    chunk_size: int | None = None,
    return_probabilities: bool = False,
    return_errors: bool = False,
) -> Identification:
    """Identify each instance as the species whose AE reconstructs it best.

    Parameters
    ----------
    bank
        An :class:`~evosim.train.AEBank` or :class:`~evosim.train.AEBankSet`.
    x
        ``[P, D]`` instances.
    calibration
        From :func:`calibrate` on the same bank.
    device, chunk_size
        As in :func:`reconstruction_errors`; only ``[P]`` results leave the device unless
        ``return_probabilities`` / ``return_errors`` ask for the ``[P, S]`` matrices.

    Returns
    -------
    Identification
    """
    if list(calibration.species) != list(bank.species):
        raise ValueError("the calibration was fitted on a bank of other species")
    device = torch.device(device)
    xt = _as_tensor(x)
    p_count, s_count = xt.shape[0], len(bank.species)
    index = np.empty(p_count, dtype=np.int64)
    score = np.empty(p_count)
    novelty = np.empty(p_count)
    best = np.empty(p_count)
    probs = np.empty((p_count, s_count), dtype=np.float32) if return_probabilities else None
    errors = np.empty((p_count, s_count), dtype=np.float32) if return_errors else None
    centre = torch.as_tensor(calibration.centre, device=device)
    scale = torch.as_tensor(calibration.scale, device=device)
    inv_tau = 1.0 / calibration.temperature
    with torch.inference_mode():
        for a, err in _error_chunks(bank, xt, device, chunk_size):
            b = a + err.shape[0]
            log_err = torch.log(err.double().clamp_min(MIN_ERROR))
            low, arg = log_err.min(1)
            # softmax of -log(err) / tau, relative to the best species (its logit is 0)
            rel = torch.exp(-(log_err - low[:, None]) * inv_tau)
            total = rel.sum(1)
            index[a:b] = arg.cpu().numpy()
            score[a:b] = calibration.score((1.0 / total).cpu().numpy())
            novelty[a:b] = ((low - centre[arg]) / scale[arg]).cpu().numpy()
            best[a:b] = torch.exp(low).cpu().numpy()
            if probs is not None:
                probs[a:b] = (rel / total[:, None]).float().cpu().numpy()
            if errors is not None:
                errors[a:b] = err.cpu().numpy()
    return Identification(list(bank.species), index, score, novelty, best, probs, errors)


class IdentifierMixin:
    """Identification methods shared by :class:`~evosim.train.AEBank` and ``AEBankSet``."""

    calibration: Calibration | None = None

    def reconstruction_errors(
        self, x: Any, *, device: str | torch.device = "cpu", chunk_size: int | None = None
    ) -> np.ndarray:
        """``[P, S]`` reconstruction MSE of instances ``x`` ``[P, D]`` under every species' AE.

        See :func:`evosim.train.identify.reconstruction_errors`.
        """
        return reconstruction_errors(self, x, device=device, chunk_size=chunk_size)

    def calibrate_identification(
        self,
        held_out: Sequence[Any] | np.ndarray,
        *,
        device: str | torch.device = "cpu",
        chunk_size: int | None = None,
    ) -> Calibration:
        """Fit (and keep, as :attr:`calibration`) the identifier on held-out instances.

        ``held_out``: per species, in order, ``[n_s, D]`` instances its AE did not train on.
        See :func:`evosim.train.identify.calibrate`.
        """
        self.calibration = calibrate(self, held_out, device=device, chunk_size=chunk_size)
        return self.calibration

    def identify(
        self,
        x: Any,
        *,
        calibration: Calibration | None = None,
        device: str | torch.device = "cpu",
        chunk_size: int | None = None,
        return_probabilities: bool = False,
        return_errors: bool = False,
    ) -> Identification:
        """For each instance of ``x`` ``[P, D]``: the species whose AE reconstructs it best.

        With a calibrated score and a novelty score (see :mod:`evosim.train.identify`);
        ``calibration`` defaults to the one :meth:`calibrate_identification` kept.
        """
        cal = calibration if calibration is not None else self.calibration
        if cal is None:
            raise ValueError(
                "identify needs a calibration: call calibrate_identification(held_out) first"
            )
        return identify(
            self,
            x,
            cal,
            device=device,
            chunk_size=chunk_size,
            return_probabilities=return_probabilities,
            return_errors=return_errors,
        )
