"""Provenance: one record of what made a run, written beside and inside its outputs.

As tskit and msprime do it: a single plain-data record (JSON-serialisable) built by
:func:`make_provenance` and stored as ``provenance.json`` in the run directory, embedded
in ``aes.pt`` and ``mae.pt``, and (its reproducible part, :func:`stable_provenance`) in
``metrics.json``::

    {
      "schema_version": "1.0.0",
      "software": {"name": "evosim", "version": "0.1.0"},
      "parameters": {"command": "run", "argv": [...], "options": {...}, "scenario": {...}},
      "environment": {"os": {...}, "python": {...}, "libraries": {...}, "devices": {...}},
      "times": {"start": "2026-01-01T12:00:00+00:00", "end": "..."}
    }

The software version comes from the installed package's metadata, never from a second
hand-written copy.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "environment",
    "make_provenance",
    "now",
    "software_version",
    "stable_provenance",
]

#: Version of the record's layout (not of evosim).
SCHEMA_VERSION = "1.0.0"

#: Libraries whose versions are recorded (when installed).
LIBRARIES = ("numpy", "scipy", "torch", "networkx", "matplotlib", "pydantic", "deap")


def software_version(name: str = "evosim") -> str:
    """The installed version of package ``name`` (from its metadata), or ``"unknown"``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def now() -> str:
    """The current time, ISO 8601 with the UTC offset (seconds precision)."""
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def environment(devices: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Platform, Python, library and CUDA versions, and the devices each stage used.

    Parameters
    ----------
    devices
        Stage -> the device it ran on (e.g. ``{"autoencoder": "cpu", ...}``).
    """
    libraries: dict[str, Any] = {}
    for lib in LIBRARIES:
        version = software_version(lib)
        if version != "unknown":
            libraries[lib] = {"version": version}
    cuda: dict[str, Any] = {"available": False}
    if "torch" in libraries:
        import torch

        cuda = {
            "build": torch.version.cuda,
            "available": bool(torch.cuda.is_available()),
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else [],
        }
    return {
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "python": {
            "implementation": platform.python_implementation(),
            "version": platform.python_version(),
        },
        "libraries": libraries,
        "cuda": cuda,
        "devices": {str(k): str(v) for k, v in (devices or {}).items()},
    }


def make_provenance(
    *,
    command: str,
    scenario: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    argv: Sequence[str] | None = None,
    devices: Mapping[str, Any] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> dict[str, Any]:
    """The provenance record of one evosim operation.

    Parameters
    ----------
    command
        What ran (``"run"``, ``"simulate"``, ...).
    scenario
        The resolved scenario (every default and the seed filled in), as plain data.
    options
        The operation's other settings (output directory, resume, device override...).
    argv
        The command line, when evosim ran from one (``None`` from Python).
    devices
        Stage -> resolved device.
    start, end
        ISO 8601 times (see :func:`now`); ``end`` is ``None`` while the operation runs.

    Returns
    -------
    dict
        Plain data: ``schema_version``, ``software``, ``parameters``, ``environment``,
        ``times``.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "software": {"name": "evosim", "version": software_version()},
        "parameters": {
            "command": command,
            "argv": None if argv is None else [str(a) for a in argv],
            "options": _plain(dict(options or {})),
            "scenario": _plain(dict(scenario or {})),
        },
        "environment": environment(devices),
        "times": {"start": start, "end": end},
    }


def stable_provenance(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``record`` that identical runs share (for ``metrics.json``).

    Drops the times, the command line and the options (the output directory differs
    between two runs of one scenario); keeps the schema and software versions, the
    resolved scenario and the environment (versions and devices).
    """
    params = record.get("parameters", {})
    return {
        "schema_version": record.get("schema_version"),
        "software": dict(record.get("software", {})),
        "parameters": {"scenario": params.get("scenario", {})},
        "environment": record.get("environment", {}),
    }


def _plain(x: Any) -> Any:
    """JSON-like data: dicts with str keys, lists, str, int, float, bool, None."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if x is None or isinstance(x, str | bool | int | float):
        return x
    if hasattr(x, "item"):  # numpy scalars
        return _plain(x.item())
    return str(x)
