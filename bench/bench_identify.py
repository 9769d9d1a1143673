"""Benchmark the AE bank as a species identifier against two classical classifiers.

Quality (``--scenarios``, default quickstart, ou and outline; 5 seeds each): each seed
simulates the scenario's world with that seed, trains its AE bank, and runs
:func:`evosim.analysis.identification.identification_scores`: fresh test specimens of
every species (64 each) are identified by the AE bank (smallest reconstruction error),
by the nearest class mean, and by a Gaussian classifier (per-species mean and
Ledoit-Wolf shrunk covariance, fitted on the same training instances the AEs saw plus
their validation split); for novelty, a quarter of the species are held out entirely and
the AE bank's novelty score (robust z of the best log error) is compared with the
Gaussian classifier's Mahalanobis distance by AUROC. The table gives mean +- sd over
seeds, and the AE bank's accuracy minus the Gaussian's with the seeds it won.

Cost (``--timing``): identification of 100,000 instances against 1,024 species' AEs
(the quickstart architecture, 32-64-2) in one batched pass, CPU time
(``time.process_time``) and wall time; on CUDA too when a GPU is present. The AEs are
untrained (the cost does not depend on the weights).

Usage::

    python bench/bench_identify.py                 # quality, 3 scenarios x 5 seeds, and timing
    python bench/bench_identify.py --quick         # 1 seed, 300 steps, 10k x 128 timing
    python bench/bench_identify.py --timing-only --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads"


def quality(scenarios: list[str], seeds: list[int], steps: int | None) -> list[dict]:
    from evosim import load_scenario, simulate
    from evosim.analysis.identification import identification_scores
    from evosim.train import train_autoencoders

    rows = []
    for name in scenarios:
        path = Path(name) if Path(name).exists() else ROOT / "scenarios" / f"{name}.yaml"
        base = load_scenario(path)
        for seed in seeds:
            sc = base.model_copy(update={"seed": seed})
            if steps is not None:
                sc = sc.model_copy(
                    update={"autoencoder": sc.autoencoder.model_copy(update={"steps": steps})}
                )
            sc = sc.model_copy(
                update={"autoencoder": sc.autoencoder.model_copy(update={"device": "cpu"})}
            )
            t0 = time.perf_counter()
            sim = simulate(sc, progress=False)
            bank = train_autoencoders(sim, sc.autoencoder, progress=False)
            t1 = time.perf_counter()
            res = identification_scores(sim, bank, seed=seed, device="cpu")
            t2 = time.perf_counter()
            g = res["baselines"]["gaussian"]
            row = {
                "scenario": sc.name,
                "seed": seed,
                "family": sc.species.family,
                "variant": sc.autoencoder.variant,
                "species": len(sim.species),
                "ae": res["accuracy"],
                "nearest_mean": res["baselines"]["nearest_mean"]["accuracy"],
                "gaussian": g["accuracy"],
                "ae_auroc": res["novelty"].get("auroc", float("nan")),
                "gauss_auroc": g.get("novelty_auroc", float("nan")),
                "ece": res["ece"],
                "confusion_rho": res["confusion_patristic_spearman"],
                "train_s": t1 - t0,
                "identify_s": t2 - t1,
            }
            rows.append(row)
            print(
                f"  {sc.name} seed {seed}: AE {row['ae']:.3f}  NCM {row['nearest_mean']:.3f}  "
                f"Gauss {row['gaussian']:.3f}  AUROC AE {row['ae_auroc']:.3f} "
                f"Gauss {row['gauss_auroc']:.3f}  ({row['train_s']:.0f}+{row['identify_s']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return rows


def _ms(v: np.ndarray) -> str:
    """Mean +- sd over the seeds where the value is defined (their count if not all)."""
    v = np.asarray(v, dtype=np.float64)
    ok = v[np.isfinite(v)]
    if len(ok) == 0:
        return "n/a"
    text = f"{ok.mean():.3f} +- {ok.std(ddof=1):.3f}" if len(ok) > 1 else f"{ok.mean():.3f}"
    return text if len(ok) == len(v) else f"{text} ({len(ok)} seeds)"


def quality_table(rows: list[dict]) -> str:
    out = [
        "| scenario | family | AE variant | species | seeds | AE bank | nearest mean | "
        "Gaussian (LW) | AE - Gaussian (seeds AE >=) | novelty AUROC AE | AUROC Mahalanobis | "
        "ECE | confusion-distance rho |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["scenario"] for r in rows):
        rs = [r for r in rows if r["scenario"] == name]

        def col(k: str, rs: list[dict] = rs) -> np.ndarray:
            return np.asarray([r[k] for r in rs], dtype=np.float64)

        diff = col("ae") - col("gaussian")
        out.append(
            f"| {name} | {rs[0]['family']} | {rs[0]['variant']} | {rs[0]['species']} | {len(rs)} | "
            f"{_ms(col('ae'))} | {_ms(col('nearest_mean'))} | {_ms(col('gaussian'))} | "
            f"{diff.mean():+.3f} ({int((diff >= 0).sum())}/{len(rs)}) | {_ms(col('ae_auroc'))} | "
            f"{_ms(col('gauss_auroc'))} | {_ms(col('ece'))} | {_ms(col('confusion_rho'))} |"
        )
    return "\n".join(out)


def timing(n_instances: int, n_species: int, devices: list[str]) -> str:
    from evosim.train import AEBank, AESpec
    from evosim.train.identify import Calibration, identify
    from evosim.train.model import init_params

    spec = AESpec(input_dim=32, hidden=(64,), latent=2)
    names = [f"s{i}" for i in range(n_species)]
    bank = AEBank(spec, init_params(spec, 0, names, [0] * n_species, "independent"), names)
    cal = Calibration(names, 1.0, np.zeros(n_species), np.ones(n_species), np.ones(n_species))
    x = np.random.default_rng(0).standard_normal((n_instances, 32)).astype(np.float32)
    out = [
        "| device | instances | species | CPU s | wall s | instance-AE evaluations / s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for dev in devices:
        identify(bank, x[:256], cal, device=dev)  # warm up (device copies, allocator)
        if dev == "cuda":
            torch.cuda.synchronize()
        c0, w0 = time.process_time(), time.perf_counter()
        identify(bank, x, cal, device=dev)
        if dev == "cuda":
            torch.cuda.synchronize()
        c1, w1 = time.process_time(), time.perf_counter()
        rate = n_instances * n_species / (w1 - w0)
        out.append(
            f"| {dev} | {n_instances:,} | {n_species:,} | {c1 - c0:.1f} | {w1 - w0:.1f} | "
            f"{rate:.3g} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 300 AE steps, small timing")
    ap.add_argument("--scenarios", nargs="+", default=["quickstart", "ou", "outline"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=None, help="override autoencoder.steps")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--timing-only", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = list(range(1, 2 if args.quick else args.seeds + 1))
    steps = 300 if args.quick and args.steps is None else args.steps
    print(f"machine: {_machine()}\n")
    if not args.timing_only:
        rows = quality(args.scenarios, seeds, steps)
        print("Identification accuracy on fresh specimens (64 per species), novelty AUROC")
        print(f"(25% of species held out), mean +- sd over seeds {seeds}:\n")
        print(quality_table(rows))
        print()
    if not args.no_timing:
        n, s = (10_000, 128) if args.quick else (100_000, 1024)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        print("Identification cost, one batched pass (AE 32-64-2, chunked over instances):\n")
        print(timing(n, s, devices))


if __name__ == "__main__":
    main()
