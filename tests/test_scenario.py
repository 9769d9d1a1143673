"""Scenario loading: defaults, round trip, and one clear line for every kind of bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evosim
from evosim.scenario import Scenario, ScenarioError, dump_scenario, load_scenario, parse_scenario

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))


def test_three_line_scenario_is_valid_and_fully_defaulted():
    sc = parse_scenario("name: tiny\nseed: 3\ntree:\n  n_species: 5\n")
    assert sc.name == "tiny" and sc.seed == 3 and sc.tree.n_species == 5
    assert sc.tree.model == "birth_death"
    assert sc.traits.model == "brownian"
    assert sc.species.family == "development"
    assert sc.autoencoder.variant == "plain"
    assert sc.analysis.method == "nj"


def test_missing_seed_is_drawn_and_then_fixed_by_the_dump():
    first = parse_scenario("name: a\n")
    assert isinstance(first.seed, int) and 0 <= first.seed < 2**31
    assert f"seed: {first.seed}\n" in dump_scenario(first)
    again = parse_scenario(dump_scenario(first))
    assert again == first
    # drawn afresh for each scenario without one: 5 equal draws from 2^31 would be a bug
    assert len({parse_scenario("name: a\n").seed for _ in range(5)}) > 1


def test_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my_world.yaml"
    path.write_text("seed: 1\n")
    assert load_scenario(path).name == "my_world"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_bundled_scenarios_validate_and_round_trip(path):
    sc = load_scenario(path)
    assert parse_scenario(dump_scenario(sc)) == sc


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 500),
    birth=st.floats(0.01, 10),
    death_frac=st.floats(0, 0.99),
    dim=st.integers(1, 32),
    model=st.sampled_from(["brownian", "ou", "early_burst", "jumps", "population"]),
    hidden=st.lists(st.integers(1, 256), max_size=3),
    latent=st.one_of(st.integers(1, 16), st.just("auto")),
)
def test_resolved_scenario_round_trips(n, birth, death_frac, dim, model, hidden, latent):
    sc = Scenario(
        seed=1,
        tree={"n_species": n, "birth_rate": birth, "death_rate": birth * death_frac},
        traits={"model": model, "dim": dim},
        autoencoder={"hidden": hidden},
        meta={"latent": latent},
    )
    assert parse_scenario(dump_scenario(sc)) == sc


BAD = [
    # (yaml, expected message), one per class of bad input
    ("tree:\n  model: yule\n  birth_rate: -1\n", "tree.birth_rate (line 3): must be > 0, got -1"),
    ("tree:\n  brith_rate: 1\n", "tree.brith_rate (line 2): unknown field"),
    ("colour: red\n", "colour (line 1): unknown field"),
    ("traits:\n  model: foo\n", "traits.model (line 2): must be one of"),
    ("tree:\n  n_species: abc\n", "tree.n_species (line 2): must be an integer, got 'abc'"),
    ("tree:\n  n_species: 1\n", "tree.n_species (line 2): must be >= 2, got 1"),
    ("tree: 5\n", "tree (line 1): must be a mapping, got 5"),
    ("- a\n- b\n", "scenario: must be a YAML mapping of sections, got list"),
    ("", "scenario: the file is empty"),
    ("# only a comment\n", "scenario: the file is empty"),
    ("a: [\n", "scenario (line 2): not valid YAML"),
    ("tree:\n  death_rate: 2\n", "tree.death_rate (line 2): must be < birth_rate (1.0), got 2.0"),
    ("tree:\n  model: newick\n", "tree.newick (line 1): is required when tree.model is newick"),
    ("traits:\n  dim: 2\n  root: [1, 2, 3]\n", "traits.root (line 3): must have dim=2 values"),
    (
        "traits:\n  dim: 2\n  correlation: [[1, 2], [2, 1]]\n",
        "traits.correlation (line 3): must be positive definite",
    ),
    ("traits:\n  population:\n    size: 1\n", "traits.population.size (line 3): must be >= 2"),
    ("autoencoder:\n  hidden: [0]\n", "autoencoder.hidden (line 2): every width must be >= 1"),
    (
        "autoencoder:\n  compile: maybe\n",
        "autoencoder.compile (line 2): must be true, false or 'auto', got 'maybe'",
    ),
    ("meta:\n  latent: 0\n", "meta.latent (line 2): must be >= 1 or 'auto', got 0"),
    ("seed: -3\n", "seed (line 1): must be >= 0, got -3"),
    (
        "tree:\n  model: newick\n  newick: '((A:1,B:1):1,C:2'\n",
        "tree.newick (line 3): invalid Newick",
    ),
    (
        "tree:\n  model: newick\n  newick: '((A:1,B:1):1,(A:1,C:1):1);'\n",
        "tree.newick (line 3): invalid Newick: duplicate leaf",
    ),
    ("tree:\n  newick: 'A;'\n", "tree.newick (line 2): must have at least 2 leaves"),
    ("analysis:\n  baselines: [trait]\n", "analysis.baselines (line 2): unknown baseline 'trait'"),
    ("analysis:\n  device: gpu\n", "analysis.device (line 2): must be one of"),
    ("meta:\n  distance_target: data\n", "meta.distance_target (line 2): must be one of"),
    ("meta:\n  error_cap: 0\n", "meta.error_cap (line 2): must be > 0, got 0"),
    ("meta:\n  encode_steps: -1\n", "meta.encode_steps (line 2): must be >= 0, got -1"),
    ("meta:\n  error_cap: 1.5\n", "meta.error_cap (line 2): must be <= 1, got 1.5"),
    ("meta:\n  tree_dims: 0\n", "meta.tree_dims (line 2): must be >= 1, got 0"),
    ("meta:\n  tail_dropout: 1\n", "meta.tail_dropout (line 2): must be < 1, got 1"),
    (
        "meta:\n  tail_dropout: 0.5\n",
        "meta.tail_dropout (line 2): needs meta.tree_dims below meta.latent",
    ),
    (
        "meta:\n  latent: 8\n  tree_dims: 8\n  tail_dropout: 0.5\n",
        "meta.tail_dropout (line 4): needs meta.tree_dims below meta.latent",
    ),
    (
        "meta:\n  latent: 8\n  tree_dims: 9\n",
        "meta.tree_dims (line 3): must be <= meta.latent (8), got 9",
    ),
    ("meta:\n  latent: auto\n  tree_dims: 4\n", "meta.tree_dims (line 3): needs a numeric"),
    (
        "meta:\n  prior: archetypal\n  tree_dims: 2\n",
        "meta.tree_dims (line 3): must be null with prior archetypal",
    ),
]


@pytest.mark.parametrize("text, expected", BAD)
def test_bad_scenarios_give_one_line_naming_the_field(text, expected):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text)
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(binary)


def test_scenario_error_is_exported():
    assert evosim.ScenarioError is ScenarioError
    assert issubclass(ScenarioError, ValueError)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evosim.cli", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize("text, expected", BAD[:6] + BAD[8:11])
def test_cli_validate_reports_one_line_and_exits_2(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = _cli("validate", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_validate_ok(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text("name: ok\nseed: 1\n")
    result = _cli("validate", str(path))
    assert result.returncode == 0 and result.stdout.strip() == "ok"


def test_cli_missing_file_exits_2(tmp_path):
    result = _cli("validate", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "no such file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("tree:\n  brith_rate: 1\n", "did you mean 'birth_rate'?"),
        ("tre:\n  n_species: 4\n", "did you mean 'tree'?"),
        ("traits:\n  population:\n    sise: 4\n", "did you mean 'size'?"),
        ("analysis:\n  baselines: [trait]\n", "did you mean 'traits'?"),
    ],
)
def test_unknown_fields_get_a_did_you_mean(text, suggestion):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text)
    assert suggestion in str(info.value)
    assert "DESIGN" not in str(info.value)


def test_unknown_field_far_from_every_name_gets_no_guess():
    with pytest.raises(ScenarioError) as info:
        parse_scenario("tree:\n  zzzzzz: 1\n")
    assert "did you mean" not in str(info.value) and "evosim fields tree" in str(info.value)


def test_analysis_device_defaults_to_auto():
    assert parse_scenario("seed: 1\n").analysis.device == "auto"
