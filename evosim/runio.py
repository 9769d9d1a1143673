"""The run directory: atomic writes, safe loads, checkpoints, resume markers and the lock.

Every file is written to a temporary sibling and moved into place with
``os.replace``, so a run killed at any moment leaves either the old file or the new
one, never half of one. A disk that is full or read-only is reported as one
:class:`~evosim.errors.EvosimError` naming the file.

Files are read as untrusted: ``torch`` files with ``weights_only=True`` (tensors and
plain data only; a planted pickle is refused without running it), and a damaged,
truncated or foreign file raises :class:`~evosim.errors.FileFormatError` naming it.

While a run works in a directory it holds ``checkpoints/lock`` (an OS file lock with
the holder's PID); a second run is refused, and the lock of a killed run is taken over.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import socket
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evosim.errors import FileFormatError, ResourceError, RunDirectoryError

__all__ = [
    "RunLock",
    "atomic_write",
    "mark_stage_done",
    "read_json",
    "read_text",
    "stage_done",
    "torch_load",
    "torch_save",
    "write_json",
    "write_npz",
    "write_text",
]

log = logging.getLogger(__name__)

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def write_error(path: str | Path, exc: OSError) -> OSError | ResourceError | RunDirectoryError:
    """The one-line error for a failed write of ``path`` (full or read-only disk), else ``exc``."""
    if exc.errno in _FULL:
        return ResourceError(
            f"cannot write {path}: no space left on the device",
            hint="free some disk space, then continue with `evosim run ... --resume`",
        )
    if exc.errno in _READ_ONLY:
        return RunDirectoryError(
            f"cannot write {path}: {exc.strerror or 'read-only'}",
            hint="choose a writable output directory (--out)",
        )
    return exc


def _raise_write_error(path: str | Path, exc: OSError) -> None:
    err = write_error(path, exc)
    if err is exc:
        raise exc
    raise err from exc


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file that replaces it.

    Raises
    ------
    ResourceError
        The disk is full.
    RunDirectoryError
        The directory is read-only or not ours to write.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _raise_write_error(path, exc)
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
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            _raise_write_error(path, exc)
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


# ---------------------------------------------------------------------------- reading


def _missing(path: Path) -> RunDirectoryError:
    return RunDirectoryError(f"{path}: no such file")


def read_text(path: str | Path) -> str:
    """A UTF-8 text file of a run directory.

    Raises
    ------
    RunDirectoryError
        The file is missing.
    FileFormatError
        It is not UTF-8 text.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _missing(path) from None
    except IsADirectoryError:
        raise FileFormatError(f"{path}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise FileFormatError(f"{path}: not UTF-8 text") from None


def read_json(path: str | Path) -> Any:
    """A JSON file of a run directory (``FileFormatError`` naming it if it is not JSON)."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(
            f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}); the file is damaged"
        ) from None


# ---------------------------------------------------------------------------- torch files

# numpy arrays are not loadable with weights_only=True: they are stored as tensors
# (or, for strings, as lists) under this key and turned back into arrays on loading.
_NDARRAY = "__ndarray__"


def _encode(x: Any) -> Any:
    import torch

    if isinstance(x, np.ndarray):
        if x.dtype.kind in "biufc":
            return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(x).copy())}
        if x.dtype.kind in "US":
            return {_NDARRAY: x.tolist(), "dtype": x.dtype.str, "shape": list(x.shape)}
        raise TypeError(f"cannot store a numpy array of dtype {x.dtype} safely")
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {k: _encode(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_encode(v) for v in x)
    return x


def _decode(x: Any) -> Any:
    if isinstance(x, dict):
        if _NDARRAY in x and set(x) <= {_NDARRAY, "dtype", "shape"}:
            value = x[_NDARRAY]
            if "dtype" in x:
                return np.array(value, dtype=x["dtype"]).reshape(x["shape"])
            return value.numpy()
        return {k: _decode(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_decode(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_decode(v) for v in x)
    return x


def torch_save(path: str | Path, obj: Any) -> Path:
    """Atomically ``torch.save`` tensors and plain data (numpy arrays become tensors).

    Everything written here loads with :func:`torch_load` (``weights_only=True``).
    """
    import torch

    payload = _encode(obj)
    return atomic_write(path, lambda h: torch.save(payload, h))


def torch_load(path: str | Path, *, hint: str | None = None) -> Any:
    """Load a file written by :func:`torch_save` onto the CPU, refusing anything unsafe.

    Uses ``torch.load(..., weights_only=True)``: tensors and plain data only, so a file
    holding other pickled objects is refused without running any of its code.

    Parameters
    ----------
    path
        The file.
    hint
        What the user can do about a damaged file (added to the error).

    Raises
    ------
    RunDirectoryError
        The file is missing.
    FileFormatError
        The file is empty, truncated, not a torch file, or holds objects other than
        tensors and plain data.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.exists():
        raise _missing(path)
    if path.is_file() and path.stat().st_size == 0:
        raise FileFormatError(f"{path}: the file is empty", hint=hint)
    try:
        with warnings.catch_warnings():
            # A planted pickle's protocol draws a warning before it is refused.
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise FileFormatError(
            f"{path}: holds objects other than tensors and plain data; refused unread "
            "(loading it could run code)",
            hint=hint,
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileFormatError(
            f"{path}: unreadable (truncated or not an evosim file: {reason[:120]})", hint=hint
        ) from None
    return _decode(obj)


# ---------------------------------------------------------------------------- stage markers


def _marker(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{stage}.done"


def stage_done(run_dir: str | Path, stage: str) -> bool:
    """Whether ``stage`` finished in ``run_dir`` (its outputs are all on disk)."""
    return _marker(run_dir, stage).exists()


def mark_stage_done(run_dir: str | Path, stage: str, info: dict[str, Any] | None = None) -> None:
    """Record that ``stage`` finished; written last, after all of the stage's files."""
    write_json(_marker(run_dir, stage), info or {})


# ---------------------------------------------------------------------------- the lock


class RunLock:
    """An exclusive lock on a run directory, held while a run writes into it.

    The lock is ``checkpoints/lock``: an OS lock on the open file (``flock``; the
    kernel drops it when the holder dies, however it dies) plus the holder's PID and
    host written inside, to name the holder. A lock file whose holder is gone (a killed
    run) is taken over, with a warning.

    Use as a context manager::

        with RunLock(out):
            ...  # nobody else runs in ``out``

    Raises
    ------
    RunDirectoryError
        On entry, when another live process holds the directory.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "checkpoints" / "lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock (see the class notes)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _raise_write_error(self.path, exc)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                _raise_write_error(self.path, exc)
            if not _try_lock(fd):
                holder = _read_holder(fd)
                os.close(fd)
                raise RunDirectoryError(
                    f"{self.run_dir} is in use by another evosim run ({holder}; "
                    f"lock file {self.path})",
                    hint="wait for that run to finish or stop it; a killed run's lock is "
                    "taken over automatically",
                )
            # The previous holder may have removed the file between our open and lock.
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if not current:
                os.close(fd)
                continue
            stale = _read_holder(fd)
            if stale != "unknown process":
                log.warning("taking over the lock of a run that no longer runs (%s)", stale)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            except OSError as exc:
                os.close(fd)
                _raise_write_error(self.path, exc)
            self._fd = fd
            return self

    def release(self) -> None:
        """Give the lock up and remove the lock file."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)  # closing drops the OS lock
        self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _read_holder(fd: int) -> str:
    """``"process PID on HOST"`` from a lock file's content."""
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if not text:
        return "unknown process"
    host = f" on {text[1]}" if len(text) > 1 else ""
    return f"process {text[0]}{host}"
