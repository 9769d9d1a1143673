"""One contract, checked over every implementation of each kind (as scikit-learn's
``parametrize_with_checks``): every AE variant x activation, every trait model, every
species family and every baseline.

Each kind has a small registry of its implementations and a set of checks; every check
runs on every implementation, so a new implementation only has to be added to its
registry. What is checked here is what every implementation promises (shapes, finite
values, reproducibility, independence from position, order and bystanders, files); what
one implementation computes is checked against known answers and theory in its own test
file.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import networkx as nx
import numpy as np
import pytest
import torch

from evosim.analysis.baselines import (
    BASELINES,
    WEIGHT_BASELINES,
    baseline_distances,
    not_applicable,
)
from evosim.evolve import evolve_traits
from evosim.evolve.population import equilibrium_variance, evolve_population
from evosim.phylo import Phylogeny, grow_tree
from evosim.scenario import (
    AnalysisConfig,
    AutoencoderConfig,
    MetaConfig,
    Scenario,
    SpeciesConfig,
    TraitsConfig,
    TreeConfig,
)
from evosim.seeding import rng
from evosim.species import FAMILIES, make_family
from evosim.train import AEBank, load_bank, train_autoencoders
from evosim.train.spec import ACTIVATIONS, VARIANTS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ============================================================================ AE variants
#
# Registry: every variant x every activation (the concrete AE's encoder is a selector with
# no activation, but its decoder has one, so every pair is a distinct AE).

AE_CASES = [(v, a) for v in VARIANTS for a in ACTIVATIONS]
AE_IDS = [f"{v}-{a}" for v, a in AE_CASES]

# Species "x" trained among 2 others and among 5 others, at different positions.
FEW = ("p", "x", "q")
MANY = ("r", "s", "t", "u", "x", "v")
D = 4


def _ae_config(variant: str, activation: str) -> AutoencoderConfig:
    return AutoencoderConfig(
        variant=variant,
        activation=activation,
        hidden=[5],
        latent=2,
        steps=6,
        batch_size=8,
        replicates=2,
        init="independent",
        validation_fraction=0.25,
        device="cpu",
        compile=False,
    )


def _ae_data(names: tuple[str, ...]) -> np.ndarray:
    """``[S, 24, D]``: each species' data drawn from its own name, whatever the world."""
    out = []
    for name in names:
        g = rng(0, "contract-data", name)
        centre = g.normal(size=D)
        out.append(centre + 0.5 * g.standard_normal((24, D)))
    return np.stack(out).astype(np.float32)


def _train(variant: str, activation: str, names: tuple[str, ...], seed: int) -> AEBank:
    return train_autoencoders(
        _ae_data(names),
        _ae_config(variant, activation),
        species=list(names),
        seed=seed,
        progress=False,
    )


@functools.cache
def _trained(variant: str, activation: str, names: tuple[str, ...]) -> AEBank:
    # Checks only read the bank; caching it lets every check of a case share one training.
    return _train(variant, activation, names, seed=5)


def _probe_inputs() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(7, D)).astype(np.float32)


def _assert_members_equal(a: AEBank, i: int, b: AEBank, j: int) -> None:
    """Member ``i`` of ``a`` and member ``j`` of ``b`` are bit-identical."""
    for k in a.params:
        assert torch.equal(a.params[k][i], b.params[k][j]), k
    for k in ("train", "val", "curve"):
        np.testing.assert_array_equal(a.losses[k][i], b.losses[k][j])
    assert a.diverged[i] == b.diverged[j]


@pytest.mark.parametrize(("variant", "activation"), AE_CASES, ids=AE_IDS)
def test_ae_shapes_and_finite_values(variant, activation):
    bank = _trained(variant, activation, MANY)
    s, r = len(MANY), 2
    spec = bank.spec
    assert (spec.variant, spec.activation, spec.input_dim) == (variant, activation, D)
    assert list(bank.params) == list(spec.param_shapes())
    for k, shape in spec.param_shapes().items():
        v = bank.params[k]
        assert v.shape == (s * r, *shape) and v.dtype == torch.float32, k
        assert torch.isfinite(v).all(), k
    x = _probe_inputs()
    z = bank.encode(x, "x")
    assert z.shape == (7, spec.latent) and z.dtype == np.float32
    assert bank.decode(z, "x").shape == (7, D)
    assert bank.reconstruct(x, "x").shape == (7, D)
    assert bank.encode(x).shape == (s, 7, spec.latent)  # every species
    assert bank.encode_all(x).shape == (s * r, 7, spec.latent)  # every member
    everything = bank.reconstruct_all(x)
    assert everything.shape == (s * r, 7, D)
    for out in (z, everything, bank.decode(bank.encode_all(x), list(range(s * r)))):
        assert np.isfinite(out).all()
    assert not bank.diverged.any()
    assert np.isfinite(bank.losses["train"]).all() and np.isfinite(bank.losses["val"]).all()
    assert bank.losses["curve"].shape[0] == s * r and np.isfinite(bank.losses["curve"]).all()


@pytest.mark.parametrize(("variant", "activation"), AE_CASES, ids=AE_IDS)
def test_ae_same_seed_same_bank(variant, activation):
    first = _trained(variant, activation, FEW)
    again = _train(variant, activation, FEW, seed=5)
    for m in range(first.n_members):
        _assert_members_equal(first, m, again, m)
    other = _train(variant, activation, FEW, seed=6)  # and the seed is used
    first_layer = next(iter(first.params))  # encoder.0.weight, or the concrete selector
    assert not torch.equal(first.params[first_layer], other.params[first_layer])


@pytest.mark.parametrize(("variant", "activation"), AE_CASES, ids=AE_IDS)
def test_ae_member_ignores_its_position_and_the_other_members(variant, activation):
    few, many = _trained(variant, activation, FEW), _trained(variant, activation, MANY)
    for r in range(2):  # species x's replicates: members 2-3 of 6, then 8-9 of 12
        _assert_members_equal(few, few.member_index("x", r), many, many.member_index("x", r))


@pytest.mark.parametrize(("variant", "activation"), AE_CASES, ids=AE_IDS)
def test_ae_save_load_round_trip(variant, activation, tmp_path):
    bank = _trained(variant, activation, FEW)
    path = bank.save(tmp_path / "aes.pt", provenance={"seed": 5})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data
    assert raw["spec"] == bank.spec.to_dict() and raw["provenance"] == {"seed": 5}
    for back in (AEBank.load(path), load_bank(path)):
        assert isinstance(back, AEBank)
        assert back.spec == bank.spec and back.species == bank.species
        assert back.replicates == bank.replicates and back.info == bank.info
        for m in range(bank.n_members):
            _assert_members_equal(back, m, bank, m)
        np.testing.assert_array_equal(back.reference_inputs, bank.reference_inputs)
        x = _probe_inputs()
        np.testing.assert_array_equal(back.reconstruct_all(x), bank.reconstruct_all(x))


@pytest.mark.parametrize(("variant", "activation"), AE_CASES, ids=AE_IDS)
def test_ae_module_is_the_member(variant, activation):
    bank = _trained(variant, activation, FEW)
    x = _probe_inputs()
    xt = torch.from_numpy(x)
    for i in range(bank.n_members):
        module = bank.module(i)
        assert isinstance(module, torch.nn.Module)
        with torch.no_grad():
            np.testing.assert_allclose(
                module(xt).numpy(), bank.reconstruct(x, i), rtol=1e-5, atol=1e-6
            )
            z = module.encode(xt)
            np.testing.assert_allclose(z.numpy(), bank.encode(x, i), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(
                module.decode(z).numpy(), bank.decode(z.numpy(), i), rtol=1e-5, atol=1e-6
            )


# ============================================================================ trait models
#
# Registry: name -> (evolve(tree, seed, root) -> {node: [dim]}, sd of the root's traits about
# the configured root: 0 where the model sets them, else its sampling sd).

TRAIT_DIM = 3
ROOT = [1.0, -2.0, 0.5]
POPULATION = dict(size=16, generations_per_time=8, founder_size=8, mutation_rate=0.5)


def _vectorised(model: str, **fields: Any) -> Callable[..., dict[str, np.ndarray]]:
    def evolve(tree: Phylogeny, seed: int, root: list[float]) -> dict[str, np.ndarray]:
        config = TraitsConfig(model=model, dim=TRAIT_DIM, root=root, **fields)
        return evolve_traits(tree, config, rng(seed, "traits"))  # as evosim.simulate does

    return evolve


def _population(tree: Phylogeny, seed: int, root: list[float]) -> dict[str, np.ndarray]:
    config = TraitsConfig(model="population", dim=TRAIT_DIM, root=root, population=POPULATION)
    return evolve_population(tree, config, seed, workers=1).traits


def _population_root_sd() -> float:
    # The root population is `size` iid N(root, v0) individuals, v0 = V* size / (size - 1)
    # with V* the neutral equilibrium variance (evosim.evolve.population): its mean has
    # sd sqrt(v0 / size) per trait.
    cfg = TraitsConfig(model="population", population=POPULATION).population
    n = cfg.size
    v0 = equilibrium_variance(n, cfg.mutation_rate * cfg.mutation_sigma**2) * n / (n - 1)
    return float(np.sqrt(v0 / n))


TRAIT_MODELS: dict[str, tuple[Callable[..., dict[str, np.ndarray]], float]] = {
    "brownian": (_vectorised("brownian"), 0.0),
    "ou": (_vectorised("ou", alpha=0.7, theta=0.3), 0.0),
    "early_burst": (_vectorised("early_burst", decay=-0.5), 0.0),
    "jumps": (_vectorised("jumps", jump_probability=0.4), 0.0),
    "population": (_population, _population_root_sd()),
    "tradeoff": (_vectorised("tradeoff", tasks=3), 0.0),
}


def test_trait_registry_covers_every_model():
    assert set(TRAIT_MODELS) == set(TraitsConfig.model_fields["model"].annotation.__args__)


@pytest.fixture(scope="module")
def trait_tree() -> Phylogeny:
    """A birth-death tree with extinct lineages (every node gets traits, extinct ones too)."""
    config = TreeConfig(model="birth_death", n_species=8, birth_rate=1.0, death_rate=0.4)
    for seed in range(100):
        tree = grow_tree(config, rng(seed, "tree"))
        if len(tree.extant_leaves) < len(tree.leaves):
            return tree
    raise AssertionError("no tree with an extinct lineage in 100 seeds")


def _assert_same_traits(a: dict, b: dict, nodes=None) -> None:
    for node in a if nodes is None else nodes:
        np.testing.assert_array_equal(a[node], b[node], err_msg=node)


@pytest.mark.parametrize("model", TRAIT_MODELS)
def test_traits_cover_every_node_finite_and_root_as_configured(model, trait_tree):
    evolve, root_sd = TRAIT_MODELS[model]
    traits = evolve(trait_tree, 3, ROOT)
    assert set(traits) == set(trait_tree.preorder())  # internal and extinct nodes too
    values = np.stack([traits[n] for n in trait_tree.preorder()])
    assert values.shape == (len(trait_tree), TRAIT_DIM) and values.dtype == np.float64
    assert np.isfinite(values).all()
    root = traits[trait_tree.root]
    if root_sd == 0:
        np.testing.assert_allclose(root, ROOT, rtol=1e-12, atol=1e-12)
    else:  # Z = 4.5 sampling sd, per trait (two-sided p = 6.8e-6 each)
        assert np.all(np.abs(root - ROOT) <= 4.5 * root_sd), (root, root_sd)
    assert not np.allclose(values, values[0])  # and the traits do evolve


@pytest.mark.parametrize("model", TRAIT_MODELS)
def test_traits_same_seed_same_traits_other_seed_other_traits(model, trait_tree):
    evolve, _ = TRAIT_MODELS[model]
    first = evolve(trait_tree, 3, ROOT)
    _assert_same_traits(first, evolve(trait_tree, 3, ROOT))
    other = evolve(trait_tree, 4, ROOT)
    for node in trait_tree.preorder()[1:]:
        assert not np.array_equal(first[node], other[node]), node


def _reinserted(tree: Phylogeny, seed: int) -> Phylogeny:
    """The same tree from a graph whose nodes were inserted in a shuffled order."""
    g = tree.graph
    nodes = list(g.nodes)
    np.random.default_rng(seed).shuffle(nodes)
    h = nx.DiGraph()
    h.graph.update(g.graph)
    for node in nodes:
        h.add_node(node, **g.nodes[node])
    for parent in tree.preorder():
        for child in tree.children(parent):  # children keep their left-to-right order
            h.add_edge(parent, child, **g.edges[parent, child])
    return Phylogeny(h)


@pytest.mark.parametrize("model", TRAIT_MODELS)
def test_traits_ignore_node_insertion_order_and_other_nodes_names(model, trait_tree):
    evolve, _ = TRAIT_MODELS[model]
    first = evolve(trait_tree, 3, ROOT)
    shuffled = _reinserted(trait_tree, 1)
    assert list(shuffled.graph.nodes) != list(trait_tree.graph.nodes)
    _assert_same_traits(first, evolve(shuffled, 3, ROOT))
    # renaming one leaf changes no other node's traits (names seed only their own draws)
    leaf = trait_tree.leaves[0]
    renamed = evolve(trait_tree.relabel({leaf: "renamed"}), 3, ROOT)
    _assert_same_traits(first, renamed, [n for n in trait_tree.preorder() if n != leaf])


# ============================================================================ species families
#
# Registry: evosim.species.FAMILIES (every family a scenario can name), each with a small
# species section; D is the family's own (ambient_dim, 2, or 2 x outline_points).

FAMILY_CONFIG = dict(instances=20, ambient_dim=6, development_hidden=8, outline_points=5)
FAMILY_DIM = {"development": 6, "circles": 2, "outline": 10}


def _family_scenario(family: str, seed: int = 3) -> Scenario:
    return Scenario(
        name="contract",
        seed=seed,
        tree=TreeConfig(model="yule", n_species=5),
        traits=TraitsConfig(dim=TRAIT_DIM),
        species=SpeciesConfig(family=family, **FAMILY_CONFIG),
    )


def test_family_registry_covers_every_family():
    assert set(FAMILIES) == set(SpeciesConfig.model_fields["family"].annotation.__args__)
    assert set(FAMILY_DIM) == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_shapes_finite_and_same_seed_same_instances(family):
    from evosim.simulation import simulate

    sim = simulate(_family_scenario(family))
    assert sim.instances.shape == (5, 20, FAMILY_DIM[family]) == (5, 20, sim.family.dim)
    assert sim.instances.dtype == np.float32 and np.isfinite(sim.instances).all()
    np.testing.assert_array_equal(simulate(_family_scenario(family)).instances, sim.instances)
    other = simulate(_family_scenario(family, seed=4)).instances
    assert not np.array_equal(other, sim.instances)
    # one trait is enough: families read the traits that are there
    one = make_family(SpeciesConfig(family=family, **FAMILY_CONFIG), 1, seed=3)
    x = one.instances("s1", np.array([0.3]))
    assert x.shape == (20, FAMILY_DIM[family]) and np.isfinite(x).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_family_species_depend_only_on_seed_name_and_traits(family):
    from evosim.simulation import simulate

    sim = simulate(_family_scenario(family))
    config = SpeciesConfig(family=family, **FAMILY_CONFIG)
    for i, name in enumerate(sim.species):
        # alone, in a fresh family, with no other species drawn
        alone = make_family(config, TRAIT_DIM, seed=3).instances(name, sim.traits[name])
        np.testing.assert_array_equal(alone, sim.instances[i])
    # in a bigger world whose other species are drawn first
    g = np.random.default_rng(0)
    big = make_family(config, TRAIT_DIM, seed=3)
    for k in range(20):
        big.instances(f"other{k}", g.normal(size=TRAIT_DIM))
    name, traits = sim.species[0], sim.traits[sim.species[0]]
    np.testing.assert_array_equal(big.instances(name, traits), sim.instances[0])
    # and each of the three matters
    assert not np.array_equal(big.instances("another", traits), sim.instances[0])
    assert not np.array_equal(big.instances(name, traits + 0.5), sim.instances[0])
    reseeded = make_family(config, TRAIT_DIM, seed=4).instances(name, traits)
    assert not np.array_equal(reseeded, sim.instances[0])
    # with individuals (the population model), the same holds
    ind = g.normal(size=(7, TRAIT_DIM))
    from_individuals = big.instances(name, traits, individuals=ind)
    assert from_individuals.shape == (20, FAMILY_DIM[family])
    np.testing.assert_array_equal(
        make_family(config, TRAIT_DIM, seed=3).instances(name, traits, individuals=ind),
        from_individuals,
    )


# ============================================================================ baselines
#
# Registry: evosim.analysis.baselines.BASELINES. Every one but ``random`` is a distance
# matrix over the bank's species; ``random`` is the expected score of random trees, checked
# through `analyse`. Two worlds: one AE architecture, and two (a mixed bank).

MATRIX_BASELINES = [b for b in BASELINES if b != "random"]


def _baseline_scenario(mixed: bool) -> Scenario:
    archs = [{"hidden": [8], "latent": 2}, {"hidden": [6, 6], "latent": 2, "activation": "tanh"}]
    return Scenario(
        name="contract",
        seed=2,
        tree=TreeConfig(model="yule", n_species=6),
        traits=TraitsConfig(dim=TRAIT_DIM),
        # more instances than the energy distance subsamples (256), so its subsample matters
        species=SpeciesConfig(instances=300, ambient_dim=5, development_hidden=8),
        autoencoder=AutoencoderConfig(
            hidden=[8],
            latent=2,
            steps=30,
            batch_size=16,
            replicates=2,
            device="cpu",
            compile=False,
            architectures=archs if mixed else [],
            assign="by_clade",
        ),
        meta=MetaConfig(latent=2, steps=15, probes=16, device="cpu"),
        analysis=AnalysisConfig(
            mantel_permutations=9, random_trees=4, generative=False, identification=False
        ),
    )


@functools.cache
def _baseline_world(mixed: bool) -> tuple[Any, Any, Any]:
    from evosim.meta import fit_meta_autoencoder
    from evosim.simulation import simulate

    sc = _baseline_scenario(mixed)
    sim = simulate(sc)
    bank = train_autoencoders(sim, sc.autoencoder, progress=False)
    assert bank.is_mixed is mixed
    meta = fit_meta_autoencoder(bank, sc.meta, progress=False)
    return sim, bank, meta


class _Blindfolded:
    """A Simulation whose true tree cannot be read (its traits are the oracle's to read)."""

    def __init__(self, sim: Any) -> None:
        self._sim = sim

    def __getattr__(self, name: str) -> Any:
        if name in ("tree", "extant_tree", "_extant", "task_weights", "task_optima"):
            raise AssertionError(f"a baseline read the truth: sim.{name}")
        return getattr(self._sim, name)


def _check_distance_matrix(d: np.ndarray, s: int) -> None:
    assert isinstance(d, np.ndarray) and d.shape == (s, s) and d.dtype == np.float64
    assert np.isfinite(d).all() and (d >= 0).all()
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    assert (d[~np.eye(s, dtype=bool)] > 0).all()  # distinct species, distinct points


@pytest.mark.parametrize("mixed", [False, True], ids=["one-architecture", "mixed"])
@pytest.mark.parametrize("name", MATRIX_BASELINES)
def test_baseline_is_a_seeded_distance_matrix_blind_to_the_tree(name, mixed):
    sim, bank, meta = _baseline_world(mixed)
    why = not_applicable(name, bank)
    if mixed and name in WEIGHT_BASELINES:
        assert isinstance(why, str) and why and "\n" not in why
        return
    assert why is None
    blind = _Blindfolded(sim)
    d = baseline_distances(name, blind, bank, meta, seed=7)
    _check_distance_matrix(d, len(bank.species))
    np.testing.assert_array_equal(baseline_distances(name, blind, bank, meta, seed=7), d)


APPLICABLE = [
    pytest.param(name, mixed, id=f"{name}-{'mixed' if mixed else 'one-architecture'}")
    for mixed in (False, True)
    for name in MATRIX_BASELINES
    if not (mixed and name in WEIGHT_BASELINES)
]


@pytest.mark.parametrize(("name", "mixed"), APPLICABLE)
def test_baseline_permuting_the_species_permutes_the_matrix(name, mixed):
    sim, bank, meta = _baseline_world(mixed)
    d = baseline_distances(name, sim, bank, meta, seed=7)
    perm = np.random.default_rng(3).permutation(len(bank.species))
    assert (perm != np.arange(len(perm))).any()
    names = [bank.species[i] for i in perm]
    pos = {s: i for i, s in enumerate(sim.species)}
    order = [pos[s] for s in names]
    shuffled = dataclasses.replace(sim, species=names, instances=sim.instances[order])
    d_perm = baseline_distances(name, shuffled, bank.subset(names), meta, seed=7)
    # float32 products in another order round differently: a relative 1e-5 covers that
    np.testing.assert_allclose(d_perm, d[np.ix_(perm, perm)], rtol=1e-5, atol=1e-6 * d.max())


@pytest.mark.parametrize("mixed", [False, True], ids=["one-architecture", "mixed"])
def test_every_baseline_is_scored_or_says_why_not(mixed):
    from evosim.analysis import METRICS, analyse

    sim, bank, meta = _baseline_world(mixed)
    config = _baseline_scenario(mixed).analysis
    report = analyse(sim, bank, meta, config, progress=False)
    assert set(report.baselines) == set(BASELINES)
    for name, scores in report.baselines.items():
        if mixed and name in WEIGHT_BASELINES:
            assert scores == {"not_applicable": not_applicable(name, bank)}
            continue
        assert set(scores) >= set(METRICS), name
        for metric, value in scores.items():
            assert value is None or np.isfinite(value), (name, metric)
    again = analyse(sim, bank, meta, config, progress=False)
    assert again.baselines == report.baselines  # the run's seed: the same scores


# ============================================================================ every kind


def _digest() -> str:
    """A hash of what every trait model, species family and AE initialisation draws."""
    from evosim.train.model import init_params
    from evosim.train.spec import AESpec

    h = hashlib.sha256()
    tree = grow_tree(TreeConfig(model="birth_death", n_species=6), rng(0, "tree"))
    for model, (evolve, _) in TRAIT_MODELS.items():
        traits = evolve(tree, 3, ROOT)
        for node in sorted(traits):
            h.update(f"{model}:{node}".encode() + traits[node].tobytes())
    for family in FAMILIES:
        f = make_family(SpeciesConfig(family=family, **FAMILY_CONFIG), TRAIT_DIM, seed=3)
        for name in ("a", "b"):
            h.update(f.instances(name, np.ones(TRAIT_DIM)).tobytes())
    for variant in VARIANTS:
        spec = AESpec(input_dim=D, hidden=(5,), latent=2, variant=variant)
        for v in init_params(spec, 5, ["a", "b"], [0, 1], "independent").values():
            h.update(v.numpy().tobytes())
    return h.hexdigest()


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import test_contracts
print(hash("evosim"), test_contracts._digest())
"""


def test_no_kind_depends_on_pythons_hash_seed():
    # Python salts str hashes per process: iterating a set of names would differ between
    # runs. A child process with another salt must draw exactly what this one draws.
    tests = os.path.dirname(os.path.abspath(__file__))
    for salt in ("12345", "54321"):  # the second only if this process has the first salt
        done = subprocess.run(
            [sys.executable, "-c", _CHILD.format(tests=tests)],
            env={**os.environ, "PYTHONHASHSEED": salt},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        child_hash, child_digest = done.stdout.split()
        if int(child_hash) != hash("evosim"):
            break
    assert int(child_hash) != hash("evosim")  # the salts differ
    assert child_digest == _digest()
