"""AEBankSet: species' AEs of several architectures, in the world's species order."""

import numpy as np
import pytest
import torch

from evosim.train import AEBank, AEBankSet, AESpec, load_bank
from evosim.train.model import init_params


def _bank(spec: AESpec, species: list[str], seed: int, replicates: int = 1) -> AEBank:
    members = [s for s in species for _ in range(replicates)]
    reps = [r for _ in species for r in range(replicates)]
    params = init_params(spec, seed, members, reps, "independent")
    ref = np.random.default_rng(seed).standard_normal((8, spec.input_dim)).astype(np.float32)
    return AEBank.from_params(spec, params, species, replicates, reference_inputs=ref)


@pytest.fixture
def parts():
    a = _bank(AESpec(4, (8,), 2), ["s1", "s3"], 1, replicates=2)
    b = _bank(AESpec(4, (6, 5), 3, activation="tanh"), ["s2", "s4"], 2, replicates=2)
    return a, b


def test_members_follow_the_world_order_whatever_the_group(parts):
    a, b = parts
    bs = AEBankSet([a, b], ["s1", "s2", "s3", "s4"])
    assert bs.is_mixed and bs.n_members == 8
    assert bs.member_species == ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"]
    assert bs.group_of.tolist() == [0, 1, 0, 1]
    assert bs.group_members(1).tolist() == [2, 3, 6, 7]
    assert bs.locate(5) == (0, 3)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    rec = bs.reconstruct_all(x)
    assert rec.shape == (8, 5, 4)
    np.testing.assert_allclose(rec[6], b.reconstruct(x, "s4", replicate=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rec[1], a.reconstruct(x, "s1", replicate=1), rtol=1e-5, atol=1e-6)
    codes = bs.encode_members(x)
    assert [c.shape[1] for c in codes] == [2, 2, 3, 3, 2, 2, 3, 3]
    out = bs.module(7)(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(out, b.reconstruct(x, "s4", replicate=1), rtol=1e-5, atol=1e-6)


def test_a_plain_bank_is_a_set_of_one_group(parts):
    a, _ = parts
    assert not a.is_mixed and a.groups == [a]
    assert a.group_of.tolist() == [0, 0]
    assert a.group_members(0).tolist() == [0, 1, 2, 3]


def test_save_load_round_trip_is_weights_only(parts, tmp_path):
    a, b = parts
    bs = AEBankSet([a, b], ["s4", "s1", "s2", "s3"])
    path = bs.save(tmp_path / "aes.pt", provenance={"software": {"name": "evosim"}})
    raw = torch.load(path, weights_only=True)
    assert raw["provenance"]["software"]["name"] == "evosim"
    back = load_bank(path)
    assert isinstance(back, AEBankSet) and back.species == bs.species
    x = np.ones((3, 4), dtype=np.float32)
    np.testing.assert_array_equal(back.reconstruct_all(x), bs.reconstruct_all(x))
    a.save(tmp_path / "one.pt")
    assert isinstance(load_bank(tmp_path / "one.pt"), AEBank)


def test_subset_keeps_the_asked_order_and_drops_empty_groups(parts):
    a, b = parts
    bs = AEBankSet([a, b])
    sub = bs.subset(["s3", "s1"])
    assert sub.species == ["s3", "s1"] and len(sub.groups) == 1


def test_inconsistent_groups_are_refused(parts):
    a, b = parts
    with pytest.raises(ValueError, match="more than one group"):
        AEBankSet([a, a])
    with pytest.raises(ValueError, match="exactly the groups"):
        AEBankSet([a, b], ["s1", "s2", "s3"])
    c = _bank(AESpec(4, (8,), 2), ["s9"], 3, replicates=1)
    with pytest.raises(ValueError, match="same replicates"):
        AEBankSet([a, c])
