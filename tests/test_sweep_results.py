"""A sweep's results: rows from run directories, results files, summary, figures, plot CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from evosim import runio
from evosim.cli import main
from evosim.sweep import parse_sweep, plot_sweep
from evosim.sweep.figures import plot_heatmap, plot_parameter
from evosim.sweep.results import (
    failed_row,
    read_results,
    run_row,
    summary_table,
    write_parquet,
    write_results,
)

SWEEP = """\
base: {tree: {n_species: 4}}
grid:
  tree.n_species: [4, 8]
  meta.representation: [aligned, functional]
seeds: 3
"""


def _fake_run(out, task, nrf, *, failed=False):
    """A finished run directory with the files a row is read from."""
    run = out / task.run_dir
    metrics = {
        "mae": {"rf": 2 * nrf, "nrf": nrf, "triplet": None, "cophenetic_spearman": 1 - nrf},
        "baselines": {
            "traits": {"rf": 0.0, "nrf": 0.0, "triplet": None, "cophenetic_spearman": 0.9},
            "raw_weights": {"not_applicable": "mixed AE architectures"},
        },
        "meta": {"latent": 3, "steps": 10},
    }
    runio.write_json(run / "metrics.json", metrics)
    runio.write_json(run / "checkpoints" / "timings.json", {"simulate": 0.5, "train": 1.25})
    runio.write_text(run / "scenario.yaml", yaml.safe_dump({"autoencoder": {"device": "cpu"}}))
    return run_row(task, out)


@pytest.fixture
def sweep():
    return parse_sweep(SWEEP)


@pytest.fixture
def rows(sweep, tmp_path):
    out = []
    rng = np.random.default_rng(0)
    for task in sweep.tasks():
        if task.point.index == 3 and task.seed == 2:
            out.append(failed_row(task, "ValueError: boom", device="cpu"))
        else:
            out.append(_fake_run(tmp_path, task, float(rng.uniform(0, 1))))
    return out


def test_run_row_columns(sweep, tmp_path):
    task = sweep.tasks()[4]
    row = _fake_run(tmp_path, task, 0.25)
    assert row == {
        "point": 1,
        "seed": 2,
        "tree.n_species": 4,
        "meta.representation": "functional",
        "status": "done",
        "device": "cpu",
        "latent": 3,
        "mae.rf": 0.5,
        "mae.nrf": 0.25,
        "mae.triplet": None,
        "mae.cophenetic_spearman": 0.75,
        "traits.rf": 0.0,
        "traits.nrf": 0.0,
        "traits.triplet": None,
        "traits.cophenetic_spearman": 0.9,
        "raw_weights.not_applicable": "mixed AE architectures",
        "time.simulate": 0.5,
        "time.train": 1.25,
        "run_dir": "runs/p01-n_species=4-representation=functional/seed-2",
        "log": "logs/p01-n_species=4-representation=functional.seed-2.log",
        "error": None,
    }


def test_results_csv_round_trips_exactly_in_task_order(rows, tmp_path):
    path = write_results(tmp_path / "results.csv", list(reversed(rows)))
    back = read_results(path)
    assert [(int(r["point"]), int(r["seed"])) for r in back] == [
        (r["point"], r["seed"]) for r in rows
    ]
    header = path.read_text().splitlines()[0].split(",")
    assert header[:4] == ["point", "seed", "tree.n_species", "meta.representation"]
    assert header[-5:] == ["time.simulate", "time.train", "run_dir", "log", "error"]
    for mine, read in zip(rows, back):
        for key, value in mine.items():
            if isinstance(value, float):
                assert float(read[key]) == value  # repr: exact
            elif value is None:
                assert read[key] == ""
    failed = back[3 * 3 + 1]
    assert failed["status"] == "failed"
    assert failed["error"] == "ValueError: boom"
    assert failed["mae.nrf"] == ""


def test_parquet_holds_the_same_rows(rows, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    path = write_parquet(tmp_path / "results.parquet", rows)
    table = pq.read_table(path).to_pylist()
    assert len(table) == len(rows)
    assert [r["mae.nrf"] for r in table] == [r.get("mae.nrf") for r in rows]
    assert table[0]["meta.representation"] == "aligned"


def test_summary_means_and_spreads(sweep):
    # Point 0: nrf 0.2, 0.4, 0.9 -> mean 0.5, sd sqrt(((.3)^2 + (.1)^2 + (.4)^2) / 2) = 0.3606.
    # Point 1: one seed done (sd undefined), one failed.
    definition = sweep.definition()
    rows = []
    tasks = sweep.tasks()
    for task, nrf in zip(tasks[:3], (0.2, 0.4, 0.9)):
        rows.append(
            {
                "point": 0,
                "seed": task.seed,
                "status": "done",
                "mae.nrf": nrf,
                "traits.nrf": 0.0,
                "raw_weights.not_applicable": "mixed",
            }
        )
    rows.append({"point": 1, "seed": 1, "status": "done", "mae.nrf": "0.25"})
    rows.append({"point": 1, "seed": 2, "status": "failed", "error": "x"})
    table = summary_table(rows, definition["points"], definition["parameters"], metrics=["nrf"])
    lines = table.splitlines()
    assert lines[0] == "| point | tree.n_species | meta.representation | method | seeds | nrf |"
    assert "| 0 | 4 | aligned | **MAE** | 3 | 0.500 ± 0.361 |" in lines
    assert "| 0 | 4 | aligned | traits | 3 | 0.000 ± 0.000 |" in lines
    assert "| 0 | 4 | aligned | raw_weights | 0 | not applicable |" in lines
    assert "| 1 | 4 | functional | **MAE** | 1 (1 failed) | 0.250 |" in lines
    assert "| 2 | 8 | aligned | - | 0 | - |" in lines
    brief = summary_table(
        rows, definition["points"], definition["parameters"], metrics=["nrf"], methods=["mae"]
    )
    assert "traits" not in brief and "| 0 | 4 | aligned | **MAE** | 3 | 0.500 ± 0.361 |" in brief


def _write_sweep_dir(sweep, rows, out):
    runio.write_json(out / "sweep.json", sweep.definition())
    write_results(out / "results.csv", rows)


def test_parameter_figure_draws_one_line_per_method_with_seed_spread(sweep, rows, tmp_path):
    definition = sweep.definition()
    fig = plot_parameter(
        rows, definition["points"], "tree.n_species", others=["meta.representation"]
    )
    axes = fig.get_axes()
    # rf, nrf, cophenetic_spearman (triplet has no value) x two facets (aligned, functional).
    assert len(axes) == 3 * 2
    nrf_aligned = axes[2]
    labels = [c.get_label() for c in nrf_aligned.containers]
    assert labels == ["MAE", "traits"]
    line = nrf_aligned.containers[0].lines[0]
    want = [
        np.mean([r["mae.nrf"] for r in rows if r["status"] == "done" and r["point"] == p])
        for p in (0, 2)  # aligned at n_species 4 and 8
    ]
    assert np.allclose(line.get_ydata(), want)


def test_heatmap_cells_are_mae_means(sweep, rows):
    definition = sweep.definition()
    fig = plot_heatmap(rows, definition["points"], "tree.n_species", "meta.representation")
    image = fig.get_axes()[0].get_images()[0].get_array()
    for point in definition["points"]:
        o = point["overrides"]
        x = [4, 8].index(o["tree.n_species"])
        y = ["aligned", "functional"].index(o["meta.representation"])
        want = np.mean(
            [r["mae.nrf"] for r in rows if r["point"] == point["index"] and r["status"] == "done"]
        )
        assert math.isclose(image[y, x], want)


def test_plot_command_draws_a_sweep_directory(sweep, rows, tmp_path):
    out = tmp_path / "sweep"
    _write_sweep_dir(sweep, rows, out)
    result = CliRunner().invoke(main, ["plot", str(out)])
    assert result.exit_code == 0, result.output
    drawn = sorted(p.name for p in (out / "figures").iterdir())
    names = ["heatmap", "meta.representation", "tree.n_species"]
    assert drawn == sorted(f"{n}.{ext}" for n in names for ext in ("png", "svg"))
    # one line per figure: its PNG (the SVG beside it)
    assert set(result.output.split()) == {str(out / "figures" / f"{n}.png") for n in names}


def test_plot_sweep_refuses_a_damaged_sweep_json(sweep, rows, tmp_path):
    out = tmp_path / "sweep"
    _write_sweep_dir(sweep, rows, out)
    (out / "sweep.json").write_text(json.dumps({"points": []}))
    with pytest.raises(ValueError, match="sweep.json: unreadable"):
        plot_sweep(out)
