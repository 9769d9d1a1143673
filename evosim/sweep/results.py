"""A sweep's results: one row per task, ``results.csv`` / ``results.parquet``, the summary.

A row is read from the task's finished run directory (``metrics.json``,
``checkpoints/timings.json``, ``scenario.yaml``), so a row is the same whether the task
ran a minute ago or in an earlier, interrupted sweep. Columns: ``point``, ``seed``, one
per override (its dotted path), ``status`` (``done`` or ``failed``), ``device``,
``latent`` (the MAE's code size), ``METHOD.METRIC`` for the MAE (``mae``) and every
baseline, ``time.STAGE`` (seconds), ``run_dir`` and ``log`` (relative to the sweep
directory), and ``error``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from evosim import runio
from evosim.errors import FileFormatError
from evosim.sweep.spec import Task

__all__ = [
    "SUMMARY_METRICS",
    "failed_row",
    "methods_of",
    "metric_value",
    "read_results",
    "run_row",
    "summary_table",
    "write_parquet",
    "write_results",
]

SUMMARY_METRICS = ("nrf", "quartet", "cophenetic_spearman")
_LEADING = ("point", "seed")
_TRAILING = ("run_dir", "log", "error")
_FIXED = {*_LEADING, "status", "device", "latent", *_TRAILING}


def _head(task: Task, status: str) -> dict[str, Any]:
    return {
        "point": task.point.index,
        "seed": task.seed,
        **task.point.overrides,
        "status": status,
    }


def run_row(task: Task, out: str | Path) -> dict[str, Any]:
    """The row of a finished task, read from its run directory under ``out``."""
    run_dir = Path(out) / task.run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    timings_path = run_dir / "checkpoints" / "timings.json"
    timings = json.loads(timings_path.read_text(encoding="utf-8")) if timings_path.exists() else {}
    scenario = yaml.safe_load((run_dir / "scenario.yaml").read_text(encoding="utf-8"))
    row = _head(task, "done")
    row["device"] = scenario.get("autoencoder", {}).get("device")
    row["latent"] = (metrics.get("meta") or {}).get("latent")
    methods = {"mae": metrics.get("mae") or {}, **(metrics.get("baselines") or {})}
    for method, values in methods.items():
        for key, value in values.items():
            if value is None or isinstance(value, (int, float, str)):
                row[f"{method}.{key}"] = value
    for stage, seconds in timings.items():
        row[f"time.{stage}"] = seconds
    row.update(run_dir=task.run_dir, log=task.log, error=None)
    return row


def failed_row(task: Task, error: str, *, device: str | None = None) -> dict[str, Any]:
    """The row of a task that raised: its error (one line) and the path of its log."""
    row = _head(task, "failed")
    row.update(device=device, run_dir=task.run_dir, log=task.log, error=error)
    return row


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    middle = [k for k in seen if k not in _LEADING and k not in _TRAILING]
    timing = [k for k in middle if k.startswith("time.")]
    middle = [k for k in middle if not k.startswith("time.")]
    return [*_LEADING, *middle, *timing, *_TRAILING]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def write_results(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``results.csv`` atomically: rows in task order, floats written exactly."""
    rows = sorted(rows, key=lambda r: (r["point"], r["seed"]))
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return runio.write_text(path, buffer.getvalue())


def read_results(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``results.csv`` (cells as text; see :func:`metric_value`)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such file (has the sweep run?)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FileFormatError(f"{path}: cannot read: {exc}") from None
    if rows and not {"point", "seed", "status"} <= rows[0].keys():
        raise FileFormatError(f"{path}: not a sweep's results (no point, seed, status columns)")
    return rows


def write_parquet(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path | None:
    """Write ``results.parquet`` when pyarrow is installed (else return ``None``)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    rows = sorted(rows, key=lambda r: (r["point"], r["seed"]))
    columns = _columns(rows)
    data = {}
    for c in columns:
        values = [r.get(c) for r in rows]
        numeric = all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
        )
        data[c] = values if numeric else [None if v is None else _cell(v) for v in values]
    table = pa.table(data)
    return runio.atomic_write(path, lambda h: pq.write_table(table, h))


# ---------------------------------------------------------------------------- summary


def metric_value(value: Any) -> float:
    """A cell as a float (``nan`` for an empty or non-numeric cell)."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def methods_of(rows: Sequence[dict[str, Any]], parameters: Sequence[str]) -> list[str]:
    """The methods (``mae`` first, then the baselines) that rows have metrics for."""
    methods: dict[str, None] = {"mae": None}
    for row in rows:
        for key in row:
            if key in _FIXED or key in parameters or key.startswith("time."):
                continue
            method, dot, _ = key.partition(".")
            if dot:
                methods.setdefault(method, None)
    return list(methods)


def _mean_sd(values: list[float]) -> str:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if not len(v):
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def summary_table(
    rows: Sequence[dict[str, Any]],
    points: Sequence[dict[str, Any]],
    parameters: Sequence[str],
    *,
    metrics: Sequence[str] = SUMMARY_METRICS,
    methods: Sequence[str] | None = None,
) -> str:
    """A markdown table: per grid point and method, mean ± sd over seeds of each metric.

    Parameters
    ----------
    rows
        Result rows (values or CSV text); failed rows are counted, not averaged.
    points
        The sweep's points (``index``, ``overrides``), as in ``sweep.json``.
    parameters
        The swept dotted paths (one column each).
    metrics
        Metric names (columns ``METHOD.METRIC``).
    methods
        The methods to show (default: the MAE and every baseline).
    """
    done = [r for r in rows if r.get("status") == "done"]
    methods = [m for m in methods_of(done, parameters) if methods is None or m in methods]
    header = ["point", *parameters, "method", "seeds", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * (len(parameters) + 3)]
    lines[-1] += "---:|" * len(metrics)
    for point in points:
        mine = [r for r in done if int(r["point"]) == point["index"]]
        failed = sum(
            1 for r in rows if r.get("status") == "failed" and int(r["point"]) == point["index"]
        )
        values = [_show(point["overrides"].get(p)) for p in parameters]
        for method in methods:
            have = [r for r in mine if not _missing(r.get(f"{method}.{metrics[0]}"))]
            na = next((r.get(f"{method}.not_applicable") for r in mine), None)
            if not have and not na:
                continue
            seeds = f"{len(have)}" + (f" ({failed} failed)" if failed else "")
            cells = (
                ["not applicable"] * len(metrics)
                if na and not have
                else [
                    _mean_sd([metric_value(r.get(f"{method}.{m}")) for r in have]) for m in metrics
                ]
            )
            label = "**MAE**" if method == "mae" else method
            lines.append(
                "| " + " | ".join([str(point["index"]), *values, label, seeds, *cells]) + " |"
            )
        if not mine:
            seeds = "0" + (f" ({failed} failed)" if failed else "")
            cells = [str(point["index"]), *values, "-", seeds, *["-"] * len(metrics)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _missing(value: Any) -> bool:
    return value is None or value == ""


def _show(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)
