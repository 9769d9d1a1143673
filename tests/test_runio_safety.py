"""runio: safe torch files, damaged files named, the run-directory lock."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from evosim import runio
from evosim.errors import FileFormatError, RunDirectoryError


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_torch_files_round_trip_tensors_numpy_and_plain_data(tmp_path):
    payload = {
        "t": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "a": np.linspace(0, 1, 5),
        "i": np.arange(4, dtype=np.int64).reshape(2, 2),
        "b": np.array([True, False]),
        "s": np.array(["x", "yy"]),
        "n": np.float64(2.5),
        "nested": [{"k": np.zeros(2, dtype=np.float32)}, ("tuple", 1)],
        "plain": {"x": 1, "y": None, "z": "text", "f": 1.5},
    }
    path = runio.torch_save(tmp_path / "f.pt", payload)
    # loadable by torch itself with weights_only=True: nothing but tensors and plain data
    torch.load(path, weights_only=True)
    back = runio.torch_load(path)
    assert torch.equal(back["t"], payload["t"])
    for key in ("a", "i", "b", "s"):
        assert isinstance(back[key], np.ndarray) and back[key].dtype == payload[key].dtype
        np.testing.assert_array_equal(back[key], payload[key])
    assert back["n"] == 2.5 and isinstance(back["n"], float)
    np.testing.assert_array_equal(back["nested"][0]["k"], np.zeros(2, dtype=np.float32))
    assert back["nested"][1] == ("tuple", 1) and back["plain"] == payload["plain"]


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_planted_pickle_is_refused_without_running(tmp_path, zip_format):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    if zip_format:
        torch.save({"x": _Planted(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"x": _Planted(marker)}))
    with pytest.raises(FileFormatError, match="refused unread") as info:
        runio.torch_load(path, hint="do this")
    assert str(path) in str(info.value) and "(do this)" in str(info.value)
    assert not marker.exists()


def test_damaged_torch_files_are_named(tmp_path):
    path = runio.torch_save(tmp_path / "f.pt", {"x": torch.zeros(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated"):
        runio.torch_load(path)
    path.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty"):
        runio.torch_load(path)
    with pytest.raises(RunDirectoryError, match="no such file"):
        runio.torch_load(tmp_path / "missing.pt")


def test_read_json_names_a_damaged_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"a": [1, 2')
    with pytest.raises(FileFormatError, match="m.json"):
        runio.read_json(path)


def test_the_lock_is_exclusive_and_released(tmp_path):
    first = runio.RunLock(tmp_path).acquire()
    lock_file = tmp_path / "checkpoints" / "lock"
    assert lock_file.read_text().split()[0] == str(__import__("os").getpid())
    with pytest.raises(RunDirectoryError, match="in use by another evosim run"):
        runio.RunLock(tmp_path).acquire()
    first.release()
    assert not lock_file.exists()
    with runio.RunLock(tmp_path) as again:
        assert again.held
    assert not again.held and not lock_file.exists()


def test_a_stale_lock_file_is_taken_over(tmp_path, caplog):
    lock_file = tmp_path / "checkpoints" / "lock"
    lock_file.parent.mkdir(parents=True)
    lock_file.write_text("999999 elsewhere\n")  # left by a killed run: nobody holds it
    with caplog.at_level("WARNING", logger="evosim.runio"), runio.RunLock(tmp_path):
        assert lock_file.read_text().split()[0] != "999999"
    assert "taking over the lock" in caplog.text and "999999" in caplog.text
