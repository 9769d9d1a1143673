"""Energy distances between many point clouds: pairwise (exact) against sliced features.

``meta.distance_target: behaviour`` keeps the energy distances between where each AE sends
the shared probes: one cloud of ``probes x ambient_dim`` points per AE. The pairwise form
(:func:`evosim.analysis.baselines.energy_distances`) does ``S^2 n^2`` point distances, so
for many clouds it subsamples each to ``n`` points (16 at 1,024 clouds and beyond) and
holds an ``[S, S]`` matrix. Sliced energy features
(:func:`evosim.analysis.baselines.sliced_energy_features`) read every point, cost time and
memory linear in ``S``, and give each cloud a row whose Euclidean distances approximate
the energy distances, so the MAE's minibatches compute their own.

For each number of clouds the table gives the seconds of each way, measured side by side
in one run, and each way's median relative error against the exact distances over every
point, on 300 seeded pairs of clouds (all pairs if fewer). Clouds are
Gaussian, 256 points in 32 dimensions (the quickstart's probes and ambient dimension),
with centres along a random walk and per-cloud anisotropic spreads. Run it alone.

``--worlds`` instead measures accuracy on the real target: for each bundled scenario and
seed it trains the bank, reconstructs the probes twice with every AE (replicate 0 of
each species) and sets the sliced distances, at three feature sizes, against the exact
pairwise energy distances over every point: median relative error, correlation, and the
neighbour-joining tree's nRF against the true tree next to the exact distances' own.
Quality figures only (safe to run beside other work).

    python bench/bench_sliced_energy.py --clouds 32 256 1024 4096
    python bench/bench_sliced_energy.py --worlds outline identify circles quickstart --seeds 1 2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evosim.analysis.baselines import (  # noqa: E402
    energy_distances,
    energy_subsample_size,
    euclidean,
    sliced_energy_features,
)

#: Pairs of clouds on which the errors are measured.
PAIRS = 300


def clouds(s: int, n: int, d: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    centres = np.cumsum(0.15 * g.standard_normal((s, d)), axis=0)
    scale = g.uniform(0.5, 1.5, (s, 1, d))
    return (g.standard_normal((s, n, d)) * scale + centres[:, None, :]).astype(np.float32)


def exact_pairs(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, distance)``: the energy distance over every point of sampled pairs."""
    i, j = np.triu_indices(len(x), 1)
    if len(i) > PAIRS:
        pick = np.random.default_rng(seed).choice(len(i), PAIRS, replace=False)
        i, j = i[pick], j[pick]
    every = np.random.default_rng(0)  # unused: no subsample when n_max is every point
    d = [energy_distances(x[[a, b]], every, n_max=x.shape[1])[0, 1] for a, b in zip(i, j)]
    return i, j, np.asarray(d, dtype=np.float64)


def median_relative_error(d: np.ndarray, pairs: tuple[np.ndarray, ...]) -> float:
    i, j, exact = pairs
    return float(np.median(np.abs(d[i, j] / exact - 1)))


#: Feature sizes (directions, cells) compared on the real target; the default is the middle.
SIZES = ((64, 64), (128, 64), (256, 128))


def world_accuracy(names: list[str], seeds: list[int]) -> None:
    import yaml

    import evosim
    from evosim.meta.behaviour import _member_chunks, behaviour_targets
    from evosim.meta.representation import make_probes
    from evosim.phylo.compare import robinson_foulds
    from evosim.phylo.inference import neighbor_joining
    from evosim.scenario import parse_scenario
    from evosim.seeding import rng as make_rng

    head = " | ".join(f"{a} x {b}: error / correlation / nRF" for a, b in SIZES)
    print(f"| scenario | seed | AEs | exact: nRF | {head} |")
    print("|---|---:|---:|---:|" + "---|" * len(SIZES))
    for name in names:
        for seed in seeds:
            data = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())
            data["seed"] = seed
            sc = parse_scenario(yaml.safe_dump(data))
            sim = evosim.simulate(sc)
            bank = evosim.train_autoencoders(sim, sc.autoencoder, progress=False)
            species, truth = list(bank.species), sim.extant_tree()
            probes = make_probes(bank, sc.meta.probes, sc.meta.off_manifold_fraction, seed)
            once = behaviour_targets(bank, probes, seed=seed).probe_targets
            twice = torch.empty_like(once)
            with torch.no_grad():
                for group, local, glob in _member_chunks(bank):
                    twice[glob] = group.reconstruct(once[glob], local)
            x = twice.numpy()[:: int(bank.replicates)]
            exact = energy_distances(x, np.random.default_rng(0), n_max=x.shape[1])

            def nrf(d: np.ndarray, species: list = species, truth=truth) -> float:
                return float(robinson_foulds(neighbor_joining(d, species), truth, normalized=True))

            iu = np.triu_indices(len(x), 1)
            cells = []
            for n_dir, n_cells in SIZES:
                # the MAE's own stream: the default size is exactly what it keeps
                gen = make_rng(seed, "mae-distance")
                rows = sliced_energy_features(x, gen, n_directions=n_dir, n_cells=n_cells)
                d = euclidean(rows.astype(np.float64))
                err = np.median(np.abs(d[iu] / exact[iu] - 1))
                cor = np.corrcoef(d[iu], exact[iu])[0, 1]
                cells.append(f"{100 * err:.1f}% / {cor:.4f} / {nrf(d):.3f}")
            print(
                f"| {name} | {seed} | {len(x)} | {nrf(exact):.3f} | {' | '.join(cells)} |",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clouds", type=int, nargs="+", default=[32, 256, 1024, 4096])
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--worlds", nargs="+", help="bundled scenarios: accuracy on the real target")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if args.worlds:
        print(f"# bench_sliced_energy --worlds: {platform.machine()}, torch {torch.__version__}\n")
        world_accuracy(args.worlds, args.seeds)
        return
    print(
        f"# bench_sliced_energy: {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; clouds of "
        f"{args.points} points in {args.dim} dimensions\n"
    )
    print(
        "| clouds | pairwise: points per cloud | pairwise s | pairwise error | "
        "sliced s | sliced error | sliced / pairwise time | memory pairwise / sliced |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in args.clouds:
        x = clouds(s, args.points, args.dim, seed=s)
        t = time.perf_counter()
        pair = energy_distances(x, np.random.default_rng(0))
        t_pair = time.perf_counter() - t
        n_sub = energy_subsample_size(s)
        t = time.perf_counter()
        rows = sliced_energy_features(x, np.random.default_rng(1))
        sliced = euclidean(rows.astype(np.float64))
        t_sliced = time.perf_counter() - t
        exact = exact_pairs(x, seed=s)
        err_pair = f"{median_relative_error(pair, exact):.3f}"
        err_sliced = f"{median_relative_error(sliced, exact):.3f}"
        mem_pair = s * s * 8
        mem_sliced = rows.nbytes
        print(
            f"| {s} | {min(n_sub, args.points)} | {t_pair:.2f} | {err_pair} | {t_sliced:.2f} | "
            f"{err_sliced} | {t_sliced / t_pair:.2f} | "
            f"{mem_pair / 2**20:.1f} MiB / {mem_sliced / 2**20:.1f} MiB |",
            flush=True,
        )
    print(
        "\nsliced s includes the [S, S] distances from the rows (the MAE never forms them: "
        "each minibatch of at most 64 members computes its own)."
    )


if __name__ == "__main__":
    main()
