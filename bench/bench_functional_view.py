"""Where does the MAE's input lose the tree? The functional view, block by block.

The MAE reads each species' AE through the ``functional`` representation: the AE's
reconstructions of one shared set of probes (drawn from the pooled data, plus a share
drawn off it), and the distances between its whitened codes of the first probes. On some
scenarios (``outline``, ``identify``) that input alone gives a worse tree than a direct
comparison of the data, so no MAE reading it can match the data. This script asks which
part of the view is to blame, and whether the AEs themselves hold the tree.

Every column is the normalised Robinson-Foulds distance of the neighbour-joining tree of
one species distance against the true extant tree (lower is better; features are
averaged over replicates and each block is centred and scaled as the MAE's input is):

``data_mean``, ``data_distribution``
    The data-only baselines of ``metrics.json`` (per-species mean and sd; energy distance).
``functional``
    The MAE's input, as the ``functional`` baseline of ``metrics.json``.
``recon``, ``recon_data``, ``recon_off``, ``codes``
    Its blocks alone: the probe reconstructions; only those of the probes drawn from the
    data; only those of the off-data probes; the whitened code distances.
``recon_data+codes``
    The view without its off-data probes.
``iterated_energy``
    Reads the AEs only: every probe reconstructed twice by each AE (``AE(AE(p))``, which
    pulls it onto the AE's own manifold), then the energy distance between the species'
    clouds (sliced: ``evosim.meta.behaviour.behaviour_features``), the distances that
    ``meta.distance_target: behaviour`` keeps.
``region_moments``, ``region_energy``
    Read the bank only (its AEs and its pooled, unlabelled reference inputs), as the
    MAE's behaviour loss does: each AE's *region* (the reference inputs it reconstructs
    best, plus points it generates from their codes; ``evosim.meta.behaviour``),
    reconstructed by that AE. ``region_moments``: the per-coordinate mean and sd of those
    reconstructions as features; ``region_energy``: the energy distance between them.
``own_energy``
    Reads the data too, so it is a ceiling, not a candidate: each species' AE
    reconstructs the species' own instances, and the energy distance compares those
    clouds. If it matches ``data_distribution``, the AEs hold the tree and the view
    loses it.

Worlds: the bundled scenarios with ``seed`` replaced. Quality figures only (no timing):
safe to run beside other work.

    python bench/bench_functional_view.py --scenarios outline identify quickstart --seeds 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import evosim  # noqa: E402
from evosim.analysis.baselines import (  # noqa: E402
    baseline_distances,
    energy_distances,
    euclidean,
    species_means,
)
from evosim.meta.behaviour import behaviour_features, behaviour_targets  # noqa: E402
from evosim.meta.representation import functional_features, make_probes  # noqa: E402
from evosim.phylo.compare import robinson_foulds  # noqa: E402
from evosim.phylo.inference import neighbor_joining  # noqa: E402
from evosim.scenario import parse_scenario  # noqa: E402
from evosim.seeding import rng as make_rng  # noqa: E402

COLUMNS = (
    "data_mean",
    "data_distribution",
    "functional",
    "recon",
    "recon_data",
    "recon_off",
    "codes",
    "recon_data+codes",
    "iterated_energy",
    "region_moments",
    "region_energy",
    "own_energy",
)


def _scaled(block: np.ndarray) -> np.ndarray:
    """Centred over members, divided by the root-mean-square sd (the MAE's block scaling)."""
    block = block - block.mean(axis=0)
    rms = float(np.sqrt(np.mean(block.std(axis=0) ** 2)))
    return block / rms if rms > 1e-12 else block


def measure(name: str, seed: int) -> dict[str, float]:
    """Every column's nRF, and the AEs' relative error on their own data, for one world."""
    data = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())
    data["seed"] = seed
    sc = parse_scenario(yaml.safe_dump(data))
    sim = evosim.simulate(sc)
    bank = evosim.train_autoencoders(sim, sc.autoencoder, progress=False)
    species = list(bank.species)
    r = int(bank.replicates)
    truth = sim.extant_tree()

    def nrf(d: np.ndarray) -> float:
        return float(robinson_foulds(neighbor_joining(d, species), truth, normalized=True))

    def features(*blocks: np.ndarray) -> float:
        x = np.concatenate([_scaled(b.reshape(len(b), -1)) for b in blocks], axis=1)
        return nrf(euclidean(species_means(x, r)))

    cfg = sc.meta
    probes = make_probes(bank, cfg.probes, cfg.off_manifold_fraction, seed)
    n_data = len(probes) - int(round(len(probes) * cfg.off_manifold_fraction))
    view = functional_features(bank, probes).astype(np.float64)
    recon = view[:, : probes.size].reshape(len(view), *probes.shape)
    codes = view[:, probes.size :]
    out = {n: nrf(baseline_distances(n, sim, bank, None, seed=seed)) for n in COLUMNS[:2]}
    out["functional"] = features(recon, codes)
    out["recon"] = features(recon)
    out["recon_data"] = features(recon[:, :n_data])
    out["recon_off"] = features(recon[:, n_data:]) if n_data < len(probes) else float("nan")
    out["codes"] = features(codes)
    out["recon_data+codes"] = features(recon[:, :n_data], codes)

    def energy(clouds: np.ndarray) -> float:
        gens = [make_rng(seed, "bench", "energy", s) for s in species]
        return nrf(energy_distances(clouds, gens))

    first = np.arange(0, bank.n_members, r)  # replicate 0 of every species
    beh = behaviour_targets(bank, probes, seed=seed)
    # what meta.distance_target: behaviour keeps
    out["iterated_energy"] = nrf(euclidean(behaviour_features(bank, beh, seed=seed)[first]))
    region = beh.targets.numpy().astype(np.float64)
    out["region_moments"] = features(np.concatenate([region.mean(1), region.std(1)], axis=1))
    out["region_energy"] = energy(region[first])
    pos = {s: i for i, s in enumerate(sim.species)}
    inst = np.asarray(sim.instances, dtype=np.float32)[[pos[s] for s in species]]
    own = np.asarray(bank.reconstruct(inst, species))
    out["own_energy"] = energy(own)
    out["ae_relative_error"] = float(
        ((own - inst) ** 2).sum(-1).mean() / inst.var(axis=1).sum(-1).mean()
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", nargs="+", default=["outline", "identify", "quickstart"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"# bench_functional_view: {platform.machine()}, torch {torch.__version__}, "
        f"seeds {args.seeds}\n"
    )
    cols = (*COLUMNS, "ae_relative_error")
    for name in args.scenarios:
        runs = [measure(name, seed) for seed in args.seeds]
        print(f"### {name}: nRF, mean +- sd over {len(runs)} seeds\n")
        print("| " + " | ".join(cols) + " |")
        print("|" + "---:|" * len(cols))
        cells = []
        for c in cols:
            v = np.array([run[c] for run in runs])
            cells.append(f"{np.mean(v):.3f} +- {np.std(v):.3f}")
        print("| " + " | ".join(cells) + " |\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
