"""The trainer's checkpoints: the chunk plan, finished chunks and the running chunk.

Files in the checkpoint directory (``checkpoints/train/`` of a run), one set per
architecture group (``prefix`` ``ae`` or ``ae-arch<k>``)::

    <prefix>-plan.pt           the chunk plan: species ranges, in order
    <prefix>-chunk-<a>-<b>.pt  a finished chunk's parameters, losses and flags
    <prefix>-running.pt        the chunk in training: its step, parameters and Adam state

Each holds only tensors and plain data under a ``fingerprint`` of the data, seed and
config, and is read with ``torch.load(weights_only=True)``: a file that is not such a
checkpoint (a planted pickle, a truncated or foreign file) is refused with a one-line
:class:`~evosim.errors.FileFormatError` and nothing in it runs. A checkpoint of another
fingerprint (another seed, config or data) is ignored and in time overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evosim import runio
from evosim.errors import FileFormatError

__all__ = ["Checkpoints", "fingerprint", "load_checkpoint"]

log = logging.getLogger(__name__)

# fields that do not change the result
_NEUTRAL_FIELDS = ("device", "chunk_size", "checkpoint_every")


def fingerprint(instances: np.ndarray, names: list[str], seed: int, config: Any) -> str:
    """A digest of everything a group's result depends on: config, seed, species, data."""
    cfg = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(vars(config))
    for k in _NEUTRAL_FIELDS:
        cfg.pop(k, None)
    h = hashlib.blake2b(digest_size=16)
    h.update(
        json.dumps(
            {"cfg": cfg, "seed": seed, "species": names, "shape": list(instances.shape)},
            sort_keys=True,
        ).encode()
    )
    h.update(memoryview(np.ascontiguousarray(instances)).cast("B"))  # no copy
    return h.hexdigest()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read one checkpoint file without running anything in it.

    Raises
    ------
    FileFormatError
        The file does not load with ``weights_only=True`` (a pickle of arbitrary objects,
        a truncated or foreign file) or is not a fingerprinted dictionary.
    """
    path = Path(path)
    hint = f"delete {path.parent} and rerun with --resume"
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol of a foreign file
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise FileFormatError(
            f"{path}: not a training checkpoint (it holds objects other than tensors and "
            "plain data; refused without loading them)",
            hint=hint,
        ) from None
    except Exception as exc:  # torch raises several types for damaged files
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise FileFormatError(
            f"{path}: not a training checkpoint (unreadable or truncated: "
            f"{type(exc).__name__}: {reason})",
            hint=hint,
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("fingerprint"), str):
        raise FileFormatError(f"{path}: not a training checkpoint (no fingerprint)", hint=hint)
    return obj


class Checkpoints:
    """One architecture group's checkpoint files (none when ``directory`` is None)."""

    def __init__(self, directory: str | Path | None, fingerprint: str, *, prefix: str = "ae"):
        self.dir = None if directory is None else Path(directory)
        self.fp = fingerprint
        self.prefix = prefix

    @property
    def enabled(self) -> bool:
        """Whether checkpoints are written at all."""
        return self.dir is not None

    def _path(self, name: str) -> Path:
        assert self.dir is not None
        return self.dir / f"{self.prefix}-{name}.pt"

    def _load(self, name: str, *keys: str) -> dict | None:
        if self.dir is None or not self._path(name).exists():
            return None
        obj = load_checkpoint(self._path(name))
        if obj["fingerprint"] != self.fp:
            return None
        missing = [k for k in keys if k not in obj]
        if missing:
            raise FileFormatError(
                f"{self._path(name)}: checkpoint lacks {missing}",
                hint=f"delete {self.dir} and rerun with --resume",
            )
        return obj

    def _save(self, name: str, obj: dict) -> None:
        if self.dir is not None:
            runio.torch_save(self._path(name), {"fingerprint": self.fp, **obj})

    def plan(self) -> list[tuple[int, int]] | None:
        """The chunk plan saved by :meth:`save_plan`, or None."""
        obj = self._load("plan", "chunks")
        if obj is None:
            return None
        try:
            return [(int(a), int(b)) for a, b in obj["chunks"]]
        except (TypeError, ValueError):
            raise FileFormatError(
                f"{self._path('plan')}: malformed chunk plan",
                hint=f"delete {self.dir} and rerun with --resume",
            ) from None

    def save_plan(self, chunks: list[tuple[int, int]]) -> None:
        """Record the chunk plan."""
        self._save("plan", {"chunks": [[int(a), int(b)] for a, b in chunks]})

    def chunk(self, a: int, b: int) -> dict | None:
        """A finished chunk's result, or None."""
        return self._load(f"chunk-{a}-{b}", "params", "train", "val", "curve", "diverged")

    def save_chunk(self, a: int, b: int, result: dict) -> None:
        """Record a finished chunk (tensors and plain data only)."""
        self._save(f"chunk-{a}-{b}", result)

    def running(self, a: int, b: int) -> dict | None:
        """The running chunk's trainer state, if it is chunk ``(a, b)``."""
        obj = self._load("running", "chunk", "state")
        if obj is None or [int(c) for c in obj["chunk"]] != [a, b]:
            return None
        return obj

    def save_running(self, a: int, b: int, state: dict) -> None:
        """Record the running chunk's trainer state."""
        self._save("running", {"chunk": [int(a), int(b)], "state": state})
