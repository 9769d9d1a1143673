"""Atomic writes: a run directory holds either the old file or the new one, never half."""

import os
import stat

import numpy as np
import pytest

from evosim import runio


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path) -> None:
    path = tmp_path / "sub" / "a.txt"
    runio.write_text(path, "first\n")
    runio.write_text(path, "second\n")
    assert path.read_text(encoding="utf-8") == "second\n"
    assert _leftovers(path.parent) == []


def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path) -> None:
    path = tmp_path / "a.bin"
    runio.write_text(path, "old")

    def explode(handle) -> None:
        handle.write(b"half of the new ")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        runio.atomic_write(path, explode)
    assert path.read_text(encoding="utf-8") == "old"
    assert _leftovers(tmp_path) == []


def test_files_get_ordinary_permissions(tmp_path) -> None:
    umask = os.umask(0o022)
    try:
        path = runio.write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_json_and_npz_are_byte_stable(tmp_path) -> None:
    data = {"b": 1.5, "a": [1, 2]}
    a = runio.write_json(tmp_path / "a.json", data).read_bytes()
    b = runio.write_json(tmp_path / "b.json", data).read_bytes()
    assert a == b == b'{\n  "b": 1.5,\n  "a": [\n    1,\n    2\n  ]\n}\n'
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    first = runio.write_npz(tmp_path / "a.npz", x=x).read_bytes()
    second = runio.write_npz(tmp_path / "b.npz", x=x).read_bytes()
    assert first == second
    with np.load(tmp_path / "a.npz") as loaded:
        np.testing.assert_array_equal(loaded["x"], x)
