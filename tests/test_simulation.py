"""simulate / write_simulation / load_simulation, the scenarios, and the simulation figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evosim.errors import RunDirectoryError
from evosim.scenario import Scenario, load_scenario
from evosim.simulation import Simulation, load_simulation, simulate, write_simulation
from evosim.species import make_family

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))
FILES = ["scenario.yaml", "true_tree.nwk", "true_tree_full.nwk", "traits.csv", "instances.npz"]


def small(seed: int = 1, **sections) -> Scenario:
    data = dict(
        name="small",
        seed=seed,
        tree=dict(model="birth_death", n_species=12, birth_rate=1.0, death_rate=0.5),
        traits=dict(model="brownian", dim=3),
        species=dict(family="development", instances=40, ambient_dim=6),
    )
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return Scenario.model_validate(data)


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(small())


def test_simulation_contents(sim: Simulation):
    extant = sim.extant_tree()
    assert sim.species == extant.leaves
    assert len(sim.species) == 12
    assert sim.instances.shape == (12, 40, 6) and sim.instances.dtype == np.float32
    assert np.all(np.isfinite(sim.instances))
    # Traits on every node of the full tree: internal and extinct nodes too.
    assert set(sim.traits) == set(sim.tree.graph.nodes)
    assert all(v.shape == (3,) for v in sim.traits.values())
    # Row i of instances is species i, and instances_of regenerates it exactly.
    for i, name in enumerate(sim.species):
        np.testing.assert_array_equal(sim.instances_of(name), sim.instances[i])
    internal = sim.tree.internal_nodes[1]
    assert sim.instances_of(internal).shape == (40, 6)
    with pytest.raises(KeyError, match="no node"):
        sim.instances_of("not-a-node")


def test_species_instances_do_not_depend_on_world_size():
    # The same species name and traits give the same instances in an 8- and a 64-species
    # world with the same seed: instances are seeded from (seed, species name) only.
    worlds = [simulate(small(seed=5, tree=dict(model="yule", n_species=n))) for n in (8, 64)]
    for name in ("s1", "s3", "s8"):
        a, b = (w.instances[w.species.index(name)] for w in worlds)
        fam = make_family(worlds[1].scenario.species, 3, seed=5)
        # Each world's row is what the family makes from (seed, name, that world's traits) ...
        for w, x in zip(worlds, (a, b)):
            np.testing.assert_array_equal(fam.instances(name, w.traits[name]), x)
        # ... so with the traits of the 8-species world, the 64-species family agrees exactly.
        np.testing.assert_array_equal(fam.instances(name, worlds[0].traits[name]), a)


def read_all(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_same_seed_byte_identical_files_and_different_seeds_differ(tmp_path: Path):
    write_simulation(simulate(small(seed=3)), tmp_path / "a")
    write_simulation(simulate(small(seed=3)), tmp_path / "b")
    write_simulation(simulate(small(seed=4)), tmp_path / "c")
    a, b, c = (read_all(tmp_path / d) for d in "abc")
    assert sorted(a) == sorted(FILES)
    assert a == b
    for name in FILES:
        assert a[name] != c[name], name  # the seed is in scenario.yaml too


def test_round_trip(sim: Simulation, tmp_path: Path):
    write_simulation(sim, tmp_path)
    back = load_simulation(tmp_path)
    assert back.scenario == sim.scenario
    assert back.species == sim.species
    np.testing.assert_array_equal(back.instances, sim.instances)
    assert set(back.traits) == set(sim.traits)
    for node, value in sim.traits.items():
        np.testing.assert_array_equal(back.traits[node], value)  # exact (17 digits)
    assert back.tree.to_newick() == sim.tree.to_newick()
    assert back.tree.extant_leaves == sim.tree.extant_leaves  # extinct leaves stay extinct
    assert back.extant_tree().to_newick() == sim.extant_tree().to_newick()
    # The reloaded world regenerates instances of any node exactly.
    node = sim.tree.internal_nodes[2]
    np.testing.assert_array_equal(back.instances_of(node), sim.instances_of(node))
    # traits.csv: header and one row per node.
    lines = (tmp_path / "traits.csv").read_text().splitlines()
    assert lines[0] == "node,time,trait_1,trait_2,trait_3"
    assert len(lines) == 1 + len(sim.traits)


def test_load_refuses_an_incomplete_run_dir(tmp_path: Path):
    with pytest.raises(RunDirectoryError, match="scenario.yaml"):
        load_simulation(tmp_path)


@pytest.mark.parametrize("model", ["ou", "early_burst", "jumps"])
@pytest.mark.parametrize("family", ["circles", "outline"])
def test_models_and_families_simulate(model: str, family: str):
    s = simulate(small(traits=dict(model=model, dim=5), species=dict(family=family)))
    expected_d = {"circles": 2, "outline": 64}[family]
    assert s.instances.shape == (12, 40, expected_d)
    assert np.all(np.isfinite(s.instances))


def test_population_model(tmp_path: Path):
    pytest.importorskip("evosim.evolve.population")
    sc = small(
        tree=dict(model="yule", n_species=4),
        traits=dict(
            model="population",
            dim=2,
            population=dict(size=20, founder_size=10, generations_per_time=5),
        ),
    )
    s = simulate(sc)
    assert s.individuals is not None and s.population_log
    assert set(s.traits) == set(s.tree.graph.nodes)
    # Instances are drawn from each species' own individuals.
    for i, name in enumerate(s.species):
        np.testing.assert_array_equal(s.instances_of(name), s.instances[i])
    write_simulation(s, tmp_path)
    assert (tmp_path / "population_log.csv").exists()
    back = load_simulation(tmp_path)
    node = s.tree.internal_nodes[0]
    np.testing.assert_array_equal(back.individuals[node], s.individuals[node])
    np.testing.assert_array_equal(back.instances_of(node), s.instances_of(node))
    assert len(back.population_log) == len(s.population_log)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenarios_validate(path: Path):
    sc = load_scenario(path)
    assert sc.name == path.stem


def test_quickstart_matches_the_documented_world():
    sc = load_scenario(Path(__file__).parent.parent / "scenarios" / "quickstart.yaml")
    assert (sc.tree.model, sc.tree.n_species, sc.traits.model, sc.traits.dim) == (
        "yule",
        32,
        "brownian",
        16,
    )
    assert (sc.species.family, sc.autoencoder.latent) == ("development", 2)
    s = simulate(sc)
    assert s.instances.shape == (32, 512, 32)


@pytest.mark.parametrize("family", ["development", "circles", "outline"])
def test_plot_simulation_writes_pngs(tmp_path: Path, family: str):
    from evosim.plot import plot_simulation

    s = simulate(small(species=dict(family=family)))
    write_simulation(s, tmp_path / "run")
    paths = plot_simulation(load_simulation(tmp_path / "run"), tmp_path / "run" / "figures")
    assert [p.name for p in paths] == ["true_tree.png", "traits_through_time.png", "instances.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
        assert p.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
