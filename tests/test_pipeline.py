"""End to end: YAML -> run directory; resume after a kill or Ctrl-C; the lock; provenance;
untrusted, damaged and inconsistent files; CLI errors."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evosim
from evosim import runio
from evosim.provenance import stable_provenance
from evosim.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent

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
  device: cpu
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
    "trees.nex",
    "latent_distances.tsv",
    "true_distances.tsv",
    "metrics.json",
    "report.md",
    "provenance.json",
    "run.log",
]


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``evosim ARGS`` in a fresh process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "evosim.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        **kwargs,
    )


def _evosim(*args: str) -> subprocess.CompletedProcess:
    """``evosim ARGS`` in this process (no interpreter start-up): the same exit and output."""
    from click.testing import CliRunner

    from evosim.cli import main

    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(
        ["evosim", *args], result.exit_code, result.stdout, result.stderr
    )


def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert exit 2 with one line on stderr containing every needle; return the line."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    scenario = parse_scenario(TINY.format(steps=60))
    report = evosim.run(scenario, out, progress=False)
    return out, report


@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """A copy of the finished tiny run, to damage."""
    out, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TINY.format(steps=60))
    return path


def test_run_writes_the_run_directory(tiny_run):
    out, report = tiny_run
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    for name in report.baselines:
        if name != "random":
            assert (out / "baselines" / f"{name}.nwk").is_file(), name
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) >= 8
    for png in pngs:  # PNG and SVG side by side
        assert png.with_suffix(".svg").is_file(), png
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("rf", "nrf", "quartet", "cophenetic_pearson", "cophenetic_spearman", "mantel_p"):
        assert key in metrics["mae"]
    assert "traits" in metrics["baselines"] and "random" in metrics["baselines"]
    assert 0.0 <= metrics["mae"]["nrf"] <= 1.0
    assert report.metrics["nrf"] == metrics["mae"]["nrf"]
    assert not (out / "checkpoints" / "lock").exists()  # released at the end


def test_run_log_has_every_stage_with_its_duration(tiny_run):
    out, _ = tiny_run
    text = (out / "run.log").read_text()
    for stage in ("simulate", "train", "meta", "analyse"):
        assert re.search(rf"{stage}: started", text), stage
        assert re.search(rf"{stage}: done in [0-9.]+ s", text), stage


def test_provenance_is_written_and_embedded(tiny_run):
    out, _ = tiny_run
    record = json.loads((out / "provenance.json").read_text())
    assert record["schema_version"] == "1.0.0"
    version = importlib.metadata.version("evosim")
    assert record["software"] == {"name": "evosim", "version": version}
    assert evosim.__version__ == version
    assert record["parameters"]["scenario"] == load_scenario(out / "scenario.yaml").to_dict()
    assert record["parameters"]["command"] == "run" and record["parameters"]["argv"] is None
    env = record["environment"]
    assert env["devices"] == {"autoencoder": "cpu", "meta": "cpu", "analysis": "cpu"}
    assert env["python"]["version"] and env["libraries"]["torch"]["version"]
    assert env["libraries"]["numpy"]["version"] and "cuda" in env
    assert record["times"]["start"] <= record["times"]["end"]
    # embedded: aes.pt, metrics.json (its reproducible part), mae.pt
    bank_record = runio.torch_load(out / "aes.pt")["provenance"]
    assert bank_record["parameters"] == record["parameters"]
    assert bank_record["environment"] == env and bank_record["times"]["end"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["provenance"] == stable_provenance(record)
    assert "times" not in metrics["provenance"]
    from evosim.meta import MetaResult

    if "provenance" in inspect.signature(MetaResult.save).parameters:
        assert runio.torch_load(out / "mae.pt")["provenance"]["parameters"] == record["parameters"]
    report = (out / "report.md").read_text()
    assert "devices: autoencoder cpu, meta cpu, analysis cpu" in report
    assert f"evosim {version}" in report


def test_run_is_reproducible_byte_for_byte(tiny_run, tmp_path):
    out, _ = tiny_run
    again = tmp_path / "again"
    evosim.run(parse_scenario(TINY.format(steps=60)), again, progress=False)
    for name in (
        "true_tree.nwk",
        "traits.csv",
        "latents.csv",
        "inferred_tree.nwk",
        "metrics.json",
        "latent_distances.tsv",
        "true_distances.tsv",
        "trees.nex",
    ):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def _readme_api() -> list[str]:
    """The README's Python API block, up to and including ``analyse``."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    lines = [line.split("#")[0].rstrip() for line in block.splitlines()]
    lines = [line for line in lines if line]
    end = next(i for i, line in enumerate(lines) if "evosim.analyse(" in line)
    return lines[: end + 1]


def test_readme_python_api_reproduces_evosim_run(tiny_run, tmp_path):
    out, _ = tiny_run
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(steps=60))
    lines = _readme_api()
    assert len(lines) == 6 and lines[0] == "import evosim"
    code = "\n".join(lines).replace('"scenarios/quickstart.yaml"', repr(str(path)))
    namespace: dict = {}
    exec(code, namespace)
    report = namespace["report"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(json.dumps(report.metrics_json()["mae"])) == metrics["mae"]
    assert json.loads(json.dumps(report.metrics_json()["baselines"])) == metrics["baselines"]


def test_compare_and_report_agree_on_the_same_trees(tiny_run):
    out, _ = tiny_run
    trees = (str(out / "true_tree.nwk"), str(out / "inferred_tree.nwk"))
    result = _evosim("compare", *trees, "--json")
    assert result.returncode == 0, result.stderr
    compared = json.loads(result.stdout)
    reported = json.loads((out / "metrics.json").read_text())["mae"]
    for key in ("rf", "nrf", "quartet"):
        assert compared[key] == pytest.approx(reported[key]), key
    assert compared["triplet"] is None and reported["triplet"] is None  # NJ tree: unrooted


def test_compare_and_report_agree_on_cophenetic_correlations(tiny_run):
    out, _ = tiny_run
    trees = (str(out / "true_tree.nwk"), str(out / "inferred_tree.nwk"))
    result = _evosim("compare", *trees, "--json")
    compared = json.loads(result.stdout)
    reported = json.loads((out / "metrics.json").read_text())["mae"]
    for key in set(compared) & set(reported):
        if compared[key] is not None:
            assert compared[key] == pytest.approx(reported[key]), key


# ---------------------------------------------------------------------------- resume


def test_run_refuses_a_non_empty_directory(tiny_run, scenario_file):
    out, _ = tiny_run
    result = _evosim("run", str(scenario_file), "--out", str(out), "--quiet")
    _one_line_error(result, "not empty", "--force", "--resume")


def test_resume_with_a_different_scenario_is_refused(tiny_run, tmp_path):
    out, _ = tiny_run
    path = tmp_path / "s.yaml"
    path.write_text(TINY.format(steps=61))
    result = _evosim("run", str(path), "--out", str(out), "--resume", "--quiet")
    _one_line_error(result, "autoencoder", "differs")


def test_resume_with_a_different_explicit_seed_is_refused(tiny_run, tmp_path):
    out, _ = tiny_run
    path = tmp_path / "s.yaml"
    path.write_text(TINY.format(steps=60).replace("seed: 11", "seed: 12"))
    result = _evosim("run", str(path), "--out", str(out), "--resume", "-q")
    _one_line_error(result, "seed", "11", "12")


def test_resume_without_a_seed_takes_the_runs(tiny_copy, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TINY.format(steps=60).replace("seed: 11\n", ""))
    before = (tiny_copy / "metrics.json").read_bytes()
    result = _evosim("run", str(path), "--out", str(tiny_copy), "--resume", "-v")
    assert result.returncode == 0, result.stderr
    assert "finished earlier" in result.stderr  # -v after the subcommand: INFO logs shown
    assert (tiny_copy / "metrics.json").read_bytes() == before
    argv = json.loads((tiny_copy / "provenance.json").read_text())["parameters"]["argv"]
    assert argv[:2] == ["evosim", "run"] and "--resume" in argv


@pytest.mark.slow
def test_kill_during_training_then_resume_gives_the_same_results(tmp_path):
    scenario_path = tmp_path / "s.yaml"
    scenario_path.write_text(TINY.format(steps=400))
    reference = tmp_path / "reference"
    result = _cli("run", str(scenario_path), "--out", str(reference), "--quiet")
    assert result.returncode == 0, result.stderr

    out = tmp_path / "killed"
    proc = _start_run(scenario_path, out)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "checkpoints" / "train.done").exists()
    assert (out / "checkpoints" / "lock").exists()  # left behind by the killed run

    result = _cli("run", str(scenario_path), "--out", str(out), "--resume", "--quiet")
    assert result.returncode == 0, result.stderr
    assert not (out / "checkpoints" / "lock").exists()
    for name in ("latents.csv", "inferred_tree.nwk", "metrics.json"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def _default_sigint() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and a Python
    # started so never raises KeyboardInterrupt: give the run the default handling, as a
    # terminal would, whatever started the tests.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_run(scenario_path: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "evosim.cli", "run", str(scenario_path), "--out", str(out), "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path) -> None:
    ckpt_dir = out / "checkpoints" / "train"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt_dir.is_dir() and any(p.suffix == ".pt" for p in ckpt_dir.iterdir()):
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("training finished before a checkpoint could be interrupted")


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_keeps_the_checkpoints(tmp_path):
    scenario_path = tmp_path / "s.yaml"
    scenario_path.write_text(TINY.format(steps=2000))
    out = tmp_path / "run"
    proc = _start_run(scenario_path, out)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"evosim run {scenario_path} --out {out} --resume" in stderr
    assert any(p.suffix == ".pt" for p in (out / "checkpoints" / "train").iterdir())
    assert (out / "checkpoints" / "simulate.done").exists()
    assert not (out / "checkpoints" / "lock").exists()


# ---------------------------------------------------------------------------- the lock


def test_a_second_run_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, scenario_file):
    out = tmp_path / "shared"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from evosim.runio import RunLock; RunLock(sys.argv[1]).acquire();"
            " print('locked', flush=True); time.sleep(300)",
            str(out),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = _evosim("run", str(scenario_file), "--out", str(out), "--force", "-q")
        _one_line_error(result, f"process {holder.pid}", "in use", str(out))
        assert not (out / "scenario.yaml").exists()  # nothing was written
    finally:
        holder.kill()
        holder.wait()
    assert (out / "checkpoints" / "lock").exists()  # a stale lock: its holder is gone
    result = _evosim("simulate", str(scenario_file), "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert "taking over the lock" in result.stderr and str(holder.pid) in result.stderr
    assert (out / "instances.npz").exists() and (out / "provenance.json").exists()
    assert not (out / "checkpoints" / "lock").exists()


# ---------------------------------------------------------------------------- untrusted files

MARKER_CODE = "open({marker!r}, 'w').write('pwned')"


class _Planted:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (exec, (MARKER_CODE.format(marker=self.marker),))


def _plant(path: Path, marker: Path, *, zip_format: bool) -> None:
    import torch

    payload = {"format": "evosim.aebank", "x": _Planted(marker)}
    if zip_format:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize(("name", "stage"), [("aes.pt", "train"), ("mae.pt", "meta")])
def test_planted_pickles_are_refused_unread(tiny_copy, scenario_file, name, stage, zip_format):
    marker = tiny_copy.parent / "marker"
    _plant(tiny_copy / name, marker, zip_format=zip_format)
    result = _evosim("run", str(scenario_file), "--out", str(tiny_copy), "--resume", "-q")
    _one_line_error(result, name, "refused unread", f"{stage}.done")
    from evosim.meta import MetaResult
    from evosim.train import load_bank

    with pytest.raises(evosim.errors.FileFormatError, match="refused unread"):
        runio.torch_load(tiny_copy / name)
    with pytest.raises(evosim.errors.FileFormatError):
        MetaResult.load(tiny_copy / name)
    # The trainer's loader calls torch.load(weights_only=True) itself: refused, with
    # torch's own error until it reads through runio.torch_load.
    with pytest.raises((pickle.UnpicklingError, evosim.errors.EvosimError)):
        load_bank(tiny_copy / name)
    assert not marker.exists()


def test_planted_pickles_in_training_checkpoints_never_run(tiny_copy, scenario_file):
    marker = tiny_copy.parent / "marker"
    ckpts = sorted((tiny_copy / "checkpoints" / "train").glob("*.pt"))
    assert ckpts
    for path in ckpts:
        _plant(path, marker, zip_format=True)
    for path in ckpts:
        with pytest.raises(evosim.errors.FileFormatError, match="refused unread"):
            runio.torch_load(path)
    (tiny_copy / "checkpoints" / "train.done").unlink()  # make the trainer read them
    result = _evosim("run", str(scenario_file), "--out", str(tiny_copy), "--resume")
    # The trainer names the file (ignoring it with a warning, or refusing it); never runs it.
    assert "Traceback" not in result.stderr
    assert "ae-plan.pt" in result.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------------- damaged files


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    ("name", "damage", "needles"),
    [
        ("aes.pt", "truncate", ["aes.pt", "delete", "train.done", "--resume"]),
        ("mae.pt", "truncate", ["mae.pt", "delete", "meta.done", "--resume"]),
        ("mae.pt", "empty", ["mae.pt", "empty", "meta.done"]),
        ("instances.npz", "truncate", ["instances.npz", "truncated"]),
        ("traits.csv", "truncate", ["traits.csv"]),
    ],
)
def test_damaged_files_are_one_line_errors(tiny_copy, scenario_file, name, damage, needles):
    path = tiny_copy / name
    if damage == "empty":
        path.write_bytes(b"")
    else:
        _truncate(path)
    result = _evosim("run", str(scenario_file), "--out", str(tiny_copy), "--resume")
    _one_line_error(result, *needles)


def test_plot_refuses_files_that_disagree(tiny_copy):
    latents = tiny_copy / "latents.csv"
    original = latents.read_text()
    lines = original.splitlines(keepends=True)
    assert len(lines) == 7  # header + 6 species

    latents.write_text("".join(lines[:5]))  # 4 of 6 species, whole rows
    _one_line_error(_evosim("plot", str(tiny_copy)), "latents.csv", "4 species", "6")

    latents.write_text(original[: len(original) - 7])  # cut mid-row
    _one_line_error(_evosim("plot", str(tiny_copy)), "latents.csv", "truncated")
    latents.write_text(original)

    matrix = tiny_copy / "latent_distances.tsv"
    rows = matrix.read_text().splitlines(keepends=True)
    matrix.write_text("".join(rows[:-1]))
    _one_line_error(_evosim("plot", str(tiny_copy)), "latent_distances.tsv")
    matrix.write_text("".join(rows))

    tree = tiny_copy / "inferred_tree.nwk"
    tree.write_text("[&U] (s1:1,s2:1,(s3:1,s4:1):1);\n")
    _one_line_error(_evosim("plot", str(tiny_copy)), "inferred_tree.nwk", "species")


def test_plot_redraws_every_figure_and_never_loads_torch_files(tiny_copy):
    for f in (tiny_copy / "figures").iterdir():
        f.unlink()
    marker = tiny_copy.parent / "marker"
    for path in [tiny_copy / "aes.pt", tiny_copy / "mae.pt"]:
        _plant(path, marker, zip_format=True)
    for path in (tiny_copy / "checkpoints" / "train").glob("*.pt"):
        _plant(path, marker, zip_format=True)
    result = _evosim("plot", str(tiny_copy))
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    printed = result.stdout.split()
    assert len([p for p in printed if p.endswith(".png")]) >= 8
    for name in ("tanglegram", "latent_space", "true_tree"):
        assert (tiny_copy / "figures" / f"{name}.png").exists()
        assert (tiny_copy / "figures" / f"{name}.svg").exists()
    _one_line_error(_evosim("plot", str(tiny_copy / "figures")), "not a run directory")


# ---------------------------------------------------------------------------- CLI


def test_cli_compare(tmp_path):
    a = tmp_path / "a.nwk"
    b = tmp_path / "b.nwk"
    a.write_text("((A:1,B:1):1,(C:1,D:1):1);")
    b.write_text("((A:1,C:1):1,(B:1,D:1):1);")
    result = _evosim("compare", str(a), str(b), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["rf"] == 2 and metrics["nrf"] == 1.0
    assert metrics["triplet"] == 1.0
    unrooted = tmp_path / "u.nwk"
    unrooted.write_text("[&U]((A:1,C:1):1,(B:1,D:1):1);")
    result = _evosim("compare", str(a), str(unrooted), "--json")
    assert json.loads(result.stdout)["triplet"] is None  # no triplets unrooted; valid JSON
    same = _evosim("compare", str(a), str(a))
    assert same.returncode == 0 and "nrf" in same.stdout
    assert "Robinson-Foulds" in same.stdout  # the measures are explained, as in report.md


def test_cli_compare_errors_are_one_line(tmp_path):
    a = tmp_path / "a.nwk"
    bad = tmp_path / "bad.nwk"
    other = tmp_path / "other.nwk"
    a.write_text("((A,B),(C,D));")
    bad.write_text("((A,B),(C,D);")
    other.write_text("((A,B),(C,E));")
    for args, needle in (
        ((str(a), str(bad)), "bad.nwk"),
        ((str(a), str(other)), "other.nwk"),
        ((str(a), str(tmp_path / "no.nwk")), "no such file"),
    ):
        _one_line_error(_evosim("compare", *args), needle)


def test_design_file_names_are_used(tiny_run):
    out, _ = tiny_run
    header = (out / "latents.csv").read_text().splitlines()[0]
    assert header.startswith("species,z_1")
    assert (out / "traits.csv").read_text().splitlines()[0].startswith("node,time,trait_1")
    assert Path(out / "true_tree.nwk").read_text().strip().endswith(";")


def test_run_log_keeps_python_warnings_and_still_shows_them(tmp_path):
    # Python use, logging left unconfigured: a warning raised during a run is written to
    # run.log and still reaches the caller's warning machinery (here pytest's).
    import warnings

    from evosim.pipeline import _run_log

    shown = warnings.showwarning
    with pytest.warns(UserWarning, match="look here"), _run_log(tmp_path):
        warnings.warn("look here", UserWarning, stacklevel=1)
    assert "look here" in (tmp_path / "run.log").read_text()
    assert warnings.showwarning is shown
