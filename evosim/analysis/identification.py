"""The AE bank as a species identifier: accuracy, calibration, novelty, diagnostic characters.

:func:`identification_scores` is the analysis stage's entry point. It draws fresh
specimens of every extant species from the simulated world (instances no AE trained
on: new individuals, from the named streams ``(seed, "instances", species + "/calibration")``
and ``... + "/test"``), then

* calibrates the bank's identifier on the calibration specimens and identifies the test
  specimens: accuracy (overall and balanced), the confusion matrix in the true tree's
  leaf order, the Spearman correlation between the (symmetrised) confusion rate of a
  species pair and their patristic distance with a Mantel permutation p-value (one-sided,
  for "confusions fall between close relatives"), the expected calibration error (ECE) of
  the calibrated score;
* novelty detection: some species are held out entirely, and the bank of the others is
  calibrated and asked about test specimens of all. The bank "trained without them" is
  ``bank.subset(known)``: the trainer makes a species' AE a function of (seed, species,
  replicate) alone, so it is the same AE whether trained among all species or among the
  known ones only (exactly, in eager training; to float rounding when the step was
  compiled). AUROC of the novelty score, unseen species' specimens against known ones';
* the same on two baselines fitted on the species' training instances: the nearest
  class mean, and a Gaussian classifier (per-species mean and Ledoit-Wolf shrunk
  covariance; Mahalanobis distance to the predicted species as its novelty score);
* for concrete AEs the selected input features of every species (its *diagnostic
  characters*) and the Spearman correlation of two species' Jaccard overlap with their
  patristic distance; for MDL AEs the bits per instance of the test specimens.

The true tree is read only to order and score; the held-out species are drawn at random
(not by clade). Everything is seeded by ``(seed, name)`` streams.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata, spearmanr

from evosim.seeding import rng as make_rng

__all__ = [
    "identification_scores",
    "identification_for_analysis",
    "identification_enabled",
    "identification_summary",
    "identification_markdown",
    "draw_identification",
    "fresh_specimens",
    "auroc",
    "expected_calibration_error",
    "ledoit_wolf",
    "NearestMeanClassifier",
    "GaussianClassifier",
    "AUTO_COST_FRACTION",
]

log = logging.getLogger(__name__)

#: ``analysis.identification: auto`` is on when the identification pass costs at most this
#: fraction of the AE training, counted in AE evaluations (see :func:`identification_enabled`).
AUTO_COST_FRACTION = 0.25
#: Reliability bins of the expected calibration error.
ECE_BINS = 15
#: Permutations of the Mantel tests of this module.
PERMUTATIONS = 999


# ---------------------------------------------------------------------------- small tools


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of a score that should be higher for ``positives``.

    The Mann-Whitney statistic ``P(score_pos > score_neg) + P(tie) / 2`` from mid-ranks.
    NaN when either set is empty.
    """
    neg = np.asarray(negatives, dtype=np.float64).ravel()
    pos = np.asarray(positives, dtype=np.float64).ravel()
    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([neg, pos]))
    r_pos = ranks[len(neg) :].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def expected_calibration_error(
    score: np.ndarray, correct: np.ndarray, *, bins: int = ECE_BINS
) -> float:
    """``sum_b (n_b / n) |accuracy_b - mean score_b|`` over equal-width bins of the score.

    Naeini, Cooper & Hauskrecht (AAAI 2015); the score is the predicted species'
    probability, ``correct`` whether it was the true species.
    """
    score = np.asarray(score, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(score) == 0:
        return float("nan")
    which = np.minimum((score * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(correct[sel].mean() - score[sel].mean())
    return float(total / len(score))


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ledoit-Wolf shrunk covariances of S samples at once.

    ``(1 - a) C + a (tr C / D) I`` with ``C`` the maximum-likelihood covariance and the
    shrinkage ``a`` that minimises the expected Frobenius loss (Ledoit & Wolf, J.
    Multivariate Anal. 2004), estimated as in scikit-learn's ``ledoit_wolf``.

    Parameters
    ----------
    x
        ``[S, N, D]`` samples of S distributions.

    Returns
    -------
    (covariances ``[S, D, D]``, shrinkage ``[S]``)
    """
    x = np.asarray(x, dtype=np.float64)
    s, n, d = x.shape
    xc = x - x.mean(1, keepdims=True)
    emp = np.einsum("snd,sne->sde", xc, xc) / n
    x2 = xc**2
    trace = x2.sum(1) / n  # [S, D] diagonal of emp
    mu = trace.sum(1) / d
    beta_ = np.einsum("snd,sne->sde", x2, x2).sum((1, 2))
    delta_ = (np.einsum("snd,sne->sde", xc, xc) ** 2).sum((1, 2)) / n**2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace.sum(1) + d * mu**2) / d
    beta = np.minimum(beta, delta)
    shrink = np.where(beta == 0, 0.0, beta / np.where(delta == 0, 1.0, delta))
    cov = (1.0 - shrink)[:, None, None] * emp + (shrink * mu)[:, None, None] * np.eye(d)
    return cov, shrink


class NearestMeanClassifier:
    """Each instance to the species with the nearest mean (Euclidean)."""

    def __init__(self, instances: np.ndarray):
        self.means = torch.as_tensor(np.asarray(instances, dtype=np.float64).mean(1))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``[P]`` species index of each instance of ``x`` ``[P, D]``."""
        d = torch.cdist(torch.as_tensor(np.asarray(x, dtype=np.float64)), self.means)
        return d.argmin(1).numpy()


class GaussianClassifier:
    """Quadratic discriminant: per-species mean and Ledoit-Wolf covariance, equal priors.

    ``predict`` returns the species of highest Gaussian log-likelihood and the squared
    Mahalanobis distance to it (a novelty score: about chi-square with D degrees of
    freedom for the species' own instances).
    """

    def __init__(self, instances: np.ndarray, *, device: str | torch.device = "cpu"):
        x = np.asarray(instances, dtype=np.float64)
        cov, self.shrinkage = ledoit_wolf(x)
        chol = np.linalg.cholesky(cov)
        self.device = torch.device(device)
        self.means = torch.as_tensor(x.mean(1), device=self.device)  # [S, D]
        eye = np.broadcast_to(np.eye(x.shape[2]), cov.shape)
        inv_chol = np.linalg.solve(chol, eye)  # L^-1, so |L^-1 (x - m)|^2 is Mahalanobis
        self.whiten = torch.as_tensor(inv_chol, device=self.device)  # [S, D, D]
        self.half_logdet = torch.as_tensor(
            np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1), device=self.device
        )

    def predict(self, x: np.ndarray, *, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """``([P] species index, [P] squared Mahalanobis distance)`` for ``x`` ``[P, D]``."""
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
        s, d = self.means.shape
        per = max(1, (1 << 24) // (s * d))
        idx, maha = [], []
        for a in range(0, len(xt), min(chunk, per)):
            xc = xt[a : a + min(chunk, per)].to(self.device)
            diff = xc.unsqueeze(0) - self.means.unsqueeze(1)  # [S, c, D]
            z = torch.bmm(diff, self.whiten.transpose(1, 2))
            m2 = z.pow(2).sum(-1)  # [S, c]
            loglik = -0.5 * m2 - self.half_logdet[:, None]
            best = loglik.argmax(0)
            idx.append(best.cpu().numpy())
            maha.append(m2.gather(0, best[None]).squeeze(0).cpu().numpy())
        return np.concatenate(idx), np.concatenate(maha)


def fresh_specimens(
    sim: Any, n: int, *, stream: str, species: list[str] | None = None
) -> np.ndarray:
    """``[S, n, D]`` new individuals of the extant species, drawn from the simulated world.

    Species ``s``'s specimens come from the family's stream ``(seed, "instances",
    s + "/" + stream)``: reproducible, and independent of the instances the AEs trained on.
    """
    from evosim.species import make_family

    sc = sim.scenario
    family = make_family(
        sc.species.model_copy(update={"instances": int(n)}), sc.traits.dim, sc.seed
    )
    names = list(sim.species) if species is None else list(species)
    individuals = getattr(sim, "individuals", None) or {}
    return np.stack(
        [
            family.instances(f"{s}/{stream}", sim.traits[s], individuals=individuals.get(s))
            for s in names
        ]
    )


def _rank_matrix(m: np.ndarray) -> np.ndarray:
    """Upper-triangle entries replaced by their mid-ranks (symmetric, zero diagonal)."""
    n = m.shape[0]
    iu = np.triu_indices(n, 1)
    out = np.zeros((n, n))
    out[iu] = rankdata(m[iu])
    return out + out.T


def _pair_correlation(
    values: np.ndarray, distances: np.ndarray, rng: np.random.Generator
) -> tuple[float, float]:
    """Spearman rho of pair values with distances, and the one-sided Mantel p of rho < 0."""
    from evosim.analysis.metrics import mantel

    n = values.shape[0]
    if n < 4:
        return float("nan"), float("nan")
    iu = np.triu_indices(n, 1)
    v, d = values[iu], distances[iu]
    if np.ptp(v) == 0 or np.ptp(d) == 0:
        return float("nan"), float("nan")
    rho = float(spearmanr(v, d).statistic)
    # Pearson of mid-ranks is Spearman; -distance makes "decreasing" the tested direction
    _, p = mantel(_rank_matrix(values), _rank_matrix(-distances), PERMUTATIONS, rng)
    return rho, float(p)


# ---------------------------------------------------------------------------- the gate


def identification_enabled(setting: bool | str, n_species: int, scenario: Any) -> bool:
    """Whether the analysis runs :func:`identification_scores` for ``analysis.identification``.

    ``auto`` is on when the identification pass costs at most :data:`AUTO_COST_FRACTION` of
    the AE training, counted in AE evaluations: ``S * S * n`` for ``n = specimens +
    calibration specimens`` per species against every species' AE, versus about
    ``3 * S * steps * batch_size`` (forward and backward) in training, i.e. when
    ``S * n <= 0.75 * steps * batch_size`` (quickstart: 32 species, on; the default
    ``n = 96`` stays on up to about 1,500 species at 1,500 steps of 128).
    """
    if setting != "auto":
        return bool(setting)
    ae = scenario.autoencoder
    an = scenario.analysis
    n = an.identification_specimens + an.identification_calibration
    return n_species * n * n_species <= AUTO_COST_FRACTION * 3 * n_species * ae.steps * (
        ae.batch_size
    )


# ---------------------------------------------------------------------------- the analysis


def _evaluate(bank: Any, cal_x: np.ndarray, test_x: np.ndarray, device: Any) -> Any:
    from evosim.train.identify import calibrate, identify

    cal = calibrate(bank, list(cal_x), device=device)  # leaves bank.calibration alone
    return cal, identify(bank, test_x.reshape(-1, test_x.shape[-1]), cal, device=device)


def identification_scores(
    sim: Any,
    bank: Any,
    *,
    specimens: int = 64,
    calibration_specimens: int = 32,
    held_out_fraction: float = 0.25,
    baselines: bool = True,
    seed: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Identification, novelty and (concrete/MDL) variant scores of a bank on a world.

    Parameters
    ----------
    sim
        The :class:`~evosim.simulation.Simulation` the bank was trained on.
    bank
        Its :class:`~evosim.train.AEBank` or :class:`~evosim.train.AEBankSet` (any
        variant, mixed architectures too).
    specimens, calibration_specimens
        Fresh test and calibration specimens per species (see the module docstring).
    held_out_fraction
        Fraction of the species held out entirely for novelty detection (at least one,
        and at least two species stay known; none when the world has fewer than 3).
    baselines
        Also score the nearest-class-mean and Gaussian classifiers.
    seed
        Seeds the choice of held-out species and the Mantel permutations; None takes
        ``bank.info["seed"]``, else ``sim.scenario.seed``.
    device
        Where the AEs (and the Gaussian classifier) run.

    Returns
    -------
    dict
        Scalars (``accuracy``, ``balanced_accuracy``, ``ece``, ``mean_score``,
        ``temperature``, ``confusion_patristic_spearman``, ``confusion_patristic_p``,
        ``confusion_distance_ratio``), ``novelty`` and ``baselines`` sub-dicts, ``concrete``
        or ``mdl`` sub-dicts for those variants, and for the figures: ``order`` (species
        in tree order), ``confusion`` ``[S, S]`` rates in that order (rows true species),
        ``per_species_accuracy``, the test ``score``/``correct`` and novelty scores.
    """
    if seed is None:
        seed = bank.info.get("seed") if isinstance(getattr(bank, "info", None), dict) else None
        seed = int(sim.scenario.seed if seed is None else seed)
    device = torch.device(device)
    species = list(bank.species)
    if list(sim.species) != species:
        raise ValueError("the bank's species are not the simulation's extant species")
    s_count = len(species)
    cal_x = fresh_specimens(sim, calibration_specimens, stream="calibration")
    test_x = fresh_specimens(sim, specimens, stream="test")
    labels = np.repeat(np.arange(s_count), specimens)

    # --- inferred: identification by the whole bank
    cal, ev = _evaluate(bank, cal_x, test_x, device)
    correct = ev.index == labels
    counts = np.zeros((s_count, s_count))
    np.add.at(counts, (labels, ev.index), 1.0)
    rates = counts / specimens

    # --- novelty: the bank without some species
    gen = make_rng(seed, "identify-unknown")
    n_unknown = 0 if s_count < 3 else min(s_count - 2, max(1, round(held_out_fraction * s_count)))
    unknown = (
        sorted(gen.choice(s_count, size=n_unknown, replace=False).tolist()) if n_unknown else []
    )
    known = [i for i in range(s_count) if i not in set(unknown)]
    novelty: dict[str, Any] = {"held_out_species": [species[i] for i in unknown]}
    base: dict[str, Any] = {}
    if unknown:
        sub = bank.subset([species[i] for i in known])
        _, nev = _evaluate(sub, cal_x[known], test_x, device)
        is_unknown = np.isin(labels, unknown)
        novelty["auroc"] = auroc(nev.novelty[~is_unknown], nev.novelty[is_unknown])
        known_pos = np.asarray(known)[nev.index]
        novelty["known_accuracy"] = float(np.mean(known_pos[~is_unknown] == labels[~is_unknown]))
        novelty["novel_scores"] = nev.novelty[is_unknown]
        novelty["known_scores"] = nev.novelty[~is_unknown]
    if baselines:
        train = np.asarray(sim.instances, dtype=np.float64)
        flat = test_x.reshape(-1, test_x.shape[-1])
        nm = NearestMeanClassifier(train).predict(flat)
        gauss = GaussianClassifier(train, device=device)
        g_idx, _ = gauss.predict(flat)
        base["nearest_mean"] = {"accuracy": float(np.mean(nm == labels))}
        base["gaussian"] = {
            "accuracy": float(np.mean(g_idx == labels)),
            "mean_shrinkage": float(np.mean(gauss.shrinkage)),
        }
        if unknown:
            g_known = GaussianClassifier(train[known], device=device)
            gk_idx, gk_m2 = g_known.predict(flat)
            is_unknown = np.isin(labels, unknown)
            base["gaussian"]["novelty_auroc"] = auroc(gk_m2[~is_unknown], gk_m2[is_unknown])
            base["gaussian"]["known_accuracy"] = float(
                np.mean(np.asarray(known)[gk_idx][~is_unknown] == labels[~is_unknown])
            )

    variant: dict[str, Any] = {}
    specs = [g.spec for g in bank.groups]
    concrete = [s for s in species if specs[bank.group_of[species.index(s)]].variant == "concrete"]
    mdl = [s for s in species if specs[bank.group_of[species.index(s)]].variant == "mdl"]

    # --- scoring against the truth (tree order, patristic distances)
    from evosim.analysis.metrics import patristic

    true_tree = sim.extant_tree()
    order = [s for s in true_tree.leaves if s in set(species)]
    pos = np.asarray([species.index(s) for s in order])
    d_true = patristic(true_tree, species)
    sym = 0.5 * (rates + rates.T)
    np.fill_diagonal(sym, 0.0)
    rho, p = _pair_correlation(sym, d_true, make_rng(seed, "identify-mantel", "confusion"))
    iu = np.triu_indices(s_count, 1)
    confused = sym[iu].sum()
    ratio = (
        float((sym[iu] * d_true[iu]).sum() / confused / d_true[iu].mean())
        if confused > 0 and s_count > 1
        else float("nan")
    )
    per_species = correct.reshape(s_count, specimens).mean(1)
    if concrete:
        dim = test_x.shape[-1]
        selected = np.zeros((len(concrete), dim))
        for j, s in enumerate(concrete):
            selected[j, np.unique(bank.selected_features(s))] = 1.0
        inter = selected @ selected.T
        size = selected.sum(1)
        jac = inter / np.maximum(size[:, None] + size[None, :] - inter, 1.0)
        cidx = [species.index(s) for s in concrete]
        d_c = d_true[np.ix_(cidx, cidx)]
        jrho, jp = _pair_correlation(jac, d_c, make_rng(seed, "identify-mantel", "jaccard"))
        corder = [s for s in order if s in set(concrete)]
        crow = [concrete.index(s) for s in corder]
        variant["concrete"] = {
            "jaccard_patristic_spearman": jrho,
            "jaccard_patristic_p": jp,
            "mean_jaccard": float(jac[np.triu_indices(len(concrete), 1)].mean())
            if len(concrete) > 1
            else float("nan"),
            "mean_jaccard_nearest": _nearest_jaccard(jac, d_c),
            "order": corder,
            "selected": selected[crow],
        }
    if mdl:
        bits = np.asarray(
            [float(np.mean(bank.bits_per_instance(test_x[species.index(s)], s))) for s in mdl]
        )
        variant["mdl"] = {
            "bits_per_instance": float(bits.mean()),
            "species_bits": dict(zip(mdl, bits.tolist())),
        }
    return {
        "n_species": s_count,
        "specimens": specimens,
        "calibration_specimens": calibration_specimens,
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(per_species.mean()),
        "mean_score": float(ev.score.mean()),
        "ece": expected_calibration_error(ev.score, correct),
        "temperature": float(cal.temperature),
        "confusion_patristic_spearman": rho,
        "confusion_patristic_p": p,
        "confusion_distance_ratio": ratio,
        "novelty": novelty,
        "baselines": base,
        **variant,
        "order": order,
        "confusion": rates[np.ix_(pos, pos)],
        "per_species_accuracy": dict(zip(species, per_species.tolist())),
        "score": ev.score,
        "correct": correct,
    }


def _nearest_jaccard(jac: np.ndarray, d: np.ndarray) -> float:
    """Mean Jaccard overlap of each species with its closest relative(s)."""
    n = jac.shape[0]
    if n < 2:
        return float("nan")
    d = d + np.diag(np.full(n, np.inf))
    vals = [jac[i, d[i] == d[i].min()].mean() for i in range(n)]
    return float(np.mean(vals))


# ---------------------------------------------------------------------------- report pieces


def identification_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The scalars of :func:`identification_scores` (the ``identification`` key of metrics.json)."""
    keys = (
        "accuracy",
        "balanced_accuracy",
        "mean_score",
        "ece",
        "temperature",
        "confusion_patristic_spearman",
        "confusion_patristic_p",
        "confusion_distance_ratio",
        "specimens",
        "calibration_specimens",
    )
    out: dict[str, Any] = {k: result[k] for k in keys if k in result}
    nov = result.get("novelty", {})
    out["novelty"] = {
        k: nov[k] for k in ("held_out_species", "auroc", "known_accuracy") if k in nov
    }
    out["baselines"] = result.get("baselines", {})
    if "concrete" in result:
        out["concrete"] = {
            k: v for k, v in result["concrete"].items() if k not in ("order", "selected")
        }
    if "mdl" in result:
        out["mdl"] = result["mdl"]
    return out


def _f(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def identification_markdown(result: dict[str, Any]) -> str:
    """The report.md section of :func:`identification_scores`."""
    nov = result.get("novelty", {})
    base = result.get("baselines", {})
    rows = [
        "## Species identification",
        "",
        f"Each of {result['specimens']} fresh specimens per species is assigned to the species "
        "whose AE reconstructs it best. Its score is the top probability of a softmax over "
        f"-log(error) (temperature {_f(result['temperature'])}) mapped through an isotonic "
        f"calibration, both fitted on {result['calibration_specimens']} other specimens per "
        "species. Novelty: the bank without the held-out species "
        f"({len(nov.get('held_out_species', []))}), robust z-score of the best log error.",
        "",
        "| classifier | accuracy | novelty AUROC |",
        "|---|---:|---:|",
        f"| **AE bank** | {_f(result['accuracy'])} | {_f(nov.get('auroc'))} |",
    ]
    if "nearest_mean" in base:
        rows.append(f"| nearest class mean | {_f(base['nearest_mean']['accuracy'])} | n/a |")
    if "gaussian" in base:
        g = base["gaussian"]
        rows.append(
            f"| Gaussian (Ledoit-Wolf), Mahalanobis | {_f(g['accuracy'])} | "
            f"{_f(g.get('novelty_auroc'))} |"
        )
    rows += [
        "",
        f"- balanced accuracy {_f(result['balanced_accuracy'])}; mean score "
        f"{_f(result['mean_score'])}; expected calibration error {_f(result['ece'])}",
        f"- confusions vs patristic distance: Spearman {_f(result['confusion_patristic_spearman'])}"
        f" (Mantel p {_f(result['confusion_patristic_p'])}); mean distance of confused pairs / "
        f"mean distance {_f(result['confusion_distance_ratio'])}",
    ]
    if "concrete" in result:
        c = result["concrete"]
        rows.append(
            f"- concrete AEs: Jaccard overlap of selected features vs patristic distance: "
            f"Spearman {_f(c['jaccard_patristic_spearman'])} (Mantel p "
            f"{_f(c['jaccard_patristic_p'])}); mean overlap with the closest relative "
            f"{_f(c['mean_jaccard_nearest'])}, with any species {_f(c['mean_jaccard'])}"
        )
    if "mdl" in result:
        rows.append(
            f"- MDL AEs: {_f(result['mdl']['bits_per_instance'])} bits per instance (mean over "
            "species)"
        )
    rows += ["", "![confusion](figures/identification_confusion.png)"]
    rows += ["![calibration and novelty](figures/identification_scores.png)"]
    if "concrete" in result:
        rows += ["![selected features](figures/selected_features.png)"]
    return "\n".join(rows + [""])


def draw_identification(
    result: dict[str, Any], fig_dir: str | Path, *, tree: Any = None
) -> list[Path]:
    """The identification figures (confusion, calibration/novelty, selected features)."""
    from evosim import plot

    fig_dir = Path(fig_dir)
    nov = result.get("novelty", {})
    paths = [
        plot.plot_confusion(
            result["confusion"],
            result["order"],
            fig_dir / "identification_confusion.png",
            tree=tree,
        ),
        plot.plot_identification_scores(
            np.asarray(result["score"]),
            np.asarray(result["correct"]),
            np.asarray(nov.get("known_scores", [])),
            np.asarray(nov.get("novel_scores", [])),
            fig_dir / "identification_scores.png",
        ),
    ]
    if "concrete" in result:
        c = result["concrete"]
        paths.append(
            plot.plot_selected_features(
                c["selected"], c["order"], fig_dir / "selected_features.png", tree=tree
            )
        )
    return paths


def identification_for_analysis(
    sim: Any, bank: Any, config: Any, *, seed: int, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """:func:`identification_scores` as :func:`~evosim.analysis.analyse` runs it, or ``{}``.

    Runs when ``config.identification`` (an AnalysisConfig) says so (see
    :func:`identification_enabled`) and the simulation carries its scenario, on ``device``
    (the analysis stage's).
    """
    scenario = getattr(sim, "scenario", None)
    setting = getattr(config, "identification", False)
    if scenario is None or not identification_enabled(setting, len(bank.species), scenario):
        return {}
    return identification_scores(
        sim,
        bank,
        specimens=config.identification_specimens,
        calibration_specimens=config.identification_calibration,
        held_out_fraction=config.identification_held_out,
        seed=seed,
        device=device,
    )
