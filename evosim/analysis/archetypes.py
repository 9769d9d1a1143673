"""Archetypes scored against the truth: any method's per-species simplex weights -> errors.

A method that finds archetypes gives each species convex weights ``W [S, k]`` on ``k``
archetypes (rows on the simplex): the MAE's ``MetaResult.archetype_weights``, or linear
archetypal analysis (:mod:`evosim.analysis.archetypal_analysis`) on any per-species
features. Its archetypes live in its own space (latent codes, data means, weights), so to
compare them with the true task optima they are first placed in trait space, without
using the optima:

- **positions** (:func:`archetype_positions`): regress the species' true mean traits on
  their weights, ``X ~ W P`` by least squares (no intercept: rows of ``W`` sum to one, so
  ``W P`` is already affine), and read archetype ``j``'s trait vector as row ``j`` of
  ``P``, the traits the fit predicts for a species of weight 1 on ``j``. A tiny ridge
  toward the species' centroid makes an archetype that no species uses sit at the
  centroid (scored as knowing nothing) instead of being undefined.
- **matching** (:func:`archetype_recovery`): positions are matched one-to-one to the
  optima by the optimal assignment of Euclidean distances
  (``scipy.optimize.linear_sum_assignment``), and each distance is divided by the
  species' trait spread, ``sqrt(mean_i |x_i - mean x|^2)`` (the RMS distance of species
  from their centroid), so 0 is perfect and ~1 is as far as a typical species is from
  the middle.

Baselines (:func:`archetype_baselines`): linear AA with ``k`` = the number of tasks on

- ``aa_traits``: the species' true mean traits (the oracle: the ceiling a method that
  sees only the species could reach),
- ``aa_data_mean``: each species' mean instance,
- ``aa_raw_weights``: each species' flattened AE parameters (not applicable to AEs of
  several architectures).

:func:`archetype_scores` bundles the baselines and, when the MAE has archetype weights,
the MAE. :func:`archetype_analysis` is the analysis stage's part: it runs whenever the
world records task optima (``traits.model: tradeoff``) or the MAE has archetype weights
(``meta.prior: archetypal``), and returns the summary for ``metrics.json`` (key
``archetypes``) and the data of the figures (``archetypes.json``): the weights per species,
the species nearest each archetype, the scores against the optima, and instances generated
by the decoded archetypes beside the nearest species' own. The truth (traits, optima, true
task weights) is read only here, to score.

References
----------
Shoval O. et al. (2012) Evolutionary trade-offs, Pareto optimality, and the geometry of
phenotype space. Science 336:1157-1160.
Kuhn H.W. (1955) The Hungarian method for the assignment problem. Naval Res. Logist. Q.
2:83-97.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from evosim.analysis.archetypal_analysis import archetypal_analysis

__all__ = [
    "ARCHETYPE_BASELINES",
    "archetype_analysis",
    "archetype_baselines",
    "archetype_positions",
    "archetype_recovery",
    "archetype_scores",
    "archetypes_markdown",
    "linear_aa_weights",
    "weights_summary",
]

log = logging.getLogger(__name__)

ARCHETYPE_BASELINES = ("aa_traits", "aa_data_mean", "aa_raw_weights")

#: Ridge toward the centroid, relative to the mean squared weight (see the module notes).
RIDGE = 1e-9
#: A species is a specialist when one archetype has at least this weight.
SPECIALIST = 0.8
#: Instances per archetype in the figure data (generated, and the nearest species' own),
#: and per species for the background of the instance figure.
FIGURE_INSTANCES = 64
BACKGROUND_INSTANCES = 16


def _weights(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be a finite [S, k] array, got shape {w.shape}")
    if np.any(w < -1e-8) or not np.allclose(w.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("weights must be simplex weights: non-negative rows that sum to 1")
    return w


def archetype_positions(weights: np.ndarray, traits: np.ndarray) -> np.ndarray:
    """Archetypes' positions in trait space, ``[k, d]``, from species' weights and traits.

    Least squares ``traits ~ weights @ P`` with a ridge of relative size :data:`RIDGE`
    pulling ``P`` toward the traits' centroid (see the module notes).

    Parameters
    ----------
    weights
        ``[S, k]`` simplex weights, one row per species.
    traits
        ``[S, d]`` the species' traits, rows in the same order.
    """
    w = _weights(weights)
    x = np.asarray(traits, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != w.shape[0]:
        raise ValueError(f"traits must be [S, d] with S = {w.shape[0]}, got shape {x.shape}")
    centre = x.mean(axis=0)
    k = w.shape[1]
    lam = RIDGE * max(float(np.mean(w * w)) * len(w), 1e-300)
    # (W'W + lam I) P = W' X + lam 1 centre'  (ridge toward P = centroid)
    lhs = w.T @ w + lam * np.eye(k)
    rhs = w.T @ x + lam * centre[None, :]
    return np.linalg.solve(lhs, rhs)


def archetype_recovery(
    weights: np.ndarray,
    traits: np.ndarray,
    optima: np.ndarray,
    *,
    true_weights: np.ndarray | None = None,
    species: list[str] | None = None,
) -> dict[str, Any]:
    """Score one method's archetypes against the true optima (see the module notes).

    Parameters
    ----------
    weights
        ``[S, k]`` the method's simplex weights per species.
    traits
        ``[S, d]`` the species' true mean traits (read only to score).
    optima
        ``[m, d]`` the true task optima.
    true_weights
        ``[S, m]`` the species' true task weights, to correlate with the matched weights.
    species
        ``[S]`` names, to report the species nearest each archetype.

    Returns
    -------
    dict
        Plain data: ``archetype_error`` (mean over matched optima of the distance in
        units of the trait spread), ``archetype_error_max``, ``archetype_errors`` (per
        optimum, in optimum order; NaN for an optimum left unmatched when ``k < m``),
        ``matching`` (the archetype matched to each optimum, or -1), ``positions`` (``[k,
        d]``), ``spread``, ``explained`` (R^2 of the traits from the weights), ``k``,
        ``tasks``; with ``true_weights`` also ``weight_correlation`` (mean Pearson r of
        matched weight columns); with ``species`` also ``nearest_species`` (per optimum,
        the species weighing most on the matched archetype).
    """
    w = _weights(weights)
    x = np.asarray(traits, dtype=np.float64)
    o = np.atleast_2d(np.asarray(optima, dtype=np.float64))
    if o.shape[1] != x.shape[1]:
        raise ValueError(f"optima must have d = {x.shape[1]} columns, got shape {o.shape}")
    positions = archetype_positions(w, x)
    centred = x - x.mean(axis=0)
    spread = float(np.sqrt(np.mean(np.sum(centred**2, axis=1))))
    fitted = w @ positions
    tss = float(np.sum(centred**2))
    explained = 1.0 - float(np.sum((x - fitted) ** 2)) / tss if tss > 0 else float("nan")
    dist = np.linalg.norm(positions[:, None, :] - o[None, :, :], axis=2)  # [k, m]
    rows, cols = linear_sum_assignment(dist)
    m = len(o)
    matching = np.full(m, -1, dtype=int)
    matching[cols] = rows
    errors = np.full(m, np.nan)
    errors[cols] = dist[rows, cols] / spread if spread > 0 else np.nan
    out: dict[str, Any] = {
        "archetype_error": float(np.nanmean(errors)),
        "archetype_error_max": float(np.nanmax(errors)),
        "archetype_errors": [float(e) for e in errors],
        "matching": [int(j) for j in matching],
        "positions": positions.tolist(),
        "spread": spread,
        "explained": float(explained),
        "k": int(w.shape[1]),
        "tasks": int(m),
    }
    if true_weights is not None:
        t = np.asarray(true_weights, dtype=np.float64)
        if t.shape != (len(w), m):
            raise ValueError(f"true_weights must be [S, m] = [{len(w)}, {m}], got {t.shape}")
        rs = []
        for i, j in zip(rows, cols):
            a, b = w[:, i], t[:, j]
            ok = a.std() > 0 and b.std() > 0
            rs.append(float(np.corrcoef(a, b)[0, 1]) if ok else 0.0)
        out["weight_correlation"] = float(np.mean(rs))
    if species is not None:
        if len(species) != len(w):
            raise ValueError(f"species must name the {len(w)} rows of weights")
        out["nearest_species"] = [
            str(species[int(np.argmax(w[:, i]))]) if i >= 0 else None for i in matching
        ]
    return out


def linear_aa_weights(features: np.ndarray, k: int) -> np.ndarray:
    """``[S, k]`` weights of linear archetypal analysis on per-species features ``[S, F]``."""
    return archetypal_analysis(np.asarray(features, dtype=np.float64), k).weights


def _truth(sim: Any, species: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    optima = getattr(sim, "task_optima", None)
    if optima is None:
        raise ValueError(
            "the world has no task optima: archetypes are scored on traits.model: tradeoff"
        )
    traits = np.stack([np.asarray(sim.traits[s], dtype=np.float64) for s in species])
    tw = getattr(sim, "task_weights", None)
    true_w = (
        None if tw is None else np.stack([np.asarray(tw[s], dtype=np.float64) for s in species])
    )
    return traits, np.asarray(optima, dtype=np.float64), true_w


def archetype_baselines(sim: Any, bank: Any, *, k: int | None = None) -> dict[str, dict[str, Any]]:
    """Linear AA baselines (``aa_traits``, ``aa_data_mean``, ``aa_raw_weights``), scored.

    Parameters
    ----------
    sim
        The simulated world (``traits.model: tradeoff``: ``task_optima`` set).
    bank
        The trained AEs (an ``AEBank`` or ``AEBankSet``); its species order is used.
    k
        Archetypes to fit (default: the number of tasks, the one piece of the truth the
        baselines are given, as the MAE is given ``meta.archetypes``).

    Returns
    -------
    dict
        Baseline name -> :func:`archetype_recovery` metrics, or
        ``{"not_applicable": reason}``.
    """
    from evosim.analysis.baselines import species_means
    from evosim.meta.representation import flatten_params

    species = list(bank.species)
    traits, optima, true_w = _truth(sim, species)
    k = len(optima) if k is None else int(k)
    pos = {s: i for i, s in enumerate(sim.species)}
    instances = np.asarray(sim.instances)[[pos[s] for s in species]]
    features: dict[str, Any] = {
        "aa_traits": lambda: traits,
        "aa_data_mean": lambda: instances.mean(axis=1),
        "aa_raw_weights": lambda: species_means(flatten_params(bank.params), int(bank.replicates)),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, make in features.items():
        if name == "aa_raw_weights" and getattr(bank, "is_mixed", False):
            out[name] = {"not_applicable": "AEs of several architectures have no common weights"}
            continue
        w = linear_aa_weights(make(), k)
        out[name] = archetype_recovery(w, traits, optima, true_weights=true_w, species=species)
    return out


def archetype_scores(
    sim: Any, bank: Any, meta: Any = None, *, k: int | None = None
) -> dict[str, Any]:
    """The MAE's archetypes (when it has them) and every baseline, scored against the optima.

    Returns
    -------
    dict
        ``{"tasks": m, "mae": metrics or {"not_applicable": reason}, "baselines": {...}}``.
    """
    species = list(bank.species)
    traits, optima, true_w = _truth(sim, species)
    weights = None if meta is None else getattr(meta, "archetype_weights", None)
    if weights is None:
        mae: dict[str, Any] = {"not_applicable": "the MAE gives no archetype weights"}
    else:
        if list(meta.species) != species:
            raise ValueError("the bank and the MAE have different species")
        mae = archetype_recovery(
            np.asarray(weights), traits, optima, true_weights=true_w, species=species
        )
    return {
        "tasks": int(len(optima)),
        "mae": mae,
        "baselines": archetype_baselines(sim, bank, k=k),
    }


def weights_summary(weights: np.ndarray, species: list[str]) -> dict[str, Any]:
    """How species spread over the archetypes: plain data for ``metrics.json``.

    Parameters
    ----------
    weights
        ``[S, k]`` simplex weights.
    species
        ``[S]`` names.

    Returns
    -------
    dict
        ``k``; ``mean_weight`` ``[k]`` (the archetypes' shares of the species);
        ``mean_max_weight`` (mean over species of its largest weight: ``1/k`` when every
        species is an even mixture, 1 when all are pure); ``specialists`` (species with a
        weight >= :data:`SPECIALIST` on one archetype) per archetype; ``nearest_species``
        per archetype: the species weighing most on it and that weight.
    """
    w = _weights(weights)
    if len(species) != len(w):
        raise ValueError(f"species must name the {len(w)} rows of weights")
    top = w.argmax(axis=1)
    special = w.max(axis=1) >= SPECIALIST
    return {
        "k": int(w.shape[1]),
        "mean_weight": [float(v) for v in w.mean(axis=0)],
        "mean_max_weight": float(w.max(axis=1).mean()),
        "specialists": [int(np.sum(special & (top == j))) for j in range(w.shape[1])],
        "nearest_species": [
            {"species": str(species[int(np.argmax(w[:, j]))]), "weight": float(w[:, j].max())}
            for j in range(w.shape[1])
        ],
    }


def _instance_figure_data(
    sim: Any, meta: Any, weights: np.ndarray, species: list[str], seed: int
) -> dict[str, Any]:
    """Decoded archetypes' generated instances beside the nearest species' own."""
    from evosim.seeding import rng as make_rng

    z = meta.archetype_latents
    generated = meta.generate(z, FIGURE_INSTANCES, seed=seed)  # [k, n, D]
    pos = {s: i for i, s in enumerate(sim.species)}
    data = np.asarray(sim.instances)
    g = make_rng(seed, "archetypes", "figure")
    nearest = [species[int(np.argmax(weights[:, j]))] for j in range(weights.shape[1])]
    own = []
    for name in nearest:
        x = data[pos[name]]
        own.append(x[g.choice(len(x), min(FIGURE_INSTANCES, len(x)), replace=False)])
    background = np.concatenate(
        [
            data[pos[s]][
                g.choice(data.shape[1], min(BACKGROUND_INSTANCES, data.shape[1]), replace=False)
            ]
            for s in species
        ]
    )
    return {
        "generated": np.asarray(generated, dtype=np.float64),
        "nearest": np.stack(own).astype(np.float64),
        "nearest_species": nearest,
        "background": background.astype(np.float64),
    }


def archetype_analysis(
    sim: Any, bank: Any, meta: Any, *, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The analysis stage's archetypes: summary for ``metrics.json`` and figure data.

    Runs when the world records task optima or the MAE has archetype weights; returns
    ``({}, {})`` otherwise.

    Parameters
    ----------
    sim
        The simulated world (its task optima, traits and task weights are read only to
        score; its instances for the figure).
    bank
        The trained AEs (species order).
    meta
        The fitted MAE (``archetype_weights``, ``archetype_latents`` and ``generate`` when
        its prior is archetypal).
    seed
        Seeds the generated and subsampled instances of the figure.

    Returns
    -------
    (dict, dict)
        Summary: ``source`` (whose weights ``weights`` summarises: ``mae``, or
        ``aa_traits``, the oracle's, when the MAE has none), ``weights``
        (:func:`weights_summary`), and with task optima ``tasks``, ``mae`` and
        ``baselines`` (:func:`archetype_recovery` metrics without ``positions``, or
        ``not_applicable``). Figure data: ``species``, ``weights [S, k]``, ``source``,
        with optima ``traits``, ``optima``, ``positions`` (method -> ``[k, d]``),
        ``true_weights``; with decoded archetypes ``instances`` (``generated [k, n, D]``,
        ``nearest [k, n, D]``, ``nearest_species``, ``background [S * n', D]``).
    """
    species = list(bank.species)
    mae_weights = getattr(meta, "archetype_weights", None) if meta is not None else None
    has_tasks = getattr(sim, "task_optima", None) is not None
    if mae_weights is None and not has_tasks:
        return {}, {}
    summary: dict[str, Any] = {}
    figures: dict[str, Any] = {"species": species}
    if has_tasks:
        traits, optima, true_w = _truth(sim, species)
        scores = archetype_scores(sim, bank, meta)
        methods = {"mae": scores["mae"], **scores["baselines"]}
        figures["positions"] = {
            name: np.asarray(m["positions"]) for name, m in methods.items() if "positions" in m
        }
        figures.update(traits=traits, optima=optima)
        if true_w is not None:
            figures["true_weights"] = true_w
        summary["tasks"] = scores["tasks"]
        summary["mae"] = _without_positions(scores["mae"])
        summary["baselines"] = {n: _without_positions(m) for n, m in scores["baselines"].items()}
    if mae_weights is not None:
        weights, source = np.asarray(mae_weights, dtype=np.float64), "mae"
    else:
        weights, source = linear_aa_weights(traits, len(optima)), "aa_traits"
    summary = {"source": source, "weights": weights_summary(weights, species), **summary}
    figures.update(weights=weights, source=source)
    if mae_weights is not None and getattr(meta, "archetype_latents", None) is not None:
        figures["instances"] = _instance_figure_data(sim, meta, weights, species, seed)
    if has_tasks:
        log.info(
            "archetypes: recovery error %s",
            ", ".join(
                f"{n} {m['archetype_error']:.3f}"
                for n, m in {"mae": summary["mae"], **summary["baselines"]}.items()
                if "archetype_error" in m
            ),
        )
    return summary, figures


def _without_positions(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "positions"}


_METHOD_LABELS = {
    "mae": "**MAE (archetypal prior)**",
    "aa_traits": "linear AA, true mean traits (oracle)",
    "aa_data_mean": "linear AA, data means",
    "aa_raw_weights": "linear AA, raw AE weights",
}


def archetypes_markdown(summary: dict[str, Any]) -> list[str]:
    """The report.md section of the archetypes (lines)."""
    if not summary:
        return []
    w = summary["weights"]
    who = (
        "the MAE's (archetypal prior)"
        if summary["source"] == "mae"
        else "linear AA on the true traits (the MAE has no archetypes)"
    )
    k = w["k"]
    lines = [
        "## Archetypes",
        "",
        f"Weights of each species on {k} archetypes, {who}: mean largest weight "
        f"{w['mean_max_weight']:.2f} (1/{k} = {1 / k:.2f} for even mixtures, 1 for pure "
        f"types).",
        "",
        "| archetype | mean weight | specialists (weight >= "
        f"{SPECIALIST}) | nearest species | its weight |",
        "|---|---:|---:|---|---:|",
    ]
    for j in range(k):
        near = w["nearest_species"][j]
        lines.append(
            f"| {j + 1} | {w['mean_weight'][j]:.2f} | {w['specialists'][j]} | "
            f"{near['species']} | {near['weight']:.2f} |"
        )
    lines.append("")
    if "tasks" in summary:
        lines += [
            f"Recovery of the {summary['tasks']} true task optima: each method's archetypes "
            "placed in trait space by regressing the species' true traits on its weights, "
            "matched to the optima by optimal assignment; error = distance in units of the "
            "species' trait spread (0 is perfect; mean and worst over the optima). weight r: "
            "mean correlation of matched weights with the true task weights; R^2: traits "
            "explained by the weights.",
            "",
            "| method | error | worst | weight r | R^2 |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, m in {"mae": summary["mae"], **summary["baselines"]}.items():
            label = _METHOD_LABELS.get(name, name)
            if "not_applicable" in m:
                lines.append(f"| {label} | not applicable: {m['not_applicable']} | | | |")
                continue
            r = m.get("weight_correlation")
            lines.append(
                f"| {label} | {m['archetype_error']:.3f} | {m['archetype_error_max']:.3f} | "
                f"{'n/a' if r is None else f'{r:.2f}'} | {m['explained']:.2f} |"
            )
        lines.append("")
    return lines
