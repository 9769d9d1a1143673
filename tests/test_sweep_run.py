"""Running sweeps: on a local Ray instance, killed and resumed, failures, errors before running.

The tasks are a tiny scenario (5 species, a few AE/MAE steps, two baselines). One local Ray
instance (2 CPUs, no dashboard) serves the module; the command-line tests send their
sweeps to it with ``--address``, so killing one leaves the instance up for the next.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import evosim
from evosim.cli import main
from evosim.scenario import Scenario
from evosim.sweep import load_sweep, run_sweep
from evosim.sweep.execute import execute_task

SWEEP = """\
name: tiny_sweep
base:
  name: tiny
  tree: {model: yule, n_species: 5}
  traits: {dim: 4}
  species: {instances: 48, ambient_dim: 8}
  autoencoder: {hidden: [8], steps: 40, batch_size: 16, checkpoint_every: 20}
  meta: {latent: 2, steps: 60, probes: 32}
  analysis: {baselines: [traits, random], mantel_permutations: 9, random_trees: 5}
grid:
  meta.representation: [aligned, functional]
seeds: [3]
"""
JOBS = 2


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweepfile") / "tiny_sweep.yaml"
    path.write_text(SWEEP)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evosim.cli", *args], capture_output=True, text=True
    )


def _without_timings(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v for k, v in r.items() if not k.startswith("time.")} for r in rows]


# ---------------------------------------------------------------------------- no Ray needed


def test_a_bad_dotted_path_is_refused_before_anything_runs(tmp_path, monkeypatch):
    (tmp_path / "s.yaml").write_text(
        "base: {tree: {n_species: 5}}\ngrid:\n  meta.steps: [5, 10]\n  tree.n_specis: [5]\n"
        "seeds: 2\n"
    )
    ran = []
    monkeypatch.setattr("evosim.sweep.execute.execute_task", lambda *a, **k: ran.append(a))
    result = CliRunner().invoke(
        main, ["sweep", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    # The scenario loader's message (its wording is the loader's), then the point.
    assert result.output.startswith(
        "evosim: error: grid.tree.n_specis (line 4): tree.n_specis: unknown field"
    )
    assert result.output.rstrip().endswith("(point meta.steps=5, tree.n_specis=5)")
    assert len(result.output.strip().splitlines()) == 1
    assert not ran
    assert not (tmp_path / "out").exists()


def test_without_the_extra_the_command_names_it(sweep_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = CliRunner().invoke(main, ["sweep", str(sweep_file), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "evosim: error: evosim sweep runs its tasks on Ray, which is not installed "
        '(pip install "evosim[sweep]")'
    )
    assert not (tmp_path / "o").exists()


def test_a_task_that_raises_returns_its_error_and_log(sweep_file, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("out of cheese\nsecond line")

    monkeypatch.setattr("evosim.pipeline.run", boom)
    task = load_sweep(sweep_file).tasks()[1]
    row = execute_task(task, str(tmp_path), threads=1, gpu=False)
    assert row["status"] == "failed"
    assert row["error"] == "RuntimeError: out of cheese"
    assert row["device"] == "cpu"
    log = (tmp_path / row["log"]).read_text()
    assert "Traceback" in log and "out of cheese" in log


def test_a_task_without_a_gpu_is_pinned_to_the_cpu(sweep_file, tmp_path, monkeypatch):
    import torch

    seen = {}

    def fake_run(scenario, out, *, device, resume, progress):
        seen.update(
            device=device,
            cuda=os.environ.get("CUDA_VISIBLE_DEVICES"),
            omp=os.environ.get("OMP_NUM_THREADS"),
            blas=os.environ.get("OPENBLAS_NUM_THREADS"),
            torch_threads=torch.get_num_threads(),
        )
        raise RuntimeError("stop here")

    for var in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "0")  # restored after the test
    monkeypatch.setattr("evosim.pipeline.run", fake_run)
    threads = torch.get_num_threads()
    try:
        task = load_sweep(sweep_file).tasks()[0]
        execute_task(task, str(tmp_path), threads=3, gpu=False)
    finally:
        torch.set_num_threads(threads)
    assert seen == {"device": "cpu", "cuda": "", "omp": "3", "blas": "3", "torch_threads": 3}


# ---------------------------------------------------------------------------- on Ray


@pytest.fixture(scope="module")
def ray_address():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=JOBS, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def reference(ray_address, sweep_file, tmp_path_factory):
    """The sweep, uninterrupted, on the local Ray instance."""
    out = tmp_path_factory.mktemp("sweeps") / "reference"
    outcome = run_sweep(load_sweep(sweep_file), out, jobs=JOBS, progress=False)
    return out, outcome


@pytest.mark.slow
def test_sweep_on_ray_gives_the_metrics_of_its_runs_one_by_one(reference, sweep_file, tmp_path):
    out, outcome = reference
    assert (outcome.ran, outcome.skipped, outcome.failed) == (2, 0, 0)
    tasks = load_sweep(sweep_file).tasks()
    for task, row in zip(tasks, outcome.rows):
        one = tmp_path / task.run_dir
        evosim.run(Scenario.model_validate(task.scenario), one, device="cpu", progress=False)
        alone = json.loads((one / "metrics.json").read_text())
        in_sweep = json.loads((out / task.run_dir / "metrics.json").read_text())
        assert in_sweep == alone
        assert row["mae.nrf"] == alone["mae"]["nrf"]
        assert (
            row["traits.cophenetic_spearman"] == alone["baselines"]["traits"]["cophenetic_spearman"]
        )
        assert row["device"] == "cpu"
        assert row["meta.representation"] == task.point.overrides["meta.representation"]
    for name in ("results.csv", "results.parquet", "summary.md", "points.csv", "sweep.json"):
        assert (out / name).exists(), name
    assert (out / "figures" / "meta.representation.png").exists()


@pytest.mark.slow
def test_killed_sweep_resumes_only_the_missing_tasks(reference, ray_address, sweep_file, tmp_path):
    ray = pytest.importorskip("ray")
    out = tmp_path / "killed"
    args = ["sweep", str(sweep_file), "--out", str(out), "--address", ray_address, "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "evosim.cli", *args, "--jobs", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    markers = lambda: sorted(out.glob("runs/*/*/checkpoints/analyse.done"))  # noqa: E731
    deadline = time.monotonic() + 300
    while not markers() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {m: m.stat().st_mtime_ns for m in markers()}
    assert len(finished) == 1, "the sweep was not killed mid-way"
    # Wait for Ray to end the killed driver's tasks before resuming.
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < JOBS and time.monotonic() < deadline:
        time.sleep(0.2)

    result = _cli(*args, "--resume")
    assert result.returncode == 0, result.stderr
    assert "2 tasks: 1 ran, 1 already finished, 0 failed" in result.stdout
    for marker, mtime in finished.items():
        assert marker.stat().st_mtime_ns == mtime  # not run again
    assert _without_timings(out / "results.csv") == _without_timings(reference[0] / "results.csv")


@pytest.mark.slow
def test_a_failing_task_is_recorded_and_the_others_finish(
    reference, ray_address, sweep_file, tmp_path
):
    out = tmp_path / "failing"
    shutil.copytree(reference[0], out)
    tasks = load_sweep(sweep_file).tasks()
    # Task 0 cannot write its run directory (a file is in the way); task 1 must run again.
    shutil.rmtree(out / tasks[0].run_dir)
    (out / tasks[0].run_dir).write_text("in the way")
    shutil.rmtree(out / tasks[1].run_dir)
    result = _cli(
        "sweep", str(sweep_file), "--out", str(out), "--address", ray_address, "--resume", "--quiet"
    )
    assert result.returncode == 1
    assert "2 tasks: 2 ran, 0 already finished, 1 failed" in result.stdout
    assert "1 of 2 tasks failed:" in result.stderr
    rows = _without_timings(out / "results.csv")
    want = _without_timings(reference[0] / "results.csv")
    assert rows[1] == want[1]  # run again: the same metrics
    failed = rows[0]
    assert failed["status"] == "failed" and failed["mae.nrf"] == ""
    assert "not a directory" in failed["error"]
    assert failed["error"] in result.stderr and failed["log"] in result.stderr
    assert "Traceback" in (out / failed["log"]).read_text()
