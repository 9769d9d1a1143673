"""The analysis stage's parts other than the Mantel test, before and after issue 17's work.

    python bench/bench_analysis_parts.py            # 2,048 species (about 15 minutes on 2 cores)
    python bench/bench_analysis_parts.py --quick    # 256 species (about 2 minutes)
    python bench/bench_analysis_parts.py --world /tmp/w.pkl   # reuse (or save) the world

The world is ``bench_analysis.world`` (quickstart with ``tree.n_species`` set, short
training). ``analyse`` (Mantel permutations 0, generative and identification off),
``draw_figures`` and ``Report.write`` run on it twice: once as today, once with the
previous implementations put back (kept in this file: the PCA baseline by a full SVD,
``pdist`` distances, scipy's ``rankdata``, the energy distance over ordered pairs, the
distance scatter of every pair as a point, a tick per species on the AE-loss figure).
Prints the seconds per part side by side, and how far today's results are from the
previous ones (largest relative difference of each baseline's distances; the topology
scores should be equal).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pickle
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_analysis import _machine, world  # noqa: E402

# ---------------------------------------------------------------------------- previous code


def pca_svd(x: np.ndarray, k: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    k = min(k, len(s))
    return u[:, :k] * s[:k]


def euclidean_pdist(x: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import pdist, squareform

    return squareform(pdist(np.asarray(x, dtype=np.float64)))


def rankdata(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata as rd

    return rd(x)


def energy_ordered(instances, rng, *, n_max=None, device="cpu"):  # noqa: ANN001, ANN201
    import torch

    from evosim.analysis.baselines import ENERGY_BUDGET

    x = np.asarray(instances, dtype=np.float32)
    s, n_all, dim = x.shape
    n = int(np.clip(np.sqrt(ENERGY_BUDGET) / s, 16, 256)) if n_max is None else n_max
    n = min(n, n_all)
    gens = [rng] * s if isinstance(rng, np.random.Generator) else list(rng)
    idx = np.stack([g.choice(n_all, size=n, replace=False) for g in gens])
    sub = torch.as_tensor(x[np.arange(s)[:, None], idx], device=device)
    flat = sub.reshape(s * n, dim)
    cross = torch.empty(s, s, dtype=torch.float64)
    block = max(1, int(2**25 // (n * n * s)))
    for i in range(0, s, block):
        d = torch.cdist(flat[i * n : (i + block) * n], flat)
        b = d.shape[0] // n
        cross[i : i + b] = d.reshape(b, n, s, n).mean(dim=(1, 3)).double().cpu()
    within = torch.diagonal(cross)
    e = 2.0 * cross - within[:, None] - within[None, :]
    e = 0.5 * (e + e.T)
    out = e.clamp_min(0.0).sqrt().numpy()
    np.fill_diagonal(out, 0.0)
    return out


def scatter_every_pair(
    latents, species: Sequence[str], true_tree, path, *, title="latent vs patristic distance"
):  # noqa: ANN001, ANN201, E501
    from matplotlib.figure import Figure
    from scipy.stats import spearmanr

    from evosim.plot import save_figure

    names, d = true_tree.patristic_distances(list(species))
    pos = {s: i for i, s in enumerate(names)}
    idx = [pos[s] for s in species]
    d = np.asarray(d)[np.ix_(idx, idx)]
    z = np.asarray(latents, dtype=np.float64)
    dz = np.sqrt(np.clip(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1), 0.0, None))
    iu = np.triu_indices(len(species), k=1)
    a, b = d[iu], dz[iu]
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    ax.scatter(a, b, s=6, alpha=0.5, edgecolors="none")
    rho = spearmanr(a, b).statistic if len(a) > 2 else float("nan")
    ax.set_xlabel("true patristic distance")
    ax.set_ylabel("latent distance")
    ax.set_title(f"{title} (Spearman {rho:.2f})")
    fig.tight_layout()
    return save_figure(fig, path)


def ae_losses_every_tick(
    losses: Mapping[str, Any], path, *, title="final loss of each species' AE"
):  # noqa: ANN001, ANN201, E501
    from matplotlib.figure import Figure

    from evosim.plot import save_figure

    species = list(losses["species"])
    uniq = list(dict.fromkeys(species))
    xpos = {s: i for i, s in enumerate(uniq)}
    fig = Figure(figsize=(max(6.0, min(0.18 * len(uniq) + 2, 30.0)), 4))
    ax = fig.add_subplot()
    for key, marker in (("train", "o"), ("val", "x")):
        v = np.asarray(losses.get(key, []), dtype=np.float64)
        if len(v) and np.isfinite(v).any():
            ax.scatter([xpos[s] for s in species], v, marker=marker, s=14, label=key)
    ax.set_yscale("log")
    ax.set_xticks(range(len(uniq)))
    ax.set_xticklabels(uniq if len(uniq) <= 80 else [""] * len(uniq), rotation=90, fontsize=6)
    ax.set_ylabel("reconstruction MSE")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def _previous() -> list[tuple[Any, str, Any]]:
    """(module, attribute, previous implementation) to put back."""
    mod = importlib.import_module
    return [
        (mod("evosim.analysis.baselines"), "_pca_scores", pca_svd),
        (mod("evosim.analysis.baselines"), "euclidean", euclidean_pdist),
        (mod("evosim.analysis.baselines"), "energy_distances", energy_ordered),
        (mod("evosim.analysis.analyse"), "euclidean", euclidean_pdist),
        (mod("evosim.analysis.metrics"), "ranks", rankdata),
        (mod("evosim.plot"), "plot_distance_scatter", scatter_every_pair),
        (mod("evosim.plot"), "plot_ae_losses", ae_losses_every_tick),
    ]


@contextlib.contextmanager
def patched(items):  # noqa: ANN001, ANN201
    saved = [(m, name, getattr(m, name)) for m, name, _ in items]
    for m, name, fn in items:
        setattr(m, name, fn)
    try:
        yield
    finally:
        for m, name, fn in saved:
            setattr(m, name, fn)


# ---------------------------------------------------------------------------- timing


def run(sc, sim, bank, meta, *, previous: bool) -> tuple[dict[str, float], Any, dict]:  # noqa: ANN001
    from evosim.analysis.analyse import analyse
    from evosim.pipeline import draw_figures

    A = importlib.import_module("evosim.analysis.analyse")
    M = importlib.import_module("evosim.analysis.metrics")
    P = importlib.import_module("evosim.plot")
    times: dict[str, float] = defaultdict(float)
    distances: dict[str, np.ndarray] = {}

    def timed(module, name, label, keep=None):  # noqa: ANN001, ANN202
        fn = getattr(module, name)

        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
            finally:
                times[label(args) if callable(label) else label] += time.perf_counter() - t0
            if keep is not None:
                distances[args[0]] = out
            return out

        return module, name, wrapper

    wrappers = [
        timed(A, "baseline_distances", lambda a: f"baseline: {a[0]}", keep=True),
        timed(M, "infer_tree", "tree inference"),
        timed(M, "score_tree", "topology scores"),
        timed(M, "mantel", "Mantel statistic (0 permutations)"),
    ]
    figure_names = (
        "plot_tanglegram",
        "plot_latent_tree",
        "plot_distance_scatter",
        "plot_ae_losses",
        "plot_mae_training",
    )
    cfg = sc.analysis.model_copy(
        update={
            "mantel_permutations": 0,
            "generative": False,
            "identification": False,
            "device": "cpu",
        }
    )
    with patched(_previous() if previous else []):
        wrappers += [timed(P, f, f"figure: {f[5:]}") for f in figure_names]
        with patched(wrappers), tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = analyse(sim, bank, meta, cfg, seed=sc.seed, progress=False)
            t1 = time.perf_counter()
            draw_figures(report, Path(tmp) / "figures")
            t2 = time.perf_counter()
            report.write(tmp)
            t3 = time.perf_counter()
    inside = sum(v for k, v in times.items() if not k.startswith("figure"))
    times["analysis: other"] = (t1 - t0) - inside
    times["figures: total"] = t2 - t1
    times["Report.write"] = t3 - t2
    times["total"] = t3 - t0
    return dict(times), report, distances


def warm_up() -> None:
    """Load the compiled tree code and matplotlib before timing (first calls cost seconds)."""
    from evosim.analysis.metrics import infer_tree, score_tree
    from evosim.phylo import yule

    true = yule(1.0, 300, rng=np.random.default_rng(0))
    labels = list(true.leaves)
    _, d = true.patristic_distances(labels)
    for method in ("nj", "upgma"):
        score_tree(infer_tree(d, labels, method), true, rooted=method == "upgma")
    with tempfile.TemporaryDirectory() as tmp:
        from evosim.plot import plot_mae_training

        plot_mae_training({"step": [0, 1], "train": [1.0, 0.5]}, Path(tmp) / "w.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 species (a few minutes)")
    parser.add_argument("--species", type=int, default=2048)
    parser.add_argument("--world", type=Path, help="pickle of the world: read if there, else saved")
    args = parser.parse_args()
    n = 256 if args.quick else args.species
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print(f"Machine: {_machine()}\n")
    if args.world is not None and args.world.exists():
        with open(args.world, "rb") as f:
            sc, sim, bank, meta = pickle.load(f)
    else:
        sc, sim, bank, meta = world(n, 30 if args.quick else 200, 50 if args.quick else 300)
        if args.world is not None:
            with open(args.world, "wb") as f:
                pickle.dump((sc, sim, bank, meta), f)
    n = len(meta.species)
    warm_up()
    new_t, new_rep, new_d = run(sc, sim, bank, meta, previous=False)
    old_t, old_rep, old_d = run(sc, sim, bank, meta, previous=True)
    print(f"### Analysis parts at {n:,} species: previous vs today (Mantel off)\n")
    print("| part | previous (s) | today (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for part in sorted(set(old_t) | set(new_t), key=lambda p: (p == "total", p)):
        a, b = old_t.get(part, 0.0), new_t.get(part, 0.0)
        ratio = f"{a / b:.1f}x" if b > 1e-3 else "-"
        bold = "**" if part == "total" else ""
        print(f"| {bold}{part}{bold} | {a:.2f} | {b:.2f} | {ratio} |")
    print("\n| method | max relative difference of distances | nrf previous / today |")
    print("|---|---:|---:|")
    for name in new_d:
        a, b = old_d[name], new_d[name]
        off = a > 0
        rel = float(np.max(np.abs(a - b)[off] / a[off])) if off.any() else 0.0
        nrf = (old_rep.baselines[name].get("nrf"), new_rep.baselines[name].get("nrf"))
        print(f"| {name} | {rel:.1e} | {nrf[0]:.4f} / {nrf[1]:.4f} |")
    print(f"| mae | - | {old_rep.metrics['nrf']:.4f} / {new_rep.metrics['nrf']:.4f} |\n")


if __name__ == "__main__":
    main()
