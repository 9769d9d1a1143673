"""End to end: YAML -> run directory; resume after a kill; CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evosim
from evosim.scenario import parse_scenario

TINY = """\
name: tiny
seed: 11
tree:
  model: yule
  n_species: 6
traits:
  dim: 4
species:
  instances: 64
  ambient_dim: 8
autoencoder:
  hidden: [16]
  steps: {steps}
  batch_size: 32
  checkpoint_every: 20
  device: cpu
meta:
  latent: 2
  steps: 200
  device: cpu
analysis:
  mantel_permutations: 49
  random_trees: 10
"""

RUN_FILES = [
    "scenario.yaml",
    "true_tree.nwk",
    "true_tree_full.nwk",
    "traits.csv",
    "instances.npz",
    "aes.pt",
    "mae.pt",
    "latents.csv",
    "inferred_tree.nwk",
    "metrics.json",
    "report.md",
]


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "evosim.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        **kwargs,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    scenario = parse_scenario(TINY.format(steps=60))
    report = evosim.run(scenario, out, progress=False)
    return out, report


def test_run_writes_the_design_run_directory(tiny_run):
    out, report = tiny_run
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert list((out / "figures").glob("*.png"))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("rf", "nrf", "quartet", "cophenetic_pearson", "cophenetic_spearman", "mantel_p"):
        assert key in metrics["mae"]
    assert "traits" in metrics["baselines"] and "random" in metrics["baselines"]
    assert 0.0 <= metrics["mae"]["nrf"] <= 1.0
    assert report.metrics["nrf"] == metrics["mae"]["nrf"]


def test_run_is_reproducible(tiny_run, tmp_path):
    out, _ = tiny_run
    again = tmp_path / "again"
    evosim.run(parse_scenario(TINY.format(steps=60)), again, progress=False)
    for name in ("true_tree.nwk", "traits.csv", "latents.csv", "inferred_tree.nwk"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((again / "metrics.json").read_text())
    assert a["mae"] == b["mae"]


def test_run_refuses_a_non_empty_directory(tiny_run, tmp_path):
    out, _ = tiny_run
    path = tmp_path / "s.yaml"
    path.write_text(TINY.format(steps=60))
    result = _cli("run", str(path), "--out", str(out), "--quiet")
    assert result.returncode == 2
    assert "not empty" in result.stderr and "Traceback" not in result.stderr


def test_resume_with_a_different_scenario_is_refused(tiny_run, tmp_path):
    out, _ = tiny_run
    path = tmp_path / "s.yaml"
    path.write_text(TINY.format(steps=61))
    result = _cli("run", str(path), "--out", str(out), "--resume", "--quiet")
    assert result.returncode == 2
    assert "autoencoder" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_kill_during_training_then_resume_gives_the_same_results(tmp_path):
    scenario_path = tmp_path / "s.yaml"
    scenario_path.write_text(TINY.format(steps=400))
    reference = tmp_path / "reference"
    result = _cli("run", str(scenario_path), "--out", str(reference), "--quiet")
    assert result.returncode == 0, result.stderr

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evosim.cli",
            "run",
            str(scenario_path),
            "--out",
            str(out),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt_dir = out / "checkpoints" / "train"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt_dir.is_dir() and any(p.suffix == ".pt" for p in ckpt_dir.iterdir()):
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("training finished before a checkpoint could be interrupted")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "checkpoints" / "train.done").exists()

    result = _cli("run", str(scenario_path), "--out", str(out), "--resume", "--quiet")
    assert result.returncode == 0, result.stderr
    for name in ("latents.csv", "inferred_tree.nwk"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((reference / "metrics.json").read_text())
    assert a == b


def test_cli_compare(tmp_path):
    a = tmp_path / "a.nwk"
    b = tmp_path / "b.nwk"
    a.write_text("((A:1,B:1):1,(C:1,D:1):1);")
    b.write_text("((A:1,C:1):1,(B:1,D:1):1);")
    result = _cli("compare", str(a), str(b), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["rf"] == 2 and metrics["nrf"] == 1.0
    assert metrics["triplet"] == 1.0
    unrooted = tmp_path / "u.nwk"
    unrooted.write_text("[&U]((A:1,C:1):1,(B:1,D:1):1);")
    result = _cli("compare", str(a), str(unrooted), "--json")
    assert json.loads(result.stdout)["triplet"] is None  # no triplets unrooted; valid JSON
    same = _cli("compare", str(a), str(a))
    assert same.returncode == 0 and "nrf" in same.stdout


def test_cli_compare_errors_are_one_line(tmp_path):
    a = tmp_path / "a.nwk"
    bad = tmp_path / "bad.nwk"
    other = tmp_path / "other.nwk"
    a.write_text("((A,B),(C,D));")
    bad.write_text("((A,B),(C,D);")
    other.write_text("((A,B),(C,E));")
    for args in ((str(a), str(bad)), (str(a), str(other)), (str(a), str(tmp_path / "no.nwk"))):
        result = _cli("compare", *args)
        assert result.returncode == 2, result
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_cli_plot_redraws_figures(tiny_run):
    out, _ = tiny_run
    result = _cli("plot", str(out))
    assert result.returncode == 0, result.stderr
    assert any(line.endswith(".png") for line in result.stdout.splitlines())


def test_design_file_names_are_used(tiny_run):
    out, _ = tiny_run
    header = (out / "latents.csv").read_text().splitlines()[0]
    assert header.startswith("species,z_1")
    assert (out / "traits.csv").read_text().splitlines()[0].startswith("node,time,trait_1")
    assert Path(out / "true_tree.nwk").read_text().strip().endswith(";")
