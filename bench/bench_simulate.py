"""Benchmark the simulator: time and peak memory per stage, from 1,000 to 100,000 species.

World: birth-death tree (birth 1, death 0.2), 16 Brownian traits, development family with
256 instances of D = 64 per species (float32). Each world size runs in a fresh process so
its peak resident memory (``VmHWM``; ``ru_maxrss`` off Linux) is its own; the peak is read
after every stage (it only grows, so each column is the peak up to and including that stage).

Also times the trait-evolution step against a straightforward per-node Python loop (the
textbook recursion, vectorised over traits only) on the same tree.

BLAS threads. Each species' instances come from small matrix products (256 x 64 x 64);
a multithreaded BLAS gains nothing on them and, on a machine whose cores are busy with
other work, its threads wait on each other (measured here: 48 ms per species with two
OpenBLAS threads under load vs 2.2 ms with one). The worker processes therefore run with
``OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1`` unless ``--blas-threads`` says
otherwise.

Usage::

    python bench/bench_simulate.py            # 1k, 10k, 100k species
    python bench/bench_simulate.py --quick    # 1k, 10k
    python bench/bench_simulate.py --sizes 1000 5000 --instances 64

At 100,000 species the instance array alone is 100,000 x 256 x 64 x 4 B = 6.6 GB; pass
``--stream-above N`` to sample (and time) instances species by species without keeping
them for worlds larger than N species (the memory column then excludes the array).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np


def _rss_mb() -> float:
    # VmHWM is this process image's peak; Linux's ru_maxrss also keeps the peak of the
    # process that forked it, from before exec.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def naive_brownian(tree, dim: int, sigma: float, rng: np.random.Generator) -> dict:  # noqa: ANN001
    """The straightforward per-node loop: x[child] = x[parent] + sigma sqrt(t) Z."""
    x = {}
    for node in tree.preorder():
        parent = tree.parent(node)
        if parent is None:
            x[node] = np.zeros(dim)
        else:
            x[node] = x[parent] + sigma * np.sqrt(tree.length(node)) * rng.standard_normal(dim)
    return x


def run_one(n: int, instances: int, stream: bool, loop_max: int) -> dict:
    """One world size, in this process."""
    from evosim import seeding
    from evosim.evolve import evolve_traits
    from evosim.phylo import grow_tree
    from evosim.scenario import Scenario
    from evosim.species import make_family

    sc = Scenario(
        seed=1,
        tree=dict(model="birth_death", n_species=n, birth_rate=1.0, death_rate=0.2),
        traits=dict(model="brownian", dim=16),
        species=dict(family="development", instances=instances, ambient_dim=64),
    )
    out: dict = {"species": n, "rss_start_mb": _rss_mb()}
    t0 = time.perf_counter()
    tree = grow_tree(sc.tree, seeding.rng(sc.seed, "tree"))
    out["tree_s"] = time.perf_counter() - t0
    out["tree_mb"] = _rss_mb()
    out["nodes"] = len(tree.graph)

    t0 = time.perf_counter()
    traits = evolve_traits(tree, sc.traits, seeding.rng(sc.seed, "traits"))
    out["traits_s"] = time.perf_counter() - t0
    out["traits_mb"] = _rss_mb()

    # The vectorised step without flattening the tree (the propagate kernel alone).
    from evosim.evolve.models import _brownian
    from evosim.evolve.propagate import tree_arrays

    t0 = time.perf_counter()
    arr = tree_arrays(tree)
    out["flatten_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _brownian(arr, 16, 1.0, np.zeros(16), None, np.random.default_rng(0))
    out["kernel_s"] = time.perf_counter() - t0
    if n <= loop_max:
        t0 = time.perf_counter()
        naive_brownian(tree, 16, 1.0, np.random.default_rng(0))
        out["loop_s"] = time.perf_counter() - t0

    extant = tree.extant_tree()
    species = extant.leaves
    family = make_family(sc.species, sc.traits.dim, sc.seed)
    t0 = time.perf_counter()
    if stream:
        checksum = 0.0
        for name in species:
            checksum += float(family.instances(name, traits[name])[0, 0])
        out["instances_stored"] = False
    else:
        from evosim.simulation import _sample_instances

        x = _sample_instances(family, species, traits, None, progress=False)
        out["instances_stored"] = True
        out["instances_gb"] = x.nbytes / 1e9
    out["instances_s"] = time.perf_counter() - t0
    out["instances_mb"] = _rss_mb()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k species only")
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    ap.add_argument("--instances", type=int, default=256)
    ap.add_argument(
        "--stream-above",
        type=int,
        default=None,
        help="do not keep instances of worlds larger than this",
    )
    ap.add_argument(
        "--loop-max",
        type=int,
        default=100_000,
        help="largest world to run the per-node Python loop on",
    )
    ap.add_argument(
        "--blas-threads", type=int, default=1, help="BLAS threads in the worker processes"
    )
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one is not None:  # child process
        stream = args.stream_above is not None and args.one > args.stream_above
        print(json.dumps(run_one(args.one, args.instances, stream, args.loop_max)))
        return

    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    rows = []
    for n in sizes:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--instances",
            str(args.instances),
            "--loop-max",
            str(args.loop_max),
        ]
        if args.stream_above is not None:
            cmd += ["--stream-above", str(args.stream_above)]
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.blas_threads)
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if res.returncode != 0:
            print(f"{n} species: failed (exit {res.returncode}): {res.stderr.strip()[-500:]}")
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))

    cpu = platform.processor() or platform.machine()
    print(
        f"# bench_simulate: {platform.node()} {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"{args.blas_threads} BLAS thread(s), load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"# birth-death tree (b=1, d=0.2), 16 Brownian traits, development family, "
        f"{args.instances} instances x D=64 float32; times in s, peak RSS in MB"
    )
    header = (
        f"{'species':>8} {'nodes':>7} | {'tree s':>7} {'traits s':>8} {'inst s':>8} "
        f"{'total s':>8} | {'RSS tree':>8} {'+traits':>8} {'+inst':>8} | "
        f"{'inst GB':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        total = r["tree_s"] + r["traits_s"] + r["instances_s"]
        gb = f"{r['instances_gb']:.2f}" if r["instances_stored"] else "stream"
        print(
            f"{r['species']:>8} {r['nodes']:>7} | {r['tree_s']:>7.2f} {r['traits_s']:>8.3f} "
            f"{r['instances_s']:>8.2f} {total:>8.2f} | {r['tree_mb']:>8.0f} "
            f"{r['traits_mb']:>8.0f} {r['instances_mb']:>8.0f} | {gb:>7}"
        )
    print()
    print("# trait evolution (16 traits): vectorised vs per-node Python loop")
    header = (
        f"{'species':>8} {'nodes':>7} | {'evolve_traits s':>15} {'(flatten':>9} "
        f"{'+ kernel)':>9} | {'loop s':>8} | {'loop/evolve':>11} {'loop/kernel':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        loop = r.get("loop_s")
        ratio = f"{loop / r['traits_s']:>11.1f}" if loop else f"{'-':>11}"
        kratio = f"{loop / r['kernel_s']:>11.0f}" if loop else f"{'-':>11}"
        ls = f"{loop:>8.2f}" if loop else f"{'-':>8}"
        print(
            f"{r['species']:>8} {r['nodes']:>7} | {r['traits_s']:>15.3f} {r['flatten_s']:>9.3f} "
            f"{r['kernel_s']:>9.4f} | {ls} | {ratio} {kratio}"
        )


if __name__ == "__main__":
    main()
