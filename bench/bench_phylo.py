"""Benchmarks for evosim.phylo against scikit-bio and DendroPy; prints markdown tables.

    python bench/bench_phylo.py            # full sizes (several minutes: DendroPy's
                                           # birth_death_tree at 10,000 tips is slow)
    python bench/bench_phylo.py --quick    # small sizes, seconds
    python bench/bench_phylo.py --parts nj rf   # only those tables

Times are wall-clock seconds, the minimum over ``--repeats`` runs (one run for the slow
DendroPy simulation). "speed-up" is the other tool's time divided by ours. Inputs are
identical for both sides. NJ runs on two inputs: distances of a Yule tree plus 5% noise
(near-additive) and Euclidean distances of random 16-D points (far from additive, where
search bounds help least). Robinson-Foulds is timed on parsed trees and, separately,
including the parsing of both Newick strings.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time

import numpy as np


def _best(repeats: int, fn, *args, **kwargs) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import dendropy
    import skbio

    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, scikit-bio {skbio.__version__}, DendroPy {dendropy.__version__}"
    )


def _nj_inputs(n: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """Tree-like (Yule distances + 5% noise) and random-point (16-D Euclidean) matrices."""
    from scipy.spatial.distance import pdist, squareform

    from evosim.phylo import yule

    rng = np.random.default_rng(n)
    labels, D = yule(1.0, n, rng=rng).patristic_distances()
    noise = rng.uniform(0.0, 0.05 * D.mean(), D.shape)  # realistic: not exactly additive
    D = D + (noise + noise.T)
    np.fill_diagonal(D, 0.0)
    P = squareform(pdist(rng.standard_normal((n, 16))))  # far from any tree metric
    return {"tree-like": (labels, D), "random points": (labels, P)}


def bench_nj(sizes: list[int], repeats: int) -> list[str]:
    from skbio import DistanceMatrix
    from skbio.tree import nj as skbio_nj

    from evosim.phylo import Phylogeny, neighbor_joining, robinson_foulds

    rows = [
        "| taxa | input | evosim NJ (s) | scikit-bio nj (s) | speed-up | same tree |",
        "|---:|---|---:|---:|---:|:---:|",
    ]
    for n in sizes:
        for kind, (labels, D) in _nj_inputs(n).items():
            dm = DistanceMatrix(D, labels)
            reps = repeats if n <= 1000 else max(1, repeats // 2)
            ours = _best(reps, neighbor_joining, D, labels)
            theirs = _best(reps, skbio_nj, dm)
            same = robinson_foulds(
                neighbor_joining(D, labels), Phylogeny.from_newick(str(skbio_nj(dm)).strip())
            )
            rows.append(
                f"| {n:,} | {kind} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f}x | "
                f"{'yes' if same == 0 else f'RF={same:g}'} |"
            )
    return rows


def bench_rf(n: int, repeats: int) -> list[str]:
    import dendropy
    from dendropy.calculate import treecompare

    from evosim.phylo import Phylogeny, robinson_foulds, yule

    rng = np.random.default_rng(1)
    a, b = yule(1.0, n, rng=rng), yule(1.0, n, rng=rng)
    na, nb = a.to_newick(), b.to_newick()
    kw = dict(schema="newick", rooting="force-unrooted")

    def ours_parsed() -> float:
        return robinson_foulds(Phylogeny.from_newick(na), Phylogeny.from_newick(nb))

    def theirs_parsed() -> float:
        tns = dendropy.TaxonNamespace()
        da = dendropy.Tree.get(data=na, taxon_namespace=tns, **kw)
        db = dendropy.Tree.get(data=nb, taxon_namespace=tns, **kw)
        return treecompare.symmetric_difference(da, db)

    tns = dendropy.TaxonNamespace()
    da = dendropy.Tree.get(data=na, taxon_namespace=tns, **kw)
    db = dendropy.Tree.get(data=nb, taxon_namespace=tns, **kw)
    pa, pb = Phylogeny.from_newick(na), Phylogeny.from_newick(nb)
    robinson_foulds(pa, pb)  # arrays built once, as they are for any tree in use
    ours = _best(repeats, robinson_foulds, pa, pb)
    # symmetric_difference re-encodes the bipartitions of both trees on every call
    theirs = _best(repeats, treecompare.symmetric_difference, da, db)
    ours_p = _best(repeats, ours_parsed)
    theirs_p = _best(max(1, repeats // 2), theirs_parsed)
    agree = ours_parsed() == theirs_parsed() == robinson_foulds(a, b)
    return [
        "| leaves | what is timed | evosim (s) | DendroPy (s) | speed-up | equal |",
        "|---:|---|---:|---:|---:|:---:|",
        f"| {n:,} | RF of two parsed trees | {ours:.4f} | {theirs:.3f} | {theirs / ours:.1f}x | "
        f"{'yes' if agree else 'NO'} |",
        f"| {n:,} | parse two Newick strings + RF | {ours_p:.3f} | {theirs_p:.3f} | "
        f"{theirs_p / ours_p:.1f}x | {'yes' if agree else 'NO'} |",
    ]


def bench_birth_death(n: int, repeats: int, birth: float, death: float) -> list[str]:
    from dendropy.simulate import treesim

    from evosim.phylo import birth_death

    rng = np.random.default_rng(2)
    ours = _best(repeats, birth_death, birth, death, n, rng=rng)
    theirs = _best(
        1,
        treesim.birth_death_tree,
        birth_rate=birth,
        death_rate=death,
        num_extant_tips=n,
        rng=random.Random(2),
    )
    return [
        "| extant species | evosim birth_death (s) | DendroPy birth_death_tree (s) | speed-up |",
        "|---:|---:|---:|---:|",
        f"| {n:,} | {ours:.3f} | {theirs:.2f} | {theirs / ours:.0f}x |",
    ]


def bench_growth(sizes: list[int], repeats: int, birth: float, death: float) -> list[str]:
    from evosim.phylo import birth_death, coalescent, yule

    rows = [
        "| extant species | yule (s) | birth_death (s) | coalescent (s) | birth_death us/species |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        rng = np.random.default_rng(n)
        reps = repeats if n <= 10_000 else 1
        ty = _best(reps, yule, birth, n, rng=rng)
        tb = _best(reps, birth_death, birth, death, n, rng=rng)
        tc = _best(reps, coalescent, n, 1.0, rng=rng)
        rows.append(f"| {n:,} | {ty:.3f} | {tb:.3f} | {tc:.3f} | {1e6 * tb / n:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["nj", "rf", "birth_death", "growth"],
        default=["nj", "rf", "birth_death", "growth"],
        help="which tables (default: all; birth_death at 10,000 tips takes DendroPy minutes)",
    )
    args = parser.parse_args()
    parts = set(args.parts)
    quick = args.quick
    birth, death = 1.0, 0.2
    nj_sizes = [100, 250] if quick else [250, 1000, 4000]
    rf_n = 1000 if quick else 10_000
    bd_n = 1000 if quick else 10_000
    growth = [1000, 10_000] if quick else [1000, 10_000, 100_000]

    print(f"Machine: {_machine()}\n", flush=True)
    if "nj" in parts:
        print(f"### Neighbor joining (min of {args.repeats}; half as many above 1,000 taxa)\n")
        print("\n".join(bench_nj(nj_sizes, args.repeats)) + "\n", flush=True)
    if "rf" in parts:
        print("### Robinson-Foulds: two independent Yule trees, unrooted\n")
        print("\n".join(bench_rf(rf_n, args.repeats)) + "\n", flush=True)
    if "birth_death" in parts:
        print(f"### Birth-death tree (birth {birth}, death {death}); DendroPy timed once\n")
        print("\n".join(bench_birth_death(bd_n, args.repeats, birth, death)) + "\n", flush=True)
    if "growth" in parts:
        print(f"### Growth scaling (birth {birth}, death {death}, coalescent N = 1)\n")
        print("\n".join(bench_growth(growth, args.repeats, birth, death)), flush=True)


if __name__ == "__main__":
    main()
