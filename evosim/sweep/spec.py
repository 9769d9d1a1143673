"""Sweep files: YAML in, a validated :class:`Sweep` of (grid point, seed) tasks out.

A sweep file names a base scenario and the fields to vary, by dotted path::

    base: ../quickstart.yaml         # a scenario path (relative to this file) or a mapping
    grid:                            # crossed: 3 x 2 points
      tree.n_species: [16, 64, 256]
      meta.representation: [aligned, functional]
    zip:                             # optional: these lists move together (crossed with grid)
      autoencoder.steps: [500, 2000]
      meta.steps: [300, 1000]
    seeds: 3                         # a count (seeds 1..3) or a list ([7, 11])

Every point's scenario is validated here, before anything runs: a dotted path or a value
the scenario schema refuses is one line naming the sweep field, its YAML line, the
scenario loader's message and the point that caused it.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evosim.errors import ScenarioError
from evosim.scenario import load_scenario, parse_scenario, read_user_text

__all__ = ["Point", "Sweep", "Task", "load_sweep", "parse_sweep"]

FIELDS = ("name", "base", "grid", "zip", "seeds")
#: Set by the sweep itself (seeds) or per task (the device follows --gpus-per-task).
RESERVED = {
    "seed": "the seed is set by `seeds:`",
    "autoencoder.device": "the device is chosen per task (--gpus-per-task)",
    "meta.device": "the device is chosen per task (--gpus-per-task)",
    "analysis.device": "the device is chosen per task (--gpus-per-task)",
}
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Point:
    """One grid point: the overrides (dotted path -> value) applied to the base scenario."""

    index: int
    name: str
    overrides: dict[str, Any]

    def label(self) -> str:
        """``tree.n_species=16, meta.representation=aligned`` (``base`` without overrides)."""
        return ", ".join(f"{k}={_show(v)}" for k, v in self.overrides.items()) or "base"


@dataclass(frozen=True)
class Task:
    """One (point, seed): a whole pipeline run into ``run_dir`` (relative to the sweep's DIR)."""

    index: int
    point: Point
    seed: int
    scenario: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        """``p00-n_species=16/seed-1``: unique within the sweep, readable, path-safe."""
        return f"{self.point.name}/seed-{self.seed}"

    @property
    def run_dir(self) -> str:
        """The run directory, relative to the sweep directory."""
        return f"runs/{self.name}"

    @property
    def log(self) -> str:
        """The task's log file, relative to the sweep directory."""
        return f"logs/{self.point.name}.seed-{self.seed}.log"


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: a resolved base scenario, its points and seeds.

    Attributes
    ----------
    name
        The sweep's name (``name:``, else the file's stem).
    base
        The resolved base scenario as plain data, without its seed.
    grid, zip
        The overrides as given (dotted path -> list of values).
    seeds
        The seeds every point runs with.
    points
        Every combination of ``grid`` (crossed) and ``zip`` (moving together), in order:
        the grid's last field varies fastest, ``zip`` after the grid.
    """

    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    zip: dict[str, list[Any]]
    seeds: list[int]
    points: list[Point]

    @property
    def parameters(self) -> list[str]:
        """The dotted paths that take more than one value (what the sweep varies)."""
        fields = {**self.grid, **self.zip}
        return [k for k, values in fields.items() if len({_key(v) for v in values}) > 1]

    def tasks(self) -> list[Task]:
        """Every (point, seed), point-major."""
        out = []
        for point in self.points:
            for seed in self.seeds:
                data = _with_overrides(self.base, point.overrides)
                data["seed"] = seed
                out.append(Task(len(out), point, seed, data))
        return out

    def definition(self) -> dict[str, Any]:
        """Plain data that identifies the sweep (written as ``sweep.json``)."""
        return {
            "name": self.name,
            "base": self.base,
            "grid": self.grid,
            "zip": self.zip,
            "seeds": self.seeds,
            "parameters": self.parameters,
            "points": [
                {"index": p.index, "name": p.name, "overrides": p.overrides} for p in self.points
            ],
        }


# ---------------------------------------------------------------------------- loading


def load_sweep(path: str | Path) -> Sweep:
    """Load and validate a sweep file (every point's scenario included).

    Parameters
    ----------
    path
        A YAML sweep file; ``base:`` as a path is relative to the file's folder.

    Returns
    -------
    Sweep

    Raises
    ------
    ScenarioError
        One line naming the sweep field and YAML line, or the point whose scenario the
        scenario schema refuses, with the scenario loader's message.
    """
    path = Path(path)
    return parse_sweep(read_user_text(path, "sweep"), name=path.stem, root=path.parent)


def parse_sweep(text: str, *, name: str = "sweep", root: str | Path = ".") -> Sweep:
    """Parse and validate sweep YAML text; ``root`` is where a ``base:`` path is looked up.

    See :func:`load_sweep`.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"sweep{where}: not valid YAML: {problem}") from None
    lines = _line_map(text)

    def fail(path: tuple[str, ...], message: str) -> ScenarioError:
        line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
        where = ".".join(path) + (f" (line {line})" if line is not None else "")
        return ScenarioError(f"{where}: {message}")

    if data is None:
        raise ScenarioError("sweep: the file is empty")
    if not isinstance(data, dict):
        raise ScenarioError(f"sweep: must be a YAML mapping, got {type(data).__name__}")
    for key in data:
        if key not in FIELDS:
            raise fail((str(key),), f"unknown field; a sweep file has {', '.join(FIELDS)}")
    if "base" not in data:
        raise ScenarioError("base: is required (a scenario file or an inline mapping)")
    if "seeds" not in data:
        raise ScenarioError("seeds: is required (a count, or a list of seeds)")

    sweep_name = data.get("name", name)
    if not isinstance(sweep_name, str) or not sweep_name:
        raise fail(("name",), f"must be a non-empty string, got {sweep_name!r}")
    base = _base(data["base"], Path(root), fail)
    grid = _overrides(data.get("grid") or {}, "grid", fail)
    zipped = _overrides(data.get("zip") or {}, "zip", fail)
    for key in grid.keys() & zipped.keys():
        raise fail(("zip", key), "is also in grid: a field is either crossed or zipped")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        counts = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
        raise fail(("zip",), f"lists must have the same length, got {counts}")
    seeds = _seeds(data["seeds"], fail)

    n_zip = len(next(iter(zipped.values()))) if zipped else 0
    zip_rows = [{k: v[i] for k, v in zipped.items()} for i in range(n_zip)] or [{}]
    combos = [
        {**dict(zip(grid, values)), **row}
        for values in itertools.product(*grid.values())
        for row in zip_rows
    ]
    swept = [k for k in (*grid, *zipped) if len({_key(v) for v in {**grid, **zipped}[k]}) > 1]
    points = [
        Point(i, _point_name(i, overrides, swept), overrides) for i, overrides in enumerate(combos)
    ]
    for point in points:
        _check_point(base, point, grid, fail)
    return Sweep(sweep_name, base, grid, zipped, seeds, points)


# ---------------------------------------------------------------------------- helpers


def _base(value: Any, root: Path, fail: Any) -> dict[str, Any]:
    if isinstance(value, str):
        path = root / value
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            raise fail(("base",), f"{value}: {exc}") from None
    elif isinstance(value, dict):
        try:
            scenario = parse_scenario(yaml.safe_dump(value, sort_keys=False))
        except ScenarioError as exc:
            field_path, message = _split(str(exc))
            raise fail(("base", *field_path.split(".")), message) from None
    else:
        raise fail(("base",), f"must be a scenario path or a mapping, got {value!r}")
    data = scenario.to_dict()
    data.pop("seed")
    return data


def _overrides(value: Any, section: str, fail: Any) -> dict[str, list[Any]]:
    if not isinstance(value, dict):
        raise fail((section,), f"must be a mapping of dotted paths to lists, got {value!r}")
    out = {}
    for key, values in value.items():
        key = str(key)
        if not _DOTTED.match(key):
            raise fail((section, key), "must be a dotted path such as tree.n_species")
        if key in RESERVED:
            raise fail((section, key), f"cannot be swept: {RESERVED[key]}")
        if not isinstance(values, list):
            raise fail((section, key), f"must be a list of values, got {values!r}")
        if not values:
            raise fail((section, key), "must list at least one value")
        seen = set()
        for v in values:
            if _key(v) in seen:
                raise fail((section, key), f"lists {_show(v)} twice")
            seen.add(_key(v))
        out[key] = values
    return out


def _seeds(value: Any, fail: Any) -> list[int]:
    if isinstance(value, bool):
        raise fail(("seeds",), f"must be a count or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise fail(("seeds",), f"must be >= 1, got {value}")
        return list(range(1, value + 1))
    if isinstance(value, list) and value:
        for s in value:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**63:
                raise fail(("seeds",), f"seeds must be integers in [0, 2^63), got {s!r}")
        if len(set(value)) != len(value):
            raise fail(("seeds",), "lists a seed twice")
        return list(value)
    raise fail(("seeds",), f"must be a count or a non-empty list of seeds, got {value!r}")


def _check_point(base: dict[str, Any], point: Point, grid: dict[str, list[Any]], fail: Any) -> None:
    try:
        data = _with_overrides(base, point.overrides, strict=True)
    except _PathError as exc:
        section = "grid" if exc.key in grid else "zip"
        raise fail((section, exc.key), f"{exc} (point {point.label()})") from None
    try:
        parse_scenario(yaml.safe_dump({**data, "seed": 0}, sort_keys=False))
    except ScenarioError as exc:
        field_path, message = _split(str(exc))
        key = _blame(field_path, list(point.overrides))
        section = "grid" if key in grid else "zip"
        raise fail((section, key), f"{field_path}: {message} (point {point.label()})") from None


class _PathError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _with_overrides(
    base: dict[str, Any], overrides: dict[str, Any], *, strict: bool = False
) -> dict[str, Any]:
    """A copy of ``base`` with each dotted path set; a path through a value is refused."""
    data = json.loads(json.dumps(base))
    for key, value in overrides.items():
        parts = key.split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                # An unknown section: let the scenario schema name it.
                child = node[part] = {}
            elif not isinstance(child, dict):
                if strict:
                    prefix = ".".join(parts[: i + 1])
                    raise _PathError(key, f"{prefix} is a value, not a section")
            node = child
        node[parts[-1]] = json.loads(json.dumps(value))
    return data


def _split(message: str) -> tuple[str, str]:
    """``tree.n_species (line 3): must be ...`` -> (``tree.n_species``, ``must be ...``)."""
    m = re.match(r"^([^\s:]+)(?: \(line \d+\))?: (.*)$", message)
    return (m.group(1), m.group(2)) if m else ("scenario", message)


def _blame(field_path: str, keys: list[str]) -> str:
    """The override that a scenario error at ``field_path`` is most likely about."""
    for key in keys:
        if (
            field_path == key
            or field_path.startswith(key + ".")
            or key.startswith(field_path + ".")
        ):
            return key
    section = field_path.split(".")[0]
    return next((k for k in keys if k.split(".")[0] == section), keys[0])


def _point_name(index: int, overrides: dict[str, Any], swept: list[str]) -> str:
    """``p03-n_species=64-representation=aligned``: the index keeps names unique."""
    leaves = [k.split(".")[-1] for k in swept]
    parts = []
    for key in swept:
        leaf = key.split(".")[-1]
        label = leaf if leaves.count(leaf) == 1 else key
        parts.append(f"{label}={_slug(overrides[key])}")
    width = 2 if index < 100 else len(str(index))
    return "-".join([f"p{index:0{width}d}", *parts])[:120]


def _slug(value: Any) -> str:
    if isinstance(value, list):
        text = "x".join(_slug(v) for v in value)
    elif isinstance(value, dict):
        text = "_".join(f"{k}_{_slug(v)}" for k, v in value.items())
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+_]", "_", text)[:32]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _line_map(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path of the sweep file (to any depth) to its 1-based line."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines.setdefault(sub, key.start_mark.line + 1)
                walk(value, sub)

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines
