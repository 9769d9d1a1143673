"""Benchmark the batched AE trainer against the naive per-species loop.

For each available device (or ``--device``), one table: species-steps/s of the batched
trainer (:class:`evosim.train.engine.BatchedTrainer`, every species in one stacked model)
and of the naive loop (one ``torch.nn.Module`` + ``torch.optim.Adam`` per species, the
same model, batch size and data), and their ratio, at 64 .. 8,192 species. The naive
loop's cost is the same per species-step whatever the species count, so it is measured
on a few species (``--naive-species``) and extrapolated per species; the table says so.

On CUDA the table also has the achieved TFLOP/s and the fraction of the memory-bandwidth
floor, and a second table compares fp32 / bf16 / torch.compile at 4,096 species, AE
64-128-8, batch 128. FLOPs per member-step: forward 2 B sum(in*out); backward twice that,
less the first layer's input gradient. Bytes a step must move (its floor): the
parameters 10 times (forward read, backward read, gradient write, Adam reads p, g, m, v and
writes p, m, v; float32) plus activations: the minibatch read once, every layer's output
written once and read twice (next layer and backward) and its gradient written and read
once, in the compute dtype. The fraction divides that traffic per second by the
device-to-device copy bandwidth measured here.

On the CPU each row has three batched columns: the eager fp32 step, the step under
``torch.compile`` (fp32) and compiled with bfloat16 layers (``precision: bf16``, float32
master weights). The naive loop is timed with one thread and with ``--threads`` (it is
usually fastest with one: its products are too small to split) and every ratio is taken
against the faster of the two, so more threads never flatter a ratio. Both run after
:func:`evosim.train.resources.malloc_top_pad`, as in training.

The CPU is shared with whatever else runs on the machine; numbers on a busy machine are
low and noisy (each row is the best of ``--repeats`` timings).

Usage::

    python bench/bench_train.py                # every device, 64 .. 8,192 species
    python bench/bench_train.py --quick        # 64 and 256 species, fewer steps
    python bench/bench_train.py --device cpu --threads 1 --batch 32
    python bench/bench_train.py --ablation --threads 1   # each CPU speed fix, cumulatively
    python bench/bench_train.py --adam --threads 1       # evosim's Adam vs torch.optim.Adam
    python bench/bench_train.py --contended              # 1 vs 2 threads beside a busy core
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

# as `import evosim` does, before torch starts its OpenMP runtime: waiting threads sleep
if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import torch  # noqa: E402

from evosim.scenario import AutoencoderConfig  # noqa: E402
from evosim.train import model, streams  # noqa: E402
from evosim.train.engine import ADAM_EPS, BETAS, BatchedTrainer  # noqa: E402
from evosim.train.resources import (  # noqa: E402
    cpu_chunk_cap,
    dynamo_recompile_limit,
    malloc_top_pad,
)
from evosim.train.spec import AESpec  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _arch(text: str) -> tuple[int, list[int], int]:
    widths = [int(w) for w in text.split("-")]
    return widths[0], widths[1:-1], widths[-1]


def _config(arch: str, batch: int, steps: int, precision: str = "fp32") -> AutoencoderConfig:
    _, hidden, latent = _arch(arch)
    return AutoencoderConfig(
        hidden=hidden, latent=latent, batch_size=batch, steps=steps, precision=precision
    )


class TorchAdamTrainer(BatchedTrainer):
    """The step with ``torch.optim.Adam`` (``foreach`` or ``fused``) over the stacked parameters.

    A diverged member is frozen as in the engine: its gradient rows are zeroed, and so are
    its moment rows (multiplied by the live mask every step), so Adam's update of its rows is
    exactly 0. For the side-by-side comparison of the optimizer only.
    """

    def __init__(self, *args, impl: str = "fused", **kwargs):
        super().__init__(*args, **kwargs)
        # "fused-sync": mask only once a member has died (a host sync per step on CUDA)
        self.lazy_mask = impl == "fused-sync"
        self.opt = torch.optim.Adam(
            self.state.params,
            lr=self.config.lr,
            betas=BETAS,
            eps=ADAM_EPS,
            foreach=impl == "foreach",
            fused=impl.startswith("fused"),
        )
        self._set_compiled(self.compiled)

    def _set_compiled(self, on: bool) -> None:
        super()._set_compiled(on)
        if hasattr(self, "opt"):
            # compiled: the masking and torch's Adam traced together (PyTorch's "compiled
            # optimizer"); fused Adam is one kernel already and runs as it is
            fn = self._torch_adam
            self._adam = torch.compile(fn) if on and not self.opt.defaults["fused"] else fn

    def _torch_adam(self, params, grads, exp_avg, exp_avg_sq, alive, step_size, bc2, wd):
        m = alive.shape[0]
        for g in grads:
            alive = alive & torch.isfinite(g.reshape(m, -1).sum(1))
        if self.lazy_mask and bool(alive.all()):
            for p, g in zip(params, grads):
                p.grad = g + wd * p if wd else g
            self.opt.step()
            for p in params:
                p.grad = None
            return alive
        keep = [alive.view(-1, *([1] * (p.dim() - 1))) for p in params]
        for p, g, k in zip(params, grads, keep):
            if wd:
                g = g + wd * p
            p.grad = torch.where(k, g, torch.zeros_like(g))
        if self.opt.state:
            f = [k.to(p.dtype) for k, p in zip(keep, params)]
            torch._foreach_mul_([self.opt.state[p]["exp_avg"] for p in params], f)
            torch._foreach_mul_([self.opt.state[p]["exp_avg_sq"] for p in params], f)
        self.opt.step()
        for p in params:
            p.grad = None
        return alive


def _trainer(
    s: int,
    arch: str,
    batch: int,
    steps: int,
    n: int,
    device: torch.device,
    precision: str = "fp32",
    compile: bool = False,
    adam: str = "evosim",
) -> BatchedTrainer:
    d, _, _ = _arch(arch)
    config = _config(arch, batch, steps, precision)
    spec = AESpec.from_config(config, d)
    names = [f"s{i}" for i in range(s)]
    g = torch.Generator().manual_seed(0)
    data = torch.randn(s, n, d, generator=g)
    table = torch.arange(n).repeat(s, 1)
    cls = BatchedTrainer
    extra = {}
    if adam != "evosim":
        cls, extra = TorchAdamTrainer, {"impl": adam}
    return cls(
        spec,
        config,
        data,
        torch.arange(s),
        streams.member_keys(0, names, [0] * s),
        table,
        model.init_params(spec, 0, names, [0] * s),
        device=device,
        precision=precision,
        compile=compile,
        **extra,
    )


def time_batched(
    s: int,
    arch: str,
    batch: int,
    steps: int,
    n: int,
    device: torch.device,
    repeats: int,
    precision: str = "fp32",
    compile: bool = False,
    adam: str = "evosim",
) -> float:
    """Seconds per step of the batched trainer with ``s`` species (best of ``repeats``)."""
    warm = 5 if compile else 2
    tr = _trainer(s, arch, batch, warm + steps * repeats, n, device, precision, compile, adam)
    for _ in range(warm):
        tr.step()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.step()
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def time_naive(
    s: int, arch: str, batch: int, steps: int, n: int, device: torch.device, repeats: int
) -> float:
    """Seconds per species-step of the naive loop: each species its own module and Adam."""
    d, hidden, latent = _arch(arch)
    spec = AESpec(input_dim=d, hidden=tuple(hidden), latent=latent)
    names = [f"s{i}" for i in range(s)]
    init = model.init_params(spec, 0, names, [0] * s)
    data = torch.randn(s, n, d, generator=torch.Generator().manual_seed(0)).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    best = float("inf")
    for _ in range(repeats):
        total = 0.0
        for i in range(s):
            ae = model.SpeciesAE(spec, {k: v[i] for k, v in init.items()}).to(device)
            opt = torch.optim.Adam(ae.parameters(), lr=1e-3)
            x_all = data[i]

            def step(ae=ae, opt=opt, x_all=x_all) -> None:
                idx = torch.randint(0, n, (batch,), device=device, generator=gen)
                x = x_all[idx]
                loss = torch.mean((ae(x) - x) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            step()
            step()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            total += time.perf_counter() - t0
        best = min(best, total / (s * steps))
    return best


def flops_per_member_step(arch: str, batch: int) -> float:
    d, hidden, latent = _arch(arch)
    spec = AESpec(input_dim=d, hidden=tuple(hidden), latent=latent)
    pairs = list(zip(spec.encoder_widths[:-1], spec.encoder_widths[1:])) + list(
        zip(spec.decoder_widths[:-1], spec.decoder_widths[1:])
    )
    macs = sum(a * b for a, b in pairs)
    return 2.0 * batch * (3 * macs - pairs[0][0] * pairs[0][1])


def bytes_per_member_step(arch: str, batch: int, act_bytes: int) -> float:
    d, hidden, latent = _arch(arch)
    spec = AESpec(input_dim=d, hidden=tuple(hidden), latent=latent)
    outs = spec.encoder_widths[1:] + spec.decoder_widths[1:]
    return 10 * 4 * spec.n_params + batch * act_bytes * (d + 5 * sum(outs))


def copy_bandwidth(device: torch.device) -> float:
    """Measured device-to-device copy bandwidth, bytes/s (read + write)."""
    x = torch.empty(256 << 20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    _sync(device)
    return 2 * x.numel() * 10 / (time.perf_counter() - t0)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        action="append",
        help="default: cpu, and cuda when available",
    )
    p.add_argument("--species", type=int, nargs="+")
    p.add_argument("--arch", default="32-64-2", help="D-hidden...-latent (default 32-64-2)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--instances", type=int, default=256)
    p.add_argument("--steps", type=int, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--naive-species", type=int, default=4)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="64 and 256 species, fewer steps")
    p.add_argument(
        "--ablation",
        action="store_true",
        help="CPU: the step with each speed fix added in turn (64 species)",
    )
    p.add_argument(
        "--adam",
        action="store_true",
        help="CPU: evosim's batched Adam against torch.optim.Adam (foreach, fused), side by side",
    )
    p.add_argument(
        "--contended",
        action="store_true",
        help="CPU: 1 and 2 threads, quiet and beside a busy process pinned to one core, "
        "for each OpenMP wait policy",
    )
    p.add_argument("--_stage", type=int, help=argparse.SUPPRESS)
    p.add_argument("--_cell", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_compile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # as training does (every chunk shape and precision is its own compiled graph); this
    # process ends with the tables, so the setting need not be undone
    dynamo_recompile_limit().__enter__()
    if args._stage is not None:
        return _ablation_stage(args)
    if args._cell:
        return _contended_cell(args)
    if args.ablation:
        return ablation(args)
    if args.adam:
        return adam_table(args)
    if args.contended:
        return contended(args)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    species = args.species or ([64, 256] if args.quick else [64, 256, 1024, 4096, 8192])
    print(
        f"# bench_train: torch {torch.__version__}, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs (shared machine: other jobs may be running)"
    )
    malloc_top_pad().__enter__()  # as training does; this process ends with the tables
    for name in devices:
        device = torch.device(name)
        cuda = device.type == "cuda"
        steps = args.steps or (5 if args.quick else (20 if cuda else 10))
        if not cuda:
            cpu_table(args, species, steps)
            continue
        naive = time_naive(
            args.naive_species,
            args.arch,
            args.batch,
            4 * steps,
            args.instances,
            device,
            args.repeats,
        )
        print(
            f"\n## {name}: {_device_name(device)}; AE {args.arch}, batch {args.batch}, "
            f"elu, Adam, fp32"
        )
        print(
            f"naive loop measured on {args.naive_species} species x {4 * steps} steps: "
            f"{1 / naive:,.0f} species-steps/s, extrapolated per species to every row\n"
        )
        head = "| species | batched species-steps/s | naive species-steps/s (extrap.) | ratio |"
        rule = "|---:|---:|---:|---:|"
        if cuda:
            bw = copy_bandwidth(device)
            head += " TFLOP/s | bandwidth floor |"
            rule += "---:|---:|"
        print(head)
        print(rule)
        for s in species:
            try:
                dt = time_batched(
                    s, args.arch, args.batch, steps, args.instances, device, args.repeats
                )
            except (torch.cuda.OutOfMemoryError, RuntimeError, MemoryError) as exc:
                print(f"| {s:,} | failed: {type(exc).__name__} | | |")
                continue
            row = f"| {s:,} | {s / dt:,.0f} | {1 / naive:,.0f} | {s * naive / dt:,.1f}x |"
            if cuda:
                tf = s * flops_per_member_step(args.arch, args.batch) / dt / 1e12
                frac = s * bytes_per_member_step(args.arch, args.batch, 4) / dt / bw
                row += f" {tf:.2f} | {frac:.0%} |"
            print(row, flush=True)
        if cuda:
            variants(device, args.repeats, steps, args.instances)


def cpu_table(args: argparse.Namespace, species: list[int], steps: int) -> None:
    """Eager fp32, compiled fp32 and compiled bf16 against the naive loop, on the CPU.

    Each row times the trainer as :func:`train_autoencoders` runs it: species in chunks of
    at most :func:`cpu_chunk_cap` (processed one after another, so a row's rate is its
    chunk's rate), and separately one chunk holding every species, to show why the cap is
    there.
    """
    device = torch.device("cpu")
    threads = torch.get_num_threads()
    naive = {}
    for t in sorted({1, threads}):
        torch.set_num_threads(t)
        naive[t] = time_naive(
            args.naive_species,
            args.arch,
            args.batch,
            4 * steps,
            args.instances,
            device,
            args.repeats,
        )
    torch.set_num_threads(threads)
    best = min(naive.values())
    d, hidden, latent = _arch(args.arch)
    cap = cpu_chunk_cap(AESpec(input_dim=d, hidden=tuple(hidden), latent=latent), args.batch)
    print(f"\n## cpu: {_device_name(device)}; AE {args.arch}, batch {args.batch}, elu, Adam")
    print(
        f"naive loop (fp32) on {args.naive_species} species x {4 * steps} steps, "
        f"extrapolated per species: "
        + ", ".join(f"{1 / v:,.0f} species-steps/s with {t} thread(s)" for t, v in naive.items())
        + "; ratios against the faster\n"
    )
    print(
        "| species | chunk | eager fp32 | compiled fp32 | compiled bf16 | naive | ratio eager | "
        "ratio compiled | ratio bf16 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    chunks = [(s, min(s, cap)) for s in species]
    chunks += [(s, s) for s in species if s > cap]  # one chunk of everything, for contrast
    for s, chunk in chunks:
        rates = []
        for precision, comp in (("fp32", False), ("fp32", True), ("bf16", True)):
            try:
                dt = time_batched(
                    chunk,
                    args.arch,
                    args.batch,
                    steps,
                    args.instances,
                    device,
                    args.repeats,
                    precision,
                    comp,
                )
                rates.append(chunk / dt)
            except (RuntimeError, MemoryError) as exc:
                print(f"<!-- {s} {precision} compile={comp}: {type(exc).__name__} -->")
                rates.append(float("nan"))
        cells = " | ".join(f"{r:,.0f}" for r in rates)
        ratios = " | ".join(f"{r * best:,.1f}x" for r in rates)
        label = f"{chunk:,}" + ("" if chunk <= cap else " (one chunk)")
        print(f"| {s:,} | {label} | {cells} | {1 / best:,.0f} | {ratios} |", flush=True)


ABLATION = [
    "every fix off",
    "+ malloc keeps freed memory",
    "+ narrow products transposed",
    "+ ELU backward from its output",
    "+ minibatch rows drawn 64 steps at a time",
    "+ torch.compile",
]


def ablation(args: argparse.Namespace) -> None:
    """Each CPU speed fix added in turn; one process per row (the malloc setting sticks)."""
    s = (args.species or [64])[0]
    print(
        f"\n## cpu ablation: {s} species, AE {args.arch}, batch {args.batch}, fp32, "
        f"{torch.get_num_threads()} thread(s)\n"
    )
    print("| step | ms per step | species-steps/s | vs every fix off |")
    print("|---|---:|---:|---:|")
    first = None
    for stage, label in enumerate(ABLATION):
        cmd = [
            sys.executable,
            __file__,
            "--_stage",
            str(stage),
            "--species",
            str(s),
            "--arch",
            args.arch,
            "--batch",
            str(args.batch),
            "--repeats",
            str(args.repeats),
            "--threads",
            str(torch.get_num_threads()),
            "--steps",
            str(args.steps or 30),
        ]
        dt = float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        first = first or dt
        print(f"| {label} | {dt * 1e3:.2f} | {s / dt:,.0f} | {first / dt:.2f}x |", flush=True)


def _ablation_stage(args: argparse.Namespace) -> None:
    import torch.nn.functional as F

    from evosim.train import engine, ops

    stage = args._stage
    if stage >= 1:
        malloc_top_pad().__enter__()
    if stage < 2:
        ops.NARROW = 0
    if stage < 3:
        ops.elu = F.elu
    if stage < 4:
        engine.ROW_BLOCK_STEPS = 1
    dt = time_batched(
        args.species[0],
        args.arch,
        args.batch,
        args.steps,
        args.instances,
        torch.device("cpu"),
        args.repeats,
        "fp32",
        compile=stage >= 5,
    )
    print(dt)


ADAMS = [
    ("evosim (hand-written, masked)", "evosim"),
    ("torch.optim.Adam foreach", "foreach"),
    ("torch.optim.Adam fused", "fused"),
    ("fused, masking only after a death", "fused-sync"),
]


def adam_table(args: argparse.Namespace) -> None:
    """evosim's batched Adam against torch.optim.Adam on the stacked parameters, on the CPU.

    Same step otherwise (objective, masking of diverged members); eager and compiled
    objective. In each of ``--repeats`` rounds every variant runs ``--steps`` steps, back to
    back, in an order that rotates between rounds; a cell is the variant's best round, and
    the ratio columns are the median over rounds of the variant's time relative to evosim's
    in the same round, with the range of those per-round ratios: a paired comparison, so
    that load drifting between rounds cancels. A median whose range straddles 1 is noise.
    """
    device = torch.device("cpu")
    species = args.species or ([64] if args.quick else [64, 253])
    steps = args.steps or (10 if args.quick else 40)
    rounds = max(3, args.repeats)
    others = [(label, key) for label, key in ADAMS if key != "evosim"]
    print(
        f"\n## cpu: Adam implementations; AE {args.arch}, batch {args.batch}, "
        f"{torch.get_num_threads()} thread(s), {rounds} rounds of {steps} steps\n"
    )
    print(
        "| species | objective | "
        + " | ".join(f"{label} species-steps/s" for label, _ in ADAMS)
        + " | "
        + " | ".join(f"{label} / evosim speed (range)" for label, _ in others)
        + " |"
    )
    print("|---:|---|" + "---:|" * (len(ADAMS) + len(others)))
    for s in species:
        for comp in (False, True):
            times: dict[str, list[float]] = {key: [] for _, key in ADAMS}
            trainers = {
                key: _trainer(
                    s, args.arch, args.batch, 10**6, args.instances, device, "fp32", comp, key
                )
                for _, key in ADAMS
            }
            for tr in trainers.values():
                for _ in range(5 if comp else 2):
                    tr.step()
            keys = list(trainers)
            for r in range(rounds):
                for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
                    tr = trainers[key]
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        tr.step()
                    times[key].append((time.perf_counter() - t0) / steps)
            cells = " | ".join(f"{s / min(times[k]):,.0f}" for _, k in ADAMS)
            ratios = []
            for _, k in others:
                per_round = sorted(e / t for e, t in zip(times["evosim"], times[k]))
                med = per_round[len(per_round) // 2]
                ratios.append(f"{med:.2f} ({per_round[0]:.2f}-{per_round[-1]:.2f})")
            label = "compiled" if comp else "eager"
            print(f"| {s:,} | {label} | {cells} | {' | '.join(ratios)} |", flush=True)


POLICIES = [
    ("spin ~3 ms (libgomp default; before)", {"GOMP_SPINCOUNT": "300000"}),
    ("passive (evosim's default; after)", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("short spin (GOMP_SPINCOUNT=10000, ~0.1 ms)", {"GOMP_SPINCOUNT": "10000"}),
]


def _busy_process(cpu: int) -> subprocess.Popen:
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def contended(args: argparse.Namespace) -> None:
    """Species-steps/s with 1 and 2 threads, quiet and beside a busy process on one core.

    Each cell is its own process (the OpenMP wait policy is read when torch loads), started
    with the policy's environment; "contended" runs a Python busy loop pinned to the first
    allowed core for the cell's duration. The trainer itself may use every allowed core.
    Rounds rotate over the cells; each cell reports its best round.
    """
    cpus = sorted(os.sched_getaffinity(0))
    species = args.species or [32]
    steps = args.steps or (20 if args.quick else 100)
    rounds = 1 if args.quick else max(2, args.repeats)
    compile = False
    print(
        f"\n## cpu: contention; {species[0]} species (one chunk), AE {args.arch}, batch "
        f"{args.batch}, eager fp32, {steps} steps per cell, best of {rounds} round(s); busy "
        f"process pinned to CPU {cpus[0]} of {cpus}\n"
    )
    print("| wait policy | threads | quiet | contended | contended / quiet |")
    print("|---|---:|---:|---:|---:|")
    cells = [(label, env, t) for label, env in POLICIES for t in (1, 2)]
    best: dict[tuple[str, int, bool], float] = {}
    for _ in range(rounds):
        for label, env, t in cells:
            for busy in (False, True):
                child_env = {
                    k: v
                    for k, v in os.environ.items()
                    if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
                }
                child_env.update(env)
                cmd = [
                    sys.executable,
                    __file__,
                    "--_cell",
                    "--threads",
                    str(t),
                    "--species",
                    str(species[0]),
                    "--arch",
                    args.arch,
                    "--batch",
                    str(args.batch),
                    "--steps",
                    str(steps),
                ]
                if compile:
                    cmd.append("--_compile")
                hog = _busy_process(cpus[0]) if busy else None
                try:
                    out = subprocess.run(
                        cmd, check=True, capture_output=True, text=True, env=child_env
                    ).stdout
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
                key = (label, t, busy)
                best[key] = max(best.get(key, 0.0), float(out))
    for label, _, t in cells:
        q, c = best[(label, t, False)], best[(label, t, True)]
        print(f"| {label} | {t} | {q:,.0f} | {c:,.0f} | {c / q:.2f} |")
    for label, _ in POLICIES:
        ratio = best[(label, 2, True)] / best[(label, 1, True)]
        quiet = best[(label, 2, False)] / best[(label, 1, False)]
        print(
            f"\n{label}: 2 threads / 1 thread = {quiet:.2f} quiet, {ratio:.2f} contended",
            end="",
        )
    print()


def _contended_cell(args: argparse.Namespace) -> None:
    s = args.species[0]
    warm = 5 if args._compile else 2
    tr = _trainer(
        s,
        args.arch,
        args.batch,
        warm + args.steps,
        args.instances,
        torch.device("cpu"),
        compile=args._compile,
    )
    with malloc_top_pad():
        for _ in range(warm):
            tr.step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            tr.step()
        print(s * args.steps / (time.perf_counter() - t0))


def variants(device: torch.device, repeats: int, steps: int, n: int) -> None:
    """fp32 / bf16 / torch.compile at 4,096 species, AE 64-128-8, batch 128."""
    arch, batch, s = "64-128-8", 128, 4096
    bw = copy_bandwidth(device)
    print(f"\n### {device}: variants at {s:,} species, AE {arch}, batch {batch}\n")
    print("| variant | species-steps/s | TFLOP/s | bandwidth floor |")
    print("|---|---:|---:|---:|")
    for label, precision, comp in [
        ("fp32", "fp32", False),
        ("tf32", "tf32", False),
        ("bf16 autocast", "bf16", False),
        ("fp32 + torch.compile", "fp32", True),
        ("bf16 + torch.compile", "bf16", True),
    ]:
        try:
            dt = time_batched(s, arch, batch, steps, n, device, repeats, precision, comp)
        except Exception as exc:  # report and go on: one broken variant must not hide the rest
            print(f"| {label} | failed: {type(exc).__name__}: {str(exc)[:60]} | | |")
            continue
        act = 2 if precision == "bf16" else 4
        tf = s * flops_per_member_step(arch, batch) / dt / 1e12
        frac = s * bytes_per_member_step(arch, batch, act) / dt / bw
        print(f"| {label} | {s / dt:,.0f} | {tf:.2f} | {frac:.0%} |", flush=True)


if __name__ == "__main__":
    main()
