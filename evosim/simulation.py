"""Stage 1: a scenario -> a simulated world (true tree, traits of every node, instances).

``simulate`` grows the tree, evolves traits along it and samples every extant species'
instances; ``write_simulation`` / ``load_simulation`` move a world to and from a run
directory. Each stage draws from its own named stream (``seeding.rng(seed, "tree")``,
``seeding.rng(seed, "traits")``, ``seeding.rng(seed, "instances", species)``), so a
species' instances do not depend on how many other species there are.

Run-directory files written here::

    scenario.yaml        the resolved scenario
    true_tree.nwk        the extant species' tree (branch lengths, leaf names only)
    true_tree_full.nwk   the whole tree: extinct lineages and internal node names
    traits.csv           node,time,trait_1..trait_k for every node (preorder of the full
                         tree), floats written with 17 significant digits (exact round trip)
    instances.npz        instances [S, N, D] float32 and species [S] (str), same order
    individuals.npz      population model only: nodes [n] (str) and node_i [P, k] genotypes
    population_log.csv   population model only: the engine's per-generation log
    task_optima.csv      tradeoff model only: task,trait_1..trait_k, the task optima
    task_weights.csv     tradeoff model only: node,weight_1..weight_m, every node's task
                         weights (preorder of the full tree)
    architectures.csv    several AE architectures only: species,architecture (the index
                         into autoencoder.architectures), in species order
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from evosim import runio, seeding
from evosim.errors import FileFormatError, RunDirectoryError, ScenarioError
from evosim.scenario import Scenario, dump_scenario, parse_scenario
from evosim.species import Family, make_family

__all__ = ["Simulation", "simulate", "write_simulation", "load_simulation"]

log = logging.getLogger(__name__)

#: Worlds with at least this many species get a progress bar (when progress=True).
PROGRESS_MIN_SPECIES = 256


@dataclass
class Simulation:
    """A simulated world.

    Attributes
    ----------
    scenario
        The resolved scenario it came from.
    tree
        The full true tree (``evosim.phylo.Phylogeny``), extinct lineages included.
    species
        ``[S]`` extant species names, in ``extant_tree().leaves`` order.
    traits
        Node name -> ``[k]`` trait vector, for EVERY node of ``tree``.
    instances
        ``[S, N, D]`` float32; ``instances[i]`` belongs to ``species[i]``.
    individuals
        Node name -> ``[P, k]`` genotypes (population model), else None.
    population_log
        The population engine's log rows, else None.
    task_optima
        ``[m, k]`` the task optima, the archetypes (tradeoff model), else None.
    task_weights
        Node name -> ``[m]`` task weights on the simplex, for every node (tradeoff
        model), else None.
    architectures
        ``[S]`` index into ``scenario.autoencoder.architectures`` of each species' AE
        architecture, when the scenario lists several (assigned here, as part of the world:
        ``by_clade`` reads the true tree), else None.
    """

    scenario: Scenario
    tree: Any
    species: list[str]
    traits: dict[str, np.ndarray]
    instances: np.ndarray
    individuals: dict[str, np.ndarray] | None = None
    population_log: list[dict[str, Any]] | None = None
    task_optima: np.ndarray | None = None
    task_weights: dict[str, np.ndarray] | None = None
    architectures: list[int] | None = None
    _extant: Any = field(default=None, repr=False, compare=False)
    _family: Family | None = field(default=None, repr=False, compare=False)

    @property
    def family(self) -> Family:
        """The species family that made (and can remake) the instances."""
        if self._family is None:
            self._family = make_family(
                self.scenario.species, self.scenario.traits.dim, self.scenario.seed
            )
        return self._family

    def extant_tree(self):  # noqa: ANN201 - Phylogeny
        """The true tree pruned to the extant species (cached)."""
        if self._extant is None:
            self._extant = self.tree.extant_tree()
        return self._extant

    def instances_of(self, node: str) -> np.ndarray:
        """``[N, D]`` float32 instances of any node, ancestors and extinct species included.

        For an extant species this equals its row of :attr:`instances`.

        Raises
        ------
        KeyError
            ``node`` is not a node of the tree.
        """
        if node not in self.traits:
            raise KeyError(f"no node named {node!r} in the simulated tree")
        individuals = None if self.individuals is None else self.individuals.get(node)
        return self.family.instances(node, self.traits[node], individuals=individuals)

    def trait_matrix(self, nodes: list[str] | None = None) -> np.ndarray:
        """``[len(nodes), k]`` traits of ``nodes`` (default: the extant species, in order)."""
        nodes = self.species if nodes is None else nodes
        return np.stack([self.traits[n] for n in nodes])


def _sample_instances(
    family: Family,
    species: list[str],
    traits: dict[str, np.ndarray],
    individuals: dict[str, np.ndarray] | None,
    *,
    progress: bool,
) -> np.ndarray:
    out = np.empty((len(species), family.config.instances, family.dim), dtype=np.float32)
    show = progress and len(species) >= PROGRESS_MIN_SPECIES
    bar = tqdm(species, desc="instances", unit="species", disable=None if show else True)
    for i, name in enumerate(bar):
        ind = None if individuals is None else individuals.get(name)
        out[i] = family.instances(name, traits[name], individuals=ind)
    return out


def simulate(scenario: Scenario, *, progress: bool = False) -> Simulation:
    """Simulate a world: grow the tree, evolve traits on every node, sample instances.

    Parameters
    ----------
    scenario
        A validated scenario (``tree``, ``traits`` and ``species`` sections are used).
    progress
        Show a progress bar on stderr while sampling instances of large worlds.

    Returns
    -------
    Simulation
    """
    from evosim.evolve import evolve_traits
    from evosim.phylo import grow_tree

    seed = scenario.seed
    log.info("growing a %s tree of %d species", scenario.tree.model, scenario.tree.n_species)
    tree = grow_tree(scenario.tree, seeding.rng(seed, "tree"))
    individuals = population_log = task_optima = task_weights = None
    if scenario.traits.model == "population":
        try:
            from evosim.evolve.population import evolve_population
        except ImportError as exc:  # pragma: no cover - the engine ships with the package
            raise NotImplementedError(
                "traits.model 'population' needs evosim.evolve.population, which is missing"
            ) from exc
        log.info("running the population engine")
        res = evolve_population(tree, scenario.traits, seed=seed)
        traits = {n: np.asarray(v, dtype=np.float64) for n, v in res.traits.items()}
        individuals = {n: np.asarray(v, dtype=np.float64) for n, v in res.individuals.items()}
        population_log = list(res.log) if res.log is not None else None
    elif scenario.traits.model == "tradeoff":
        from evosim.evolve.tradeoff import evolve_tradeoff

        log.info("evolving %d traits under %d tasks", scenario.traits.dim, scenario.traits.tasks)
        world = evolve_tradeoff(tree, scenario.traits, seeding.rng(seed, "traits"))
        traits, task_weights = world.traits_dict(), world.weights_dict()
        task_optima = world.optima
    else:
        log.info("evolving %d %s traits", scenario.traits.dim, scenario.traits.model)
        traits = evolve_traits(tree, scenario.traits, seeding.rng(seed, "traits"))
    sim = Simulation(
        scenario=scenario,
        tree=tree,
        species=[],
        traits=traits,
        instances=np.empty((0, 0, 0), dtype=np.float32),
        individuals=individuals,
        population_log=population_log,
        task_optima=task_optima,
        task_weights=task_weights,
    )
    sim.species = list(sim.extant_tree().leaves)
    log.info("sampling %d instances of %d species", scenario.species.instances, len(sim.species))
    sim.instances = _sample_instances(
        sim.family, sim.species, traits, individuals, progress=progress
    )
    sim.architectures = _assign_architectures(scenario, sim)
    return sim


def _assign_architectures(scenario: Scenario, sim: Simulation) -> list[int] | None:
    archs = scenario.autoencoder.architectures
    if len(archs) < 2:
        return None
    from evosim.train.architectures import assign_architectures

    return assign_architectures(
        sim.species,
        len(archs),
        assign=scenario.autoencoder.assign,
        seed=scenario.seed,
        tree=sim.extant_tree(),
    )


# ---------------------------------------------------------------------------- files


def _fmt(x: float) -> str:
    return format(float(x), ".17g")


def _traits_csv(sim: Simulation) -> str:
    k = sim.scenario.traits.dim
    buf = io.StringIO()
    buf.write(",".join(["node", "time", *(f"trait_{j + 1}" for j in range(k))]) + "\n")
    for node in sim.tree.preorder():
        row = [node, _fmt(sim.tree.time(node)), *(_fmt(v) for v in sim.traits[node])]
        buf.write(",".join(row) + "\n")
    return buf.getvalue()


def _log_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {c: (_fmt(v) if isinstance(v, float | np.floating) else v) for c, v in row.items()}
        )
    return buf.getvalue()


def write_simulation(sim: Simulation, out_dir: str | Path) -> list[Path]:
    """Write a world's run-directory files (see the module docstring), each atomically.

    The same world always gives byte-identical files.

    Parameters
    ----------
    sim
        The world.
    out_dir
        The run directory (created if missing; existing files of these names are replaced).

    Returns
    -------
    list[Path]
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        runio.write_text(out / "scenario.yaml", dump_scenario(sim.scenario)),
        runio.write_text(
            out / "true_tree.nwk", sim.extant_tree().to_newick(internal_labels=False) + "\n"
        ),
        runio.write_text(out / "true_tree_full.nwk", sim.tree.to_newick() + "\n"),
        runio.write_text(out / "traits.csv", _traits_csv(sim)),
        runio.write_npz(
            out / "instances.npz",
            instances=np.ascontiguousarray(sim.instances, dtype=np.float32),
            species=np.array(sim.species, dtype=str),
        ),
    ]
    if sim.individuals is not None:
        # Keys are positional (node names need not be valid archive member names).
        nodes = list(sim.individuals)
        arrays = {f"node_{i}": np.asarray(sim.individuals[n]) for i, n in enumerate(nodes)}
        paths.append(
            runio.write_npz(out / "individuals.npz", nodes=np.array(nodes, dtype=str), **arrays)
        )
    if sim.population_log is not None:
        paths.append(runio.write_text(out / "population_log.csv", _log_csv(sim.population_log)))
    if sim.task_optima is not None:
        paths += _write_tasks(sim, out)
    if sim.architectures is not None:
        rows = "".join(f"{s},{int(a)}\n" for s, a in zip(sim.species, sim.architectures))
        paths.append(runio.write_text(out / "architectures.csv", "species,architecture\n" + rows))
    return paths


#: What to do about a damaged simulation file.
_RERUN = "the file is damaged: simulate again (evosim run --force)"


def _write_tasks(sim: Simulation, out: Path) -> list[Path]:
    optima = np.atleast_2d(sim.task_optima)
    lines = [",".join(["task", *(f"trait_{j + 1}" for j in range(optima.shape[1]))])]
    lines += [",".join([str(i + 1), *(_fmt(v) for v in row)]) for i, row in enumerate(optima)]
    paths = [runio.write_text(out / "task_optima.csv", "\n".join(lines) + "\n")]
    if sim.task_weights is not None:
        m = optima.shape[0]
        lines = [",".join(["node", *(f"weight_{j + 1}" for j in range(m))])]
        lines += [
            ",".join([node, *(_fmt(v) for v in sim.task_weights[node])])
            for node in sim.tree.preorder()
        ]
        paths.append(runio.write_text(out / "task_weights.csv", "\n".join(lines) + "\n"))
    return paths


def _read_rows(path: Path, first: str) -> tuple[list[str], np.ndarray]:
    """``(first column, float matrix of the others)`` of a csv whose header starts ``first``."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0][:1] != [first]:
        raise FileFormatError(f"{path}: expected a header starting with {first!r}", hint=_RERUN)
    try:
        values = np.array([[float(v) for v in row[1:]] for row in rows[1:]], dtype=np.float64)
    except ValueError:
        raise FileFormatError(f"{path}: a value is not a number", hint=_RERUN) from None
    return [row[0] for row in rows[1:]], values


def _read_architectures(path: Path, species: list[str], n_architectures: int) -> list[int]:
    hint = "delete the run directory and run again"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0] != ["species", "architecture"]:
        raise FileFormatError(f"{path}: expected the header species,architecture", hint=hint)
    try:
        names = [r[0] for r in rows[1:]]
        index = [int(r[1]) for r in rows[1:]]
    except (IndexError, ValueError):
        raise FileFormatError(f"{path}: malformed row", hint=hint) from None
    if names != species:
        raise FileFormatError(
            f"{path}: its species disagree with instances.npz ({len(names)} rows for "
            f"{len(species)} species)",
            hint=hint,
        )
    if any(not 0 <= a < n_architectures for a in index):
        raise FileFormatError(
            f"{path}: architecture indices must be in [0, {n_architectures})", hint=hint
        )
    return index


def _read_traits(path: Path) -> dict[str, np.ndarray]:
    text = runio.read_text(path)
    if not text.endswith("\n"):
        raise FileFormatError(f"{path}: ends mid-row (the file is truncated)", hint=_RERUN)
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0] if rows else []
    if header[:2] != ["node", "time"]:
        raise FileFormatError(f"{path}: expected columns node,time,trait_1.., got {header[:2]}")
    traits: dict[str, np.ndarray] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise FileFormatError(
                f"{path}: line {line} has {len(row)} fields, the header {len(header)}",
                hint=_RERUN,
            )
        try:
            traits[row[0]] = np.array([float(v) for v in row[2:]], dtype=np.float64)
        except ValueError:
            raise FileFormatError(f"{path}: line {line} holds a value that is no number") from None
    return traits


def _read_npz(path: Path, keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` written by :func:`write_simulation` (no pickles)."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files) if keys is None else keys
            return {k: np.asarray(data[k]) for k in names}
    except FileNotFoundError:
        raise RunDirectoryError(f"{path}: no such file") from None
    except KeyError as exc:
        raise FileFormatError(f"{path}: lacks the array {exc}", hint=_RERUN) from None
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileFormatError(
            f"{path}: unreadable (truncated or not an evosim file: {reason[:100]})", hint=_RERUN
        ) from None


def _read_log(path: Path) -> list[dict[str, Any]]:
    def value(v: str) -> Any:
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v

    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def load_simulation(run_dir: str | Path) -> Simulation:
    """Read a world written by :func:`write_simulation` back (nothing is re-simulated).

    Parameters
    ----------
    run_dir
        The run directory.

    Returns
    -------
    Simulation
        Equal to the one written: same tree (leaves not among the species are marked
        extinct), traits, instances and, for the population model, individuals and log.

    Raises
    ------
    RunDirectoryError
        A required file is missing.
    FileFormatError
        A file is damaged or truncated, or the files disagree with each other (the
        message names the file).
    """
    from evosim.phylo import Phylogeny

    run_dir = Path(run_dir)
    for name in ("scenario.yaml", "true_tree_full.nwk", "traits.csv", "instances.npz"):
        if not (run_dir / name).exists():
            raise RunDirectoryError(f"{run_dir / name}: no such file (not a simulated run?)")
    try:
        scenario = parse_scenario(runio.read_text(run_dir / "scenario.yaml"), name=run_dir.name)
    except ScenarioError as exc:
        raise FileFormatError(f"{run_dir / 'scenario.yaml'}: {exc}") from None
    try:
        tree = Phylogeny.from_newick(runio.read_text(run_dir / "true_tree_full.nwk"))
    except ValueError as exc:
        raise FileFormatError(
            f"{run_dir / 'true_tree_full.nwk'}: {str(exc).splitlines()[0]}", hint=_RERUN
        ) from None
    data = _read_npz(run_dir / "instances.npz", ["instances", "species"])
    instances = np.asarray(data["instances"], dtype=np.float32)
    species = [str(s) for s in data["species"]]
    if instances.ndim != 3 or instances.shape[0] != len(species):
        raise FileFormatError(
            f"{run_dir / 'instances.npz'}: instances of shape {instances.shape} do not match "
            f"its {len(species)} species",
            hint=_RERUN,
        )
    extant = set(species)
    for leaf in tree.leaves:
        tree.graph.nodes[leaf]["extinct"] = leaf not in extant
    traits = _read_traits(run_dir / "traits.csv")
    missing = set(tree.graph.nodes) - set(traits)
    if missing:
        raise FileFormatError(
            f"{run_dir / 'traits.csv'}: lacks nodes of the tree in true_tree_full.nwk, "
            f"e.g. {min(missing)!r}",
            hint=_RERUN,
        )
    if not extant <= set(tree.leaves):
        raise FileFormatError(
            f"{run_dir / 'instances.npz'}: names species that are not leaves of true_tree_full.nwk",
            hint=_RERUN,
        )
    individuals = None
    if (run_dir / "individuals.npz").exists():
        data = _read_npz(run_dir / "individuals.npz")
        nodes = [str(n) for n in data["nodes"]]
        individuals = {n: np.asarray(data[f"node_{i}"]) for i, n in enumerate(nodes)}
    population_log = None
    if (run_dir / "population_log.csv").exists():
        population_log = _read_log(run_dir / "population_log.csv")
    task_optima = task_weights = None
    if (run_dir / "task_optima.csv").exists():
        _, task_optima = _read_rows(run_dir / "task_optima.csv", "task")
        if task_optima.shape[1:] != (scenario.traits.dim,):
            raise FileFormatError(
                f"{run_dir / 'task_optima.csv'}: expected {scenario.traits.dim} traits", hint=_RERUN
            )
    if (run_dir / "task_weights.csv").exists():
        nodes, values = _read_rows(run_dir / "task_weights.csv", "node")
        task_weights = dict(zip(nodes, values))
        if set(task_weights) != set(traits):
            raise FileFormatError(
                f"{run_dir / 'task_weights.csv'} does not cover the tree's nodes", hint=_RERUN
            )
    architectures = None
    n_archs = len(scenario.autoencoder.architectures)
    if n_archs > 1:
        if not (run_dir / "architectures.csv").exists():
            raise RunDirectoryError(
                f"{run_dir / 'architectures.csv'} is missing (the scenario lists several AE "
                "architectures)",
                hint=_RERUN,
            )
        architectures = _read_architectures(run_dir / "architectures.csv", species, n_archs)
    return Simulation(
        scenario=scenario,
        tree=tree,
        species=species,
        traits=traits,
        instances=instances,
        individuals=individuals,
        population_log=population_log,
        task_optima=task_optima,
        task_weights=task_weights,
        architectures=architectures,
    )
