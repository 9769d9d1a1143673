"""Sweep files: validation with one-line errors, grid x zip expansion, seeds, names."""

from __future__ import annotations

from pathlib import Path

import pytest

from evosim.scenario import Scenario, ScenarioError, parse_scenario
from evosim.sweep import load_sweep, parse_sweep

BASE = """\
name: small
seed: 3
tree: {model: yule, n_species: 6}
meta: {steps: 50}
"""


@pytest.fixture
def base_dir(tmp_path):
    (tmp_path / "small.yaml").write_text(BASE)
    return tmp_path


def test_grid_is_crossed_and_zip_moves_together(base_dir):
    sweep = parse_sweep(
        "base: small.yaml\n"
        "grid:\n"
        "  tree.n_species: [6, 8, 10]\n"
        "  meta.representation: [aligned, functional]\n"
        "zip:\n"
        "  autoencoder.steps: [30, 60]\n"
        "  meta.steps: [50, 100]\n"
        "seeds: 2\n",
        root=base_dir,
    )
    assert len(sweep.points) == 3 * 2 * 2
    assert [p.overrides for p in sweep.points[:3]] == [
        {
            "tree.n_species": 6,
            "meta.representation": "aligned",
            "autoencoder.steps": 30,
            "meta.steps": 50,
        },
        {
            "tree.n_species": 6,
            "meta.representation": "aligned",
            "autoencoder.steps": 60,
            "meta.steps": 100,
        },
        {
            "tree.n_species": 6,
            "meta.representation": "functional",
            "autoencoder.steps": 30,
            "meta.steps": 50,
        },
    ]
    tasks = sweep.tasks()
    assert len(tasks) == 12 * 2
    assert [t.seed for t in tasks[:4]] == [1, 2, 1, 2]
    assert len({t.run_dir for t in tasks}) == len(tasks)
    assert sweep.parameters == [
        "tree.n_species",
        "meta.representation",
        "autoencoder.steps",
        "meta.steps",
    ]


def test_task_scenario_is_the_base_with_overrides_and_seed(base_dir):
    sweep = parse_sweep(
        "base: small.yaml\ngrid:\n  tree.n_species: [8]\n  traits.population.size: [50]\n"
        "seeds: [7, 11]\n",
        root=base_dir,
    )
    task = sweep.tasks()[1]
    expected = parse_scenario(BASE).to_dict()
    expected["tree"]["n_species"] = 8
    expected["traits"]["population"]["size"] = 50
    expected["seed"] = 11
    assert Scenario.model_validate(task.scenario).to_dict() == expected
    # One value per field: fixed overrides, nothing swept.
    assert sweep.parameters == []


def test_inline_base_and_seed_list(base_dir):
    sweep = parse_sweep("name: mine\nbase:\n  tree: {n_species: 4}\nseeds: [5, 9]\n", root=base_dir)
    assert sweep.name == "mine"
    assert [t.seed for t in sweep.tasks()] == [5, 9]
    assert sweep.base["tree"]["n_species"] == 4
    assert "seed" not in sweep.base


def test_readable_unique_run_directory_names(base_dir):
    sweep = parse_sweep(
        "base: small.yaml\ngrid:\n  autoencoder.hidden: [[16], [32, 16]]\n"
        "  meta.steps: [50]\nzip:\n  autoencoder.steps: [30, 60]\n  meta.hidden: [[8], [16]]\n"
        "seeds: 1\n",
        root=base_dir,
    )
    names = [t.run_dir for t in sweep.tasks()]
    # A leaf name shared by two swept paths is written in full; meta.steps is not swept.
    assert names[0] == "runs/p00-autoencoder.hidden=16-steps=30-meta.hidden=8/seed-1"
    assert names[3] == "runs/p03-autoencoder.hidden=32x16-steps=60-meta.hidden=16/seed-1"
    assert len(set(names)) == 4


def test_load_sweep_finds_the_base_next_to_the_sweep_file(base_dir):
    sub = base_dir / "sweeps"
    sub.mkdir()
    (sub / "s.yaml").write_text("base: ../small.yaml\ngrid: {tree.n_species: [5, 7]}\nseeds: 1\n")
    sweep = load_sweep(sub / "s.yaml")
    assert sweep.name == "s"
    assert [t.scenario["tree"]["n_species"] for t in sweep.tasks()] == [5, 7]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A dotted path the schema refuses: the scenario loader's message, the point, the line.
        (
            "base: small.yaml\ngrid:\n  meta.steps: [10, 20]\n  tree.n_specis: [6]\nseeds: 1\n",
            "grid.tree.n_specis (line 4): tree.n_specis: unknown field",
        ),
        (
            "base: small.yaml\ngrid:\n  tree.n_species: [6, 1]\nseeds: 1\n",
            "grid.tree.n_species (line 3): tree.n_species: must be >= 2, got 1 "
            "(point tree.n_species=1)",
        ),
        (
            "base: small.yaml\ngrid:\n  meta.representation: [aligned, weights]\nseeds: 1\n",
            "grid.meta.representation (line 3): meta.representation: must be one of",
        ),
        (
            "base: small.yaml\ngrid:\n  tree.n_species.x: [6]\nseeds: 1\n",
            "grid.tree.n_species.x (line 3): tree.n_species is a value, not a section",
        ),
        (
            "base: small.yaml\ngrid:\n  tre.n_species: [6]\nseeds: 1\n",
            "grid.tre.n_species (line 3): tre: unknown field",
        ),
        # A model-level check of the section blames the override in that section.
        (
            "base: small.yaml\ngrid:\n  tree.model: [birth_death]\n  tree.birth_rate: [1.0, 0.1]\n"
            "seeds: 1\n",
            "grid.tree.model (line 3): tree.death_rate: must be < birth_rate (0.1), got 0.2 "
            "(point tree.model=birth_death, tree.birth_rate=0.1)",
        ),
        (
            "base: small.yaml\nzip:\n  tree.n_species: [6, 7]\n  meta.steps: [10, 0]\nseeds: 1\n",
            "zip.meta.steps (line 4): meta.steps: must be >= 1, got 0 "
            "(point tree.n_species=7, meta.steps=0)",
        ),
        # The sweep file's own fields.
        ("base: small.yaml\nseed: 1\n", "seed (line 2): unknown field"),
        ("grid: {}\nseeds: 1\n", "base: is required"),
        ("base: small.yaml\n", "seeds: is required"),
        ("base: small.yaml\nseeds: 0\n", "seeds (line 2): must be >= 1, got 0"),
        ("base: small.yaml\nseeds: [1, 1]\n", "seeds (line 2): lists a seed twice"),
        ("base: small.yaml\nseeds: [1.5]\n", "seeds (line 2): seeds must be integers"),
        ("base: small.yaml\nseeds: true\n", "seeds (line 2): must be a count"),
        (
            "base: small.yaml\ngrid:\n  tree.n_species: 6\nseeds: 1\n",
            "grid.tree.n_species (line 3): must be a list of values, got 6",
        ),
        (
            "base: small.yaml\ngrid:\n  tree.n_species: []\nseeds: 1\n",
            "grid.tree.n_species (line 3): must list at least one value",
        ),
        (
            "base: small.yaml\ngrid:\n  tree.n_species: [6, 6]\nseeds: 1\n",
            "grid.tree.n_species (line 3): lists 6 twice",
        ),
        (
            "base: small.yaml\ngrid:\n  seed: [1, 2]\nseeds: 1\n",
            "grid.seed (line 3): cannot be swept: the seed is set by `seeds:`",
        ),
        (
            "base: small.yaml\ngrid:\n  meta.device: [cpu]\nseeds: 1\n",
            "grid.meta.device (line 3): cannot be swept",
        ),
        (
            "base: small.yaml\ngrid:\n  tree..n: [1]\nseeds: 1\n",
            "grid.tree..n (line 3): must be a dotted path",
        ),
        (
            "base: small.yaml\ngrid:\n  meta.steps: [1]\nzip:\n  meta.steps: [2]\nseeds: 1\n",
            "zip.meta.steps (line 5): is also in grid",
        ),
        (
            "base: small.yaml\nzip:\n  meta.steps: [1, 2]\n  tree.n_species: [5]\nseeds: 1\n",
            "zip (line 2): lists must have the same length, got meta.steps: 2, tree.n_species: 1",
        ),
        ("base: missing.yaml\nseeds: 1\n", "base (line 1): missing.yaml: scenario: no such file"),
        ("base: 3\nseeds: 1\n", "base (line 1): must be a scenario path or a mapping"),
        # An inline base is checked by the scenario loader, with the sweep file's line.
        (
            "seeds: 1\nbase:\n  tree:\n    n_species: 1\n",
            "base.tree.n_species (line 4): must be >= 2, got 1",
        ),
        ("base: small.yaml\nseeds: [1\n", "sweep (line 3): not valid YAML"),
        ("", "sweep: the file is empty"),
        ("- 1\n", "sweep: must be a YAML mapping"),
    ],
)
def test_errors_are_one_line_naming_field_and_line(base_dir, text, message):
    with pytest.raises(ScenarioError) as info:
        parse_sweep(text, root=base_dir)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_base_file_error_names_the_base_and_its_line(base_dir):
    (base_dir / "bad.yaml").write_text("tree:\n  birth_rate: -1\n")
    with pytest.raises(
        ScenarioError, match=r"^base \(line 1\): bad.yaml: tree.birth_rate \(line 2\)"
    ):
        parse_sweep("base: bad.yaml\nseeds: 1\n", root=base_dir)


def test_missing_sweep_file(tmp_path):
    with pytest.raises(ScenarioError, match="sweep: no such file"):
        load_sweep(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).parent.parent / "scenarios" / "sweeps").glob("*.yaml")),
    ids=lambda p: p.stem,
)
def test_bundled_sweeps_are_valid(path):
    sweep = load_sweep(path)
    assert len(sweep.parameters) >= 2
    assert len(sweep.seeds) >= 3 or len(sweep.tasks()) >= 100
