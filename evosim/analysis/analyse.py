"""``analyse``: latent space -> tree -> scores, with baselines, support and noise floor."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from evosim.analysis.baselines import BASELINES, baseline_distances, not_applicable
from evosim.analysis.metrics import METRICS, euclidean, mantel, patristic, score_distances
from evosim.analysis.report import Report
from evosim.analysis.support import (
    bootstrap_support,
    mean_support,
    noise_floor,
    split_set,
    support_newick,
)
from evosim.scenario import AnalysisConfig
from evosim.seeding import rng as make_rng

__all__ = ["analyse", "random_tree_scores"]

log = logging.getLogger(__name__)

#: Bootstrap samples over AE replicates (when there are replicates).
BOOTSTRAP = 100
#: Random-tree baseline: compute quartet/triplet distances up to this many leaves.
EXACT_RANDOM_MAX = 128


def _binary(tree: Any) -> bool:
    """Every internal node has two children (the root of an unrooted tree may have three)."""
    return all(
        len(tree.children(n)) == 2 or (n == tree.root and len(tree.children(n)) == 3)
        for n in tree.internal_nodes
    )


def random_tree_scores(
    true_tree: Any,
    species: list[str],
    *,
    n_trees: int,
    method: str,
    mantel_permutations: int,
    rng: np.random.Generator,
    true_distances: np.ndarray,
) -> dict[str, float | None]:
    """Expected scores of random trees: Yule trees with shuffled leaf labels.

    Each random tree's own patristic distances stand in for a method's distances, so the
    cophenetic correlations and the Mantel p-value (at most 99 permutations each) are those
    of a random tree too. Every score is averaged over ``n_trees`` samples, except on
    binary true trees of more than ``EXACT_RANDOM_MAX`` leaves: there the quartet and
    triplet distances take their exact expectation, 2/3, and the Mantel p-value its exact
    expectation under the null, ``(P + 2) / (2 (P + 1))`` for P permutations (see the
    comments in the code).
    """
    from evosim.phylo import quartet_distance, robinson_foulds, triplet_distance, yule

    # Quartet/triplet distances cost O(n^2) and more per tree: sample them on small trees,
    # use their exact expectation on large binary ones.
    exact = len(species) <= EXACT_RANDOM_MAX or not _binary(true_tree)
    rows = []
    for _ in range(n_trees):
        t = yule(1.0, len(species), rng=rng)
        mapping = dict(zip(t.extant_leaves, rng.permutation(species).tolist()))
        t = t.relabel(mapping)
        d = patristic(t, species)
        r, p = mantel(true_distances, d, min(mantel_permutations, 99) if exact else 0, rng)
        a, b = d[np.triu_indices(len(species), 1)], true_distances[np.triu_indices(len(species), 1)]
        row = {}
        if exact:
            row["quartet"] = float(quartet_distance(t, true_tree, normalized=True))
            if method == "upgma":
                row["triplet"] = float(triplet_distance(t, true_tree, normalized=True))
        rows.append(
            {
                **row,
                "rf": float(robinson_foulds(t, true_tree, normalized=False, rooted=False)),
                "nrf": float(robinson_foulds(t, true_tree, normalized=True, rooted=False)),
                "cophenetic_pearson": r,
                "cophenetic_spearman": float(spearmanr(a, b).statistic),
                "mantel_p": p,
            }
        )
    out: dict[str, float | None] = {}
    for k in rows[0]:
        vals = np.asarray([row[k] for row in rows], dtype=float)
        out[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    if not exact:
        # With uniformly shuffled labels each quartet (and rooted triplet) of a random
        # tree takes each of its 3 resolutions with probability 1/3, whatever the tree
        # shape, so the expected normalised distance to a binary tree is exactly 2/3.
        out["quartet"] = 2.0 / 3.0
        out["triplet"] = 2.0 / 3.0 if method == "upgma" else None
        # Shuffled labels make a random tree's distances exchangeable with the truth's, so
        # the observed statistic's rank among the P + 1 (tie-free: continuous branch
        # lengths) is uniform and p = rank / (P + 1) has mean (P + 2) / (2 (P + 1)).
        perms = min(mantel_permutations, 99)
        out["mantel_p"] = (perms + 2) / (2 * (perms + 1)) if perms > 0 else float("nan")
    elif method != "upgma":
        out["triplet"] = None
    return {k: out[k] for k in METRICS}


def analyse(
    sim: Any, bank: Any, meta: Any, config: AnalysisConfig | None = None, *, seed: int = 0
) -> Report:
    """Infer a tree from the MAE's latent space and score it, and every baseline, against the truth.

    Parameters
    ----------
    sim
        The :class:`~evosim.simulation.Simulation` (true extant tree, traits, instances).
    bank
        The :class:`~evosim.train.AEBank` the MAE was fitted on.
    meta
        The fitted :class:`~evosim.meta.MetaResult`.
    config
        :class:`~evosim.scenario.AnalysisConfig`: tree method (``nj``/``upgma``),
        baselines (list or ``"all"``), Mantel permutations, random trees.
    seed
        Seeds the Mantel permutations, bootstrap, random trees and subsampling.

    Returns
    -------
    Report
        ``inferred_tree``, ``metrics``, ``baselines``, ``support``, ``noise_floor``;
        ``write(out_dir)`` writes the files and figures.

    Notes
    -----
    The true tree is read only to score: every tree and distance is computed first
    from the latents (or the baseline's own data), then compared with it.
    """
    t0 = time.perf_counter()
    config = config if config is not None else AnalysisConfig()
    species = list(meta.species)
    if list(bank.species) != species:
        raise ValueError("the bank and the MAE have different species")
    names = list(BASELINES) if config.baselines == "all" else list(config.baselines)
    unknown = [b for b in names if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")

    # --- everything inferred before the truth is looked at
    d_mae = euclidean(meta.latents)
    meta_input = meta.represent(bank) if {"pca", "untrained_mae"} & set(names) else None
    distances = {}
    skipped = {name: why for name in names if (why := not_applicable(name, bank)) is not None}
    for name in names:
        if name != "random" and name not in skipped:
            distances[name] = baseline_distances(
                name, sim, bank, meta, seed=seed, meta_input=meta_input
            )

    # --- scoring
    true_tree = sim.extant_tree()
    if set(true_tree.leaves) != set(species):
        raise ValueError("the true tree's leaves are not the bank's species")
    d_true = patristic(true_tree, species)
    inferred, metrics = score_distances(
        d_mae,
        species,
        true_tree,
        method=config.method,
        mantel_permutations=config.mantel_permutations,
        rng=make_rng(seed, "mantel", "mae"),
        true_distances=d_true,
    )
    baselines: dict[str, dict[str, float | None]] = {}
    trees = {}
    for name in names:
        if name in skipped:
            baselines[name] = {"not_applicable": skipped[name]}
            continue
        if name == "random":
            baselines[name] = random_tree_scores(
                true_tree,
                species,
                n_trees=config.random_trees,
                method=config.method,
                mantel_permutations=config.mantel_permutations,
                rng=make_rng(seed, "random-trees"),
                true_distances=d_true,
            )
            continue
        trees[name], baselines[name] = score_distances(
            distances[name],
            species,
            true_tree,
            method=config.method,
            mantel_permutations=config.mantel_permutations,
            rng=make_rng(seed, "mantel", name),
            true_distances=d_true,
        )

    generative: dict[str, Any] = {}
    generative_figures: dict[str, Any] = {}
    if config.generative:
        from evosim.analysis.generative import generative_scores

        generative, generative_figures = generative_scores(
            sim, bank, meta, distances=distances, folds=config.generative_folds, seed=seed
        )

    support: dict[str, float] = {}
    summary: dict[str, float] = {}
    floor: dict[str, float] = {}
    if meta.replicates > 1:
        support = bootstrap_support(
            meta.member_latents,
            species,
            meta.replicates,
            inferred,
            config.method,
            BOOTSTRAP,
            make_rng(seed, "bootstrap"),
        )
        summary = mean_support(support, inferred, split_set(true_tree))
        floor = noise_floor(meta.member_latents, meta.replicates)

    losses = getattr(bank, "losses", {}) or {}
    r = int(bank.replicates)
    ae_losses = {}
    if "train" in losses:
        ae_losses = {
            "species": list(bank.member_species),
            "replicate": [i % r for i in range(len(bank.member_species))],
            "train": np.asarray(losses["train"], dtype=np.float64),
            "val": np.asarray(losses.get("val", np.full(len(losses["train"]), np.nan))),
        }
    mae_losses = {"step": meta.losses.get("step", []), "train": meta.losses.get("train", [])}
    es = meta.info.get("early_stopping_curve")
    if es is not None:
        mae_losses["val_step"], mae_losses["val"] = es["step"], es["val"]
    scenario = sim.scenario.to_dict() if getattr(sim, "scenario", None) is not None else {}
    report = Report(
        inferred_tree=inferred,
        metrics=metrics,
        baselines=baselines,
        species=species,
        latents=np.asarray(meta.latents),
        true_tree=true_tree,
        method=config.method,
        support=support,
        support_summary=summary,
        noise_floor=floor,
        newick=support_newick(inferred, support),
        latent_distances=d_mae,
        true_distances=d_true,
        ae_losses=ae_losses,
        mae_losses=mae_losses,
        meta_info=dict(meta.info),
        scenario=scenario,
        baseline_trees=trees,
        generative=generative,
        generative_figures=generative_figures,
    )
    report.timings["analysis"] = time.perf_counter() - t0
    return report
