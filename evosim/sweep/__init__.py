"""Sweeps: one scenario over a grid of overrides and several seeds, on a laptop or a Ray cluster.

::

    from evosim.sweep import load_sweep, run_sweep
    sweep = load_sweep("scenarios/sweeps/recovery_vs_size.yaml")
    outcome = run_sweep(sweep, "runs/recovery_vs_size", jobs=2)
    print(outcome.summary)

Modules: :mod:`~evosim.sweep.spec` (sweep files, grid expansion), :mod:`~evosim.sweep.execute`
(running the tasks on Ray or in a loop), :mod:`~evosim.sweep.results` (rows, results
files, summary), :mod:`~evosim.sweep.figures`, :mod:`~evosim.sweep.command` (``evosim sweep``).
"""

from __future__ import annotations

from evosim.sweep.execute import MissingExtraError, SweepOutcome, run_sweep
from evosim.sweep.figures import is_sweep_dir, plot_sweep
from evosim.sweep.spec import Point, Sweep, Task, load_sweep, parse_sweep

__all__ = [
    "MissingExtraError",
    "Point",
    "Sweep",
    "SweepOutcome",
    "Task",
    "is_sweep_dir",
    "load_sweep",
    "parse_sweep",
    "plot_sweep",
    "run_sweep",
]
