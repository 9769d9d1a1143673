"""The whole pipeline into a run directory, stage by stage, resumable.

Each stage writes its files atomically and then a marker in ``checkpoints/``; a
resumed run loads the outputs of every marked stage and continues from the first
unmarked one (the trainer also resumes mid-stage from its own checkpoints).

A run holds a lock on its directory (``checkpoints/lock``), logs to ``run.log`` in it,
records its provenance in ``provenance.json`` (and inside ``aes.pt``, ``mae.pt`` and
``metrics.json``), and draws its figures by calling :mod:`evosim.plot` on the data.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from evosim import runio
from evosim.errors import FileFormatError, RunDirectoryError, ScenarioError
from evosim.provenance import make_provenance, now, stable_provenance
from evosim.scenario import Scenario, dump_scenario, load_scenario

__all__ = [
    "draw_figures",
    "plot_run",
    "prepare_run_dir",
    "run",
    "side_information_of",
    "simulate_into",
    "summarize",
]

log = logging.getLogger(__name__)

STAGES = ("simulate", "train", "meta", "analyse")
DEVICE_SECTIONS = ("autoencoder", "meta", "analysis")


def prepare_run_dir(out: str | Path, *, force: bool = False, resume: bool = False) -> Path:
    """Check that ``out`` may be used for a run; refuse to clobber a non-empty directory.

    Creates nothing: the caller takes the directory's lock (:class:`runio.RunLock`),
    then calls :func:`clear_run_dir` when starting afresh.

    Raises
    ------
    RunDirectoryError
        ``out`` is a file, or is not empty and neither ``force`` nor ``resume`` was given.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (force or resume):
        raise RunDirectoryError(
            f"{out} is not empty",
            hint="use --force to start afresh there, or --resume to continue its run",
        )
    return out


def clear_run_dir(out: Path) -> None:
    """Forget the stages and training checkpoints of an earlier run in ``out``."""
    for stage in STAGES:
        (out / "checkpoints" / f"{stage}.done").unlink(missing_ok=True)
    train_ckpt = out / "checkpoints" / "train"
    if train_ckpt.is_dir():
        for f in train_ckpt.iterdir():
            f.unlink()


def _with_device(scenario: Scenario, device: str | None) -> Scenario:
    if device is None:
        return scenario
    update = {
        name: getattr(scenario, name).model_copy(update={"device": device})
        for name in DEVICE_SECTIONS
        if "device" in type(getattr(scenario, name)).model_fields
    }
    return scenario.model_copy(update=update)


def _without_devices(data: dict[str, Any]) -> dict[str, Any]:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for name in DEVICE_SECTIONS:
        if isinstance(data.get(name), dict):
            data[name].pop("device", None)
    return data


def _resumed_scenario(scenario: Scenario, out: Path) -> Scenario:
    """The run directory's own resolved scenario, after checking it matches ``scenario``.

    A scenario without a seed draws a fresh one on every load: only then does the
    run's stored seed stand in for it. Any other difference (devices aside) is refused.
    """
    stored_path = out / "scenario.yaml"
    if not stored_path.exists():
        return scenario
    stored = load_scenario(stored_path)
    given, kept = _without_devices(scenario.to_dict()), _without_devices(stored.to_dict())
    if "seed" not in scenario.model_fields_set:
        given["seed"] = kept["seed"]
    if given != kept:
        diffs = [section for section in kept if given.get(section) != kept.get(section)]
        detail = (
            f" (the run's seed is {kept['seed']}, the scenario's {given['seed']})"
            if diffs == ["seed"]
            else ""
        )
        raise ScenarioError(
            f"{', '.join(diffs)}: differs from the scenario in {stored_path}{detail}",
            hint="resume with the same scenario, or start afresh with --force",
        )
    # Devices may change between the interrupted run and its resumption.
    return stored.model_copy(
        update={
            name: getattr(stored, name).model_copy(
                update={"device": getattr(scenario, name).device}
            )
            for name in DEVICE_SECTIONS
            if "device" in type(getattr(stored, name)).model_fields
        }
    )


def resolve_devices(scenario: Scenario) -> dict[str, str]:
    """Section -> the device it runs on (``auto`` resolved), for every device setting."""
    from evosim.devices import resolve_device

    return {
        name: str(resolve_device(getattr(scenario, name).device, f"{name}.device"))
        for name in DEVICE_SECTIONS
        if "device" in type(getattr(scenario, name)).model_fields
    }


def _on_device(config: Any, device: str) -> Any:
    """``config`` with its ``device`` set to the resolved ``device``."""
    return config.model_copy(update={"device": device.split(":")[0]})


def _accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False


@contextmanager
def _run_log(out: Path) -> Iterator[None]:
    """Log the ``evosim`` logger's records (INFO and up) to ``out/run.log`` meanwhile."""
    logger = logging.getLogger("evosim")
    warnings_logger = logging.getLogger("py.warnings")
    try:
        handler = logging.FileHandler(out / "run.log", encoding="utf-8")
    except OSError as exc:
        raise runio.write_error(out / "run.log", exc) from exc
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    extra: list[logging.Handler] = []
    if not logger.handlers and not logging.getLogger().handlers:
        # Nobody configured logging (Python use): keep warnings on stderr as Python would.
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setLevel(logging.WARNING)
        extra.append(stderr)
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    for h in [handler, *extra]:
        logger.addHandler(h)
    warnings_logger.addHandler(handler)
    shown = warnings.showwarning
    if getattr(shown, "__module__", None) != "logging":
        # Python use (the CLI routes warnings through logging already): a warning goes to
        # run.log too, and on to wherever it went before.
        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            text = warnings.formatwarning(message, category, filename, lineno, line)
            handler.handle(
                logging.LogRecord(
                    "py.warnings", logging.WARNING, filename, lineno, "%s", (text.rstrip(),), None
                )
            )
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
        for h in [handler, *extra]:
            logger.removeHandler(h)
        warnings_logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


@contextmanager
def _stage(name: str) -> Iterator[dict[str, float]]:
    started = time.perf_counter()
    log.info("%s: started", name)
    box: dict[str, float] = {}
    yield box
    box["seconds"] = round(time.perf_counter() - started, 3)
    log.info("%s: done in %.1f s", name, box["seconds"])


def _load(path: Path, loader: Callable[[Path], Any], stage: str) -> Any:
    """Load a finished stage's file, as one line naming it if it is damaged."""
    hint = f"delete {path.parent / 'checkpoints' / (stage + '.done')} and rerun with --resume"
    runio.torch_load(path, hint=hint)  # refuses unsafe, empty and truncated files
    try:
        return loader(path)
    except FileFormatError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise FileFormatError(
            f"{path}: not a file evosim can use ({str(exc).splitlines()[0][:120]})", hint=hint
        ) from exc


def _check_species(out: Path, sim: Any, bank: Any, meta: Any | None = None) -> None:
    if list(bank.species) != list(sim.species):
        raise FileFormatError(
            f"{out / 'aes.pt'}: its species differ from those of {out / 'instances.npz'}",
            hint="the files come from different runs: start afresh with --force",
        )
    if meta is not None and list(meta.species) != list(bank.species):
        raise FileFormatError(
            f"{out / 'mae.pt'}: its species differ from those of {out / 'aes.pt'}",
            hint="the files come from different runs: start afresh with --force",
        )


class _Provenance:
    """Builds the run's provenance record (one, rewritten as the run goes)."""

    def __init__(self, command: str, scenario: Scenario, options: dict[str, Any], argv: Any):
        self.args = {
            "command": command,
            "scenario": scenario.to_dict(),
            "options": options,
            "argv": argv,
            "start": now(),
        }
        self.devices: dict[str, str] = {}

    def record(self, *, end: str | None = None) -> dict[str, Any]:
        return make_provenance(**self.args, devices=self.devices, end=end)

    def write(self, out: Path, *, end: str | None = None) -> dict[str, Any]:
        record = self.record(end=end)
        runio.write_json(out / "provenance.json", record)
        return record


def simulate_into(
    scenario: Scenario,
    out: str | Path,
    *,
    force: bool = False,
    force_size: bool = False,
    progress: bool = True,
    argv: list[str] | None = None,
) -> Any:
    """Simulate a world into the run directory ``out`` (``evosim simulate``).

    Writes the simulation's files, its figures, ``provenance.json`` and ``run.log``.

    Returns
    -------
    evosim.simulation.Simulation
    """
    from evosim.resources import check_resources
    from evosim.simulation import simulate, write_simulation

    out = prepare_run_dir(out, force=force)
    check_resources(scenario, out=out, force=force_size)
    prov = _Provenance("simulate", scenario, {"out": str(out), "force": force}, argv)
    with runio.RunLock(out):
        if force:
            clear_run_dir(out)
        prov.write(out)
        with _run_log(out), _stage("simulate"):
            sim = simulate(scenario, progress=progress)
            write_simulation(sim, out)
            _simulation_figures(sim, out / "figures")
        prov.write(out, end=now())
    return sim


def _simulation_figures(sim: Any, fig_dir: Path) -> list[Path]:
    from evosim import plot

    return plot.plot_simulation(sim, fig_dir)


def run(
    scenario: Scenario,
    out: str | Path,
    *,
    device: str | None = None,
    resume: bool = False,
    force: bool = False,
    force_size: bool = False,
    progress: bool = True,
    argv: list[str] | None = None,
) -> Any:
    """Run every stage of ``scenario`` and write the run directory ``out``.

    Parameters
    ----------
    scenario
        A validated scenario (see :func:`evosim.load_scenario`).
    out
        The run directory (its files are listed in the README).
    device
        ``auto``, ``cpu`` or ``cuda``: overrides ``autoencoder.device``, ``meta.device``
        and ``analysis.device``.
    resume
        Continue an interrupted run in ``out``: finished stages are loaded, not redone.
    force
        Start afresh even if ``out`` holds an earlier run.
    force_size
        Go ahead even if the scenario looks too large for this machine.
    progress
        Show progress bars on stderr.
    argv
        The command line, recorded in the provenance (``None`` when called from Python).

    Returns
    -------
    evosim.analysis.Report

    Raises
    ------
    RunDirectoryError
        ``out`` is not empty (without ``force``/``resume``) or another run holds it.
    ScenarioError
        On ``resume``, ``scenario`` differs from the run's.
    ResourceError
        The scenario needs more memory or disk than this machine has.
    """
    from evosim.resources import check_resources

    out = prepare_run_dir(out, force=force, resume=resume)
    scenario = _with_device(scenario, device)
    # A resumed run's files are on the disk already: check the memory only.
    check_resources(scenario, out=None if resume else out, force=force_size)
    with runio.RunLock(out):
        if force:
            clear_run_dir(out)
        if resume:
            scenario = _resumed_scenario(scenario, out)
        devices = resolve_devices(scenario)
        options = {"out": str(out), "device": device, "resume": resume, "force": force}
        prov = _Provenance("run", scenario, options, argv)
        prov.devices = devices
        prov.write(out)
        with _run_log(out):
            log.info(
                "%s %s into %s (seed %d; devices %s)",
                "resuming" if resume else "running",
                scenario.name,
                out,
                scenario.seed,
                ", ".join(f"{k} {v}" for k, v in devices.items()),
            )
            try:
                report = _run_stages(scenario, out, devices, prov, resume=resume, progress=progress)
            except KeyboardInterrupt:
                log.warning("interrupted; finished stages and checkpoints are kept in %s", out)
                raise
        prov.write(out, end=now())
    return report


def _run_stages(
    scenario: Scenario,
    out: Path,
    devices: dict[str, str],
    prov: _Provenance,
    *,
    resume: bool,
    progress: bool,
) -> Any:
    from evosim.analysis import analyse
    from evosim.meta import MetaResult, fit_meta_autoencoder
    from evosim.simulation import load_simulation, simulate, write_simulation
    from evosim.train import load_bank, train_autoencoders

    timings_path = out / "checkpoints" / "timings.json"
    timings: dict[str, float] = (
        runio.read_json(timings_path) if resume and timings_path.exists() else {}
    )

    def finish(stage: str, box: dict[str, float]) -> None:
        timings[stage] = box["seconds"]
        runio.write_json(timings_path, timings)
        runio.mark_stage_done(out, stage)

    def done(stage: str) -> bool:
        if resume and runio.stage_done(out, stage):
            log.info("%s: finished earlier, loading its files", stage)
            return True
        return False

    if done("simulate"):
        sim = load_simulation(out)
    else:
        with _stage("simulate") as box:
            sim = simulate(scenario, progress=progress)
            write_simulation(sim, out)
            _simulation_figures(sim, out / "figures")
        finish("simulate", box)
    runio.write_text(out / "scenario.yaml", dump_scenario(scenario))

    if done("train"):
        bank = _load(out / "aes.pt", load_bank, "train")
    else:
        with _stage("train") as box:
            bank = train_autoencoders(
                sim,
                _on_device(scenario.autoencoder, devices["autoencoder"]),
                checkpoint_dir=out / "checkpoints" / "train",
                progress=progress,
            )
            bank.save(out / "aes.pt", provenance=prov.record(end=now()))
        finish("train", box)
    _check_species(out, sim, bank)

    if done("meta"):
        meta = _load(out / "mae.pt", MetaResult.load, "meta")
    else:
        with _stage("meta") as box:
            meta = fit_meta_autoencoder(
                bank,
                _on_device(scenario.meta, devices["meta"]),
                seed=scenario.seed,
                progress=progress,
                side_information=side_information_of(sim, scenario.meta),
            )
            if _accepts(meta.save, "provenance"):
                meta.save(out / "mae.pt", provenance=prov.record(end=now()))
            else:  # until MetaResult.save takes the record
                meta.save(out / "mae.pt")
        finish("meta", box)
    _check_species(out, sim, bank, meta)

    with _stage("analyse") as box:
        report = analyse(
            sim,
            bank,
            meta,
            scenario.analysis,
            seed=scenario.seed,
            device=devices["analysis"],
            progress=progress,
        )
    timings["analyse"] = box["seconds"]
    report.timings = dict(timings)
    report.devices = dict(devices)
    report.provenance = stable_provenance(prov.record())
    with _stage("report"):
        report.write(out)
        draw_figures(report, out / "figures")
    finish("analyse", box)
    return report


def side_information_of(sim: Any, config: Any) -> dict[str, np.ndarray] | None:
    """The side information ``meta.side_information`` asks the MAE to predict, or ``None``.

    Species -> ``[q]`` values read from the simulation's TRUE traits (``trait_<i>``: the
    i-th; ``traits``: all). Only here, and only when the user asks for it, does anything
    the MAE fits on come from the truth; the default (``none``) reads nothing.
    """
    from evosim.scenario import side_information_index

    name = config.side_information
    if name == "none":
        return None
    i = side_information_index(name)
    out = {}
    for s in sim.species:
        t = np.asarray(sim.traits[s], dtype=np.float64)
        if i is not None and i > len(t):
            raise ScenarioError(
                f"meta.side_information: {name} does not exist, the traits have {len(t)} values"
            )
        out[s] = t if i is None else t[i - 1 : i]
    return out


def summarize(report: Any) -> str:
    """A few lines for the terminal: MAE against the oracle and chance."""
    rows = [("mae", report.metrics)] + [
        (name, report.baselines[name]) for name in ("traits", "random") if name in report.baselines
    ]
    keys = ("nrf", "quartet", "distance_spearman")
    lines = [f"{'':<8}" + "".join(f"{k:>22}" for k in keys)]
    for name, metrics in rows:
        cells = []
        for k in keys:
            v = metrics.get(k) if isinstance(metrics, dict) else None
            cells.append(f"{'n/a':>22}" if not isinstance(v, int | float) else f"{v:>22.3f}")
        lines.append(f"{name:<8}" + "".join(cells))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- figures


def draw_figures(report: Any, fig_dir: str | Path) -> list[Path]:
    """Draw the analysis figures of ``report`` into ``fig_dir`` (PNG, with SVG beside).

    Returns the PNG paths: ``tanglegram``, ``latent_space``, ``distance_scatter`` and,
    when the report has them, ``ae_losses``, ``mae_training``, the generative, archetype
    and identification figures.
    """
    from evosim import plot

    fig_dir = Path(fig_dir)
    paths = [
        plot.plot_tanglegram(report.true_tree, report.inferred_tree, fig_dir / "tanglegram.png"),
        plot.plot_latent_tree(
            report.latents, report.species, report.true_tree, fig_dir / "latent_space.png"
        ),
        plot.plot_distance_scatter(
            report.latents, report.species, report.true_tree, fig_dir / "distance_scatter.png"
        ),
    ]
    if report.ae_losses:
        paths.append(plot.plot_ae_losses(report.ae_losses, fig_dir / "ae_losses.png"))
    if report.mae_losses:
        paths.append(plot.plot_mae_training(report.mae_losses, fig_dir / "mae_training.png"))
    if report.generative_figures:
        paths += plot.plot_generative_figures(report.generative_figures, fig_dir)
    if report.archetype_figures:
        paths += plot.plot_archetype_figures(report.archetype_figures, fig_dir)
    if report.identification:
        from evosim.analysis.identification import draw_identification

        paths += draw_identification(report.identification, fig_dir, tree=report.true_tree)
    return paths


def plot_run(run_dir: str | Path) -> list[Path]:
    """Redraw every figure a run directory has the files for; returns the paths written.

    The files are checked against each other first (see
    :meth:`evosim.analysis.Report.from_run_dir`).

    Raises
    ------
    RunDirectoryError
        ``run_dir`` is not a run directory.
    FileFormatError
        A file is damaged, or disagrees with another (the message names it).
    """
    from evosim.simulation import load_simulation

    run_dir = Path(run_dir)
    if not (run_dir / "scenario.yaml").is_file():
        raise RunDirectoryError(f"{run_dir} is not a run directory (no scenario.yaml)")
    sim = load_simulation(run_dir)
    report = None
    if (run_dir / "metrics.json").exists():
        from evosim.analysis import Report

        report = Report.from_run_dir(run_dir)
        if set(report.species) != set(sim.species):
            raise FileFormatError(
                f"{run_dir / 'latents.csv'}: its species differ from those of "
                f"{run_dir / 'instances.npz'}",
                hint="the files come from different runs",
            )
    paths: list[Path] = list(_simulation_figures(sim, run_dir / "figures"))
    if report is not None:
        paths += draw_figures(report, run_dir / "figures")
    return paths
