"""evosim: simulate evolution along a phylogeny, train one autoencoder per species,
fit a meta-autoencoder over them, and measure how much of the tree it recovers.

The public API::

    sc = evosim.load_scenario("scenarios/quickstart.yaml")
    sim = evosim.simulate(sc)
    bank = evosim.train_autoencoders(sim, sc.autoencoder)
    meta = evosim.fit_meta_autoencoder(bank, sc.meta)
    report = evosim.analyse(sim, bank, meta, sc.analysis)
    evosim.run(sc, out="runs/quickstart")

gives the same results as ``evosim run scenarios/quickstart.yaml --out runs/quickstart``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

# The OpenMP runtime under torch's CPU threads (libgomp) spins up to ~3 ms at every barrier
# before it sleeps; on a machine busy with other work that spinning starves the thread that
# holds the work, and training with two threads ran 6-30x slower than with one. The wait
# policy is read once, when torch first loads the runtime, hence here; a user's own
# OMP_WAIT_POLICY or GOMP_SPINCOUNT wins (see evosim.train.resources.openmp_wait_policy).
if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from evosim.provenance import software_version  # noqa: E402
from evosim.scenario import Scenario, ScenarioError, load_scenario  # noqa: E402

#: The installed package's version (from its metadata; there is no second copy).
__version__ = software_version("evosim")

# Stages import torch and friends; load them on first use so `evosim validate` stays fast.
_LAZY = {
    "simulate": "evosim.simulation",
    "Simulation": "evosim.simulation",
    "train_autoencoders": "evosim.train",
    "AEBank": "evosim.train",
    "fit_meta_autoencoder": "evosim.meta",
    "MetaResult": "evosim.meta",
    "analyse": "evosim.analysis",
    "Report": "evosim.analysis",
    "run": "evosim.pipeline",
}

__all__ = ["Scenario", "ScenarioError", "load_scenario", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evosim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
