"""A sweep's figures: each metric against each swept parameter, and a heat map for 2-D grids.

The figure functions take rows and points (plain data) and return a figure;
:func:`plot_sweep` reads a sweep directory and writes them into ``figures/``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from evosim.errors import FileFormatError
from evosim.sweep.results import SUMMARY_METRICS, methods_of, metric_value, read_results

__all__ = ["is_sweep_dir", "plot_heatmap", "plot_parameter", "plot_sweep"]

#: More combinations of the other parameters than this are pooled, not drawn side by side.
MAX_FACETS = 4


def is_sweep_dir(path: str | Path) -> bool:
    """Whether ``path`` is a sweep directory (it holds ``sweep.json``)."""
    return (Path(path) / "sweep.json").is_file()


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _distinct(values: Sequence[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(json.dumps(v, sort_keys=True), v)
    return list(seen.values())


def _stats(rows: Sequence[dict[str, Any]], column: str) -> tuple[float, float, int]:
    v = np.asarray([metric_value(r.get(column)) for r in rows], dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _metrics_present(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[str]:
    """Metric names with at least one number for some method, in first-seen order."""
    names: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            method, dot, metric = key.partition(".")
            if dot and method in methods and not math.isnan(metric_value(value)):
                names.setdefault(metric, None)
    return list(names)


def plot_parameter(
    rows: Sequence[dict[str, Any]],
    points: Sequence[dict[str, Any]],
    parameter: str,
    *,
    others: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
) -> Figure:
    """Each metric against ``parameter``: mean ± sd over seeds, one line per method.

    Parameters
    ----------
    rows
        Result rows (``status``, ``point``, ``METHOD.METRIC``); only ``done`` rows count.
    points
        The sweep's points (``index``, ``overrides``).
    parameter
        The dotted path on the x axis.
    others
        The other swept parameters: up to :data:`MAX_FACETS` combinations of their
        values get a column of panels each; more are pooled (the error bars then also
        span those parameters, and the title says so).
    metrics, methods
        Default: every metric with a value, and ``mae`` then every baseline.
    """
    done = [r for r in rows if r.get("status") == "done"]
    methods = list(methods) if methods is not None else methods_of(done, [parameter, *others])
    metrics = list(metrics) if metrics is not None else _metrics_present(done, methods)
    by_index = {int(p["index"]): p["overrides"] for p in points}
    xs = _distinct([p["overrides"][parameter] for p in points])
    facets = _distinct([{o: p["overrides"].get(o) for o in others} for p in points])
    pooled = len(facets) > MAX_FACETS
    if pooled:
        facets = [{}]
    numeric = _numeric(xs)
    positions = [float(x) for x in xs] if numeric else list(range(len(xs)))
    fig = Figure(figsize=(3.2 * len(facets) + 1.8, 2.3 * len(metrics) + 0.6), layout="constrained")
    axes = fig.subplots(len(metrics), len(facets), squeeze=False, sharex=True)
    colors = iter(
        [
            "#1f77b4",
            "#ff7f0e",
            "#2ca02c",
            "#d62728",
            "#9467bd",
            "#8c564b",
            "#e377c2",
            "#7f7f7f",
            "#bcbd22",
            "#17becf",
        ]
        * 3
    )
    style = {m: ("black" if m == "mae" else next(colors)) for m in methods}
    for j, facet in enumerate(facets):
        in_facet = [
            r for r in done if all(by_index[int(r["point"])].get(k) == v for k, v in facet.items())
        ]
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            for method in methods:
                stats = [
                    _stats(
                        [r for r in in_facet if by_index[int(r["point"])][parameter] == x],
                        f"{method}.{metric}",
                    )
                    for x in xs
                ]
                mean = np.array([s[0] for s in stats])
                if np.isnan(mean).all():
                    continue
                ax.errorbar(
                    positions,
                    mean,
                    yerr=[s[1] for s in stats],
                    label="MAE" if method == "mae" else method,
                    color=style[method],
                    lw=2.2 if method == "mae" else 1.0,
                    marker="o",
                    ms=4 if method == "mae" else 2.5,
                    capsize=3,
                    zorder=3 if method == "mae" else 2,
                )
            if j == 0:
                ax.set_ylabel(metric)
            if i == 0 and facet:
                ax.set_title(", ".join(f"{k}={_show(v)}" for k, v in facet.items()), fontsize=8)
            if numeric and min(positions) > 0 and max(positions) / min(positions) >= 8:
                ax.set_xscale("log")
            ax.set_xticks(positions, [_show(x) for x in xs])
            ax.grid(alpha=0.3)
        axes[-1][j].set_xlabel(parameter)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    note = f" (pooled over {', '.join(others)})" if pooled and others else ""
    fig.suptitle(f"metrics against {parameter}: mean ± sd over seeds{note}", fontsize=10)
    return fig


def plot_heatmap(
    rows: Sequence[dict[str, Any]],
    points: Sequence[dict[str, Any]],
    x: str,
    y: str,
    *,
    metrics: Sequence[str] = SUMMARY_METRICS,
    method: str = "mae",
) -> Figure:
    """``method``'s mean over seeds of each metric on the ``x`` by ``y`` grid (annotated)."""
    done = [r for r in rows if r.get("status") == "done"]
    by_index = {int(p["index"]): p["overrides"] for p in points}
    xs = _distinct([p["overrides"][x] for p in points])
    ys = _distinct([p["overrides"][y] for p in points])
    fig = Figure(figsize=(0.9 * len(xs) * len(metrics) + 2.5 * len(metrics), 0.6 * len(ys) + 1.6))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        grid = np.full((len(ys), len(xs)), np.nan)
        for a, yv in enumerate(ys):
            for b, xv in enumerate(xs):
                cell = [
                    r
                    for r in done
                    if by_index[int(r["point"])][x] == xv and by_index[int(r["point"])][y] == yv
                ]
                grid[a, b] = _stats(cell, f"{method}.{metric}")[0]
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for a in range(len(ys)):
            for b in range(len(xs)):
                if not np.isnan(grid[a, b]):
                    ax.text(
                        b,
                        a,
                        f"{grid[a, b]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if grid[a, b] < np.nanmean(grid) else "black",
                    )
        ax.set_xticks(range(len(xs)), [_show(v) for v in xs])
        ax.set_yticks(range(len(ys)), [_show(v) for v in ys])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{'MAE' if method == 'mae' else method} {metric}", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def plot_sweep(sweep_dir: str | Path) -> list[Path]:
    """Draw a sweep directory's figures into ``figures/``; returns the PNG paths written.

    One figure per swept parameter (``figures/PARAMETER.png``) and, for a grid of two
    parameters, ``figures/heatmap.png``; each with an SVG beside it.
    """
    from evosim.plot import save_figure

    sweep_dir = Path(sweep_dir)
    try:
        definition = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
        points = definition["points"]
        parameters = list(definition["parameters"])
        grid = definition["grid"]
    except FileNotFoundError:
        raise FileFormatError(f"{sweep_dir}: not a sweep directory (no sweep.json)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FileFormatError(f"{sweep_dir / 'sweep.json'}: unreadable ({exc})") from None
    rows = read_results(sweep_dir / "results.csv")
    out = sweep_dir / "figures"
    paths: list[Path] = []
    if not any(r.get("status") == "done" for r in rows):
        return paths  # no run finished: nothing to draw
    for parameter in parameters:
        fig = plot_parameter(
            rows, points, parameter, others=[p for p in parameters if p != parameter]
        )
        slug = re.sub(r"[^A-Za-z0-9._-]", "_", parameter)
        paths.append(save_figure(fig, out / f"{slug}.png"))
    crossed = [p for p in parameters if p in grid]
    if len(crossed) == 2 and len(parameters) == 2:
        paths.append(save_figure(plot_heatmap(rows, points, *crossed), out / "heatmap.png"))
    return paths
