"""How long does the MAE take to fit as species grow? One table, sizes side by side.

Trains quickstart's AEs once (32 species), then tiles them into banks of S species (each
copy's parameters perturbed by 1% of their spread, so no two species are equal) and fits
the MAE with quickstart's meta settings. Reports wall and CPU seconds of the fit, the
optimisation steps taken, and seconds per species. As in the pipeline, the set-up
(representation, frame, targets) uses torch's threads and the optimiser steps one
thread. Timing only: the tiled species are not a world to score.

Usage::

    python bench/bench_meta.py            # S = 32, 256, 1024
    python bench/bench_meta.py --quick    # S = 32, 128
    python bench/bench_meta.py --sizes 32 1024 4096
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evosim import load_scenario  # noqa: E402
from evosim.meta import fit_meta_autoencoder  # noqa: E402
from evosim.simulation import simulate  # noqa: E402
from evosim.train import AEBank, train_autoencoders  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def tiled(bank: AEBank, s: int, seed: int = 0) -> AEBank:
    """A bank of ``s`` species: copies of ``bank``'s AEs with 1% parameter noise."""
    g = np.random.default_rng(seed)
    reps = -(-s // len(bank.species))
    params = {}
    for k, v in bank.params.items():
        x = v.numpy()
        t = np.concatenate([x] * reps)[:s]
        sd = x.std(axis=0, keepdims=True)
        params[k] = torch.as_tensor(t + 0.01 * sd * g.standard_normal(t.shape), dtype=torch.float32)
    return AEBank(
        bank.spec,
        params,
        [f"t{i}" for i in range(s)],
        reference_inputs=bank.reference_inputs,
        info=dict(bank.info),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[32, 256, 1024])
    ap.add_argument("--quick", action="store_true", help="S = 32 and 128 only")
    args = ap.parse_args(argv)
    sizes = [32, 128] if args.quick else args.sizes
    sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    sc = sc.model_copy(
        update={
            "autoencoder": sc.autoencoder.model_copy(update={"device": "cpu"}),
            "meta": sc.meta.model_copy(update={"device": "cpu"}),
        }
    )
    bank = train_autoencoders(simulate(sc), sc.autoencoder, progress=False)
    print(
        f"# bench_meta: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"quickstart meta settings, {torch.get_num_threads()} threads (steps on 1)\n"
    )
    print("| species | wall (s) | CPU (s) | steps | ms per step | wall per species (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        b = tiled(bank, s)
        t, c = time.perf_counter(), _cpu()
        meta = fit_meta_autoencoder(b, sc.meta, progress=False)
        wall, cpu = time.perf_counter() - t, _cpu() - c
        steps = int(meta.info["steps"])
        print(
            f"| {s:,} | {wall:.1f} | {cpu:.1f} | {steps:,} | {1000 * wall / steps:.1f} | "
            f"{wall / s:.3f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
