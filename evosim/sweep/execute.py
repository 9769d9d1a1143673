"""Running a sweep's tasks: each (point, seed) is one whole pipeline run, on Ray or in a loop.

On Ray every task is a remote function that pins itself before it starts (``threads`` CPU
threads for torch, OpenMP and BLAS; CUDA hidden and the device set to ``cpu`` unless the
task was given a GPU), runs :func:`evosim.pipeline.run` into its own run directory and
returns its result row. A task that raises is recorded (its error and its log) and the
others go on. A sweep directory holds::

    sweep.json      the sweep's definition (resolved base, grid, zip, seeds, points)
    points.csv      point index, run directory name, one column per override
    results.csv     one row per task, rewritten as tasks finish
    results.parquet the same rows, at the end, when pyarrow is installed
    summary.md      mean ± sd over seeds per point and method
    figures/        metric against each swept parameter; a heat map for two-parameter grids
    runs/POINT/seed-S/  each task's run directory
    logs/           each task's log
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from evosim import runio
from evosim.errors import EvosimError, RunDirectoryError
from evosim.sweep import results
from evosim.sweep.spec import Sweep, Task

__all__ = [
    "ClusterError",
    "MissingExtraError",
    "SweepOutcome",
    "execute_task",
    "import_ray",
    "run_sweep",
    "worker_env",
]

log = logging.getLogger(__name__)

EXTRA_HINT = 'pip install "evosim[sweep]"'
STAGES = ("simulate", "train", "meta", "analyse")
#: The MAE against the oracle and chance: the short summary printed by ``evosim sweep``.
BRIEF_METHODS = ("mae", "traits", "random")
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: Rows are a few kB: Ray's object store needs no more than its minimum.
_OBJECT_STORE_BYTES = 128 * 1024**2


class MissingExtraError(EvosimError):
    """An optional dependency is not installed; the message names the extra."""


class ClusterError(EvosimError):
    """The Ray cluster named by ``address`` cannot be reached."""


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    out
        The sweep directory.
    rows
        Every task's row, in task order (see :mod:`evosim.sweep.results`).
    ran, skipped, failed
        Tasks run now, tasks found finished and not rerun, tasks that raised.
    summary
        The summary table (markdown; every method), also in ``summary.md``.
    brief
        The same for the MAE, the ``traits`` oracle and ``random`` chance only.
    """

    out: Path
    rows: list[dict[str, Any]]
    ran: int
    skipped: int
    failed: int
    summary: str
    brief: str
    failures: list[dict[str, Any]] = field(default_factory=list)


def import_ray() -> Any:
    """``ray``, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError(
            "evosim sweep runs its tasks on Ray, which is not installed", hint=EXTRA_HINT
        ) from None
    return ray


def worker_env(threads: int, *, gpu: bool) -> dict[str, str]:
    """Environment of a task's worker: ``threads`` for OpenMP and BLAS; no GPU unless given."""
    env = {var: str(threads) for var in _THREAD_VARS}
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _finished(run_dir: Path) -> bool:
    return all((run_dir / "checkpoints" / f"{s}.done").exists() for s in STAGES)


def execute_task(task: Task, out: str, *, threads: int, gpu: bool) -> dict[str, Any]:
    """Run one task's pipeline into ``out/task.run_dir``; its result row (never raises).

    The task pins itself first: ``threads`` torch threads, and the BLAS/OpenMP variables
    for anything it starts; without ``gpu``, CUDA is hidden and ``device="cpu"`` passed to
    :func:`evosim.pipeline.run`. A run directory that holds an unfinished run is resumed.
    """
    os.environ.update(worker_env(threads, gpu=gpu))  # before anything initialises CUDA
    import torch

    from evosim.pipeline import run
    from evosim.scenario import Scenario

    torch.set_num_threads(threads)
    device = "cuda" if gpu else "cpu"
    root = Path(out)
    run_dir = root / task.run_dir
    log_path = root / task.log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # The task's records go to its log only (the sweep reports a failure itself).
    logger = logging.getLogger("evosim")
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    started = time.perf_counter()
    try:
        resume = run_dir.is_dir() and any(run_dir.iterdir())
        log.info(
            "task %s: %s, seed %d, device %s, %d thread(s)%s",
            task.name,
            task.point.label(),
            task.seed,
            device,
            threads,
            ", resuming" if resume else "",
        )
        scenario = Scenario.model_validate(task.scenario)
        run(scenario, run_dir, device=device, resume=resume, progress=False)
        row = results.run_row(task, root)
        log.info("task %s done in %.1f s", task.name, time.perf_counter() - started)
        return row
    except Exception as exc:  # a failed task is recorded; the sweep goes on
        message = str(exc).splitlines()[0] if str(exc) else ""
        error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        log.error("task %s failed: %s\n%s", task.name, error, traceback.format_exc())
        return results.failed_row(task, error, device=device)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
        handler.close()


# ---------------------------------------------------------------------------- the sweep


def _check_out(sweep: Sweep, out: Path, *, resume: bool) -> None:
    """Refuse an ``out`` in the way (before anything is written or started)."""
    definition = json.loads(json.dumps(sweep.definition()))
    stored_path = out / "sweep.json"
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not resume:
            raise RunDirectoryError(
                f"{out} is not empty",
                hint="continue an interrupted sweep with --resume, or choose another --out",
            )
        try:
            stored = json.loads(stored_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirectoryError(f"{out} is not a sweep directory (no sweep.json)") from None
        except (OSError, ValueError) as exc:
            raise RunDirectoryError(f"{stored_path}: unreadable ({exc})") from None
        differs = [k for k in definition if stored.get(k) != definition[k]]
        if differs:
            raise RunDirectoryError(
                f"{out} holds a different sweep ({', '.join(differs)} differ)",
                hint="resume with the same sweep file, or choose another --out",
            )


def _write_definition(sweep: Sweep, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runio.write_json(out / "sweep.json", sweep.definition())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    keys = list(dict.fromkeys(k for p in sweep.points for k in p.overrides))
    writer.writerow(["point", "name", *keys])
    for p in sweep.points:
        writer.writerow([p.index, p.name, *(results._cell(p.overrides.get(k)) for k in keys)])
    runio.write_text(out / "points.csv", buffer.getvalue())


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    *,
    jobs: int | None = None,
    threads: int = 1,
    address: str | None = None,
    gpus_per_task: float = 0.0,
    resume: bool = False,
    progress: bool = True,
    executor: str = "ray",
) -> SweepOutcome:
    """Run every (point, seed) of ``sweep`` into the sweep directory ``out``.

    Parameters
    ----------
    sweep
        A validated sweep (:func:`evosim.sweep.load_sweep`).
    out
        The sweep directory (layout in :mod:`evosim.sweep.execute`).
    jobs
        Tasks at once. Default: the cores divided by ``threads`` on a local Ray instance;
        as many as the cluster takes with ``address``.
    threads
        CPU threads per task (torch, OpenMP, BLAS), set inside the task.
    address
        ``ray://HOST:PORT`` or ``auto``: an existing Ray cluster instead of a local
        instance. ``out`` must then be a path every node sees (a shared filesystem).
    gpus_per_task
        GPUs per task (fractions share one); ``0``: tasks never touch a GPU.
    resume
        Continue an interrupted sweep in ``out``: finished tasks are kept, unfinished
        ones resumed (``evosim run --resume`` semantics), missing ones run.
    progress
        A progress bar on stderr.
    executor
        ``ray``, or ``serial``: the tasks one after another in this process (no Ray).

    Returns
    -------
    SweepOutcome

    Raises
    ------
    RunDirectoryError
        ``out`` is not empty (without ``resume``) or holds a different sweep.
    MissingExtraError
        Ray is not installed (``pip install "evosim[sweep]"``).
    """
    if executor not in ("ray", "serial"):
        raise ValueError(f"executor must be 'ray' or 'serial', got {executor!r}")
    if threads < 1 or (jobs is not None and jobs < 1) or gpus_per_task < 0:
        raise ValueError("threads and jobs must be >= 1 and gpus_per_task >= 0")
    ray = import_ray() if executor == "ray" else None
    out = Path(out).resolve()
    _check_out(sweep, out, resume=resume)
    tasks = sweep.tasks()
    rows: dict[int, dict[str, Any]] = {}
    pending: list[Task] = []
    for task in tasks:
        if resume and _finished(out / task.run_dir):
            try:
                rows[task.index] = results.run_row(task, out)
                continue
            except (OSError, ValueError) as exc:
                log.warning(
                    "task %s: finished but unreadable (%s); running it again", task.name, exc
                )
        pending.append(task)
    skipped = len(rows)
    log.info("sweep %s: %d tasks, %d to run", sweep.name, len(tasks), len(pending))
    failures: list[dict[str, Any]] = []
    gpu = gpus_per_task > 0
    session = (
        _ray_session(ray, address=address, jobs=jobs, threads=threads)
        if ray is not None and pending
        else contextlib.nullcontext()
    )
    with session:
        # Written once Ray is up: a cluster that cannot be reached leaves ``out`` untouched.
        _write_definition(sweep, out)
        if rows:
            results.write_results(out / "results.csv", rows.values())
        bar = tqdm(
            total=len(tasks),
            initial=skipped,
            desc=sweep.name,
            unit="task",
            disable=None if progress else True,
        )

        def record(task: Task, row: dict[str, Any]) -> None:
            rows[task.index] = row
            results.write_results(out / "results.csv", rows.values())
            if row["status"] == "failed":
                failures.append(row)
                log.warning(
                    "task %s failed: %s (log: %s)", task.name, row["error"], out / row["log"]
                )
            bar.update(1)
            bar.set_postfix(failed=len(failures), refresh=False)

        # Log records (a failed task's warning) go above the bar instead of breaking it.
        with logging_redirect_tqdm(), bar:
            if ray is None:
                _run_serial(pending, out, threads=threads, gpu=gpu, record=record)
            else:
                _run_ray(
                    ray,
                    pending,
                    out,
                    jobs=jobs,
                    threads=threads,
                    gpus_per_task=gpus_per_task,
                    record=record,
                )

    ordered = [rows[t.index] for t in tasks]
    results.write_results(out / "results.csv", ordered)
    results.write_parquet(out / "results.parquet", ordered)
    definition = sweep.definition()
    points, parameters = definition["points"], definition["parameters"]
    summary = results.summary_table(ordered, points, parameters)
    brief = results.summary_table(ordered, points, parameters, methods=BRIEF_METHODS)
    runio.write_text(out / "summary.md", f"# sweep {sweep.name}\n\n{summary}\n")
    from evosim.sweep.figures import plot_sweep

    plot_sweep(out)
    return SweepOutcome(
        out, ordered, len(pending), skipped, len(failures), summary, brief, failures
    )


def _run_serial(
    pending: Sequence[Task],
    out: Path,
    *,
    threads: int,
    gpu: bool,
    record: Callable[[Task, dict[str, Any]], None],
) -> None:
    import torch

    saved_env = {k: os.environ.get(k) for k in worker_env(threads, gpu=False)}
    saved_threads = torch.get_num_threads()
    try:
        for task in pending:
            record(task, execute_task(task, str(out), threads=threads, gpu=gpu))
    finally:
        torch.set_num_threads(saved_threads)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _ray_session(
    ray: Any, *, address: str | None, jobs: int | None, threads: int
) -> Iterator[None]:
    """Ray connected (to ``address``) or started locally; shut down after, if started here."""
    if ray.is_initialized():
        yield
        return
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ClusterError(
                f"cannot reach the Ray cluster at {address}: {first}",
                hint="start one with `ray start --head`, or leave out --address",
            ) from None
    else:
        ray.init(
            address="local",  # a fresh instance, even when a cluster runs on this machine
            num_cpus=jobs * threads if jobs else max(os.cpu_count() or 1, threads),
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=_OBJECT_STORE_BYTES,
        )
    try:
        yield
    finally:
        ray.shutdown()


def _run_ray(
    ray: Any,
    pending: Sequence[Task],
    out: Path,
    *,
    jobs: int | None,
    threads: int,
    gpus_per_task: float,
    record: Callable[[Task, dict[str, Any]], None],
) -> None:
    gpu = gpus_per_task > 0
    remote = ray.remote(execute_task).options(
        num_cpus=threads,
        num_gpus=gpus_per_task,
        runtime_env={"env_vars": worker_env(threads, gpu=gpu)},
    )
    queue = list(pending)
    limit = jobs or len(queue)
    in_flight: dict[Any, Task] = {}
    while queue or in_flight:
        while queue and len(in_flight) < limit:
            task = queue.pop(0)
            in_flight[remote.remote(task, str(out), threads=threads, gpu=gpu)] = task
        done, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in done:
            task = in_flight.pop(ref)
            try:
                row = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died (killed, out of memory)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                row = results.failed_row(
                    task, f"{type(exc).__name__}: {first}", device="cuda" if gpu else "cpu"
                )
            record(task, row)


def failure_lines(outcome: SweepOutcome, *, at_most: int = 10) -> list[str]:
    """One line per failed task (its error and log), at most ``at_most``."""
    lines = [
        f"  {row['run_dir']}: {row['error']} (log: {outcome.out / row['log']})"
        for row in outcome.failures[:at_most]
    ]
    if len(outcome.failures) > at_most:
        lines.append(f"  ... and {len(outcome.failures) - at_most} more (see results.csv)")
    return lines
