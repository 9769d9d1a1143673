"""AEBank: the contract others code against (shapes, types, files, modules, subsets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evosim.scenario import AutoencoderConfig
from evosim.train import AEBank, AESpec, model, train_autoencoders

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bank() -> AEBank:
    g = np.random.default_rng(0)
    x = g.normal(size=(3, 40, 5)).astype(np.float32) * np.array([1, 2, 3])[:, None, None]
    config = AutoencoderConfig(
        variant="variational",
        hidden=[8, 6],
        latent=2,
        steps=15,
        batch_size=8,
        replicates=2,
        device="cpu",
        activation="tanh",
    )
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_autoencoders(x, config, species=["a", "b", "c"], seed=1, progress=False)
    finally:
        torch.set_num_threads(old)


def test_contract_shapes(bank):
    m = 6
    assert bank.n_members == m and bank.replicates == 2 and bank.species == ["a", "b", "c"]
    assert bank.member_species == ["a", "a", "b", "b", "c", "c"]
    assert list(bank.params) == list(bank.spec.param_shapes())
    assert bank.params["encoder.0.weight"].shape == (m, 5, 8)
    assert bank.params["encoder.2.weight"].shape == (m, 6, 4)  # [mu, logvar]
    assert bank.params["decoder.0.weight"].shape == (m, 2, 6)
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in bank.params.values())
    assert bank.losses["train"].shape == (m,) and bank.losses["val"].shape == (m,)
    assert bank.losses["curve"].shape == (m, 15)
    assert bank.diverged.dtype == bool and bank.diverged.shape == (m,)
    assert bank.reference_inputs.shape == (3 * 36, 5)  # every training instance (< 1024)
    assert bank.member_index("b", 1) == 3


def test_encode_decode_reconstruct_types_and_selection(bank):
    x = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    z = bank.encode(x, "b")
    assert isinstance(z, np.ndarray) and z.shape == (7, 2)
    np.testing.assert_allclose(bank.encode(x, "b", replicate=1), bank.encode(x, 3))
    allz = bank.encode_all(x)
    assert allz.shape == (6, 7, 2)
    np.testing.assert_allclose(allz[2], z, rtol=1e-6)
    assert bank.encode(x).shape == (3, 7, 2)  # every species, replicate 0
    np.testing.assert_allclose(bank.encode(x)[1], z, rtol=1e-6)
    r = bank.reconstruct_all(x)
    assert r.shape == (6, 7, 5)
    np.testing.assert_allclose(bank.decode(bank.encode(x, "c"), "c"), r[4], rtol=1e-5, atol=1e-6)
    per = np.stack([x, 2 * x])  # one input set per selected member
    out = bank.reconstruct(per, ["a", "c"])
    np.testing.assert_allclose(out[1], bank.reconstruct(2 * x, "c"), rtol=1e-5, atol=1e-6)
    xt = torch.from_numpy(x).requires_grad_(True)
    zt = bank.encode(xt, "a")
    assert isinstance(zt, torch.Tensor) and zt.requires_grad
    zt.sum().backward()
    assert xt.grad is not None
    with pytest.raises(ValueError, match="unknown species"):
        bank.encode(x, "zz")
    with pytest.raises(ValueError, match="member index"):
        bank.encode(x, [99])


def test_module_is_an_ordinary_module_matching_reconstruct(bank):
    x = np.random.default_rng(2).normal(size=(11, 5)).astype(np.float32)
    for i in range(bank.n_members):
        mod = bank.module(i)
        assert isinstance(mod, torch.nn.Module)
        assert sum(p.numel() for p in mod.parameters()) == bank.spec.n_params
        with torch.no_grad():
            y = mod(torch.from_numpy(x)).numpy()
            code = mod.encode(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(y, bank.reconstruct(x, i), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(code, bank.encode(x, i), rtol=1e-5, atol=1e-6)


def test_save_load_round_trip_weights_only(bank, tmp_path):
    path = bank.save(tmp_path / "aes.pt")
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled classes inside
    assert raw["spec"]["variant"] == "variational"
    back = AEBank.load(path)
    assert back.spec == bank.spec and back.species == bank.species
    assert back.replicates == bank.replicates
    for k in bank.params:
        assert torch.equal(back.params[k], bank.params[k])
    for k in bank.losses:
        np.testing.assert_array_equal(back.losses[k], bank.losses[k])
    np.testing.assert_array_equal(back.diverged, bank.diverged)
    np.testing.assert_array_equal(back.reference_inputs, bank.reference_inputs)
    assert back.info["seed"] == 1 and back.info["config"]["variant"] == "variational"
    torch.save({"format": "other"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an evosim AE bank"):
        AEBank.load(tmp_path / "x.pt")


def test_subset_and_from_params(bank):
    sub = bank.subset(["c", "a"])
    assert sub.species == ["c", "a"] and sub.replicates == 2
    assert torch.equal(sub.params["decoder.1.bias"][0], bank.params["decoder.1.bias"][4])
    one = bank.subset([0, 2, 4])  # replicate 0 of every species
    assert one.species == ["a", "b", "c"] and one.replicates == 1
    np.testing.assert_array_equal(one.losses["val"], bank.losses["val"][[0, 2, 4]])
    with pytest.raises(ValueError, match="species-major"):
        bank.subset([0, 2, 3])
    fp = AEBank.from_params(bank.spec, bank.params, bank.species, replicates=2)
    x = np.ones((2, 5), dtype=np.float32)
    np.testing.assert_array_equal(fp.reconstruct_all(x), bank.reconstruct_all(x))
    assert np.isnan(fp.losses["train"]).all() and not fp.diverged.any()
    with pytest.raises(ValueError, match="shape"):
        AEBank.from_params(bank.spec, bank.params, ["a"], replicates=1)
    spec = AESpec(input_dim=5, hidden=(8, 6), latent=2, activation="tanh")
    with pytest.raises(ValueError, match="shape"):  # plain spec: the code layer is narrower
        AEBank.from_params(spec, bank.params, bank.species, replicates=2)
    params = model.init_params(spec, 0, ["u", "v"], [0, 0])
    assert AEBank.from_params(spec, params, ["u", "v"]).encode_all(x).shape == (2, 2, 2)
