"""Archetypes on the trade-off world: recovery of the true task optima, method by method.

For each seed of ``scenarios/tradeoff.yaml`` (3 tasks): simulate, train the AEs, and score
each method's archetypes against the true task optima (``evosim.analysis.archetypes``:
positions read off by regressing the species' true traits on the method's weights,
matched to the optima by optimal assignment, distance in units of the species' trait
spread; 0 is perfect):

- ``aa_traits``: linear AA on the species' true mean traits (the oracle: the ceiling),
- ``aa_data_mean``: linear AA on each species' mean instance,
- ``aa_raw_weights``: linear AA on each species' flattened AE parameters,
- ``mae``: the MAE's own ``archetype_weights``, fitted with ``meta.prior: archetypal`` and
  as many archetypes as tasks (code size tasks - 1).

It also reports tree recovery (nRF of NJ on the MAE latents against the true tree) with
the default MAE (``meta.prior: none``, the default code size) and with ``meta.prior:
archetypal``, and checks the issue's goals:
the MAE within 1.5x of ``aa_traits`` and below ``aa_data_mean``; the archetypal prior
costing at most 0.05 nRF.

Seeds replace the scenario's own (``seed = 1..n``); torch and BLAS run single-threaded.

Usage::

    python bench/bench_archetypes.py            # 5 seeds
    python bench/bench_archetypes.py --quick    # 2 seeds, fewer AE/MAE steps
    python bench/bench_archetypes.py --json archetypes.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evosim import load_scenario  # noqa: E402
from evosim.analysis.archetypes import (  # noqa: E402
    ARCHETYPE_BASELINES,
    archetype_baselines,
    archetype_recovery,
)
from evosim.analysis.metrics import euclidean  # noqa: E402
from evosim.meta import fit_meta_autoencoder  # noqa: E402
from evosim.phylo import neighbor_joining, robinson_foulds  # noqa: E402
from evosim.scenario import MetaConfig, Scenario  # noqa: E402
from evosim.simulation import simulate  # noqa: E402
from evosim.train import train_autoencoders  # noqa: E402


def configure(base: Scenario, seed: int, quick: bool) -> Scenario:
    data = base.to_dict()
    data["seed"] = seed
    data["autoencoder"]["device"] = "auto"
    data["meta"]["device"] = "auto"
    if quick:
        data["autoencoder"]["steps"] = min(data["autoencoder"]["steps"], 500)
        data["meta"]["steps"] = min(data["meta"]["steps"], 400)
    return Scenario.model_validate(data)


def meta_config(sc: Scenario, prior: str) -> MetaConfig:
    """The scenario's MAE with ``prior``: archetypal with one archetype per task, or the
    default prior and code size."""
    data = sc.meta.model_dump()
    if prior == "archetypal":
        data.update(prior="archetypal", archetypes=sc.traits.tasks, latent=sc.traits.tasks - 1)
    else:
        data.update(prior="none", latent=MetaConfig.model_fields["latent"].default)
    return MetaConfig.model_validate(data)


def tree_nrf(meta, sim) -> float:  # noqa: ANN001
    species = list(meta.species)
    nj = neighbor_joining(euclidean(meta.latents), species)
    return float(robinson_foulds(sim.extant_tree(), nj, normalized=True, rooted=False))


def run_one(sc: Scenario) -> dict:
    times: dict[str, float] = {}
    t = time.perf_counter()
    sim = simulate(sc)
    times["simulate"] = time.perf_counter() - t
    t = time.perf_counter()
    bank = train_autoencoders(sim, sc.autoencoder, progress=False)
    times["train"] = time.perf_counter() - t
    t = time.perf_counter()
    scores = archetype_baselines(sim, bank)
    times["linear_aa"] = time.perf_counter() - t
    nrf = {}
    for prior in ("none", "archetypal"):
        t = time.perf_counter()
        meta = fit_meta_autoencoder(bank, meta_config(sc, prior), seed=sc.seed, progress=False)
        times[f"mae_{prior}"] = time.perf_counter() - t
        nrf[prior] = tree_nrf(meta, sim)
        if prior == "archetypal":
            species = list(bank.species)
            traits = np.stack([sim.traits[s] for s in species])
            true_w = np.stack([sim.task_weights[s] for s in species])
            scores["mae"] = archetype_recovery(
                meta.archetype_weights, traits, sim.task_optima, true_weights=true_w
            )
    return {"scores": scores, "nrf": nrf, "times": times}


def _ms(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return "pending"
    return f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def _values(runs: list[dict], method: str, key: str) -> list[float]:
    return [r["scores"][method][key] for r in runs if key in r["scores"].get(method, {})]


def tables(runs: list[dict]) -> str:
    methods = ["mae", *ARCHETYPE_BASELINES]
    label = {
        "mae": "archetypal MAE",
        "aa_traits": "linear AA, true mean traits (oracle)",
        "aa_data_mean": "linear AA, data means",
        "aa_raw_weights": "linear AA, raw AE weights",
    }
    head = "| method | " + " | ".join(f"seed {i + 1}" for i in range(len(runs)))
    lines = [
        f"Archetype recovery error (trait-spread units, mean over the 3 optima; {len(runs)} seeds)",
        "",
        head + " | mean +- sd | max error (mean) | weight r (mean) | / oracle |",
        "|---|" + "---:|" * (len(runs) + 4),
    ]
    oracle = np.mean(_values(runs, "aa_traits", "archetype_error"))
    for m in methods:
        errs = _values(runs, m, "archetype_error")
        if not errs:
            cells = ["pending"] * (len(runs) + 4)
        else:
            cells = [f"{e:.3f}" for e in errs] + [
                _ms(errs),
                _ms(_values(runs, m, "archetype_error_max")),
                _ms(_values(runs, m, "weight_correlation")),
                f"{np.mean(errs) / oracle:.2f}x",
            ]
        lines.append(f"| {label[m]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Tree recovery, nRF of NJ on the MAE latents ({len(runs)} seeds)",
        "",
        "| meta.prior | " + " | ".join(f"seed {i + 1}" for i in range(len(runs))) + " | mean |",
        "|---|" + "---:|" * (len(runs) + 1),
    ]
    for prior in ("none", "archetypal"):
        v = [r["nrf"][prior] for r in runs]
        lines.append(f"| {prior} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {np.mean(v):.3f} |")
    t = {k: np.mean([r["times"][k] for r in runs]) for k in runs[0]["times"]}
    lines += ["", "mean seconds per seed: " + ", ".join(f"{k} {v:.1f}" for k, v in t.items())]
    return "\n".join(lines)


def goals(runs: list[dict]) -> str:
    oracle = float(np.mean(_values(runs, "aa_traits", "archetype_error")))
    data = float(np.mean(_values(runs, "aa_data_mean", "archetype_error")))
    mae = _values(runs, "mae", "archetype_error")
    checks: list[tuple[str, bool | None]] = []
    if mae:
        m = float(np.mean(mae))
        checks += [
            (f"MAE error {m:.3f} within 1.5x of the oracle's {oracle:.3f}", m <= 1.5 * oracle),
            (f"MAE error {m:.3f} below linear AA on data means {data:.3f}", m < data),
        ]
    else:
        checks.append(("MAE archetype error: pending (no archetype_weights)", None))
    none = float(np.mean([r["nrf"]["none"] for r in runs]))
    arch = float(np.mean([r["nrf"]["archetypal"] for r in runs]))
    checks.append(
        (f"archetypal prior nRF {arch:.3f} at most 0.05 above prior none {none:.3f}",
         arch - none <= 0.05)
    )  # fmt: skip
    mark = {True: "x", False: " ", None: "-"}
    return "\n".join(f"- [{mark[ok]}] {text}" for text, ok in checks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "tradeoff.yaml"))
    ap.add_argument("--quick", action="store_true", help="2 seeds, fewer AE/MAE steps")
    ap.add_argument("--json", help="also write every score to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = min(args.seeds, 2) if args.quick else args.seeds
    base = load_scenario(args.scenario)
    print(
        f"# bench_archetypes: {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, {base.name}, "
        f"seeds 1..{seeds}{' (quick)' if args.quick else ''}\n",
        flush=True,
    )
    runs = []
    for seed in range(1, seeds + 1):
        runs.append(run_one(configure(base, seed, args.quick)))
        s = runs[-1]["scores"]
        print(
            f"  seed {seed}: oracle {s['aa_traits']['archetype_error']:.3f}, "
            f"data means {s['aa_data_mean']['archetype_error']:.3f}",
            file=sys.stderr,
            flush=True,
        )
    print(tables(runs) + "\n\n" + goals(runs), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
