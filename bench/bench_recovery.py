"""How much of the true tree does each method recover? MAE vs every baseline, per scenario.

For every scenario in ``scenarios/`` and every seed: simulate, train the AEs, fit the MAE,
analyse. Prints one table per scenario of normalised RF, quartet distance and cophenetic
Spearman (mean +- sd over seeds) for the MAE and every baseline, a table of the MAE's
generative scores (trait recovery, decoded-AE fidelity, interpolated ancestors; see
evosim/analysis/generative.py), then issue 11's targets on that scenario:

- MAE nRF <= the best data-only baseline (data_mean, data_distribution, pca) + 0.03,
  and <= raw_weights where it applies;
- trait R^2 from MAE latents >= from data means;
- decoded AEs: median MSE ratio to the species' own AE <= 1.25 (fitted species),
  <= 3 and below the nearest training species' AE (held-out species);
- the midpoint-decoded ancestor beats both sisters on the true parent's instances on
  average and in >= 80% of cherries.

Seeds replace the scenario's own seed (``seed = 1..n``). Each scenario is one sweep
(:mod:`evosim.sweep`: the scenario over its seeds, ``--set`` as fixed overrides), every
task a whole ``evosim run`` into ``--out``/SCENARIO/runs/...: one after another in this
process by default, or ``--jobs N`` at once on a local Ray instance (``evosim[sweep]``).
One torch and BLAS thread per task: the models are small, and on a shared machine extra
threads only wait on each other (see bench_simulate.py and bench_sweep.py). Stage times
are the run's (``checkpoints/timings.json``: writing files and figures included).

Usage::

    python bench/bench_recovery.py             # every scenario, 5 seeds
    python bench/bench_recovery.py --quick     # quickstart + circles, 2 seeds, fewer steps
    python bench/bench_recovery.py --scenarios quickstart --seeds 5
    python bench/bench_recovery.py --scenarios quickstart --set meta.latent=auto \
        --set meta.representation=aligned
    python bench/bench_recovery.py --json results.json
    python bench/bench_recovery.py --jobs 2 --out runs/bench_recovery   # on Ray, kept
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evosim import load_scenario  # noqa: E402
from evosim.errors import EvosimError  # noqa: E402
from evosim.scenario import Scenario  # noqa: E402
from evosim.sweep import Sweep, parse_sweep, run_sweep  # noqa: E402

COLUMNS = ("nrf", "quartet", "cophenetic_spearman")


def _override(dotted: str) -> tuple[str, object]:
    key, _, value = dotted.partition("=")
    if not _:
        raise SystemExit(f"--set wants section.field=value, got {dotted!r}")
    return key, yaml.safe_load(value)


def configure(base: Scenario, seeds: int, overrides: list[str], quick: bool) -> Sweep:
    """The scenario over seeds 1..n, with ``--set`` overrides, as a sweep."""
    data = base.to_dict()
    data["analysis"]["mantel_permutations"] = 99
    data["analysis"]["random_trees"] = 20
    if quick:
        data["autoencoder"]["steps"] = min(data["autoencoder"]["steps"], 800)
        data["meta"]["steps"] = min(data["meta"]["steps"], 600)
    grid = {key: [value] for key, value in map(_override, overrides)}
    text = yaml.safe_dump(
        {"name": base.name, "base": data, "grid": grid, "seeds": list(range(1, seeds + 1))}
    )
    return parse_sweep(text)


def collect(sweep: Sweep, out: Path) -> list[dict]:
    """Each task's scores, stage times, MAE code size and generative scores, read from its
    run directory."""
    runs = []
    for task in sweep.tasks():
        run_dir = out / task.run_dir
        metrics = json.loads((run_dir / "metrics.json").read_text())
        times = json.loads((run_dir / "checkpoints" / "timings.json").read_text())
        scores = {"mae": metrics["mae"], **metrics["baselines"]}
        runs.append(
            {
                "scores": scores,
                "times": times,
                "latent": metrics["meta"].get("latent"),
                "generative": metrics.get("generative", {}),
            }
        )
    return runs


def _ms(values: list[float | None]) -> str:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return "n/a"
    return f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def table(name: str, runs: list[dict]) -> str:
    methods = list(runs[0]["scores"])
    lines = [
        f"### {name} ({len(runs)} seeds)",
        "",
        "| method | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for m in methods:
        if any("not_applicable" in r["scores"][m] for r in runs):
            lines.append(f"| {m} | not applicable | | |")
            continue
        cells = [_ms([r["scores"][m][c] for r in runs]) for c in COLUMNS]
        label = "**MAE**" if m == "mae" else m
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    t = {k: np.mean([r["times"][k] for r in runs]) for k in runs[0]["times"]}
    lines += [
        "",
        "mean seconds per seed: "
        + ", ".join(f"{k} {v:.1f}" for k, v in t.items())
        + f"; MAE code size {sorted({r['latent'] for r in runs})}",
        "",
    ]
    return "\n".join(lines)


def _get(d: dict, *path: str) -> float | None:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d if isinstance(d, int | float) else None


#: The generative table: (column, path into report.generative).
GENERATIVE = (
    ("trait R2 MAE", ("trait_r2", "mae")),
    ("trait R2 data_mean", ("trait_r2", "data_mean")),
    ("trait R2 functional", ("trait_r2", "functional")),
    ("fit ratio (fitted)", ("fidelity", "train", "median")),
    ("fit ratio (held out)", ("fidelity", "heldout", "mae", "median")),
    ("fit ratio (held out, guess)", ("fidelity", "heldout", "mae_encoder_only", "median")),
    ("nearest AE", ("fidelity", "heldout", "nearest_training_ae", "median")),
    ("PCA weights", ("fidelity", "heldout", "pca_of_aligned_weights", "median")),
    ("midpoint beats sisters (MSE)", ("ancestors", "midpoint_beats_both_sisters", "mse")),
    ("midpoint beats sisters (MMD)", ("ancestors", "midpoint_beats_both_sisters", "mmd2")),
    ("midpoint MSE / best sister", None),
    (
        "midpoint beats decoded sisters (MSE)",
        ("ancestors", "midpoint_beats_both_decoded_sisters", "mse"),
    ),
    (
        "true-trait midpoint beats sisters",
        ("ancestors", "true_traits_midpoint_beats_both_sisters", "these_cherries"),
    ),
    ("midpoint beats avg weights (MSE)", ("ancestors", "midpoint_beats_average_weights", "mse")),
)


def generative_table(name: str, runs: list[dict]) -> str:
    """Mean +- sd over seeds of the generative scores (fidelity ratios are medians over species)."""
    if not any(r.get("generative") for r in runs):
        return ""
    lines = [
        f"generative scores, {name} (fit ratio: median over species of decoded-AE MSE / own AE's)",
        "",
        "| score | mean +- sd |",
        "|---|---:|",
    ]
    for label, path in GENERATIVE:
        if path is None:
            vals = []
            for r in runs:
                anc = r["generative"].get("ancestors", {})
                mse = anc.get("mse", {})
                if mse.get("best_sister"):
                    vals.append(mse["midpoint"] / mse["best_sister"])
        else:
            vals = [_get(r["generative"], *path) for r in runs]
        lines.append(f"| {label} | {_ms(vals)} |")
    return "\n".join(lines) + "\n"


def goals(runs: list[dict]) -> str:
    """Issue 11's targets on one scenario (means over seeds)."""

    def mean(m: str, c: str) -> float:
        vals = [r["scores"][m].get(c) for r in runs if m in r["scores"]]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else float("nan")

    def gmean(*path: str) -> float:
        vals = [_get(r.get("generative") or {}, *path) for r in runs]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else float("nan")

    nrf = mean("mae", "nrf")
    data = {m: mean(m, "nrf") for m in ("data_mean", "data_distribution", "pca")}
    best_name = min(data, key=lambda m: data[m] if np.isfinite(data[m]) else np.inf)
    checks = [
        (
            f"MAE nRF {nrf:.3f} <= best data-only ({best_name} {data[best_name]:.3f}) + 0.03",
            nrf <= data[best_name] + 0.03,
        )
    ]
    if all("not_applicable" not in r["scores"].get("raw_weights", {}) for r in runs):
        raw = mean("raw_weights", "nrf")
        checks.append((f"MAE nRF {nrf:.3f} <= raw_weights {raw:.3f}", nrf <= raw))
    r2, r2d = gmean("trait_r2", "mae"), gmean("trait_r2", "data_mean")
    checks.append((f"trait R2 MAE {r2:.3f} >= data means {r2d:.3f}", r2 >= r2d))
    tr = gmean("fidelity", "train", "median")
    ho = gmean("fidelity", "heldout", "mae", "median")
    near = gmean("fidelity", "heldout", "nearest_training_ae", "median")
    checks += [
        (f"fitted species decoded: median ratio {tr:.2f} <= 1.25", tr <= 1.25),
        (f"held-out species decoded: median ratio {ho:.2f} <= 3", ho <= 3),
        (f"held-out decoded {ho:.2f} below nearest training AE {near:.2f}", ho < near),
    ]
    wins = gmean("ancestors", "midpoint_beats_both_sisters", "mse")
    mid, best = gmean("ancestors", "mse", "midpoint"), gmean("ancestors", "mse", "best_sister")
    truth = gmean("ancestors", "true_traits_midpoint_beats_both_sisters", "these_cherries")
    checks += [
        (
            f"midpoint ancestor beats both sisters in {wins:.0%} of cherries (>= 80%; "
            f"the true traits' midpoint wins in {truth:.0%})",
            wins >= 0.8,
        ),
        (f"midpoint ancestor MSE {mid:.4g} below the better sister's {best:.4g}", mid < best),
    ]
    return "\n".join(f"- [{'x' if ok else ' '}] {text}" for text, ok in checks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="*", help="names in scenarios/ (default: all)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--quick", action="store_true", help="quickstart and circles, 2 seeds, fewer AE/MAE steps"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a scenario field for every run (repeatable)",
    )
    ap.add_argument("--json", help="also write every score to this file")
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once on a local Ray instance (default 1: no Ray)",
    )
    ap.add_argument("--out", help="keep the run directories here (default: a temporary folder)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = args.scenarios or sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))
    seeds = args.seeds
    if args.quick:
        names = args.scenarios or ["quickstart", "circles"]
        seeds = min(seeds, 2)
    print(
        f"# bench_recovery: {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, "
        f"seeds 1..{seeds}, overrides {args.set or 'none'}\n",
        flush=True,
    )
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_recovery."))
    executor = "ray" if args.jobs > 1 else "serial"
    if executor == "ray":
        import ray

        ray.init(address="local", num_cpus=args.jobs, include_dashboard=False, log_to_driver=False)
    results = {}
    try:
        for name in names:
            try:
                sweep = configure(
                    load_scenario(ROOT / "scenarios" / f"{name}.yaml"), seeds, args.set, args.quick
                )
            except EvosimError as exc:
                raise SystemExit(f"bench_recovery: {name}: {exc}") from None
            out = root / name
            shutil.rmtree(out, ignore_errors=True)
            outcome = run_sweep(
                sweep,
                out,
                jobs=args.jobs,
                executor=executor,
                gpus_per_task=1.0 if torch.cuda.is_available() else 0.0,
            )
            if outcome.failed:
                for row in outcome.failures:
                    print(f"  {name} seed {row['seed']}: {row['error']}", file=sys.stderr)
                raise SystemExit(f"bench_recovery: {outcome.failed} runs of {name} failed")
            runs = collect(sweep, out)
            for seed, r in zip(sweep.seeds, runs):
                print(
                    f"  {name} seed {seed}: MAE nrf {r['scores']['mae']['nrf']:.3f}",
                    file=sys.stderr,
                )
            results[name] = runs
            print(table(name, runs), flush=True)
            print(generative_table(name, runs), flush=True)
            print(goals(runs) + "\n", flush=True)
    finally:
        if executor == "ray":
            ray.shutdown()
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
