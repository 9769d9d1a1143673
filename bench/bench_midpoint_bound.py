"""How often can the midpoint of two sisters beat both sisters as a guess of their parent?

Issue 11 asks that the AE decoded at the midpoint of two sister species' MAE codes be
closer to their true parent than either sister's own AE in at least 80% of the true
tree's cherries. This script measures what the midpoint estimator itself allows, on the
same worlds and the same cherries as evosim's generative scores, with the truth in hand:

``traits``
    The midpoint of the sisters' TRUE traits is nearer (Euclidean) to the parent's true
    traits than both sisters' traits are.
``brownian theory``
    The same probability under Brownian motion with equal sister branches, which the
    trait dimension ``k`` alone fixes: ``P(F(1, k) < k / 4)``
    (:func:`evosim.analysis.midpoint_bound.brownian_midpoint_wins`, which derives it).
``oracle AE``
    An AE trained (the scenario's own architecture and training) on instances the
    world's own development map makes from the midpoint of the sisters' true traits,
    scored as evosim scores the MAE's midpoint: reconstruction MSE on the parent's
    instances, and MMD between its generated instances and the parent's, each against
    both sisters' own AEs; and its mean MSE over the better sister's (below 1: closer to
    the parent on average). It is the MAE's midpoint with a perfect latent space (codes
    linear in the true traits) and a perfect decoder.

Neither is something evosim could compute (it reads the truth); together they say how
much of the 80% target the midpoint estimator can reach on a world. Population-genetic
worlds draw instances from individuals, which have no midpoint: there only ``traits``
(the population means) is given.

Quality figures only (no timing): safe to run beside other work.

    python bench/bench_midpoint_bound.py --scenarios brownian circles --seeds 5
    python bench/bench_midpoint_bound.py --json a.json --scenarios ...   # keep the rows
    python bench/bench_midpoint_bound.py --table a.json b.json           # one table from rows
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import evosim  # noqa: E402
from evosim.analysis.generative import (  # noqa: E402
    MMD_INSTANCES,
    _ae_generate,
    _member_spec_params,
    _mse,
    _reconstruct_one,
    _sub,
    median_bandwidth,
    mmd2,
    scored_cherries,
)
from evosim.analysis.midpoint_bound import brownian_midpoint_wins, midpoint_wins  # noqa: E402
from evosim.scenario import Scenario, load_scenario  # noqa: E402
from evosim.seeding import rng as make_rng  # noqa: E402

SCENARIOS = (
    "brownian circles population outline_jumps coalescent early_burst jumps many_species "
    "newick ou tradeoff outline quickstart identify mdl wide_traits"
).split()


def world(name: str, seed: int) -> Scenario:
    data = load_scenario(ROOT / "scenarios" / f"{name}.yaml").to_dict()
    data["seed"] = seed
    return Scenario.model_validate(data)


def measure(name: str, seed: int) -> dict:
    """Per-cherry wins of the trait midpoint and of the oracle midpoint AE, one world."""
    sc = world(name, seed)
    sim = evosim.simulate(sc)
    pairs = scored_cherries(sim, seed)
    tr = sim.traits
    trait_win = midpoint_wins(*(np.stack([tr[c[i]] for c in pairs]) for i in (2, 0, 1)))
    row = {
        "scenario": name,
        "seed": seed,
        "trait_dim": int(sc.traits.dim),
        "cherries": len(pairs),
        "traits": float(np.mean(trait_win)),
    }
    if sim.individuals is not None:
        return row
    bank = evosim.train_autoencoders(sim, sc.autoencoder, progress=False)
    names = [f"midpoint of {a} and {b}" for a, b, _ in pairs]
    xm = np.stack(
        [sim.family.instances(n, (tr[a] + tr[b]) / 2) for n, (a, b, _) in zip(names, pairs)]
    )
    mids = evosim.train_autoencoders(
        xm, sc.autoencoder, species=names, seed=sc.seed, progress=False
    )
    index = {s: i for i, s in enumerate(bank.species)}
    pos = {s: i for i, s in enumerate(sim.species)}
    inst = np.asarray(sim.instances, dtype=np.float32)
    r, rm = int(bank.replicates), int(mids.replicates)
    wins = {"mse": [], "mmd2": []}
    mse_mid, mse_best = [], []
    for c, (a, b, parent) in enumerate(pairs):
        g = make_rng(seed, "generative", "ancestor", parent)
        xp = np.asarray(sim.instances_of(parent), dtype=np.float32)
        xps = _sub(xp, g)
        bw = median_bandwidth(xps)
        score = {}
        for key, bk, member, own in (
            ("a", bank, index[a] * r, inst[pos[a]]),
            ("b", bank, index[b] * r, inst[pos[b]]),
            ("mid", mids, c * rm, xm[c]),
        ):
            spec, p = _member_spec_params(bk, member)
            mse = float(_mse(_reconstruct_one(spec, p, xp), xp))
            mmd = mmd2(_ae_generate(spec, p, _sub(own, g), MMD_INSTANCES, g), xps, bw)
            score[key] = (mse, mmd)
        for j, key in enumerate(wins):
            wins[key].append(float(score["mid"][j] < min(score["a"][j], score["b"][j])))
        mse_mid.append(score["mid"][0])
        mse_best.append(min(score["a"][0], score["b"][0]))
    row["oracle_ae_mse"] = float(np.mean(wins["mse"]))
    # as evosim reports the MAE's: mean midpoint MSE over mean better-sister MSE
    row["oracle_mse_over_best_sister"] = float(np.mean(mse_mid) / np.mean(mse_best))
    row["oracle_ae_mmd2"] = float(np.mean(wins["mmd2"]))
    return row


def _ms(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return "n/a"
    return f"{100 * v.mean():.0f}% +- {100 * v.std(ddof=1) if len(v) > 1 else 0:.0f}"


def _ratio(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return "n/a"
    return f"{v.mean():.2f} +- {v.std(ddof=1) if len(v) > 1 else 0:.2f}"


def table(rows: list[dict]) -> str:
    """One line per scenario: means +- sd over seeds of the share of cherries won."""
    theory = {}
    lines = [
        "| scenario | traits k | cherries / seed | Brownian theory (k) | true-trait midpoint "
        "| oracle midpoint AE (MSE) | oracle midpoint AE (MMD) | oracle MSE / better sister |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = [s for s in SCENARIOS if any(r["scenario"] == s for r in rows)]
    order += sorted({r["scenario"] for r in rows} - set(order))
    for s in order:
        rs = [r for r in rows if r["scenario"] == s]
        k = rs[0]["trait_dim"]
        theory.setdefault(k, brownian_midpoint_wins(k))
        lines.append(
            f"| {s} | {k} | {np.mean([r['cherries'] for r in rs]):.1f} | {100 * theory[k]:.0f}% "
            f"| {_ms([r['traits'] for r in rs])} "
            f"| {_ms([r['oracle_ae_mse'] for r in rs if 'oracle_ae_mse' in r])} "
            f"| {_ms([r['oracle_ae_mmd2'] for r in rs if 'oracle_ae_mmd2' in r])} "
            f"| {_ratio([r['oracle_mse_over_best_sister'] for r in rs if 'oracle_ae_mse' in r])} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=SCENARIOS)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the per-seed rows here")
    ap.add_argument("--table", type=Path, nargs="+", help="print the table of saved rows only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.table:
        rows = [r for path in args.table for r in json.loads(path.read_text())]
        print(table(rows))
        return
    print(
        f"bench_midpoint_bound: {platform.machine()}, torch {torch.__version__}, "
        f"seeds 1..{args.seeds}\n"
    )
    rows = []
    for name in args.scenarios:
        for seed in range(1, args.seeds + 1):
            rows.append(measure(name, seed))
            print(json.dumps(rows[-1]), flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
