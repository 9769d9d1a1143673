"""Refit the MAE on a finished run's AE bank with other settings, and score each refit.

An ``evosim run`` on thousands of species spends minutes simulating and training before
the MAE sees its bank. To ask what limits the MAE at that size (its decoder's width or
depth, its steps, its code noise, its distance term), this script refits only the MAE on
the run's saved bank, once per settings given, and scores each refit as the run scores
its MAE:

``fit s``
    MAE fitting time (its steps run on one thread).
``loss``
    Final behaviour loss on the fitted species.
``fitted ratio``
    Median over species of the decoded AE's reconstruction MSE on the species' validation
    instances over the species' own AE's (``generative.fidelity.train.median``).
``nRF``
    Normalised Robinson-Foulds distance of the NJ tree of the codes to the true tree.
``midpoint wins``, ``midpoint / better sister``
    The interpolated ancestors (``generative.ancestors``): the share of the run's scored
    cherries where the AE decoded at the sisters' midpoint beats both sisters on the true
    parent's instances, and its mean MSE over the better sister's; and the share where it
    beats both sisters' decoded AEs (their own codes through the same decoder), which
    leaves the decoder's error out.
``held out``, ``nearest``, ``held out < nearest`` (with ``--heldout``)
    Held-out decoding as the run scores it (``generative.fidelity.heldout``): the MAE is
    refitted once more per row without some species (a seeded quarter, or 256 above 256
    species), and the median ratio of the AEs decoded at their codes, the median ratio of
    the nearest fitted species' own AE, and the share of held-out species whose decoded
    AE beats that nearest AE are printed.

The first row refits with the run's own settings, which reproduces the run's figures.
Each ``--set`` is one refit (one row); several fields of one refit are separated by
``;``. Held-out decoding costs one more fit per row (several, below 256 species), so it
is scored only with ``--heldout``. Quality figures, and the fitting time of one fit at a
time: run it alone for the times.

    python bench/bench_refit_mae.py runs/large --set decoder_hidden=[256] \
        --set decoder_hidden=[128,128] --set "code_noise=0;steps=4000" --heldout
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

import torch  # noqa: E402
import yaml  # noqa: E402
from pydantic import ValidationError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import evosim  # noqa: E402
from evosim.analysis.generative import ancestor_scores, fidelity_scores  # noqa: E402
from evosim.analysis.metrics import euclidean, infer_tree, score_tree  # noqa: E402
from evosim.meta import fit_meta_autoencoder  # noqa: E402
from evosim.scenario import MetaConfig, load_scenario  # noqa: E402
from evosim.simulation import Simulation, load_simulation  # noqa: E402
from evosim.train import AEBank, load_bank  # noqa: E402


def parse_settings(items: list[str]) -> dict[str, object]:
    """``["field=value", ...]``, the settings of one refit -> ``{field: value}``."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set wants field=value (a meta field), got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def meta_config(meta: MetaConfig, overrides: dict[str, object]) -> MetaConfig:
    """The run's ``meta:`` section with ``overrides``, validated as a scenario's would be."""
    try:
        return meta.model_validate({**meta.model_dump(), **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(part) for part in err["loc"]) or "meta"
        raise SystemExit(f"--set meta.{field}: {err['msg']}") from None


def refit_row(
    sim: Simulation,
    bank: AEBank,
    config: MetaConfig,
    seed: int,
    heldout_folds: int | None = None,
) -> dict[str, object]:
    """Refit the MAE on ``bank`` with ``config``, and score it as a run scores its MAE.

    With ``heldout_folds``, held-out decoding is scored too (more refits, as a run does).
    """
    t0 = time.perf_counter()
    meta = fit_meta_autoencoder(bank, config, progress=False)
    fit_s = time.perf_counter() - t0
    # with fewer than 2 folds fidelity_scores scores the fitted species only, without a refit
    fidelity, _ = fidelity_scores(sim, bank, meta, folds=heldout_folds or 0, seed=seed)
    anc, _ = ancestor_scores(sim, bank, meta, seed=seed)
    tree = infer_tree(euclidean(meta.latents), list(meta.species), "nj")
    nrf = score_tree(tree, sim.extant_tree(), rooted=False)["nrf"]
    row: dict[str, object] = {
        "fit_s": fit_s,
        "loss": float(meta.info["final_train_loss"]),
        "fitted_ratio": float(fidelity["train"]["median"]),
        "nrf": float(nrf),
        "midpoint_wins": float(anc["midpoint_beats_both_sisters"]["mse"]),
        "midpoint_over_better_sister": float(anc["mse"]["midpoint"] / anc["mse"]["best_sister"]),
        "midpoint_wins_decoded": float(anc["midpoint_beats_both_decoded_sisters"]["mse"]),
    }
    if heldout_folds is not None:
        held_out = fidelity["heldout"]
        if "not_applicable" in held_out:
            raise SystemExit(f"--heldout: {held_out['not_applicable']}")
        row["heldout_ratio"] = float(held_out["mae"]["median"])
        row["nearest_ratio"] = float(held_out["nearest_training_ae"]["median"])
        row["heldout_below_nearest"] = float(held_out["mae_below_nearest"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished evosim run directory")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE[;FIELD=VALUE]",
        help="one refit with these meta fields changed (repeatable: one row each)",
    )
    parser.add_argument(
        "--heldout",
        action="store_true",
        help="also score held-out decoding (one more refit per row, several below 256 species)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    if not (args.run / "aes.pt").is_file() or not (args.run / "scenario.yaml").is_file():
        raise SystemExit(f"{args.run}: not a finished evosim run (no aes.pt or scenario.yaml)")
    torch.set_num_threads(1)
    print(
        f"# bench_refit_mae: {platform.machine()}, torch {torch.__version__}, "
        f"evosim {evosim.__version__}, run {args.run}"
    )
    scenario = load_scenario(args.run / "scenario.yaml")
    settings = [{}] + [parse_settings(s.split(";")) for s in args.set]
    configs = [meta_config(scenario.meta, overrides) for overrides in settings]
    sim = load_simulation(args.run)
    bank = load_bank(args.run / "aes.pt")
    folds = scenario.analysis.generative_folds if args.heldout else None
    if folds is not None and min(folds, len(bank.species) // 2) < 2:
        raise SystemExit("--heldout: fewer than 2 folds of species in this run")
    rows = []
    header = (
        "| settings | fit s | loss | fitted ratio | nRF | midpoint wins "
        "| midpoint / better sister | midpoint wins, decoded sisters |"
    )
    if args.heldout:
        header += " held out | nearest | held out < nearest |"
    print(f"\n{header}\n|---|" + "---:|" * (header.count("|") - 2))
    for overrides, config in zip(settings, configs):
        row = {
            "settings": overrides or "as run",
            **refit_row(sim, bank, config, scenario.seed, heldout_folds=folds),
        }
        rows.append(row)
        shown = json.dumps(overrides) if overrides else "as run"
        line = (
            f"| {shown} | {row['fit_s']:.0f} | {row['loss']:.3f} | {row['fitted_ratio']:.2f} "
            f"| {row['nrf']:.3f} | {row['midpoint_wins']:.0%} "
            f"| {row['midpoint_over_better_sister']:.2f} | {row['midpoint_wins_decoded']:.0%} |"
        )
        if args.heldout:
            line += (
                f" {row['heldout_ratio']:.2f} | {row['nearest_ratio']:.2f} "
                f"| {row['heldout_below_nearest']:.0%} |"
            )
        print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
