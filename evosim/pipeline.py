"""The whole pipeline into a run directory, stage by stage, resumable.

Each stage writes its files atomically and then a marker in ``checkpoints/``; a
resumed run loads the outputs of every marked stage and continues from the first
unmarked one (the trainer also resumes mid-stage from its own checkpoints).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from evosim import runio
from evosim.scenario import Scenario, ScenarioError, dump_scenario, load_scenario

__all__ = ["run", "prepare_run_dir", "plot_run", "summarize"]

log = logging.getLogger(__name__)

STAGES = ("simulate", "train", "meta", "analyse")


def prepare_run_dir(out: str | Path, *, force: bool = False, resume: bool = False) -> Path:
    """Make ``out`` ready for a run; refuse to clobber a non-empty directory.

    Raises
    ------
    FileExistsError
        ``out`` is not empty and neither ``force`` nor ``resume`` was given.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (force or resume):
        raise FileExistsError(
            f"{out} is not empty: use --force to overwrite it (evosim run --resume continues a run)"
        )
    if force and out.is_dir():
        for stage in STAGES:
            marker = out / "checkpoints" / f"{stage}.done"
            marker.unlink(missing_ok=True)
        train_ckpt = out / "checkpoints" / "train"
        if train_ckpt.is_dir():
            for f in train_ckpt.iterdir():
                f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _with_device(scenario: Scenario, device: str | None) -> Scenario:
    if device is None:
        return scenario
    return scenario.model_copy(
        update={
            "autoencoder": scenario.autoencoder.model_copy(update={"device": device}),
            "meta": scenario.meta.model_copy(update={"device": device}),
        }
    )


def _without_devices(data: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    data["autoencoder"].pop("device", None)
    data["meta"].pop("device", None)
    return data


def _resumed_scenario(scenario: Scenario, out: Path) -> Scenario:
    """The run directory's own resolved scenario, after checking it matches ``scenario``."""
    stored_path = out / "scenario.yaml"
    if not stored_path.exists():
        return scenario
    stored = load_scenario(stored_path)
    given, kept = _without_devices(scenario.to_dict()), _without_devices(stored.to_dict())
    if given["seed"] != kept["seed"]:
        # A scenario without a seed draws a fresh one on every load; the run's own seed wins.
        given["seed"] = kept["seed"]
    if given != kept:
        diffs = [section for section in kept if given.get(section) != kept.get(section)]
        raise ScenarioError(
            f"{', '.join(diffs)}: differs from the scenario in {stored_path}; "
            "resume with the same scenario, or start afresh with --force"
        )
    # Devices may change between the interrupted run and its resumption.
    return stored.model_copy(
        update={
            "autoencoder": stored.autoencoder.model_copy(
                update={"device": scenario.autoencoder.device}
            ),
            "meta": stored.meta.model_copy(update={"device": scenario.meta.device}),
        }
    )


def run(
    scenario: Scenario,
    out: str | Path,
    *,
    device: str | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> Any:
    """Run every stage of ``scenario`` and write the run directory ``out``.

    Parameters
    ----------
    scenario
        A validated scenario (see :func:`evosim.load_scenario`).
    out
        The run directory (layout in DESIGN.md).
    device
        ``auto``, ``cpu`` or ``cuda``: overrides ``autoencoder.device`` and ``meta.device``.
    resume
        Continue an interrupted run in ``out``: finished stages are loaded, not redone.
    force
        Start afresh even if ``out`` holds an earlier run.
    progress
        Show progress bars on stderr.

    Returns
    -------
    evosim.analysis.Report
    """
    from evosim import plot
    from evosim.analysis import analyse
    from evosim.meta import MetaResult, fit_meta_autoencoder
    from evosim.simulation import load_simulation, simulate, write_simulation
    from evosim.train import load_bank, train_autoencoders

    out = prepare_run_dir(out, force=force, resume=resume)
    scenario = _with_device(scenario, device)
    if resume:
        scenario = _resumed_scenario(scenario, out)
    timings_path = out / "checkpoints" / "timings.json"
    timings: dict[str, float] = (
        json.loads(timings_path.read_text()) if resume and timings_path.exists() else {}
    )

    def finish(stage: str, started: float) -> None:
        timings[stage] = round(time.perf_counter() - started, 3)
        runio.write_json(timings_path, timings)
        runio.mark_stage_done(out, stage)

    done = (lambda stage: runio.stage_done(out, stage)) if resume else (lambda stage: False)

    if done("simulate"):
        sim = load_simulation(out)
    else:
        started = time.perf_counter()
        log.info("simulating %s", scenario.name)
        sim = simulate(scenario, progress=progress)
        write_simulation(sim, out)
        plot.plot_simulation(sim, out / "figures")
        finish("simulate", started)
    runio.write_text(out / "scenario.yaml", dump_scenario(scenario))

    if done("train"):
        bank = load_bank(out / "aes.pt")
    else:
        started = time.perf_counter()
        bank = train_autoencoders(
            sim,
            scenario.autoencoder,
            checkpoint_dir=out / "checkpoints" / "train",
            progress=progress,
        )
        bank.save(out / "aes.pt")
        finish("train", started)

    if done("meta"):
        meta = MetaResult.load(out / "mae.pt")
    else:
        started = time.perf_counter()
        meta = fit_meta_autoencoder(bank, scenario.meta, seed=scenario.seed, progress=progress)
        meta.save(out / "mae.pt")
        finish("meta", started)

    started = time.perf_counter()
    report = analyse(sim, bank, meta, scenario.analysis, seed=scenario.seed)
    timings["analyse"] = round(time.perf_counter() - started, 3)
    report.timings = dict(timings)
    report.write(out)
    finish("analyse", started)
    return report


def summarize(report: Any) -> str:
    """A few lines for the terminal: MAE against the oracle and chance."""
    rows = [("mae", report.metrics)] + [
        (name, report.baselines[name]) for name in ("traits", "random") if name in report.baselines
    ]
    keys = ("nrf", "quartet", "cophenetic_spearman")
    lines = [f"{'':<8}" + "".join(f"{k:>22}" for k in keys)]
    for name, metrics in rows:
        lines.append(f"{name:<8}" + "".join(f"{metrics.get(k, float('nan')):>22.3f}" for k in keys))
    return "\n".join(lines)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Redraw every figure a run directory has the files for; returns the paths written."""
    from evosim import plot

    run_dir = Path(run_dir)
    paths: list[Path] = list(plot.plot_simulation(run_dir, run_dir / "figures"))
    if (run_dir / "metrics.json").exists():
        paths += list(plot.plot_report(run_dir))
    return paths
