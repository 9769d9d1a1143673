"""Several AE architectures in one world: assignment, grouped training, run-directory record."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from scipy import stats

from evosim.errors import FileFormatError, RunDirectoryError
from evosim.phylo import Phylogeny, grow_tree
from evosim.scenario import AutoencoderConfig, ScenarioError, TreeConfig, parse_scenario
from evosim.seeding import rng
from evosim.simulation import load_simulation, simulate, write_simulation
from evosim.train import AEBank, AEBankSet, load_bank, train_autoencoders
from evosim.train.architectures import architecture_configs, assign_architectures
from evosim.train.data import member_splits, reference_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCHS = [
    {"hidden": [8], "latent": 2},
    {"hidden": [6, 5], "latent": 3, "activation": "tanh"},
    {"hidden": [4], "latent": 2, "variant": "denoising"},
]


def cfg(**kw) -> AutoencoderConfig:
    base = dict(hidden=[12], latent=2, steps=15, batch_size=8, lr=3e-3, device="cpu")
    base.update(kw)
    return AutoencoderConfig(**base)


def data(s: int, n: int = 32, d: int = 5) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(s, n, d)).astype(np.float32)


def assert_same_members(a: AEBank, b: AEBank) -> None:
    assert a.species == b.species and a.spec == b.spec
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    for k in ("train", "val", "curve"):
        np.testing.assert_array_equal(a.losses[k], b.losses[k])


def test_three_architectures_train_as_their_single_architecture_runs():
    x = data(12)
    names = [f"sp{i}" for i in range(12)]
    config = cfg(architectures=ARCHS, replicates=2, compile=False)
    mixed = train_autoencoders(x, config, species=names, seed=3, progress=False)
    assert isinstance(mixed, AEBankSet) and mixed.species == names
    assignment = assign_architectures(names, 3, seed=3)
    assert mixed.info["architectures"] == assignment
    assert len(mixed.groups) == len(set(assignment))
    for g in mixed.groups:
        k = g.info["architecture"]
        assert g.species == [s for s, a in zip(names, assignment) if a == k]
        single_config = cfg(replicates=2, compile=False, **ARCHS[k])
        assert architecture_configs(config)[k] == single_config
        single = train_autoencoders(x, single_config, species=names, seed=3, progress=False)
        assert isinstance(single, AEBank)
        assert_same_members(g, single.subset(g.species))
    # reference inputs pooled over all species, as a single-architecture run draws them
    train_idx, _, _ = member_splits(3, names, 2, 32, config.validation_fraction)
    np.testing.assert_array_equal(mixed.reference_inputs, reference_inputs(x, train_idx, 2, 3))
    assert mixed.reconstruct_all(x[0, :4]).shape == (24, 4, 5)


def test_one_architecture_gives_a_plain_bank():
    bank = train_autoencoders(data(3), cfg(architectures=[{"hidden": [4]}]), seed=1, progress=False)
    assert isinstance(bank, AEBank) and bank.spec.hidden == (4,)


def test_random_assignment_is_reproducible_and_per_species():
    names = [f"t{i}" for i in range(3000)]
    a = assign_architectures(names, 3, seed=5)
    assert a == assign_architectures(names, 3, seed=5)
    # a species' architecture depends on its name and the seed alone, not on the others
    assert assign_architectures(names[::7], 3, seed=5) == a[::7]
    assert a[0] == int(rng(5, "ae-architecture", "t0").integers(3))
    assert assign_architectures(names, 3, seed=6) != a
    # uniform over the architectures: chi-square goodness of fit, 2 degrees of freedom;
    # with a fixed seed the p-value is fixed, and a threshold of 0.001 fails only a biased rule
    counts = np.bincount(a, minlength=3)
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def _is_clade(tree: Phylogeny, leaves: set[str]) -> bool:
    return len(leaves) in (1, len(tree.leaves)) or frozenset(leaves) in tree.clades(rooted=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_by_clade_gives_one_clade_per_architecture(seed):
    tree = grow_tree(TreeConfig(model="yule", n_species=40), np.random.default_rng(seed))
    leaves = tree.leaves
    for k in (2, 3, 5):
        a = assign_architectures(leaves, k, assign="by_clade", seed=seed, tree=tree)
        assert sorted(set(a)) == list(range(k))
        for arch in range(k):
            group = {s for s, g in zip(leaves, a) if g == arch}
            assert _is_clade(tree, group), (k, arch, sorted(group))
        # contiguous in preorder: architectures appear in runs, in order
        runs = [a[0]] + [g for p, g in zip(a, a[1:]) if g != p]
        assert runs == list(range(k))
        # the species order does not matter, only the tree
        shuffled = leaves[::-1]
        b = assign_architectures(shuffled, k, assign="by_clade", seed=seed, tree=tree)
        assert dict(zip(shuffled, b)) == dict(zip(leaves, a))


def test_by_clade_known_answer_and_polytomy():
    tree = Phylogeny.from_newick("(((A:1,B:1):1,C:2):1,(D:1,E:1):2);")
    # split the root (5 leaves) -> {A,B,C} {D,E}; then the larger {A,B,C} -> {A,B} {C}
    assert assign_architectures(list("ABCDE"), 3, assign="by_clade", seed=0, tree=tree) == [
        0,
        0,
        1,
        2,
        2,
    ]
    star = Phylogeny.from_newick("(A:1,B:1,C:1,D:1);")
    # one split gives four clades: more than two architectures, so they alternate
    assert assign_architectures(list("ABCD"), 2, assign="by_clade", seed=0, tree=star) == [
        0,
        1,
        0,
        1,
    ]


def test_by_clade_needs_the_simulation():
    with pytest.raises(ValueError, match="by_clade"):
        train_autoencoders(
            data(4), cfg(architectures=ARCHS, assign="by_clade"), seed=1, progress=False
        )


def _scenario(assign: str):
    return parse_scenario(
        f"""
seed: 4
tree: {{model: yule, n_species: 9}}
traits: {{dim: 2}}
species: {{family: circles, instances: 24, ambient_dim: 4}}
autoencoder:
  steps: 6
  batch_size: 8
  hidden: [6]
  device: cpu
  assign: {assign}
  architectures:
    - {{hidden: [5]}}
    - {{hidden: [4, 4], latent: 3}}
    - {{latent: 1}}
"""
    )


@pytest.mark.parametrize("assign", ["random", "by_clade"])
def test_simulation_records_the_assignment_and_training_reads_it(tmp_path, assign):
    sc = _scenario(assign)
    sim = simulate(sc)
    expected = assign_architectures(sim.species, 3, assign=assign, seed=4, tree=sim.extant_tree())
    assert sim.architectures == expected
    write_simulation(sim, tmp_path)
    text = (tmp_path / "architectures.csv").read_text().splitlines()
    assert text[0] == "species,architecture" and len(text) == 1 + len(sim.species)
    back = load_simulation(tmp_path)
    assert back.architectures == sim.architectures
    bank = train_autoencoders(back, sc.autoencoder, progress=False)
    assert bank.info["architectures"] == expected
    for g in bank.groups:
        assert all(expected[sim.species.index(s)] == g.info["architecture"] for s in g.species)
    # training reads the record, never the tree: a changed record changes the groups
    other = types.SimpleNamespace(
        instances=sim.instances,
        species=sim.species,
        scenario=sc,
        architectures=[(a + 1) % 3 for a in expected],
    )
    moved = train_autoencoders(other, sc.autoencoder, progress=False)
    assert moved.info["architectures"] == [(a + 1) % 3 for a in expected]
    bank.save(tmp_path / "aes.pt")
    again = load_bank(tmp_path / "aes.pt")
    assert isinstance(again, AEBankSet)
    assert np.array_equal(again.group_of, bank.group_of)


def test_a_damaged_assignment_file_is_refused(tmp_path):
    sim = simulate(_scenario("random"))
    write_simulation(sim, tmp_path)
    path = tmp_path / "architectures.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")  # cut two species
    with pytest.raises(FileFormatError, match="architectures.csv"):
        load_simulation(tmp_path)
    path.write_text("\n".join(lines[:-1] + [lines[-1].split(",")[0] + ",7"]) + "\n")
    with pytest.raises(FileFormatError, match=r"\[0, 3\)"):
        load_simulation(tmp_path)
    path.unlink()
    with pytest.raises(RunDirectoryError, match="architectures.csv"):
        load_simulation(tmp_path)


def test_kill_and_resume_a_mixed_world(tmp_path):
    x = data(8)
    config = cfg(architectures=ARCHS, steps=12, checkpoint_every=3, chunk_size=2)
    whole = train_autoencoders(x, config, seed=2, progress=False)

    class _Kill(Exception):
        pass

    present = sorted(set(assign_architectures([f"s{i + 1}" for i in range(8)], 3, seed=2)))
    assert len(present) >= 2
    last = present[-1]

    def kill(event):
        if event.architecture == last and event.step == 7:
            raise _Kill

    with pytest.raises(_Kill):
        train_autoencoders(
            x, config, seed=2, checkpoint_dir=tmp_path, progress=False, callback=kill
        )
    assert sorted(p.name for p in tmp_path.glob(f"ae-arch{last}-*"))
    redone = []
    resumed = train_autoencoders(
        x,
        config,
        seed=2,
        checkpoint_dir=tmp_path,
        progress=False,
        callback=lambda e: redone.append(e.architecture),
    )
    # the earlier architectures had finished: read back, not retrained
    assert set(redone) == {last}
    for a, b in zip(resumed.groups, whole.groups):
        assert_same_members(a, b)


@pytest.mark.parametrize(
    "entry,field,message",
    [
        ("[{hidden: [8]}, {hidden: [0]}]", "autoencoder.architectures.1.hidden", ">= 1"),
        ("[{latent: 0}]", "autoencoder.architectures.0.latent", ">= 1"),
        ("[{}, {}, {variant: vae}]", "autoencoder.architectures.2.variant", "one of"),
        ("[{hiden: [3]}]", "autoencoder.architectures.0.hiden", "unknown field"),
        ("{hidden: [3]}", "autoencoder.architectures", "list"),
    ],
)
def test_bad_architecture_entries_name_the_field(entry, field, message):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(f"autoencoder:\n  architectures: {entry}\n")
    text = str(err.value)
    assert text.startswith(field) and message in text, text


def test_entries_take_the_sections_values_and_round_trip():
    sc = parse_scenario(
        "autoencoder:\n  hidden: [9]\n  variant: sparse\n  architectures: [{latent: 3}, {}]\n"
    )
    a = sc.autoencoder.architectures
    assert (a[0].hidden, a[0].latent, a[0].variant) == ([9], 3, "sparse")
    assert (a[1].hidden, a[1].latent, a[1].activation) == ([9], 2, "elu")
    from evosim.scenario import dump_scenario

    assert parse_scenario(dump_scenario(sc)) == sc
