"""Resource planning for the trainer: memory estimates, chunking, compiling, process settings.

Everything here decides *how* to train, never *what*: a member's AE does not depend on the
chunking, and the compile decision and the chunk plan depend only on the config and the
data's size (the CPU chunk cap is a constant, not the machine's cache size), so a resumed
run decides the same. :func:`training_settings` sets the few process-wide knobs training
wants (glibc's malloc top pad, dynamo's recompile limit, TF32) and puts every one of them
back when training ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import math
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import torch

from evosim.train.spec import AESpec

__all__ = [
    "estimate_member_bytes",
    "estimate_training_bytes",
    "chunk_size",
    "cpu_chunk_cap",
    "use_compile",
    "training_settings",
    "openmp_wait_policy",
    "CPU_STEP_BYTES",
    "COMPILE_MIN_MEMBER_STEPS",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- memory


def estimate_member_bytes(spec: AESpec, config: Any, n: int, replicates: int = 1) -> int:
    """Upper bound on the bytes one member needs while its chunk trains.

    Parameters
    ----------
    spec
        The member's AE.
    config
        The ``autoencoder`` section (``batch_size`` and the variant are read).
    n
        Instances per species.
    replicates
        Members per species (the species' data is shared by its replicates).

    Returns
    -------
    int
        Parameters with their gradient, Adam moments and update temporaries; the step's
        activations (pre- and post-activation outputs and their gradients); minibatch
        indices; its share of the species' data; times a 1.5 safety factor.
    """
    b = config.batch_size
    params = spec.n_params * 4 * 5  # param, grad, exp_avg, exp_avg_sq, update temporaries
    widths = spec.encoder_widths + spec.decoder_widths
    acts = b * sum(widths) * 4 * 4  # pre/post activations and their gradients
    if spec.variant == "contractive":
        acts += b * spec.latent * sum(spec.encoder_widths[:-1]) * 4 * 6
    if spec.variant in ("denoising", "variational"):
        acts += b * spec.input_dim * 4 * 4
    index = b * 8 * 8 + n * 8 * 3
    data = n * spec.input_dim * 4 // replicates
    return int(1.5 * (params + acts + index + data)) + 1


def _result_bytes(spec: AESpec, config: Any) -> int:
    """Bytes of one finished member held until the bank is assembled (kept, then stacked)."""
    from evosim.train.engine import CURVE_POINTS

    losses = 8 * (2 + min(CURVE_POINTS, config.steps)) + 1
    return 2 * 4 * spec.n_params + losses


def _chunk_bytes(spec: AESpec, config: Any, n: int, members: int) -> int:
    """Peak bytes of a chunk of ``members`` members, training or being evaluated."""
    from evosim.train.engine import EVAL_ELEMS, ROW_BLOCK_ELEMS, ROW_BLOCK_STEPS

    reps = config.replicates
    b = config.batch_size
    # the minibatch rows of a block of steps, int64, and the counter hash's temporaries
    hashing = 8 * 8 * min(ROW_BLOCK_ELEMS, ROW_BLOCK_STEPS * members * b)
    checkpoint = 3 * 4 * spec.n_params * members  # parameters and moments, copied
    train = members * estimate_member_bytes(spec, config, n, reps) + hashing + checkpoint
    # evaluation: blocks of instances through the deterministic reconstruction
    n_train = n - int(round(n * config.validation_fraction))
    block = min(n_train, max(1, EVAL_ELEMS // (members * (spec.input_dim + sum(spec.hidden)))))
    values = sum(spec.encoder_widths) + sum(spec.decoder_widths) + 2 * spec.input_dim
    evaluate = 4 * members * block * values
    return max(train, evaluate)


def estimate_training_bytes(
    config: Any,
    n_species: int,
    n_instances: int,
    dim: int,
    *,
    device: torch.device | str = "cpu",
) -> int:
    """Upper bound on the memory :func:`~evosim.train.train_autoencoders` needs.

    Use it to refuse a scenario that cannot fit before anything is allocated: it reads only
    the ``autoencoder`` section and the data's shape.

    Parameters
    ----------
    config
        The ``autoencoder`` section (an :class:`~evosim.scenario.AutoencoderConfig`);
        with ``architectures``, the largest architecture's chunk is counted.
    n_species, n_instances, dim
        S, N and D of the instances ``[S, N, D]`` to train on.
    device
        Where training runs. On the CPU, chunks are capped (:func:`cpu_chunk_cap`); on CUDA
        a chunk fills up to 60% of the free device memory, so only host memory is bounded
        here.

    Returns
    -------
    int
        Host bytes: the float32 instances themselves (``4 S N D``), the members'
        train/validation/sampling index tables, every finished member's parameters (held per
        chunk, then stacked into the bank), and 1.5 times the largest chunk's peak (its
        parameters, Adam state, activations and minibatch indices while it trains, a
        checkpoint's copy of its state, or its evaluation blocks; the 1.5 covers the
        allocator keeping freed memory between chunks). Not counted: the interpreter and its
        libraries (about 0.3-0.5 GB with torch loaded) and ``torch.compile``'s compiler.
        Measured peaks are 0.4-0.8 of this (bench/RESULTS.md).
    """
    device = torch.device(device)
    reps = config.replicates
    members = n_species * reps
    data = 4 * n_species * n_instances * dim
    splits = 8 * members * (2 * n_instances)  # train + validation, and the sampling table
    worst = 0
    for arch in _architectures(config):
        spec = AESpec.from_config(arch, dim)
        kept = members * _result_bytes(spec, config)
        chunk = 0
        if device.type == "cpu":
            size = min(n_species, chunk_size(spec, config, n_instances, device, available=math.inf))
            chunk = _chunk_bytes(spec, config, n_instances, size * reps)
        worst = max(worst, kept + int(1.5 * chunk))
    return int(data + splits + worst)


def _architectures(config: Any) -> list[Any]:
    archs = list(getattr(config, "architectures", None) or [])
    if not archs:
        return [config]
    return [config.model_copy(update=a.model_dump()) for a in archs]


def _available_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


CPU_STEP_BYTES = 24 << 20
"""On the CPU a chunk's layer outputs per step stay under this (a server L3 holds 32 MB):
past it every step streams its activations from memory and throughput halves
(bench/RESULTS.md). A constant, not the machine's cache size, so that the chunking, and with
``compile`` the arithmetic, is the same on every machine."""


def cpu_chunk_cap(spec: AESpec, batch_size: int, replicates: int = 1) -> int:
    """Species per chunk on the CPU: :data:`CPU_STEP_BYTES` of float32 layer outputs."""
    widths = spec.encoder_widths + spec.decoder_widths[1:]
    per_member = 4 * batch_size * sum(widths)
    return max(1, CPU_STEP_BYTES // (per_member * replicates))


def chunk_size(
    spec: AESpec,
    config: Any,
    n: int,
    device: torch.device,
    *,
    available: float | None = None,
) -> int:
    """Species per chunk: what fits the device, and on the CPU at most :func:`cpu_chunk_cap`.

    ``available`` is the memory to plan with, in bytes (default: measured now, 60% of the
    free CUDA memory or a quarter of the free host memory; ``math.inf``: no limit).
    """
    per_species = estimate_member_bytes(spec, config, n, config.replicates) * config.replicates
    if available is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            available = 0.6 * free
        else:
            available = _available_bytes() / 4
    size = 1 << 62 if math.isinf(available) else max(1, int(available // per_species))
    if device.type == "cpu":
        size = min(size, cpu_chunk_cap(spec, config.batch_size, config.replicates))
    return size


# ---------------------------------------------------------------------------- compile

COMPILE_MIN_MEMBER_STEPS = 500_000
"""``compile: auto`` compiles on the CPU from this many member-steps (AEs x steps) up: compiling
takes 5-15 s and saves about 60 us per member-step (bench/RESULTS.md)."""

RECOMPILE_LIMIT = 64
"""Every chunk shape, variant and precision is its own compiled graph; past torch's default
limit of 8 per function, dynamo would silently run the rest eagerly."""


def use_compile(setting: bool | str, device: torch.device, member_steps: int) -> bool:
    """Whether to ``torch.compile`` the step, for the ``autoencoder.compile`` setting."""
    if setting != "auto":
        return bool(setting)
    return device.type == "cuda" or member_steps >= COMPILE_MIN_MEMBER_STEPS


# ---------------------------------------------------------------------------- threads


def openmp_wait_policy() -> str:
    """How torch's OpenMP threads wait at a barrier, as the environment tells the runtime.

    ``"passive"`` (sleep at once), ``"active"`` (spin), ``"spin N"`` (``GOMP_SPINCOUNT``) or
    ``"default"``: libgomp's, spin about 3 ms, then sleep. The runtime reads this once, when
    torch is first imported; ``import evosim`` before torch sets ``OMP_WAIT_POLICY=PASSIVE``
    unless the user set a policy. Spinning threads starve each other on a busy machine: with
    another process busy on one of two cores, two spinning threads trained 6-30x slower than
    one thread, while two passive threads were not slower than one (bench/RESULTS.md).
    """
    spin = os.environ.get("GOMP_SPINCOUNT")
    if spin:
        return f"spin {spin.strip()}"
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().lower()
    return policy if policy in ("passive", "active") else "default"


# ---------------------------------------------------------------------------- process settings

_M_TOP_PAD = -2  # glibc <malloc.h>
_GLIBC_TOP_PAD = 128 << 10  # glibc's default M_TOP_PAD (malloc-machine.h, mallopt(3))
MALLOC_TOP_PAD = 256 << 20


def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - absent off glibc (musl has no mallopt)
        return libc
    except (OSError, AttributeError):
        return None


def _initial_top_pad() -> int:
    """M_TOP_PAD as the process started: glibc's default unless the environment set it."""
    for part in os.environ.get("GLIBC_TUNABLES", "").split(":"):
        m = re.fullmatch(r"glibc\.malloc\.top_pad=(\d+)", part.strip())
        if m:
            return int(m.group(1))
    env = os.environ.get("MALLOC_TOP_PAD_", "")
    return int(env) if env.isdigit() else _GLIBC_TOP_PAD


_top_pad_now: int | None = None  # what evosim last set (glibc has no way to read it back)


@contextlib.contextmanager
def malloc_top_pad(pad: int = MALLOC_TOP_PAD) -> Iterator[bool]:
    """Ask glibc's malloc to keep ``pad`` bytes of freed heap instead of trimming it.

    Every step frees and re-allocates the same few MB-sized activations; trimmed
    memory comes back as fresh pages, each faulted and zeroed again (a third of the
    step, bench/RESULTS.md). Yields whether the setting took (False off glibc); on exit
    the pad goes back to what it was (glibc cannot report it, so "what it was" is the
    value evosim last set, else the environment's, else glibc's default of 128 KiB).
    """
    global _top_pad_now
    libc = _glibc()
    if libc is None:
        yield False
        return
    old = _initial_top_pad() if _top_pad_now is None else _top_pad_now
    ok = bool(libc.mallopt(_M_TOP_PAD, int(pad)))
    _top_pad_now = int(pad) if ok else old
    try:
        yield ok
    finally:
        if ok:
            libc.mallopt(_M_TOP_PAD, old)
            _top_pad_now = old


@contextlib.contextmanager
def dynamo_recompile_limit(limit: int = RECOMPILE_LIMIT) -> Iterator[None]:
    """Raise dynamo's per-function recompile limit to at least ``limit``, then restore it."""
    import torch._dynamo.config as dynamo_config

    name = next(
        (n for n in ("recompile_limit", "cache_size_limit") if hasattr(dynamo_config, n)), None
    )  # cache_size_limit: the name before torch 2.6
    if name is None:
        yield
        return
    old = getattr(dynamo_config, name)
    setattr(dynamo_config, name, max(old, limit))
    try:
        yield
    finally:
        setattr(dynamo_config, name, old)


@contextlib.contextmanager
def cuda_tf32(on: bool) -> Iterator[None]:
    """TF32 matrix products on CUDA for the ``tf32`` precision, then restore the setting."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


@contextlib.contextmanager
def training_settings(
    device: torch.device, *, precision: str = "fp32", compile: bool = False
) -> Iterator[None]:
    """Process-wide settings for training on ``device``, every one restored on exit.

    On the CPU, glibc's malloc keeps freed memory (:func:`malloc_top_pad`); with ``compile``
    dynamo may keep a graph per chunk shape (:data:`RECOMPILE_LIMIT`); on CUDA ``tf32``
    turns on TF32 products. Torch's thread count is left as the caller set it; how its
    threads wait is the OpenMP runtime's (:func:`openmp_wait_policy`), fixed when torch loads.
    """
    with contextlib.ExitStack() as stack:
        if device.type == "cpu":
            stack.enter_context(malloc_top_pad())
        if compile:
            stack.enter_context(dynamo_recompile_limit())
        if device.type == "cuda":
            stack.enter_context(cuda_tf32(precision == "tf32"))
        yield
