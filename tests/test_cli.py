"""The `evosim` command: shared options, logging, the error policy, info, schema, fields."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from evosim import cli, reference

ROOT = Path(__file__).resolve().parent.parent
SMALL = "name: small\nseed: 3\ntree: {model: yule, n_species: 4}\nspecies: {instances: 16}\n"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "evosim.cli", *args], capture_output=True, text=True, env=env
    )


def _invoke(*args: str):  # noqa: ANN202 - click Result
    return CliRunner().invoke(cli.main, list(args))


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


# ---------------------------------------------------------------------------- shared options


@pytest.mark.parametrize(
    "args",
    [
        ("-v", "validate", "{path}"),
        ("validate", "{path}", "-v"),
        ("--verbose", "validate", "--verbose", "{path}"),
    ],
)
def test_verbose_is_accepted_before_or_after_the_subcommand(small, args):
    result = _invoke(*(a.format(path=small) for a in args))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok"
    assert "estimated peak memory" in result.stderr  # INFO logging shown


def test_default_and_quiet_hide_info(small):
    for args in (("validate", str(small)), ("-q", "validate", str(small))):
        result = _invoke(*args)
        assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize("command", ["validate", "simulate", "run", "compare", "plot", "schema"])
def test_every_subcommand_takes_the_shared_options(command):
    result = _invoke(command, "--help")
    assert result.exit_code == 0
    for option in ("-v, --verbose", "-q, --quiet", "--debug"):
        assert option in result.stdout, (command, option)


def test_debug_shows_the_traceback_of_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tree: {birth_rat: 2}\n")
    plain = _cli("validate", str(bad))
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "did you mean 'birth_rate'?" in plain.stderr
    debug = _cli("--debug", "validate", str(bad))
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def test_a_bug_keeps_its_traceback(small, monkeypatch):
    # Only evosim's own errors become one line: a bare ValueError is a bug.
    def broken(path):  # noqa: ANN001, ANN202
        raise ValueError("a bug, not the user's fault")

    monkeypatch.setattr(cli, "load_scenario", broken)
    result = _invoke("validate", str(small))
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError)


def test_out_of_memory_is_one_line(small, tmp_path, monkeypatch):
    import evosim.simulation

    def oom(*args, **kwargs):  # noqa: ANN202
        raise MemoryError()

    monkeypatch.setattr(evosim.simulation, "simulate", oom)
    result = _invoke("run", str(small), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert "out of memory" in result.stderr and "--resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "checkpoints" / "lock").exists()


@pytest.mark.parametrize(
    ("code", "needle"), [(errno.ENOSPC, "no space left"), (errno.EROFS, "cannot write")]
)
def test_full_or_read_only_disk_is_one_line(small, tmp_path, monkeypatch, code, needle):
    import evosim.runio

    def refuse(fd):  # noqa: ANN001, ANN202
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(evosim.runio.os, "fsync", refuse)
    result = _invoke("simulate", str(small), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and needle in line and "provenance.json" in line
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no partial files left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_one_line(small, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = _cli("simulate", str(small), "--out", str(out))
    finally:
        out.chmod(0o755)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot write" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_resume_and_force_together_are_refused(small, tmp_path):
    result = _invoke("run", str(small), "--out", str(tmp_path), "--resume", "--force")
    assert result.exit_code == 2 and "contradict" in result.stderr


# ---------------------------------------------------------------------------- sizes

HUGE = [
    "species: {instances: 1000000000}",
    "traits: {dim: 1000000000}",
    "autoencoder: {hidden: [100000000]}",
    "tree: {n_species: 10000000}",
]


@pytest.mark.parametrize("text", HUGE)
def test_scenarios_too_large_for_the_machine_are_refused_up_front(tmp_path, text):
    path = tmp_path / "huge.yaml"
    path.write_text(f"seed: 1\n{text}\n")
    result = _invoke("validate", str(path))
    assert result.exit_code == 2, result.output
    assert "too large" in result.stderr and "--force-size" in result.stderr
    assert "GiB" in result.stderr or "TiB" in result.stderr or "PiB" in result.stderr
    assert _invoke("validate", str(path), "--force-size").exit_code == 0
    out = tmp_path / "out"
    result = _invoke("run", str(path), "--out", str(out))
    assert result.exit_code == 2 and "too large" in result.stderr
    assert not out.exists()  # refused before anything was created


# ---------------------------------------------------------------------------- info, schema, fields


def test_info_prints_versions_and_devices():
    import importlib.metadata

    import torch

    result = _invoke("info")
    assert result.exit_code == 0
    assert f"evosim {importlib.metadata.version('evosim')}" in result.stdout
    assert f"torch {importlib.metadata.version('torch')}" in result.stdout
    assert "numpy" in result.stdout and "python" in result.stdout
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"device auto -> {expected}" in result.stdout


def test_schema_checks_scenarios_as_an_editor_would():
    jsonschema = pytest.importorskip("jsonschema")
    result = _invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path.name, errors[0].message)
    assert list(validator.iter_errors({"tree": {"birth_rat": 1.0}}))
    assert list(validator.iter_errors({"tree": {"model": "pure_birth"}}))


def test_fields_lists_a_section_in_the_terminal():
    result = _invoke("fields", "tree")
    assert result.exit_code == 0
    assert "birth_rate: float, > 0 (default 1.0)" in result.stdout
    assert "speciation rate" in result.stdout and "autoencoder" not in result.stdout
    result = _invoke("fields", "traits.population")
    assert result.exit_code == 0 and "founder_size" in result.stdout
    result = _invoke("fields", "tre")
    assert result.exit_code == 2 and "did you mean 'tree'?" in result.stderr


def test_rendered_reference_is_current():
    doc = ROOT / "docs" / "scenario-reference.md"
    assert doc.read_text() == reference.markdown(), (
        "docs/scenario-reference.md is stale: regenerate it with "
        "`evosim fields --markdown > docs/scenario-reference.md`"
    )
    assert _invoke("fields", "--markdown").stdout == reference.markdown()


def test_every_scenario_field_is_documented():
    rows = reference.fields()
    assert len(rows) > 60
    missing = [f"{r.section}.{r.name}".lstrip(".") for r in rows if not r.description]
    assert not missing, f"fields without description=: {missing}"


def test_nothing_user_facing_points_to_the_team_design_notes():
    # evosim/train/trainer.py still cites them in a docstring: its owners are splitting it.
    offenders = []
    for pattern in ("evosim/**/*.py", "scenarios/*.yaml", "docs/*.md", "README.md"):
        for path in ROOT.glob(pattern):
            if path == ROOT / "evosim" / "train" / "trainer.py":
                continue
            if "DESIGN.md" in path.read_text(encoding="utf-8"):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders
