"""The analysis stage at thousands of species: today's against the previous implementation.

    python bench/bench_analysis.py            # 2,048 species side by side, growth curve
                                              # 256..8,192 (about 40 minutes on 2 cores)
    python bench/bench_analysis.py --quick    # 128 and 256 species (a few minutes)

Each world is the quickstart scenario with ``tree.n_species`` set and short training
(``--ae-steps``, default 200, and ``--meta-steps``, default 300): the analysis does not
depend on how well the AEs fit, only on the number of species. ``analyse`` then runs on
the same (sim, bank, MAE) twice, once as today and once with the scoring of commit
4eb2ace (``bench/legacy``: networkx trees, a fixed 999-permutation Mantel test per method,
100 sampled random trees, frozenset split walks; baselines, report and figures are
today's for both), with the time of each part recorded by wrapping the functions that do
it. Figures are :func:`evosim.pipeline.draw_figures`. The generative and identification
sections (added after 4eb2ace; they refit the MAE and draw fresh specimens) are off for
both, so that both analyses do the same work. Prints markdown tables: the breakdown per part, the
speed-up, the metrics of both (they agree within Monte Carlo error), and the growth
curve with its fitted exponent (least squares on log time vs log species).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import math
import os
import pickle
import platform
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the legacy package


class Timer:
    """Seconds spent in wrapped functions, by label (nested calls counted once per thread).

    Today's analysis scores two methods at once on threads: calls on both threads are
    counted, so tree inference and topology scores are thread-seconds, and ``other``
    (wall time less the parts) can be below zero.
    """

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        return getattr(self._local, "depth", 0)

    @depth.setter
    def depth(self, value: int) -> None:
        self._local.depth = value

    def wrap(self, module, name: str, label: str):  # noqa: ANN001, ANN201
        fn = getattr(module, name)

        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.total[label] += time.perf_counter() - t0
                self.depth -= 1

        return module, name, fn, timed


@contextlib.contextmanager
def patched(items):  # noqa: ANN001, ANN201
    for module, name, _, timed in items:
        setattr(module, name, timed)
    try:
        yield
    finally:
        for module, name, fn, _ in items:
            setattr(module, name, fn)


PARTS = ("baseline distances", "tree inference", "Mantel", "topology scores", "random trees")


def _instrument(timer: Timer, legacy: bool) -> list:
    prefix = "legacy" if legacy else "evosim"
    mod = importlib.import_module(f"{prefix}.analysis.analyse")
    met = importlib.import_module(f"{prefix}.analysis.metrics")
    return [
        timer.wrap(mod, "baseline_distances", "baseline distances"),
        timer.wrap(met, "infer_tree", "tree inference"),
        # today's analysis runs every method's Mantel test in one call on shared permutations
        timer.wrap(met, "mantel", "Mantel")
        if legacy
        else timer.wrap(mod, "mantel_tests", "Mantel"),
        timer.wrap(met, "score_tree", "topology scores"),
        timer.wrap(mod, "random_tree_scores", "random trees"),
        timer.wrap(mod, "bootstrap_support", "bootstrap support"),
    ]


def world(n: int, ae_steps: int, meta_steps: int, seed: int = 7):  # noqa: ANN201
    """(scenario, sim, bank, meta) of the quickstart scenario with ``n`` species."""
    from evosim import load_scenario
    from evosim.meta import fit_meta_autoencoder
    from evosim.simulation import simulate
    from evosim.train import train_autoencoders

    here = Path(__file__).resolve().parent.parent
    sc = load_scenario(here / "scenarios" / "quickstart.yaml")
    sc = sc.model_copy(
        update={
            "seed": seed,
            "tree": sc.tree.model_copy(update={"n_species": n}),
            "autoencoder": sc.autoencoder.model_copy(update={"steps": ae_steps, "device": "cpu"}),
            "meta": sc.meta.model_copy(update={"steps": meta_steps, "device": "cpu"}),
            "analysis": sc.analysis.model_copy(
                update={"generative": False, "identification": False, "device": "cpu"}
            ),
        }
    )
    sim = simulate(sc, progress=False)
    bank = train_autoencoders(sim, sc.autoencoder, progress=False)
    meta = fit_meta_autoencoder(bank, sc.meta, seed=sc.seed, progress=False)
    return sc, sim, bank, meta


def cached_world(n: int, args: argparse.Namespace):  # noqa: ANN201
    """:func:`world`, read from (or saved to) ``args.cache`` when given (your own files only:
    they are pickles)."""
    if args.cache is None:
        return world(n, args.ae_steps, args.meta_steps)
    path = Path(args.cache) / f"world{n}_{args.ae_steps}_{args.meta_steps}.pkl"
    if path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    made = world(n, args.ae_steps, args.meta_steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(made, f)
    return made


def _today_trees(report) -> None:  # noqa: ANN001
    """Replace the legacy report's trees by today's :class:`~evosim.phylo.Phylogeny`."""
    from legacy.phylo import Phylogeny as OldPhylogeny

    from evosim.phylo import Phylogeny

    def convert(value):  # noqa: ANN001, ANN202
        if isinstance(value, OldPhylogeny):
            return Phylogeny.from_newick(value.to_newick())
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    for name, value in vars(report).items():
        setattr(report, name, convert(value))


def run_analysis(sc, sim, bank, meta, *, legacy: bool) -> tuple[float, dict, object]:  # noqa: ANN001
    """(seconds incl. figures, seconds per part, report)."""
    from evosim.pipeline import draw_figures

    prefix = "legacy" if legacy else "evosim"
    analyse = importlib.import_module(f"{prefix}.analysis.analyse").analyse
    if legacy:
        # the previous code needs its own (networkx-backed) tree type for the truth
        from legacy.phylo import Phylogeny as OldPhylogeny

        sim = copy.copy(sim)
        sim._extant = OldPhylogeny.from_newick(sim.extant_tree().to_newick())
    timer = Timer()
    with patched(_instrument(timer, legacy)):
        t0 = time.perf_counter()
        report = analyse(sim, bank, meta, sc.analysis, seed=sc.seed)
        t1 = time.perf_counter()
        if legacy:
            _today_trees(report)  # the figures take today's tree type (not timed)
            t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            draw_figures(report, tmp)
        t2 = time.perf_counter()
    parts = dict(timer.total)
    parts["figures"] = t2 - t1
    parts["other"] = (t1 - t0) - sum(v for k, v in timer.total.items())
    return t2 - t0, parts, report


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"NumPy {np.__version__}; load average {load:.1f} at the start"
    )


def side_by_side(n: int, args: argparse.Namespace) -> tuple[float, dict]:
    """Print the side-by-side tables; returns today's (seconds, parts) for the growth curve."""
    sc, sim, bank, meta = cached_world(n, args)
    new_t, new_parts, new_rep = run_analysis(sc, sim, bank, meta, legacy=False)
    old_t, old_parts, old_rep = run_analysis(sc, sim, bank, meta, legacy=True)
    print(f"### Analysis at {n:,} species: previous (4eb2ace) vs today\n")
    print("| part | previous (s) | today (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for part in (*PARTS, "bootstrap support", "figures", "other"):
        a, b = old_parts.get(part, 0.0), new_parts.get(part, 0.0)
        ratio = f"{a / b:.1f}x" if b > 1e-3 else "-"
        print(f"| {part} | {a:.2f} | {b:.2f} | {ratio} |")
    print(f"| **analysis incl. figures** | **{old_t:.1f}** | **{new_t:.1f}** | "
          f"**{old_t / new_t:.1f}x** |\n")  # fmt: skip
    print("Metrics, previous / today (mantel_p: fixed 999 permutations / sequential):\n")
    keys = ("nrf", "quartet", "distance_spearman", "mantel_p")
    print("| method | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    rows = [("mae", old_rep.metrics, new_rep.metrics)] + [
        (k, old_rep.baselines[k], new_rep.baselines[k]) for k in new_rep.baselines
    ]
    for name, old, new in rows:
        cells = []
        for k in keys:
            ok = "cophenetic_spearman" if k == "distance_spearman" else k
            a, b = old.get(ok), new.get(k)
            cells.append(f"{_f(a)} / {_f(b)}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(flush=True)
    return new_t, new_parts


def _f(x) -> str:  # noqa: ANN001
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def growth(sizes: list[int], args: argparse.Namespace, done: dict[int, tuple]) -> None:
    """The growth table; ``done`` holds sizes already timed (the side-by-side run)."""
    print("### Growth of today's analysis (incl. figures)\n")
    print(
        "| species | analysis (s) | " + " | ".join(f"{p} (s)" for p in PARTS) + " | figures (s) |"
    )
    print("|---:|---:|" + "---:|" * (len(PARTS) + 1))
    times = []
    for n in sizes:
        if n in done:
            t, parts = done[n]
        else:
            sc, sim, bank, meta = cached_world(n, args)
            t, parts, _ = run_analysis(sc, sim, bank, meta, legacy=False)
        times.append(t)
        cells = " | ".join(f"{parts.get(p, 0.0):.2f}" for p in PARTS)
        print(f"| {n:,} | {t:.1f} | {cells} | {parts['figures']:.2f} |", flush=True)
    slope = np.polyfit(np.log(sizes), np.log(times), 1)[0] if len(sizes) > 1 else float("nan")
    half = len(sizes) // 2
    upper = np.polyfit(np.log(sizes[half:]), np.log(times[half:]), 1)[0] if half >= 1 else slope
    print(f"\nFitted exponent (time ~ species^k): k = {slope:.2f} over all sizes, "
          f"{upper:.2f} over the larger half.\n")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--ae-steps", type=int, default=200)
    parser.add_argument("--meta-steps", type=int, default=300)
    parser.add_argument("--sizes", type=int, nargs="*", help="growth-curve sizes")
    parser.add_argument("--compare", type=int, help="species for the side-by-side run (0: skip it)")
    parser.add_argument("--cache", type=Path, help="folder of built worlds (pickles) to reuse")
    args = parser.parse_args()
    if args.quick:
        args.ae_steps, args.meta_steps = min(args.ae_steps, 30), min(args.meta_steps, 50)
    compare_n = args.compare if args.compare is not None else (256 if args.quick else 2048)
    sizes = args.sizes or ([128, 256] if args.quick else [256, 512, 1024, 2048, 4096, 8192])
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print(f"Machine: {_machine()}\n")
    done = {}
    if compare_n > 0:
        done[compare_n] = side_by_side(compare_n, args)
    growth(sizes, args, done)


if __name__ == "__main__":
    main()
