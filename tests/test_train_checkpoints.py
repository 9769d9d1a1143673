"""Trainer checkpoints: plain data under weights_only; hostile or damaged files refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from evosim.errors import FileFormatError
from evosim.scenario import AutoencoderConfig
from evosim.train import train_autoencoders
from evosim.train.architectures import assign_architectures
from evosim.train.checkpoints import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def data(s: int = 3) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(s, 24, 4)).astype(np.float32)


def cfg(**kw) -> AutoencoderConfig:
    base = dict(hidden=[6], latent=2, steps=6, batch_size=8, device="cpu", checkpoint_every=2)
    base.update(kw)
    return AutoencoderConfig(**base)


class _Evil:
    """Unpickling this runs code: it writes ``marker`` (what a planted checkpoint could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _plant(path, marker, kind: str) -> None:
    if kind == "torch":  # a torch zip archive whose pickle calls exec
        torch.save({"fingerprint": "x", "payload": _Evil(marker)}, path)
    else:  # a bare pickle, torch's legacy format
        with open(path, "wb") as handle:
            pickle.dump(_Evil(marker), handle)


def test_a_planted_pickle_would_run_without_weights_only(tmp_path):
    # the test below would pass vacuously if the plant could not run; show that it can
    for kind in ("torch", "pickle"):
        marker = tmp_path / f"ran-{kind}"
        path = tmp_path / f"evil-{kind}.pt"
        _plant(path, marker, kind)
        if kind == "torch":
            torch.load(path, weights_only=False)
        else:
            with open(path, "rb") as handle:
                pickle.load(handle)
        assert marker.exists()


@pytest.mark.parametrize("kind", ["torch", "pickle"])
@pytest.mark.parametrize(
    "name,config",
    [
        ("ae-plan.pt", {}),
        ("ae-chunk-0-2.pt", {"chunk_size": 2}),  # the plan is made afresh, then this is read
        ("ae-running.pt", {"chunk_size": 2}),  # no finished chunk: the running one is read
        ("ae-arch1-plan.pt", {"architectures": [{"hidden": [4]}, {"hidden": [5]}]}),
    ],
)
def test_planted_pickle_in_each_checkpoint_is_refused_unrun(tmp_path, name, config, kind):
    x = data(6)
    if "architectures" in config:  # both architectures have species, so group 1 is reached
        assert set(assign_architectures([f"s{i + 1}" for i in range(6)], 2, seed=1)) == {0, 1}
    ckpt = tmp_path / "checkpoints" / "train"
    ckpt.mkdir(parents=True)
    marker = tmp_path / "marker"
    _plant(ckpt / name, marker, kind)
    with pytest.raises(FileFormatError) as err:
        train_autoencoders(x, cfg(**config), seed=1, checkpoint_dir=ckpt, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert name in message and "--resume" in message
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    ckpt = tmp_path / "train"
    config = cfg(chunk_size=2)
    whole = train_autoencoders(data(), config, seed=2, checkpoint_dir=ckpt, progress=False)
    chunk = ckpt / "ae-chunk-0-2.pt"
    assert chunk.exists()
    # a valid checkpoint holds only tensors and plain data
    obj = load_checkpoint(chunk)
    assert isinstance(obj["params"]["encoder.0.weight"], torch.Tensor)
    assert isinstance(obj["train"], torch.Tensor) and isinstance(obj["diverged"], torch.Tensor)
    again = train_autoencoders(data(), config, seed=2, checkpoint_dir=ckpt, progress=False)
    for k in whole.params:
        assert torch.equal(again.params[k], whole.params[k])

    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(FileFormatError, match="ae-chunk-0-2.pt"):
        train_autoencoders(data(), config, seed=2, checkpoint_dir=ckpt, progress=False)
    torch.save([1, 2, 3], chunk)  # loadable, but not a checkpoint
    with pytest.raises(FileFormatError, match="not a training checkpoint"):
        train_autoencoders(data(), config, seed=2, checkpoint_dir=ckpt, progress=False)
    chunk.write_bytes(b"")
    with pytest.raises(FileFormatError, match="ae-chunk-0-2.pt"):
        train_autoencoders(data(), config, seed=2, checkpoint_dir=ckpt, progress=False)
    # another run's checkpoint (other fingerprint) is ignored, as before
    chunk.unlink()
    other = train_autoencoders(data(), config, seed=3, checkpoint_dir=ckpt, progress=False)
    fresh = train_autoencoders(data(), config, seed=3, progress=False)
    for k in fresh.params:
        assert torch.equal(other.params[k], fresh.params[k])


def test_a_running_checkpoint_of_the_wrong_shape_is_refused(tmp_path):
    config = cfg(steps=8)

    class _Stop(Exception):
        pass

    def stop(event):
        if event.step == 5:
            raise _Stop

    with pytest.raises(_Stop):
        train_autoencoders(
            data(), config, seed=1, checkpoint_dir=tmp_path, progress=False, callback=stop
        )
    running = tmp_path / "ae-running.pt"
    obj = load_checkpoint(running)  # its own fingerprint: it would be resumed
    obj["state"]["params"][0] = torch.zeros(2, 2)
    torch.save(obj, running)
    with pytest.raises(FileFormatError, match="running checkpoint does not match"):
        train_autoencoders(data(), config, seed=1, checkpoint_dir=tmp_path, progress=False)
