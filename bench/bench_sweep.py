"""What does running a sweep on Ray cost and gain on this machine? Side by side, in one run.

One sweep of a small scenario (``--tasks`` tasks: two MAE representations x seeds), run
into a fresh directory each time in these settings:

- ``loop``: every task one after another in this process (the sweep's serial executor,
  one torch/BLAS thread), no Ray;
- ``ray 1x1``: a local Ray instance, 1 task at a time, 1 thread per task;
- ``ray 2x1``: 2 tasks at a time, 1 thread each (pinned: tasks x threads = the cores);
- ``ray 2x2``: 2 tasks at a time, 2 threads each (oversubscribed: 2x the cores);
- ``loop, again``: the loop once more, last, to show how much the machine drifted.

One task runs first, untimed (one-off imports and caches). Ray's start (``ray.init``) is
timed apart from the sweep. Columns: wall seconds of the
sweep, tasks per second, speed-up against the loop, scaling efficiency (the 1-worker
wall over (workers x this wall)), Ray's overhead per task in ms ((ray 1x1 - loop) / tasks:
task dispatch, worker start and import, result transfer), and the oversubscription cost
(this wall over the pinned 2x1 wall). Every 1-thread setting must give the same metrics
(the script checks that the results tables agree, timings aside); 2 torch threads per task
sum in another order and may not.

Usage::

    python bench/bench_sweep.py              # 32 tasks
    python bench/bench_sweep.py --quick      # 8 tiny tasks
    python bench/bench_sweep.py --out /tmp/bench_sweep --keep
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evosim.sweep import parse_sweep, run_sweep  # noqa: E402
from evosim.sweep.execute import execute_task  # noqa: E402

SWEEP = """\
name: bench_sweep
base:
  name: small
  tree: {{model: yule, n_species: {species}}}
  traits: {{dim: 8}}
  species: {{instances: {instances}, ambient_dim: 16}}
  autoencoder: {{hidden: [32], steps: {ae_steps}, batch_size: 64}}
  meta: {{latent: 4, steps: {meta_steps}, probes: 64}}
  analysis: {{baselines: [traits, data_mean, raw_weights, random], mantel_permutations: 99,
             random_trees: 20}}
grid:
  meta.representation: [aligned, functional]
seeds: {seeds}
"""
SETTINGS = (
    ("loop", "serial", 1, 1),
    ("ray 1x1", "ray", 1, 1),
    ("ray 2x1 (pinned)", "ray", 2, 1),
    ("ray 2x2 (oversubscribed)", "ray", 2, 2),
    ("loop, again", "serial", 1, 1),  # the same loop last: shows drift of the machine's load
)


def _results(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [
            {k: v for k, v in row.items() if not k.startswith("time.")}
            for row in csv.DictReader(handle)
        ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=32, help="tasks in the sweep (even)")
    ap.add_argument("--quick", action="store_true", help="8 tiny tasks")
    ap.add_argument("--out", help="where the sweep directories go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the sweep directories")
    args = ap.parse_args(argv)
    import ray

    tasks = 8 if args.quick else args.tasks
    size = (
        dict(species=6, instances=64, ae_steps=60, meta_steps=80)
        if args.quick
        else dict(species=12, instances=256, ae_steps=300, meta_steps=300)
    )
    sweep = parse_sweep(SWEEP.format(seeds=max(1, tasks // 2), **size))
    n = len(sweep.tasks())
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_sweep."))
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"# bench_sweep: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, ray {ray.__version__}; {n} tasks of "
        f"{size['species']} species, {size['instances']} instances, AE {size['ae_steps']} / "
        f"MAE {size['meta_steps']} steps\n",
        flush=True,
    )
    # One task first, untimed: this process's first run pays one-off imports and caches.
    execute_task(sweep.tasks()[0], str(root / "warmup"), threads=1, gpu=False)
    rows = []
    reference = None
    for label, executor, jobs, threads in SETTINGS:
        out = root / label.split(" (")[0].replace(" ", "_").replace(",", "")
        shutil.rmtree(out, ignore_errors=True)
        startup = shutdown = 0.0
        if executor == "ray":
            t = time.perf_counter()
            ray.init(
                address="local",
                num_cpus=jobs * threads,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=128 * 1024**2,
            )
            startup = time.perf_counter() - t
        t = time.perf_counter()
        outcome = run_sweep(
            sweep, out, jobs=jobs, threads=threads, executor=executor, progress=False
        )
        wall = time.perf_counter() - t
        if executor == "ray":
            t = time.perf_counter()
            ray.shutdown()
            shutdown = time.perf_counter() - t
        if outcome.failed:
            print(f"{label}: {outcome.failed} tasks failed", file=sys.stderr)
            return 1
        results = _results(out / "results.csv")
        reference = reference or results
        # More torch threads sum in another order: their metrics may differ (RESULTS.md).
        same = "yes" if results == reference else ("no (threads)" if threads > 1 else "NO")
        rows.append((label, jobs, threads, wall, startup, shutdown, same))
        print(f"  {label}: {wall:.1f} s", file=sys.stderr, flush=True)

    loop = min(rows[0][3], rows[-1][3])
    one = rows[1][3]
    pinned = rows[2][3]
    print(
        "| setting | tasks x threads | wall s | tasks/s | vs loop | scaling eff. | "
        "Ray ms/task | vs pinned | ray.init s | same metrics |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, jobs, threads, wall, startup, _, same in rows:
        ray_row = label.startswith("ray")
        eff = f"{one / (jobs * wall):.2f}" if ray_row else "-"
        overhead = f"{(one - loop) / n * 1000:.0f}" if label == "ray 1x1" else "-"
        oversub = f"{wall / pinned:.2f}x" if label.startswith("ray 2") else "-"
        print(
            f"| {label} | {jobs} x {threads} | {wall:.1f} | {n / wall:.2f} | {loop / wall:.2f}x | "
            f"{eff} | {overhead} | {oversub} | {startup:.1f} | {same} |"
        )
    print(
        f"\nRay's overhead per task = (ray 1x1 wall - the faster loop's wall) / {n} tasks "
        "(dispatch, worker start and imports, results); ray.init and shutdown are timed apart. "
        "Scaling efficiency = ray 1x1 wall / (tasks at once x this wall); 'vs loop' against "
        "the faster of the two loops."
    )
    if not args.keep and not args.out:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r[-1] != "NO" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
