"""The run directory: atomic writes, checkpoints and resume markers.

Every file is written to a temporary sibling and moved into place with
``os.replace``, so a run killed at any moment leaves either the old file or the new
one, never half of one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_write",
    "write_text",
    "write_json",
    "write_npz",
    "torch_save",
    "torch_load",
    "stage_done",
    "mark_stage_done",
]


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file that replaces it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); a run's outputs are ordinary files.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write(path, lambda h: h.write(text.encode("utf-8")))


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write JSON (indented, keys in insertion order)."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=True) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Atomically write a compressed ``.npz`` (byte-identical for identical arrays)."""

    def write(handle: io.BufferedWriter) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        handle.write(buffer.getvalue())

    return atomic_write(path, write)


def torch_save(path: str | Path, obj: Any) -> Path:
    """Atomically ``torch.save`` an object."""
    return atomic_write(path, lambda h: torch.save(obj, h))


def torch_load(path: str | Path) -> Any:
    """Load a file written by :func:`torch_save` onto the CPU, whatever device wrote it."""
    return torch.load(path, map_location="cpu", weights_only=False)


def _marker(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{stage}.done"


def stage_done(run_dir: str | Path, stage: str) -> bool:
    """Whether ``stage`` finished in ``run_dir`` (its outputs are all on disk)."""
    return _marker(run_dir, stage).exists()


def mark_stage_done(run_dir: str | Path, stage: str, info: dict[str, Any] | None = None) -> None:
    """Record that ``stage`` finished; written last, after all of the stage's files."""
    write_json(_marker(run_dir, stage), info or {})
