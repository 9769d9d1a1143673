"""Trait evolution along a phylogeny.

``brownian``, ``ou``, ``early_burst`` and ``jumps`` are vectorised NumPy models
(:mod:`evosim.evolve.models`); ``evolve_traits(tree, config, rng)`` dispatches on
``config.model``. The individual-based ``population`` model lives in
:mod:`evosim.evolve.population` (``evolve_population``), imported on first use.
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

__all__ = [
    "TreeArrays",
    "brownian",
    "early_burst",
    "evolve_population",
    "evolve_traits",
    "evolve_traits_array",
    "jumps",
    "node_depths",
    "ou",
    "propagate",
    "tree_arrays",
]


def __getattr__(name: str) -> Any:
    # The population engine pulls in DEAP; load it only when asked for.
    if name == "evolve_population":
        value = importlib.import_module("evosim.evolve.population").evolve_population
        globals()[name] = value
        return value
    raise AttributeError(f"module 'evosim.evolve' has no attribute {name!r}")
