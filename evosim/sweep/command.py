"""``evosim sweep``: load, run, print the summary and the failures; the exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from evosim.sweep.execute import failure_lines, import_ray, run_sweep
from evosim.sweep.spec import load_sweep

__all__ = ["sweep_command"]


def sweep_command(
    sweep_file: str | Path,
    out: str | Path,
    *,
    jobs: int | None = None,
    threads: int = 1,
    address: str | None = None,
    gpus_per_task: float = 0.0,
    resume: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> int:
    """Run a sweep file on Ray into ``out``; 0 when every task finished, 1 when some failed.

    The sweep file is validated (every point) before Ray is imported or started.
    Raises :class:`evosim.errors.EvosimError` for what the user can fix (a bad sweep
    file, Ray missing, ``out`` in the way).
    """
    sweep = load_sweep(sweep_file)
    import_ray()
    outcome = run_sweep(
        sweep,
        out,
        jobs=jobs,
        threads=threads,
        address=address,
        gpus_per_task=gpus_per_task,
        resume=resume,
        progress=progress,
    )
    echo(outcome.brief)
    echo("(every baseline: summary.md)")
    total = len(outcome.rows)
    echo(
        f"\n{total} tasks: {outcome.ran} ran, {outcome.skipped} already finished, "
        f"{outcome.failed} failed"
    )
    echo(f"sweep directory: {outcome.out} (results.csv, summary.md, figures/, runs/)")
    if outcome.failed:
        warn(f"{outcome.failed} of {total} tasks failed:")
        for line in failure_lines(outcome):
            warn(line)
        return 1
    return 0
