"""The ``evosim`` command.

Every subcommand shares one wrapper (:func:`command`): the options ``-v/--verbose``,
``-q/--quiet`` and ``--debug`` (accepted before or after the subcommand's name),
logging set up through tqdm (so warnings never break a progress bar), and one error
policy: an :class:`~evosim.errors.EvosimError` (something the user can fix) is one
line on stderr and exit code 2; Ctrl-C says how to continue and exits 130; any other
exception is a bug and keeps its traceback. ``--debug`` shows the traceback of the
one-line errors too.

To add a subcommand, decorate a function with ``@command()`` (see the existing ones).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import math
import shlex
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from evosim.errors import EvosimError, FileFormatError, RunDirectoryError
from evosim.scenario import load_scenario

__all__ = ["command", "main"]

F = TypeVar("F", bound=Callable[..., Any])

USER_ERROR = 2
INTERRUPTED = 130

log = logging.getLogger("evosim")


@dataclass
class _Options:
    """The options every subcommand shares (set on the group or on the subcommand)."""

    verbose: int = 0
    quiet: bool = False
    debug: bool = False

    @property
    def progress(self) -> bool:
        return not self.quiet

    @property
    def level(self) -> int:
        if self.debug or self.verbose >= 2:
            return logging.DEBUG
        if self.verbose == 1:
            return logging.INFO
        return logging.ERROR if self.quiet else logging.WARNING


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        opts = ctx.ensure_object(_Options)
        if name == "verbose":
            opts.verbose += int(value or 0)
        elif value:
            setattr(opts, name, True)

    return callback


def _shared_options(func: F) -> F:
    for option in (
        click.option(
            "--debug",
            is_flag=True,
            expose_value=False,
            callback=_store("debug"),
            help="Show tracebacks of errors, and debug logging.",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            expose_value=False,
            callback=_store("quiet"),
            help="Only errors: no progress bars, no warnings.",
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            expose_value=False,
            callback=_store("verbose"),
            help="Log what each stage does (-vv: debug detail).",
        ),
    ):
        func = option(func)
    return func


def _options() -> _Options:
    return click.get_current_context().ensure_object(_Options)


_LOGGERS = ("evosim", "py.warnings")


def _setup_logging(opts: _Options) -> tuple[logging.Handler, list[tuple[int, bool]]]:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(opts.level)
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(opts.level)
        logger.propagate = False
    logging.captureWarnings(True)
    return handler, saved


def _teardown_logging(handler: logging.Handler, saved: list[tuple[int, bool]]) -> None:
    for name, (level, propagate) in zip(_LOGGERS, saved):
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    logging.captureWarnings(False)


def _fail(message: str, opts: _Options, code: int = USER_ERROR) -> None:
    if opts.debug:
        traceback.print_exc()
    click.echo(f"evosim: error: {message}", err=True)
    sys.exit(code)


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(exc, oom):
        return True
    # torch's CPU allocator reports exhaustion as a plain RuntimeError.
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def command(name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a subcommand of ``evosim`` with the shared options and error policy.

    A command may set ``click.get_current_context().meta["evosim.on_interrupt"]`` to
    the line printed when Ctrl-C stops it (e.g. how to resume).
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kw: Any) -> Any:
            from tqdm.contrib.logging import logging_redirect_tqdm

            opts = _options()
            handler, saved = _setup_logging(opts)
            ctx = click.get_current_context()
            loggers = [logging.getLogger(name) for name in _LOGGERS]
            try:
                with logging_redirect_tqdm(loggers=loggers):
                    # tqdm's handlers replace ours without its level: give it back.
                    for logger in loggers:
                        for h in logger.handlers:
                            if h.level == logging.NOTSET:
                                h.setLevel(opts.level)
                    return func(*args, **kw)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except KeyboardInterrupt:
                hint = ctx.meta.get("evosim.on_interrupt")
                click.echo("evosim: interrupted" + (f"; {hint}" if hint else ""), err=True)
                sys.exit(INTERRUPTED)
            except EvosimError as exc:
                _fail(str(exc), opts)
            except Exception as exc:
                if _out_of_memory(exc):
                    hint = ctx.meta.get("evosim.on_interrupt")
                    _fail(
                        "out of memory"
                        + (f" ({str(exc).splitlines()[0][:160]})" if str(exc) else "")
                        + "; make the scenario smaller or use a machine with more memory"
                        + (f"; then {hint}" if hint else ""),
                        opts,
                    )
                if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS):
                    where = f"{exc.filename}: " if exc.filename else ""
                    _fail(f"cannot write {where}{exc.strerror}", opts)
                raise
            finally:
                _teardown_logging(handler, saved)

        return main.command(name, **kwargs)(_shared_options(wrapper))  # type: ignore[return-value]

    return decorate


class _Group(click.Group):
    """The ``evosim`` group; keeps its command line for the provenance record."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["evosim.argv"] = ["evosim", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evosim")
@_shared_options
def main() -> None:
    """Simulate evolution, train one autoencoder per species, and recover the phylogeny.

    The scenario fields are listed by `evosim fields` (and in docs/scenario-reference.md).
    """


def _force_size_option(func: F) -> F:
    return click.option(
        "--force-size",
        is_flag=True,
        help="Go ahead even if the estimated memory or disk exceeds this machine's.",
    )(func)


def _scenario_argument(func: F) -> F:
    return click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))(func)


@command()
@_scenario_argument
@_force_size_option
def validate(scenario: Path, force_size: bool) -> None:
    """Check a scenario file: prints `ok`, or one line naming the bad field (exit 2).

    Also refuses a scenario too large for this machine's memory (--force-size to skip).
    """
    from evosim.resources import check_resources

    sc = load_scenario(scenario)
    check_resources(sc, force=force_size)
    click.echo("ok")


@command()
@_scenario_argument
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite a non-empty output directory.")
@_force_size_option
def simulate(scenario: Path, out: Path, force: bool, force_size: bool) -> None:
    """Simulate a world (tree, traits, instances) into OUT."""
    from evosim.pipeline import simulate_into

    sc = load_scenario(scenario)
    sim = simulate_into(
        sc,
        out,
        force=force,
        force_size=force_size,
        progress=_options().progress,
        argv=_argv(),
    )
    click.echo(f"simulated {len(sim.species)} species into {out}")


def _argv() -> list[str]:
    return list(click.get_current_context().meta.get("evosim.argv", ["evosim"]))


@command()
@_scenario_argument
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="Override autoencoder.device, meta.device and analysis.device.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT.")
@click.option("--force", is_flag=True, help="Start afresh in a non-empty OUT.")
@_force_size_option
def run(
    scenario: Path, out: Path, device: str | None, resume: bool, force: bool, force_size: bool
) -> None:
    """Run the whole pipeline: simulate, train AEs, fit the MAE, analyse."""
    from evosim.pipeline import run as run_pipeline
    from evosim.pipeline import summarize

    if resume and force:
        raise RunDirectoryError("--resume and --force contradict each other: choose one")
    sc = load_scenario(scenario)
    again = ["evosim", "run", str(scenario), "--out", str(out), "--resume"]
    if device:
        again[4:4] = ["--device", device]
    click.get_current_context().meta["evosim.on_interrupt"] = (
        f"every finished stage and checkpoint is kept: continue with `{shlex.join(again)}`"
    )
    report = run_pipeline(
        sc,
        out,
        device=device,
        resume=resume,
        force=force,
        force_size=force_size,
        progress=_options().progress,
        argv=_argv(),
    )
    click.echo(summarize(report))
    click.echo(f"run directory: {out} (report.md, metrics.json, figures/)")


def _read_tree(path: Path) -> Any:
    from evosim.phylo import Phylogeny

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirectoryError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path}: cannot read ({exc})") from None
    try:
        return Phylogeny.from_newick(text)
    except ValueError as exc:  # NewickError, duplicate leaf names
        raise FileFormatError(f"{path}: {str(exc).splitlines()[0]}") from None


@command()
@click.argument("a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("b", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--rooted", is_flag=True, help="Compare as rooted trees (RF on clades).")
def compare(a: Path, b: Path, as_json: bool, rooted: bool) -> None:
    """Compare two Newick trees on the same leaves (RF, quartet, triplet, cophenetic).

    The measures have the names and definitions of report.md and metrics.json. A tree
    is rooted unless its Newick starts with [&U]; the triplet distance needs two rooted
    trees (n/a otherwise).
    """
    from evosim.analysis.glossary import describe
    from evosim.phylo import compare_trees

    trees = [_read_tree(path) for path in (a, b)]
    try:
        metrics = compare_trees(trees[0], trees[1], rooted=rooted)
    except EvosimError:
        raise
    except ValueError as exc:  # different leaf sets
        raise FileFormatError(f"{a} and {b}: {str(exc).splitlines()[0]}") from None
    if as_json:
        # NaN (e.g. the triplet distance of unrooted trees) is not JSON: write null.
        clean = {k: (None if v is None or math.isnan(v) else v) for k, v in metrics.items()}
        click.echo(json.dumps(clean, indent=2))
        return
    width = max(len(k) for k in metrics)
    click.echo(f"{'metric':<{width}}  {'value':>9}  meaning")
    for key, value in metrics.items():
        shown = "n/a" if value is None or math.isnan(value) else f"{value:.6g}"
        click.echo(f"{key:<{width}}  {shown:>9}  {describe(key)}")


@command()
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
def sweep(
    sweep_file: Path,
    out: Path,
    jobs: int | None,
    threads: int,
    address: str | None,
    gpus_per_task: float,
    resume: bool,
) -> None:
    """Run a sweep (a scenario over a grid of overrides x seeds) on Ray into OUT."""
    from evosim.sweep.command import sweep_command

    again = ["evosim", "sweep", str(sweep_file), "--out", str(out), "--resume"]
    click.get_current_context().meta["evosim.on_interrupt"] = (
        f"finished tasks are kept: continue with `{shlex.join(again)}`"
    )
    code = sweep_command(
        sweep_file,
        out,
        jobs=jobs,
        threads=threads,
        address=address,
        gpus_per_task=gpus_per_task,
        resume=resume,
        progress=_options().progress,
        echo=click.echo,
        warn=lambda line: click.echo(line, err=True),
    )
    sys.exit(code)


@command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def plot(run_dir: Path) -> None:
    """(Re)draw every figure of a run directory, or of a sweep directory, into
    RUN_DIR/figures (PNG and SVG).

    The run's files are checked against each other first; files that disagree are
    refused, naming the file.
    """
    from evosim.pipeline import plot_run
    from evosim.sweep.figures import is_sweep_dir, plot_sweep

    if is_sweep_dir(run_dir):  # a sweep directory: the sweep's figures
        return click.echo("\n".join(str(p) for p in plot_sweep(run_dir)))
    if not (run_dir / "scenario.yaml").exists():
        raise RunDirectoryError(f"{run_dir} is not a run directory (no scenario.yaml)")
    for path in plot_run(run_dir):
        click.echo(str(path))


@command()
def schema() -> None:
    """Print the JSON Schema of scenario files (for editors that complete YAML)."""
    from evosim.reference import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@command()
@click.argument("section", required=False)
@click.option(
    "--markdown", is_flag=True, help="Print the reference as Markdown (docs/scenario-reference.md)."
)
def fields(section: str | None, markdown: bool) -> None:
    """List the scenario fields (of SECTION, e.g. `tree` or `traits.population`).

    Each field with its type, allowed values, default and meaning.
    """
    from evosim import reference

    if markdown:
        if section:
            raise click.UsageError("--markdown prints the whole reference: drop SECTION")
        click.echo(reference.markdown(), nl=False)
        return
    click.echo(reference.text(section))


@command()
def info() -> None:
    """Print evosim's version, the libraries' versions and the devices available."""
    from evosim.devices import resolve_device
    from evosim.provenance import environment, software_version

    env = environment()
    click.echo(f"evosim {software_version()}")
    click.echo(f"python {env['python']['version']} ({env['python']['implementation']})")
    click.echo(f"platform {env['os']['system']} {env['os']['release']} {env['os']['machine']}")
    for lib, data in env["libraries"].items():
        click.echo(f"{lib} {data['version']}")
    cuda = env["cuda"]
    if cuda.get("build"):
        state = "available" if cuda["available"] else "not available"
        names = ", ".join(cuda.get("devices", [])) or "no device"
        click.echo(f"cuda {cuda['build']} ({state}: {names})")
    else:
        click.echo("cuda: this torch build has no CUDA support")
    click.echo(f"device auto -> {resolve_device('auto', 'device')}")


if __name__ == "__main__":  # pragma: no cover
    main()
