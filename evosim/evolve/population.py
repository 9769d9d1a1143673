"""Population-genetic trait evolution along a tree, on DEAP.

Every lineage is a population of ``size`` individuals whose genome is its trait vector
``[dim]``. Populations evolve generation by generation under selection, recombination,
mutation and drift, and split into daughter populations at every speciation.

The model, per generation (DEAP's ``eaSimple`` order: select, clone, mate, mutate, evaluate)
------------------------------------------------------------------------------------------
1. **Selection / reproduction.** ``size`` parents are drawn from the current population with
   replacement, either by fitness-proportional Wright-Fisher sampling (``selection:
   wright_fisher``, the default; probability ``w_i / sum(w)``) or by tournaments of
   ``tournament_size`` (``tools.selTournament``; only fitness *ranks* matter there, so the
   selection strength then only sets who wins, not by how much). Under ``fitness: neutral``
   every individual has ``w = 1`` and both reduce to uniform Wright-Fisher sampling (pure drift).
2. **Recombination.** Offspring are paired (0, 1), (2, 3), ...; each pair recombines with
   probability ``recombination`` by DEAP's blend crossover ``tools.cxBlend`` (BLX-alpha,
   Eshelman & Schaffer 1993) with ``alpha = (sqrt(3) - 1) / 2``. For
   ``g ~ U(-alpha, 1 + alpha)`` that alpha gives ``E[g (1 - g)] = 0`` and
   ``E[(1 - g)^2 + g^2] = 1``, so a pair's two children always sum to their parents and keep
   their sum of squares in expectation, whatever the parents: recombination moves neither
   the population mean nor, in expectation, the within-population variance.
3. **Mutation.** Each gene of each offspring mutates with probability ``mutation_rate`` by a
   ``N(0, mutation_sigma^2)`` increment (``tools.mutGaussian`` with ``indpb``).
4. **Environment.** The optimum moves as Brownian motion, variance ``optimum_sigma^2`` per unit
   of time per trait (so ``optimum_sigma^2 * length / generations`` per generation).
5. **Fitness.** ``neutral``: ``w = 1``. ``stabilizing``:
   ``w(x) = exp(-selection_strength * ||x - optimum||^2 / 2)``. Fitness objects hold
   ``log w`` (same order for tournaments; Wright-Fisher weights are ``exp(log w - max)`` so a
   population far from its optimum never underflows to all-zero weights).

Time. A branch of length ``L`` runs ``G = max(1, round_half_up(L * generations_per_time))``
generations (``G = 0`` when ``L == 0``), each ``L / G`` time units long, so generation ``G``
lands exactly on the child's time. Rounding per branch keeps every node on its own time at
the cost of a relative error of at most ``1 / (2 G)`` in the number of generations.

Speciation. When a node has two or more children, each child population is founded by
``founder_size`` distinct individuals drawn without replacement from the parent population,
which regrow at once to ``size``: the founders themselves plus ``size - founder_size``
offspring drawn uniformly with replacement from them. ``founder_size == size`` means no
bottleneck (each daughter starts as a copy of the parent population). Each daughter's
optimum then shifts by ``N(0, optimum_shift^2)`` per trait. A node with one child (no split)
passes its population on unchanged. Extinct lineages simply stop at their leaf's time.

Root. The optimum starts at ``traits.root``; the individuals start at ``traits.root`` plus
independent ``N(0, v0)`` deviations per gene, with ``v0`` chosen so that the expected
within-population variance equals the mutation-drift(-selection) equilibrium
(:func:`equilibrium_variance`). Without this, drift would start from a monomorphic population
and the lineage mean would wander slower than theory predicts for the first ~``size``
generations (Lynch & Hill 1986).

Neutral theory (what the tests check). For ``N`` individuals, per-gene mutational variance
``m = mutation_rate * mutation_sigma^2`` per generation, and ``V_t`` the within-population
variance (divisor ``N``): Wright-Fisher sampling changes the mean by a term of variance
``V_t / N`` and mutation by one of ``m / N``, so ``Var(mean change) = (E[V_t] + m) / N`` per
generation. Sampling keeps ``(1 - 1/N)`` of the variance and mutation adds ``m (1 - 1/N)``,
so ``E[V'] = (1 - 1/N)(E[V] + m)`` with equilibrium ``V* = (N - 1) m``. At equilibrium the mean
therefore diffuses at rate ``((N - 1) m + m) / N = m`` per generation, independent of ``N``:
the neutral rate of phenotypic divergence of Lynch & Hill (1986), ``2 sigma_m^2`` between two
lineages, i.e. ``sigma_m^2 = m`` per lineage.

Randomness and parallelism
--------------------------
Every branch draws from its own streams, derived from ``(seed, node name)`` with
:mod:`evosim.seeding`, so a branch's outcome depends only on its parent population, the seed
and its name: never on the order or the process in which branches run. Branches whose parent
is done are independent and run in parallel processes (``workers``); a serial run gives
bit-identical results.

Two engines share the model, the toolbox layout and the streams above:

``numpy`` (default)
    DEAP ``base.Toolbox`` registrations of vectorised operators with DEAP's semantics
    (``select``, ``mate`` = blend crossover, ``mutate`` = Gaussian mutation, ``evaluate``) that
    act on the whole population ``[size, dim]`` at once and draw from a
    ``numpy.random.Generator``. No global state at all, and 25-100x faster than DEAP's
    per-individual Python (population 100-1,000; see ``bench/bench_population.py``).
``deap``
    DEAP's own operators on DEAP individuals: ``tools.selTournament`` / ``tools.selRandom``,
    ``algorithms.varAnd`` with ``tools.cxBlend`` and ``tools.mutGaussian``. They draw from
    Python's *global* ``random`` module, so each branch seeds it from ``(seed, node name)`` and
    restores the caller's state afterwards (not thread-safe; processes are). Its per-individual
    overhead is cut by registering a cheap ``clone`` (instead of ``copy.deepcopy``) and
    evaluating the whole population as one array. The two engines give the same model, not
    the same draws.

DEAP's ``creator`` classes (``EvosimFitness``, ``EvosimIndividual``) are created on first use,
once per process, and never re-created (re-creating them makes DEAP warn).

References
----------
Fortin F.-A. et al. (2012) DEAP: evolutionary algorithms made easy. JMLR 13:2171-2175.
Lynch M., Hill W.G. (1986) Phenotypic evolution by neutral mutation. Evolution 40:915-935.
Lande R. (1976) Natural selection and random genetic drift in phenotypic evolution.
Evolution 30:314-334.
Bulmer M.G. (1980) The Mathematical Theory of Quantitative Genetics. Oxford.
Eshelman L.J., Schaffer J.D. (1993) Real-coded genetic algorithms and interval-schemata.
Foundations of Genetic Algorithms 2:187-202.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from deap import algorithms, base, creator, tools

from evosim.scenario import PopulationConfig, TraitsConfig

__all__ = [
    "BLEND_ALPHA",
    "PopulationResult",
    "equilibrium_variance",
    "evolve_population",
    "generations_on_branch",
]

#: BLX-alpha that keeps every pair's sum, and its sum of squares in expectation (module docstring).
BLEND_ALPHA = (math.sqrt(3.0) - 1.0) / 2.0

_FITNESS_CLASS = "EvosimFitness"
_INDIVIDUAL_CLASS = "EvosimIndividual"

# Estimated serial seconds below which ``workers=None`` stays in-process: a pool of spawned
# workers takes ~1.5 s to start (measured, 2 cores), more than small trees take in total.
_AUTO_PARALLEL_SECONDS = 10.0


@dataclass
class PopulationResult:
    """What :func:`evolve_population` returns.

    Attributes
    ----------
    traits
        node -> population mean trait vector ``[dim]`` at that node's time (every node).
    individuals
        node -> genomes ``[size, dim]`` of the population at that node's time (for a node
        that splits: before the founder events of its daughters).
    log
        One row per node and generation (generation 0 = the population the branch starts
        with, after founding): ``node``, ``generation``, ``time``, ``trait_mean_1..dim``,
        ``trait_sd_1..dim`` (population sd, divisor ``size``), ``fitness_mean``,
        ``fitness_sd`` (absolute fitness ``w``). Rows come in tree preorder, generations in order.
    optima
        node -> the selective optimum ``[dim]`` at that node's time.
    generations
        node -> number of generations run on the branch above it (0 at the root).
    """

    traits: dict[str, np.ndarray]
    individuals: dict[str, np.ndarray]
    log: list[dict[str, Any]]
    optima: dict[str, np.ndarray] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------ theory helpers


def generations_on_branch(length: float, generations_per_time: int) -> int:
    """Generations run on a branch: ``round_half_up(length * gpt)``, at least 1 if ``length > 0``.

    Parameters
    ----------
    length
        Branch length in time units (>= 0).
    generations_per_time
        Generations per unit of time.

    Returns
    -------
    int
    """
    if not np.isfinite(length) or length < 0:
        raise ValueError(f"branch length must be finite and >= 0, got {length}")
    if length == 0:
        return 0
    return max(1, int(math.floor(length * generations_per_time + 0.5)))


def equilibrium_variance(
    size: int, mutation_variance: float, selection_strength: float = 0.0
) -> float:
    """Expected within-population variance (divisor ``size``) at mutation-selection-drift balance.

    Per gene, one generation maps ``V`` to ``(1 - 1/N) (V / (1 + s V) + m)``: Gaussian stabilizing
    selection ``exp(-s x^2 / 2)`` turns variance ``V`` into ``V / (1 + s V)``, Wright-Fisher
    sampling keeps ``1 - 1/N`` of it in expectation, and mutation adds ``m (1 - 1/N)``. The
    fixed point solves ``s V^2 + (1/N - c m s) V - c m = 0`` with ``c = 1 - 1/N``. For ``s = 0``
    it is exact, ``V* = (N - 1) m`` (Lynch & Hill 1986); for ``s > 0`` it is the Gaussian
    approximation (Lande 1975; Bulmer 1980), ``~ sqrt(m / s)`` for large ``N``.

    Parameters
    ----------
    size
        Population size ``N`` (>= 2).
    mutation_variance
        ``m = mutation_rate * mutation_sigma^2``, per gene per generation.
    selection_strength
        ``s`` (0 = neutral).

    Returns
    -------
    float
    """
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    if mutation_variance < 0 or selection_strength < 0:
        raise ValueError("mutation_variance and selection_strength must be >= 0")
    c = 1.0 - 1.0 / size
    m, s = float(mutation_variance), float(selection_strength)
    if s == 0.0:
        return c * m * size
    b = 1.0 / size - c * m * s
    return (-b + math.sqrt(b * b + 4.0 * s * c * m)) / (2.0 * s)


# ------------------------------------------------------------------------------ branch tasks


@dataclass(frozen=True)
class _Params:
    """Plain, picklable model parameters (one per run)."""

    size: int
    founder_size: int
    dim: int
    mutation_sigma: float
    mutation_rate: float
    recombination: float
    neutral: bool
    selection_strength: float
    optimum_sigma: float
    optimum_shift: float
    selection: str
    tournament_size: int
    engine: str  # "numpy" | "deap"

    @classmethod
    def from_config(cls, dim: int, pop: PopulationConfig) -> _Params:
        return cls(
            size=pop.size,
            founder_size=pop.founder_size,
            dim=dim,
            mutation_sigma=pop.mutation_sigma,
            mutation_rate=pop.mutation_rate,
            recombination=pop.recombination,
            neutral=pop.fitness == "neutral" or pop.selection_strength == 0.0,
            selection_strength=pop.selection_strength,
            optimum_sigma=pop.optimum_sigma,
            optimum_shift=pop.optimum_shift,
            selection=pop.selection,
            tournament_size=pop.tournament_size,
            engine=pop.engine,
        )


@dataclass(frozen=True)
class _BranchTask:
    node: str
    start_time: float
    end_time: float
    generations: int
    found: bool  # the parent splits: founder event + optimum shift
    population: np.ndarray  # [size, dim] parent's population at the split
    optimum: np.ndarray  # [dim]
    seed: np.random.SeedSequence  # numpy stream of this branch
    random_seed: int  # seed of Python's `random` for DEAP's operators (deap engine)
    params: _Params


@dataclass(frozen=True)
class _BranchResult:
    node: str
    population: np.ndarray
    optimum: np.ndarray
    rows: list[dict[str, Any]]


# ------------------------------------------------------------------------------ operators


def _log_fitness(x: np.ndarray, optimum: np.ndarray, strength: float, neutral: bool) -> np.ndarray:
    """``log w = -strength ||x - optimum||^2 / 2`` per individual; ``x [P, dim]`` -> ``[P]``."""
    if neutral:
        return np.zeros(x.shape[0])
    d = x - optimum
    return -0.5 * strength * np.einsum("ij,ij->i", d, d)


def _select_wright_fisher(
    x: np.ndarray, log_w: np.ndarray, *, rng: np.random.Generator, neutral: bool
) -> np.ndarray:
    """Wright-Fisher sampling: ``P`` parents with replacement, probability ``w_i / sum(w)``."""
    n = x.shape[0]
    if neutral:
        return x[rng.integers(0, n, size=n)]
    cdf = np.cumsum(np.exp(log_w - log_w.max()))
    idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return x[np.minimum(idx, n - 1)]


def _select_tournament(
    x: np.ndarray, log_w: np.ndarray, *, rng: np.random.Generator, tournsize: int
) -> np.ndarray:
    """``tools.selTournament`` for a whole population: best of ``tournsize`` uniform draws.

    Ties go to the first aspirant, as in DEAP (``max`` keeps the first maximum).
    """
    n = x.shape[0]
    aspirants = rng.integers(0, n, size=(n, tournsize))
    best = np.argmax(log_w[aspirants], axis=1)
    return x[aspirants[np.arange(n), best]]


def _cx_blend(x: np.ndarray, *, rng: np.random.Generator, alpha: float, cxpb: float) -> np.ndarray:
    """``tools.cxBlend`` on pairs (0, 1), (2, 3), ... each mated with probability ``cxpb``."""
    if cxpb <= 0.0:
        return x
    n_pairs = x.shape[0] // 2
    mate = np.flatnonzero(rng.random(n_pairs) < cxpb)
    if mate.size == 0:
        return x
    a, b = x[2 * mate], x[2 * mate + 1]
    gamma = (1.0 + 2.0 * alpha) * rng.random(a.shape) - alpha
    x[2 * mate] = (1.0 - gamma) * a + gamma * b
    x[2 * mate + 1] = gamma * a + (1.0 - gamma) * b
    return x


def _mut_gaussian(
    x: np.ndarray, *, rng: np.random.Generator, sigma: float, indpb: float
) -> np.ndarray:
    """``tools.mutGaussian(mu=0, sigma, indpb)`` for a whole population, in place."""
    if sigma == 0.0 or indpb <= 0.0:
        return x
    step = rng.normal(0.0, sigma, size=x.shape)
    if indpb < 1.0:
        step *= rng.random(x.shape) < indpb
    x += step
    return x


def _deap_classes() -> tuple[type, type]:
    """DEAP's creator classes, created once per process (re-creating them warns)."""
    if not hasattr(creator, _FITNESS_CLASS):
        creator.create(_FITNESS_CLASS, base.Fitness, weights=(1.0,))
    if not hasattr(creator, _INDIVIDUAL_CLASS):
        creator.create(_INDIVIDUAL_CLASS, list, fitness=getattr(creator, _FITNESS_CLASS))
    return getattr(creator, _FITNESS_CLASS), getattr(creator, _INDIVIDUAL_CLASS)


def _clone_individual(ind: Any) -> Any:
    """Cheap clone of a flat list individual (DEAP's default is ``copy.deepcopy``, ~12x slower).

    Genes are floats and fitness values a tuple, both immutable, so a shallow copy is a
    full copy; creating the instances with ``__new__`` skips ``creator``'s generic
    ``__init__``, which re-instantiates every class attribute.
    """
    cls = type(ind)
    new = cls.__new__(cls)
    new.extend(ind)
    fitness = ind.fitness
    new.fitness = type(fitness).__new__(type(fitness))
    new.fitness.wvalues = fitness.wvalues
    return new


def _sel_wright_fisher_deap(individuals: list[Any], k: int) -> list[Any]:
    """Fitness-proportional sampling with replacement, drawing from ``random`` like DEAP.

    The same distribution as ``tools.selRoulette`` (whose linear scan per spin costs
    ``O(k * P)``); fitness values are ``log w``.
    """
    log_w = np.array([ind.fitness.values[0] for ind in individuals])
    weights = np.exp(log_w - log_w.max()).tolist()
    return random.choices(individuals, weights=weights, k=k)


def _numpy_toolbox(p: _Params, rng: np.random.Generator) -> base.Toolbox:
    tb = base.Toolbox()
    tb.register("evaluate", _log_fitness, strength=p.selection_strength, neutral=p.neutral)
    if p.selection == "tournament":
        tb.register("select", _select_tournament, rng=rng, tournsize=p.tournament_size)
    else:
        tb.register("select", _select_wright_fisher, rng=rng, neutral=p.neutral)
    tb.register("mate", _cx_blend, rng=rng, alpha=BLEND_ALPHA, cxpb=p.recombination)
    tb.register("mutate", _mut_gaussian, rng=rng, sigma=p.mutation_sigma, indpb=p.mutation_rate)
    return tb


def _deap_toolbox(p: _Params) -> base.Toolbox:
    _, individual = _deap_classes()
    tb = base.Toolbox()
    tb.register("individual", individual)
    tb.register("clone", _clone_individual)
    tb.register("mate", tools.cxBlend, alpha=BLEND_ALPHA)
    tb.register("mutate", tools.mutGaussian, mu=0.0, sigma=p.mutation_sigma, indpb=p.mutation_rate)
    if p.selection == "tournament":
        tb.register("select", tools.selTournament, tournsize=p.tournament_size)
    elif p.neutral:
        tb.register("select", tools.selRandom)
    else:
        tb.register("select", _sel_wright_fisher_deap)
    return tb


def _evaluate_deap(
    pop: list[Any], optimum: np.ndarray, p: _Params, tb: base.Toolbox
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate a DEAP population as one array: ``(x [P, dim], log w [P])``, fitness set."""
    x = np.array(pop, dtype=float)
    log_w = _log_fitness(x, optimum, p.selection_strength, p.neutral)
    for ind, v in zip(pop, log_w.tolist()):
        ind.fitness.wvalues = (v,)  # = values, the weight being 1
    return x, log_w


class _ArrayStatistics(tools.Statistics):
    """``tools.Statistics`` whose key maps the whole population to one array.

    DEAP's ``compile`` calls the key once per individual; here it is called once per
    population and every registered function is a vectorised NumPy reduction.
    """

    def compile(self, data: Any) -> dict[str, Any]:
        values = self.key(data)
        return {name: func(values) for name, func in self.functions.items()}


def _statistics() -> tools.MultiStatistics:
    traits = _ArrayStatistics(key=lambda pop: pop[0])
    fitness = _ArrayStatistics(key=lambda pop: np.exp(pop[1]))
    stats = tools.MultiStatistics(trait=traits, fitness=fitness)
    stats.register("mean", _mean)
    stats.register("sd", _sd)
    return stats


# np.mean / np.std carry ~10 us of dispatch each; these run once per generation.
def _mean(v: np.ndarray) -> np.ndarray:
    return np.add.reduce(v, axis=0) / v.shape[0]


def _sd(v: np.ndarray) -> np.ndarray:
    d = v - _mean(v)
    return np.sqrt(np.add.reduce(d * d, axis=0) / v.shape[0])


@contextmanager
def _global_random(seed: int) -> Iterator[None]:
    """Seed Python's global ``random`` (which DEAP's operators use); restore it afterwards."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


# ------------------------------------------------------------------------------ one branch


def _found(x: np.ndarray, founders: int, rng: np.random.Generator) -> np.ndarray:
    """Founder sample without replacement, regrown at once: founders + uniform offspring of them."""
    n = x.shape[0]
    if founders >= n:
        return x.copy()
    f = x[rng.choice(n, size=founders, replace=False)]
    return np.concatenate([f, f[rng.integers(0, founders, size=n - founders)]])


def _run_branch(task: _BranchTask) -> _BranchResult:
    """Evolve one branch (top-level, so spawned worker processes can run it)."""
    p = task.params
    rng = np.random.default_rng(task.seed)
    x = np.array(task.population, dtype=float)
    optimum = np.array(task.optimum, dtype=float)
    if task.found:
        x = _found(x, p.founder_size, rng)
        if p.optimum_shift > 0:
            optimum = optimum + rng.normal(0.0, p.optimum_shift, size=p.dim)
    g_total = task.generations
    dt = (task.end_time - task.start_time) / g_total if g_total else 0.0
    step_sd = p.optimum_sigma * math.sqrt(dt)
    stats = _statistics()
    logbook = tools.Logbook()

    def time_at(g: int) -> float:
        return task.end_time if g == g_total else task.start_time + g * dt

    if p.engine == "numpy":
        tb = _numpy_toolbox(p, rng)
        log_w = tb.evaluate(x, optimum)
        logbook.record(gen=0, time=time_at(0), **stats.compile((x, log_w)))
        for g in range(1, g_total + 1):
            x = tb.mutate(tb.mate(tb.select(x, log_w)))
            if step_sd:
                optimum = optimum + rng.normal(0.0, step_sd, size=p.dim)
            log_w = tb.evaluate(x, optimum)
            logbook.record(gen=g, time=time_at(g), **stats.compile((x, log_w)))
    else:
        tb = _deap_toolbox(p)
        pop = [tb.individual(row) for row in x.tolist()]
        with _global_random(task.random_seed):
            for g in range(g_total + 1):
                if g > 0:
                    offspring = tb.select(pop, len(pop))
                    pop = algorithms.varAnd(offspring, tb, p.recombination, 1.0)
                    if step_sd:
                        optimum = optimum + rng.normal(0.0, step_sd, size=p.dim)
                x, log_w = _evaluate_deap(pop, optimum, p, tb)
                logbook.record(gen=g, time=time_at(g), **stats.compile((x, log_w)))
    return _BranchResult(task.node, x, optimum, _rows(task.node, logbook, p.dim))


def _rows(node: str, logbook: tools.Logbook, dim: int) -> list[dict[str, Any]]:
    """Flatten a branch's logbook (chapters ``trait`` and ``fitness``) into CSV-ready rows."""
    trait, fitness = logbook.chapters["trait"], logbook.chapters["fitness"]
    t_mean = np.asarray(trait.select("mean"), dtype=float).reshape(-1, dim).tolist()
    t_sd = np.asarray(trait.select("sd"), dtype=float).reshape(-1, dim).tolist()
    rows = []
    for i, (gen, time) in enumerate(zip(logbook.select("gen"), logbook.select("time"))):
        row: dict[str, Any] = {"node": node, "generation": int(gen), "time": float(time)}
        row.update({f"trait_mean_{j + 1}": t_mean[i][j] for j in range(dim)})
        row.update({f"trait_sd_{j + 1}": t_sd[i][j] for j in range(dim)})
        row["fitness_mean"] = float(fitness[i]["mean"])
        row["fitness_sd"] = float(fitness[i]["sd"])
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ the tree


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _estimated_seconds(p: _Params, generations: int) -> float:
    """Rough serial cost, only to decide whether worker processes pay for their start-up."""
    if p.engine == "numpy":
        per_gen = 1.5e-4 + 5e-8 * p.size * p.dim
    else:
        per_gen = p.size * (1e-5 + 1e-6 * p.dim)
    return generations * per_gen


def evolve_population(
    tree: Any, config: TraitsConfig, seed: int, *, workers: int | None = None
) -> PopulationResult:
    """Evolve populations of individuals along ``tree`` (the ``population`` trait model).

    See the module docstring for the model (selection, blend recombination, Gaussian
    mutation, Wright-Fisher drift, a Brownian-moving optimum, founder events at
    speciation) and its neutral-theory rate (Lynch & Hill 1986).

    Parameters
    ----------
    tree
        A :class:`evosim.phylo.Phylogeny` (``root``, ``preorder()``, ``children(n)``,
        ``time(n)``, ``length(n)``), extinct leaves included.
    config
        ``traits`` section: ``dim``, ``root`` (scalar or ``[dim]``: start of the population
        mean and of the optimum) and ``population`` (size, generations_per_time,
        founder_size, mutation_sigma, mutation_rate, recombination, fitness,
        selection_strength, optimum_sigma, optimum_shift, selection, tournament_size,
        workers, engine).
    seed
        Scenario seed. Branch streams are derived from ``(seed, node name)``.
    workers
        Processes for independent branches. ``None``: ``config.population.workers``, and if
        that is ``None`` too, all cores when the run is big enough to pay for starting
        processes (a few seconds of work), else in-process. ``1``: serial, in-process.
        Every choice gives identical results. Workers are spawned (not forked), so a
        script that runs this with more than one worker needs the usual
        ``if __name__ == "__main__":`` guard.

    Returns
    -------
    PopulationResult
        ``traits`` (node -> mean ``[dim]``), ``individuals`` (node -> ``[size, dim]``),
        ``log`` (per-generation statistics rows), ``optima``, ``generations``.

    Raises
    ------
    ValueError
        ``workers < 1``, a negative or non-finite branch length, or a tree without a root.
    """
    # Imported here so spawned workers (which import this module to run `_run_branch`)
    # do not pay for evosim.seeding's torch import.
    from evosim.seeding import child_seed

    pop_cfg = config.population
    params = _Params.from_config(config.dim, pop_cfg)
    if workers is None:
        workers = pop_cfg.workers
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1 or None, got {workers}")

    order = list(tree.preorder())
    if not order:
        raise ValueError("the tree has no nodes")
    root = tree.root
    children = {n: list(tree.children(n)) for n in order}
    gens = {root: 0}
    for n in order[1:]:
        gens[n] = generations_on_branch(float(tree.length(n)), pop_cfg.generations_per_time)

    # Root population at the expected equilibrium variance: iid N(root, v0) with
    # E[divisor-N variance] = (1 - 1/N) v0 = V*.
    root_mean = np.broadcast_to(np.asarray(config.root, dtype=float), (config.dim,)).copy()
    m = pop_cfg.mutation_rate * pop_cfg.mutation_sigma**2
    s = 0.0 if params.neutral else params.selection_strength
    v_star = equilibrium_variance(pop_cfg.size, m, s)
    v0 = v_star * pop_cfg.size / (pop_cfg.size - 1)
    root_rng = np.random.default_rng(child_seed(seed, "population", "root", root))
    x_root = root_mean + math.sqrt(v0) * root_rng.standard_normal((pop_cfg.size, config.dim))
    x_root_log_w = _log_fitness(x_root, root_mean, params.selection_strength, params.neutral)
    root_book = tools.Logbook()
    root_stats = _statistics().compile((x_root, x_root_log_w))
    root_book.record(gen=0, time=float(tree.time(root)), **root_stats)

    populations: dict[str, np.ndarray] = {root: x_root}
    optima: dict[str, np.ndarray] = {root: root_mean}
    rows: dict[str, list[dict[str, Any]]] = {root: _rows(root, root_book, config.dim)}

    def task(node: str, parent: str) -> _BranchTask:
        return _BranchTask(
            node=node,
            start_time=float(tree.time(parent)),
            end_time=float(tree.time(node)),
            generations=gens[node],
            found=len(children[parent]) >= 2,
            population=populations[parent],
            optimum=optima[parent],
            seed=child_seed(seed, "population", node),
            random_seed=int(child_seed(seed, "population", node, "random").generate_state(1)[0]),
            params=params,
        )

    def store(res: _BranchResult) -> None:
        populations[res.node] = res.population
        optima[res.node] = res.optimum
        rows[res.node] = res.rows

    if workers is None:
        serial_s = _estimated_seconds(params, sum(gens.values()))
        workers = _cores() if serial_s > _AUTO_PARALLEL_SECONDS else 1
    workers = min(workers, max(1, len(order) - 1))

    if workers == 1:
        for n in order[1:]:
            parent = tree.parent(n)
            store(_run_branch(task(n, parent)))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            pending: dict[Future[_BranchResult], str] = {}

            def submit_children(parent: str) -> None:
                for c in children[parent]:
                    pending[pool.submit(_run_branch, task(c, parent))] = c

            submit_children(root)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    node = pending.pop(fut)
                    store(fut.result())
                    submit_children(node)

    return PopulationResult(
        traits={n: populations[n].mean(axis=0) for n in order},
        individuals={n: populations[n] for n in order},
        log=[row for n in order for row in rows[n]],
        optima={n: optima[n] for n in order},
        generations=gens,
    )
