"""How well can a decoder shared by all species decode a species it was not fitted on?

Issue 11 asks the MAE to decode species held out of its fit at a median MSE ratio <= 3
to the species' own AE. This script measures that ratio for the MAE next to two
*conditional autoencoders* that are given far more than the MAE is, on the same worlds
and the same folds over species (evosim's generative scores: 4 folds):

``oracle_traits``
    An AE ``x -> code -> x_hat`` whose encoder and decoder also read the species' TRUE
    traits (standardised): the genotype the development map turns into phenotypes. It
    is trained on the training species' own instances (the data, not their AEs), then
    reconstructs a held-out species' validation instances given that species' true
    traits.
``oracle_embedding``
    The same network conditioned on a free per-species embedding (an auto-decoder, the
    MAE's code size) learnt with it; a held-out species' embedding is then fitted to that
    species' own training instances with the network frozen. It sees the held-out
    species' data, which the MAE never does.

Neither is a model evosim could ship (they read the data and the truth); they say what a
shared decoder learnt from the training species reaches even with that much information.
Ratios are medians over species of the decoded model's MSE on a species' validation
instances divided by the species' own AE's (the MAE's rows are those of
``metrics.json``'s ``generative.fidelity.heldout``).

Worlds: ``scenarios/quickstart.yaml`` with ``tree.n_species``, ``traits.dim`` and ``seed``
replaced.
Quality figures only (no timing): safe to run beside other work.

    python bench/bench_heldout_bound.py --species 32 64 128 --seeds 1 2 3
    python bench/bench_heldout_bound.py --species 32 --trait-dims 2 4 8 --seeds 1 2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import evosim  # noqa: E402
from evosim.analysis.generative import _own_mse, fidelity_scores, heldout_instances  # noqa: E402
from evosim.scenario import Scenario  # noqa: E402
from evosim.seeding import rng as make_rng  # noqa: E402
from evosim.train.data import member_splits  # noqa: E402

#: Folds over species, as evosim's generative scores use by default.
FOLDS = 4
HIDDEN = 128
BATCH = 256
EMBEDDING = 16


class ConditionalAE(nn.Module):
    """``x, c -> code -> x_hat``: an AE whose encoder and decoder both read a condition ``c``."""

    def __init__(self, d: int, c: int, code: int, hidden: int = HIDDEN) -> None:
        super().__init__()

        def mlp(n_in: int, n_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(n_in, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                nn.Linear(hidden, n_out),
            )  # fmt: skip

        self.encoder = mlp(d + c, code)
        self.decoder = mlp(code + c, d)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([self.encoder(torch.cat([x, c], 1)), c], 1))


def fit(
    model: nn.Module,
    params: list[torch.Tensor],
    x: torch.Tensor,
    condition: Callable[[], torch.Tensor],
    steps: int,
    seed: int,
    lr: float = 1e-3,
) -> None:
    """Adam with cosine decay on the MSE; ``condition()`` gives each row's condition."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)
        loss = (model(x[idx], condition()[idx]) - x[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay.step()


def _mse(model: nn.Module, x: np.ndarray, c: torch.Tensor) -> float:
    with torch.no_grad():
        xt = torch.as_tensor(x)
        return float((model(xt, c.expand(len(xt), -1)) - xt).pow(2).mean())


def world(n_species: int, trait_dim: int, seed: int) -> Scenario:
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data["seed"] = seed
    data["tree"]["n_species"] = n_species
    data["traits"]["dim"] = trait_dim
    return Scenario.model_validate(data)


def measure(n_species: int, trait_dim: int, seed: int, steps: int) -> dict[str, float]:
    """Median held-out ratios of the MAE and both oracles on one world."""
    sc = world(n_species, trait_dim, seed)
    sim = evosim.simulate(sc)
    bank = evosim.train_autoencoders(sim, sc.autoencoder, progress=False)
    meta = evosim.fit_meta_autoencoder(bank, sc.meta, progress=False)
    summary, _ = fidelity_scores(sim, bank, meta, folds=FOLDS, seed=seed)

    held, _ = heldout_instances(sim, bank)
    own = _own_mse(bank, held)
    s = len(bank.species)
    reps = int(bank.replicates)
    pos = {name: i for i, name in enumerate(sim.species)}
    inst = np.asarray(sim.instances, dtype=np.float32)[[pos[n] for n in bank.species]]
    rows, _, _ = member_splits(
        int(bank.info["seed"]), list(bank.species), reps, inst.shape[1],
        float(bank.info["config"]["validation_fraction"]),
    )  # fmt: skip
    train_x = [inst[i][rows[i * reps]] for i in range(s)]
    traits = sim.trait_matrix(list(bank.species)).astype(np.float32)
    code = int(sc.autoencoder.latent)

    ratio = {"oracle_traits": np.full(s, np.nan), "oracle_embedding": np.full(s, np.nan)}
    fitted_traits = []
    parts = np.array_split(make_rng(seed, "generative", "folds").permutation(s), FOLDS)
    for f, part in enumerate(parts):
        test = sorted(int(i) for i in part)
        train = [i for i in range(s) if i not in set(test)]
        mu, sd = traits[train].mean(0), traits[train].std(0) + 1e-6
        t = torch.as_tensor((traits - mu) / sd)
        x = torch.as_tensor(np.concatenate([train_x[i] for i in train]))
        who = torch.as_tensor(np.concatenate([[i] * len(train_x[i]) for i in train]))
        run_seed = 1000 * seed + f

        torch.manual_seed(run_seed)
        by_traits = ConditionalAE(x.shape[1], t.shape[1], code)
        fit(by_traits, list(by_traits.parameters()), x, lambda t=t, w=who: t[w], steps, run_seed)
        for i in test:
            ratio["oracle_traits"][i] = _mse(by_traits, held[i], t[i]) / own[i]
        if f == 0:
            fitted_traits = [_mse(by_traits, held[i], t[i]) / own[i] for i in train]

        torch.manual_seed(run_seed)
        by_embedding = ConditionalAE(x.shape[1], EMBEDDING, code)
        emb = nn.Parameter(0.1 * torch.randn(s, EMBEDDING))
        params = [*by_embedding.parameters(), emb]
        fit(by_embedding, params, x, lambda w=who, e=emb: e[w], steps, run_seed)
        by_embedding.requires_grad_(False)
        xh = torch.as_tensor(np.concatenate([train_x[i] for i in test]))
        wh = torch.as_tensor(np.concatenate([[i] * len(train_x[i]) for i in test]))
        fit(by_embedding, [emb], xh, lambda w=wh, e=emb: e[w], steps // 4, run_seed + 1, lr=1e-2)
        for i in test:
            ratio["oracle_embedding"][i] = _mse(by_embedding, held[i], emb[i].detach()) / own[i]

    ho = summary["heldout"]
    return {
        "mae_fitted_species": summary["train"]["median"],
        "mae": ho["mae"]["median"],
        "mae_encoder_only": ho["mae_encoder_only"]["median"],
        "nearest_training_ae": ho["nearest_training_ae"]["median"],
        "oracle_traits": float(np.median(ratio["oracle_traits"])),
        "oracle_embedding": float(np.median(ratio["oracle_embedding"])),
        "oracle_traits_fitted_species": float(np.median(fitted_traits)),
    }


COLUMNS = (
    "mae_fitted_species", "mae", "mae_encoder_only", "nearest_training_ae",
    "oracle_traits", "oracle_embedding", "oracle_traits_fitted_species",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--species", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--trait-dims", type=int, nargs="+", default=[16], help="traits.dim")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=3000, help="the oracles' optimiser steps")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"# bench_heldout_bound: {platform.machine()}, torch {torch.__version__}, "
        f"quickstart x n_species {args.species} x traits.dim {args.trait_dims}, "
        f"seeds {args.seeds}, oracle steps {args.steps}\n"
    )
    print("median MSE ratio to the species' own AE (species held out unless said)\n")
    print("| species | traits | seed | " + " | ".join(COLUMNS) + " |")
    print("|---:|---:|---:|" + "---:|" * len(COLUMNS), flush=True)
    table: dict[tuple[int, int], list[dict[str, float]]] = {}
    for n in args.species:
        for dim in args.trait_dims:
            for seed in args.seeds:
                r = measure(n, dim, seed, args.steps)
                table.setdefault((n, dim), []).append(r)
                cells = " | ".join(f"{r[c]:.2f}" for c in COLUMNS)
                print(f"| {n} | {dim} | {seed} | {cells} |", flush=True)
    print("\nmean over seeds\n")
    print("| species | traits | " + " | ".join(COLUMNS) + " |")
    print("|---:|---:|" + "---:|" * len(COLUMNS))
    for (n, dim), rs in table.items():
        cells = " | ".join(f"{np.mean([r[c] for r in rs]):.2f}" for c in COLUMNS)
        print(f"| {n} | {dim} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
