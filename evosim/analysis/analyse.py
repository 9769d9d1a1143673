"""``analyse``: latent space -> tree -> scores, with baselines, support and noise floor."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from evosim.analysis.archetypes import archetype_analysis
from evosim.analysis.baselines import BASELINES, baseline_distances, not_applicable
from evosim.analysis.identification import identification_for_analysis
from evosim.analysis.mantel import mantel_tests
from evosim.analysis.metrics import euclidean, patristic, score_distances, upper_triangle
from evosim.analysis.random_trees import random_tree_scores
from evosim.analysis.report import Report
from evosim.analysis.support import (
    bootstrap_support,
    mean_support,
    noise_floor,
    support_newick,
)
from evosim.devices import resolve_device
from evosim.errors import ScenarioError
from evosim.scenario import AnalysisConfig
from evosim.seeding import rng as make_rng
from evosim.stats import ranks

__all__ = ["analyse", "random_tree_scores"]

#: Methods scored at once, each on its own thread. Each holds its tree inference's working
#: copies (about 2.5 [S, S] matrices), counted in ``evosim.resources.ANALYSIS_MATRICES``.
SCORING_THREADS = 2

log = logging.getLogger(__name__)

#: Bootstrap samples over AE replicates (when there are replicates).
BOOTSTRAP = 100


def analyse(
    sim: Any,
    bank: Any,
    meta: Any,
    config: AnalysisConfig | None = None,
    *,
    seed: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
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
        baselines (list or ``"all"``), Mantel permutations, random trees, device.
    seed
        Seeds the Mantel permutations, bootstrap, random trees and subsampling.
        ``None``: the run's seed, ``sim.scenario.seed`` (so the result equals the
        ``evosim run`` of the same scenario).
    device
        Where the energy distances and Mantel tests compute (``cpu``, ``cuda``, a
        ``torch.device``); ``None``: ``config.device`` (``auto`` picks CUDA when present).
    progress
        Show a progress bar on stderr (hidden when stderr is not a terminal).

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
    if seed is None:
        scenario = getattr(sim, "scenario", None)
        if scenario is None:
            raise ValueError("analyse: seed=None takes sim.scenario.seed, but sim has none")
        seed = int(scenario.seed)
    dev = resolve_device(config.device if device is None else str(device), "analysis.device")
    species = list(meta.species)
    if list(bank.species) != species:
        raise ValueError("the bank and the MAE have different species")
    names = list(BASELINES) if config.baselines == "all" else list(config.baselines)
    unknown = [b for b in names if b not in BASELINES]
    if unknown:
        raise ScenarioError(
            f"analysis.baselines: unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}"
        )
    skipped = {name: why for name in names if (why := not_applicable(name, bank, meta)) is not None}
    scored = [n for n in names if n != "random" and n not in skipped]
    bar = tqdm(
        total=2 * len(scored) + 2 + ("random" in names),
        desc="analysis",
        unit="step",
        disable=None if progress else True,
    )

    def step(what: str) -> None:
        bar.set_postfix_str(what, refresh=False)
        bar.update()

    # --- everything inferred before the truth is looked at
    d_mae = euclidean(meta.tree_latents)
    meta_input = meta.represent(bank) if {"pca", "untrained_mae"} & set(names) else None
    distances = {}
    for name in scored:
        log.debug("analysis: %s distances", name)
        distances[name] = baseline_distances(
            name, sim, bank, meta, seed=seed, meta_input=meta_input, device=dev
        )
        step(f"{name} distances")

    # --- scoring
    true_tree = sim.extant_tree()
    if set(true_tree.leaves) != set(species):
        raise ValueError("the true tree's leaves are not the bank's species")
    d_true = patristic(true_tree, species)
    # one permutation stream for every method's Mantel test: each permuted truth is
    # gathered once and serves all methods (each p-value is that of its own test)
    mantel_results = dict(
        zip(
            ["mae", *scored],
            mantel_tests(
                d_true,
                [d_mae, *(distances[name] for name in scored)],
                config.mantel_permutations,
                make_rng(seed, "mantel"),
                device=dev,
            ),
        )
    )
    step("Mantel tests")
    true_ranks = ranks(upper_triangle(d_true))
    # Methods are scored on SCORING_THREADS threads (fewer if torch may use fewer):
    # neighbor joining is compiled and releases the GIL, and so do NumPy's sorts behind
    # the rank correlations, so the methods' scores are computed side by side. Each is
    # what it would be alone.
    matrices = {"mae": d_mae, **{name: distances[name] for name in scored}}

    def score(name: str) -> tuple[Any, dict[str, float | None]]:
        return score_distances(
            matrices[name],
            species,
            true_tree,
            method=config.method,
            true_distances=d_true,
            mantel_result=mantel_results[name],
            true_ranks=true_ranks,
        )

    scored_results = {}
    workers = max(1, min(SCORING_THREADS, torch.get_num_threads()))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for name, result in zip(matrices, pool.map(score, matrices)):
            scored_results[name] = result
            step("MAE tree" if name == "mae" else f"{name} tree")
    inferred, metrics = scored_results["mae"]
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
                device=dev,
            )
            step("random trees")
            continue
        trees[name], baselines[name] = scored_results[name]
    bar.close()

    generative: dict[str, Any] = {}
    generative_figures: dict[str, Any] = {}
    if config.generative:
        from evosim.analysis.generative import generative_scores

        generative, generative_figures = generative_scores(
            sim, bank, meta, distances=distances, folds=config.generative_folds, seed=seed
        )

    archetypes, archetype_figures = archetype_analysis(sim, bank, meta, seed=seed)

    support: dict[str, float] = {}
    summary: dict[str, float] = {}
    floor: dict[str, float] = {}
    if meta.replicates > 1:
        support = bootstrap_support(
            meta.tree_member_latents,
            species,
            meta.replicates,
            inferred,
            config.method,
            BOOTSTRAP,
            make_rng(seed, "bootstrap"),
        )
        summary = mean_support(support, inferred, true_tree)
        floor = noise_floor(meta.tree_member_latents, meta.replicates)

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
        latents=np.asarray(meta.tree_latents),
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
        devices={"analysis": str(dev)},
        seed=seed,
        generative=generative,
        generative_figures=generative_figures,
        archetypes=archetypes,
        archetype_figures=archetype_figures,
    )
    report.identification = identification_for_analysis(sim, bank, config, seed=seed, device=dev)
    log.info("analysis: %d methods scored in %.1f s", len(names) + 1, time.perf_counter() - t0)
    return report
