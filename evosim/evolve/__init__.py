"""Trait evolution along a phylogeny.

``brownian``, ``ou``, ``early_burst`` and ``jumps`` are vectorised NumPy models
(:mod:`evosim.evolve.models`), and so is ``tradeoff`` (:mod:`evosim.evolve.tradeoff`:
selection toward the Pareto front of several tasks, whose optima and per-lineage task
weights ``evolve_tradeoff`` also returns); ``evolve_traits(tree, config, rng)`` dispatches
on ``config.model``. The individual-based ``population`` model lives in
:mod:`evosim.evolve.population` (``evolve_population``), imported on first use.
Phylogenetic signal (Blomberg's K): :mod:`evosim.evolve.signal`.
"""

from __future__ import annotations

import importlib
from typing import Any

from evosim.evolve.models import (
    brownian,
    early_burst,
    evolve_traits,
    evolve_traits_array,
    jumps,
    ou,
)
from evosim.evolve.propagate import TreeArrays, node_depths, propagate, tree_arrays
from evosim.evolve.signal import blomberg_k, blomberg_k_test, phylogenetic_covariance
from evosim.evolve.tradeoff import TradeoffWorld, evolve_tradeoff, tradeoff

__all__ = [
    "TradeoffWorld",
    "TreeArrays",
    "blomberg_k",
    "blomberg_k_test",
    "brownian",
    "early_burst",
    "evolve_population",
    "evolve_traits",
    "evolve_traits_array",
    "evolve_tradeoff",
    "jumps",
    "node_depths",
    "ou",
    "phylogenetic_covariance",
    "propagate",
    "tradeoff",
    "tree_arrays",
]


def __getattr__(name: str) -> Any:
    # The population engine pulls in DEAP; load it only when asked for.
    if name == "evolve_population":
        value = importlib.import_module("evosim.evolve.population").evolve_population
        globals()[name] = value
        return value
    raise AttributeError(f"module 'evosim.evolve' has no attribute {name!r}")
