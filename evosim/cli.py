"""The ``evosim`` command.

Every user error (a bad scenario, a missing file, a malformed tree, a run directory
in the way) is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from evosim.scenario import ScenarioError, load_scenario

F = TypeVar("F", bound=Callable[..., Any])

USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix; reported as one line, exit code 2."""


def _user_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ScenarioError, UserError) as exc:
            _fail(str(exc))
        except FileNotFoundError as exc:
            _fail(f"no such file: {exc.filename or exc}")
        except FileExistsError as exc:
            _fail(str(exc))
        except ValueError as exc:
            # Malformed Newick, mismatched leaf sets and the like: the message says what.
            _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    return wrapper  # type: ignore[return-value]


def _fail(message: str) -> None:
    click.echo(f"evosim: error: {message}", err=True)
    sys.exit(USER_ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evosim")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def main(verbose: bool) -> None:
    """Simulate evolution, train one autoencoder per species, and recover the phylogeny."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@_user_errors
def validate(scenario: Path) -> None:
    """Check a scenario file: prints `ok`, or one line naming the bad field (exit 2)."""
    load_scenario(scenario)
    click.echo("ok")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite a non-empty output directory.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_user_errors
def simulate(scenario: Path, out: Path, force: bool, quiet: bool) -> None:
    """Simulate a world (tree, traits, instances) into OUT."""
    from evosim.pipeline import prepare_run_dir
    from evosim.simulation import simulate as run_simulation
    from evosim.simulation import write_simulation

    sc = load_scenario(scenario)
    prepare_run_dir(out, force=force, resume=False)
    sim = run_simulation(sc, progress=not quiet)
    write_simulation(sim, out)
    click.echo(f"simulated {len(sim.species)} species into {out}")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="Override autoencoder.device and meta.device.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT.")
@click.option("--force", is_flag=True, help="Start afresh in a non-empty OUT.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_user_errors
def run(
    scenario: Path, out: Path, device: str | None, resume: bool, force: bool, quiet: bool
) -> None:
    """Run the whole pipeline: simulate, train AEs, fit the MAE, analyse."""
    from evosim.pipeline import run as run_pipeline
    from evosim.pipeline import summarize

    if resume and force:
        raise UserError("--resume and --force contradict each other: choose one")
    sc = load_scenario(scenario)
    report = run_pipeline(sc, out, device=device, resume=resume, force=force, progress=not quiet)
    click.echo(summarize(report))
    click.echo(f"run directory: {out} (report.md, metrics.json, figures/)")


@main.command()
@click.argument("a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("b", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--rooted", is_flag=True, help="Compare as rooted trees (RF on clades).")
@_user_errors
def compare(a: Path, b: Path, as_json: bool, rooted: bool) -> None:
    """Compare two Newick trees on the same leaves (RF, quartet, triplet, cophenetic)."""
    from evosim.phylo import Phylogeny, compare_trees

    trees = []
    for path in (a, b):
        try:
            trees.append(Phylogeny.from_newick(path.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None
    metrics = compare_trees(trees[0], trees[1], rooted=rooted)
    if as_json:
        # NaN (e.g. the triplet distance of unrooted trees) is not JSON: write null.
        clean = {k: (None if v is None or math.isnan(v) else v) for k, v in metrics.items()}
        click.echo(json.dumps(clean, indent=2))
        return
    width = max(len(k) for k in metrics)
    click.echo(f"{'metric':<{width}}  value")
    for key, value in metrics.items():
        shown = "n/a" if value is None or math.isnan(value) else f"{value:.6g}"
        click.echo(f"{key:<{width}}  {shown}")


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks at once (default: the cores / --threads; with --address, all the cluster takes).",
)
@click.option("--threads", type=click.IntRange(min=1), default=1, help="CPU threads per task.")
@click.option("--address", default=None, help="An existing Ray cluster: ray://HOST:PORT or auto.")
@click.option(
    "--gpus-per-task", type=click.FloatRange(min=0), default=0.0, help="GPUs per task (0.5 shares)."
)
@click.option("--resume", is_flag=True, help="Run only the missing or unfinished tasks in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_user_errors
def sweep(
    sweep_file: Path,
    out: Path,
    jobs: int | None,
    threads: int,
    address: str | None,
    gpus_per_task: float,
    resume: bool,
    quiet: bool,
) -> None:
    """Run a sweep (a scenario over a grid of overrides x seeds) on Ray into OUT."""
    from evosim.errors import EvosimError
    from evosim.sweep.command import sweep_command

    try:
        code = sweep_command(
            sweep_file,
            out,
            jobs=jobs,
            threads=threads,
            address=address,
            gpus_per_task=gpus_per_task,
            resume=resume,
            progress=not quiet,
            echo=click.echo,
            warn=lambda line: click.echo(line, err=True),
        )
    except EvosimError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: continue with evosim sweep {sweep_file} --out {out} --resume", err=True
        )
        sys.exit(130)
    sys.exit(code)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@_user_errors
def plot(run_dir: Path) -> None:
    """(Re)draw every figure of a run directory (or a sweep directory) into RUN_DIR/figures."""
    from evosim.pipeline import plot_run
    from evosim.sweep.figures import is_sweep_dir, plot_sweep

    if is_sweep_dir(run_dir):  # a sweep directory: the sweep's figures
        return click.echo("\n".join(str(p) for p in plot_sweep(run_dir)))
    if not (run_dir / "scenario.yaml").exists():
        raise UserError(f"{run_dir} is not a run directory (no scenario.yaml)")
    for path in plot_run(run_dir):
        click.echo(str(path))


if __name__ == "__main__":  # pragma: no cover
    main()
