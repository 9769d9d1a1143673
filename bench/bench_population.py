"""Benchmark the population-genetic engine (``traits.model: population``).

1. Throughput in individual-generations per second (one individual through one
   generation: selection, recombination, mutation, evaluation, statistics) at population
   100 and 1,000, serial (``workers=1``) and on all cores, for three engines:

   ``deap_stock``  DEAP's operators with DEAP's defaults: ``toolbox.clone = copy.deepcopy``
                   and one ``toolbox.evaluate`` call per individual (the "before").
   ``deap``        the same DEAP operators (``selTournament``/``selRandom``, ``varAnd`` with
                   ``cxBlend`` and ``mutGaussian``), with a cheap registered clone and the
                   whole population evaluated as one array (the "after").
   ``numpy``       the default engine: DEAP toolbox registrations of vectorised operators
                   on ``numpy.random.Generator`` streams (no per-individual Python at all).

   The workload is a star tree of ``branches`` independent branches (so all cores have
   work); the number of generations per branch is calibrated so a serial run takes about
   ``--seconds``. The last column, CPU seconds of the parallel run (parent + workers) over
   those of the serial run, measures what splitting costs independently of how busy the
   shared machine is: near 1 means nothing beyond the workers' start-up, and the wall-clock
   speed-up is then set by how many cores are actually idle.
2. Wall time of the reference scenario: a 32-species birth-death tree (birth 1, death
   0.2, extinct lineages included), population 200, 100 generations per unit time,
   8 traits, stabilizing selection with a moving optimum. Target: under 60 s on 2 cores.

``deap_stock`` is not an engine of evosim: this script builds it by swapping DEAP's defaults
(``copy.deepcopy`` clone, a per-individual ``evaluate``) into the ``deap`` engine's toolbox for
the duration of a run (:func:`deap_stock`). The swap lives in this process only, so
``deap_stock`` runs serially; its parallel cells reuse its serial time.

Usage::

    python bench/bench_population.py           # full
    python bench/bench_population.py --quick   # smaller calibration target, fewer engines
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import resource
import time

import numpy as np

from evosim.evolve import population as population_module
from evosim.evolve.population import evolve_population
from evosim.phylo import Phylogeny, grow_tree
from evosim.scenario import TraitsConfig, TreeConfig


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _log_fitness_one(ind: list[float], optimum: list[float], strength: float) -> tuple[float]:
    """Per-individual evaluation, DEAP tutorial style."""
    return (-0.5 * strength * sum((a - b) ** 2 for a, b in zip(ind, optimum)),)


@contextlib.contextmanager
def deap_stock():
    """Run the ``deap`` engine with DEAP's defaults: deepcopy clone, one evaluate per individual."""
    make_toolbox = population_module._deap_toolbox
    evaluate_population = population_module._evaluate_deap

    def toolbox(p):  # noqa: ANN001, ANN202
        tb = make_toolbox(p)
        tb.register("clone", copy.deepcopy)
        strength = 0.0 if p.neutral else p.selection_strength
        tb.register("evaluate", _log_fitness_one, strength=strength)
        return tb

    def evaluate(pop, optimum, p, tb):  # noqa: ANN001, ANN202
        opt = optimum.tolist()
        for ind, fit in zip(pop, map(tb.evaluate, pop, [opt] * len(pop))):
            ind.fitness.values = fit
        return np.array(pop, dtype=float), np.array([ind.fitness.values[0] for ind in pop])

    population_module._deap_toolbox = toolbox
    population_module._evaluate_deap = evaluate
    try:
        yield
    finally:
        population_module._deap_toolbox = make_toolbox
        population_module._evaluate_deap = evaluate_population


def _engine(name: str) -> contextlib.AbstractContextManager:
    return deap_stock() if name == "deap_stock" else contextlib.nullcontext()


def _config(engine: str, size: int, dim: int = 8, gpt: int = 100) -> TraitsConfig:
    return TraitsConfig(
        model="population",
        dim=dim,
        population={
            "size": size,
            "founder_size": size // 4,
            "generations_per_time": gpt,
            "engine": "numpy" if engine == "numpy" else "deap",
        },
    )


def _star(branches: int, generations: int, gpt: int = 100) -> Phylogeny:
    length = generations / gpt
    return Phylogeny.from_newick("(" + ",".join(f"b{i}:{length}" for i in range(branches)) + ");")


def _cpu() -> float:
    """CPU seconds used so far by this process and its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _time(tree: Phylogeny, config: TraitsConfig, workers: int) -> float:
    t0 = time.perf_counter()
    evolve_population(tree, config, 1, workers=workers)
    return time.perf_counter() - t0


def pool_startup(cores: int) -> float:
    """Wall time of a near-empty run on ``cores`` spawned workers (their start-up cost)."""
    return _time(_star(cores, 1), _config("numpy", 10), cores)


def throughput(engine: str, size: int, branches: int, seconds: float) -> dict:
    """Individual-generations per second, serial and on all cores."""
    config = _config(engine, size)
    pilot_g = 5
    with _engine(engine):
        pilot = _time(_star(branches, pilot_g), config, 1)
    per_gen = pilot / (branches * pilot_g)
    g = int(np.clip(seconds / (per_gen * branches), 5, 20_000))
    tree = _star(branches, g)
    work = branches * g * size
    c0 = _cpu()
    with _engine(engine):
        serial = _time(tree, config, 1)
    c1 = _cpu()
    if engine == "deap_stock":  # the swap does not reach spawned workers
        parallel, c2 = serial, c1 + (c1 - c0)
    else:
        parallel = _time(tree, config, _cores())
        c2 = _cpu()
    return {
        "engine": engine,
        "size": size,
        "generations": branches * g,
        "serial": work / serial,
        "parallel": work / parallel,
        "serial_s": serial,
        "parallel_s": parallel,
        "cpu_ratio": (c2 - c1) / (c1 - c0),
    }


def scenario(engine: str, workers: int | None) -> dict:
    tree = grow_tree(TreeConfig(model="birth_death", n_species=32), np.random.default_rng(32))
    config = _config(engine, 200)
    t0 = time.perf_counter()
    with _engine(engine):
        res = evolve_population(tree, config, 7, workers=workers)
    wall = time.perf_counter() - t0
    gens = sum(res.generations.values())
    return {
        "engine": engine,
        "workers": "auto" if workers is None else workers,
        "nodes": len(res.traits),
        "generations": gens,
        "wall": wall,
        "rate": gens * 200 / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, skip deap_stock at 1,000")
    parser.add_argument("--seconds", type=float, default=None, help="serial seconds per cell")
    parser.add_argument("--branches", type=int, default=8)
    args = parser.parse_args()
    seconds = args.seconds or (0.5 if args.quick else 5.0)
    cores = _cores()
    _time(_star(2, 2), _config("deap", 10), 1)  # warm-up: imports, DEAP creator classes
    startup = pool_startup(cores) if cores > 1 else 0.0

    print(
        f"machine: {platform.processor() or platform.machine()}, {cores} cores available "
        f"(shared with other jobs: figures are lower bounds), Python {platform.python_version()}"
    )
    print(f"pool start-up ({cores} spawned workers, near-empty run): {startup:.2f} s")
    print()
    print(
        f"## Throughput (individual-generations / s; {args.branches} independent branches, "
        f"8 traits, stabilizing selection)"
    )
    print()
    print(
        f"| engine | population | generations | serial | all cores ({cores}) | speed-up "
        "| CPU time, parallel / serial |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for size in (100, 1000):
        for engine in ("deap_stock", "deap", "numpy"):
            if args.quick and engine == "deap_stock" and size == 1000:
                continue
            r = throughput(engine, size, args.branches, seconds)
            rows.append(r)
            print(
                f"| {engine} | {size:,} | {r['generations']:,} | {r['serial']:,.0f} | "
                f"{r['parallel']:,.0f} | {r['serial_s'] / r['parallel_s']:.2f}x | "
                f"{r['cpu_ratio']:.2f} |",
                flush=True,
            )
    print()
    for size in (100, 1000):
        by = {r["engine"]: r for r in rows if r["size"] == size}
        if "deap_stock" in by:
            stock = by["deap_stock"]["serial"]
            print(
                f"- population {size:,}: cheap clone + array evaluation = "
                f"{by['deap']['serial'] / stock:.1f}x over stock DEAP; "
                f"vectorised operators = {by['numpy']['serial'] / stock:.0f}x"
            )
    print()
    print(
        "## 32-species scenario (birth-death 1/0.2, population 200, 100 generations/time, "
        "8 traits; target < 60 s on 2 cores)"
    )
    print()
    print("| engine | workers | nodes | generations | wall (s) | individual-generations / s |")
    print("|---|---|---:|---:|---:|---:|")
    engines = ("numpy", "deap") if args.quick else ("numpy", "deap", "deap_stock")
    for engine in engines:
        for workers in (1, cores) if cores > 1 and engine != "deap_stock" else (1,):
            r = scenario(engine, workers)
            print(
                f"| {engine} | {r['workers']} | {r['nodes']} | {r['generations']:,} | "
                f"{r['wall']:.2f} | {r['rate']:,.0f} |",
                flush=True,
            )
    r = scenario("numpy", None)
    print(
        f"| numpy | auto | {r['nodes']} | {r['generations']:,} | {r['wall']:.2f} | "
        f"{r['rate']:,.0f} |"
    )


if __name__ == "__main__":
    main()
