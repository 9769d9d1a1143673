"""The batched trainer: every species' autoencoder trained at once.

All members' parameters are stacked (``[M, in, out]``) and driven by batched matrix
products; the objective is the sum of the members' losses, so each member's gradient
is its own, and Adam is elementwise, so this is mathematically M independent
trainings (DESIGN.md, "Batched training"). What a member sees depends only on
``(seed, species name, replicate)``: its initial weights (:func:`model.init_params`),
its train/validation split and bootstrap sample, and at every step its minibatch and
noise (:mod:`evosim.train.streams`, counter-based, so no generator state exists to
checkpoint). Hence a species' AE is the same whether trained among 4 or 64 species,
in any chunking, and a resumed run is bit-identical to an uninterrupted one on CPU.
The compiled step (``compile``) keeps the resume guarantee; across chunk sizes its
fused kernels agree with each other and with the eager step to float rounding.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import json
import logging
import math
import os
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from evosim import runio
from evosim.devices import resolve_device
from evosim.seeding import rng
from evosim.train import model as _model
from evosim.train import streams
from evosim.train import variants as _variants
from evosim.train.bank import AEBank
from evosim.train.spec import AESpec

__all__ = [
    "train_autoencoders",
    "BatchedTrainer",
    "member_splits",
    "noise_pool",
    "estimate_member_bytes",
]

log = logging.getLogger(__name__)

BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
CURVE_POINTS = 50
ROW_BLOCK_STEPS = 64  # minibatch rows are drawn this many steps at a time ...
ROW_BLOCK_ELEMS = 1 << 20  # ... or fewer, to stay under this many indices
REFERENCE_INPUTS = 1024
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

# Called after every training step with (species range of the chunk, steps done); tests use
# it to interrupt a run at a chosen step.
_after_step_hook: Callable[[tuple[int, int], int], None] | None = None


# ---------------------------------------------------------------------------- data


def _resolve_data(
    data: Any, species: Sequence[str] | None, seed: int | None
) -> tuple[np.ndarray, list[str], int]:
    if hasattr(data, "instances"):  # a Simulation (duck-typed)
        instances = np.asarray(data.instances, dtype=np.float32)
        names = [str(s) for s in data.species]
        if seed is None:
            seed = int(data.scenario.seed)
        if species is not None:
            index = {s: i for i, s in enumerate(names)}
            missing = [s for s in species if s not in index]
            if missing:
                raise ValueError(f"species not in the simulation: {missing[:5]}")
            instances = instances[[index[s] for s in species]]
            names = [str(s) for s in species]
    else:
        instances = np.asarray(data, dtype=np.float32)
        if instances.ndim != 3:
            raise ValueError(
                f"data must be a Simulation or an array [S, N, D], got shape {instances.shape}"
            )
        names = (
            [f"s{i + 1}" for i in range(instances.shape[0])]
            if species is None
            else [str(s) for s in species]
        )
        if seed is None:
            seed = 0
    if instances.ndim != 3:
        raise ValueError(f"instances must be [S, N, D], got shape {instances.shape}")
    s, n, d = instances.shape
    if s < 1 or n < 2 or d < 1:
        raise ValueError(f"instances [S, N, D] need S >= 1, N >= 2, D >= 1, got {instances.shape}")
    if len(names) != s:
        raise ValueError(f"got {len(names)} species names for {s} species")
    if len(set(names)) != s:
        raise ValueError("species names must be unique")
    bad = ~np.isfinite(instances).reshape(s, -1).all(1)
    if bad.any():
        log.warning(
            "non-finite instances for %d species (e.g. %s); their AEs will diverge",
            int(bad.sum()),
            [names[i] for i in np.flatnonzero(bad)[:5]],
        )
    return np.ascontiguousarray(instances), names, int(seed)


def member_splits(
    seed: int, species: Sequence[str], replicates: int, n: int, validation_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each member's training instances, validation instances and sampling table.

    Member ``(species, r)`` permutes its species' N instances with
    ``rng(seed, "ae-split", species, r)``; the first ``round(N * validation_fraction)`` are
    held out. With ``replicates > 1`` every replicate samples its minibatches from a
    bootstrap resample of its training instances (``rng(seed, "ae-bootstrap", species, r)``),
    so replicates see different subsamples.

    Returns
    -------
    train : ``[M, n_train]`` int64, val : ``[M, n_val]`` int64, table : ``[M, n_train]`` int64
        Instance indices within the species; minibatches draw uniformly from ``table``.
    """
    n_val = int(round(n * validation_fraction))
    n_val = min(n_val, n - 1)
    m = len(species) * replicates
    train = np.empty((m, n - n_val), dtype=np.int64)
    val = np.empty((m, n_val), dtype=np.int64)
    table = np.empty_like(train)
    i = 0
    for s in species:
        for r in range(replicates):
            perm = rng(seed, "ae-split", s, r).permutation(n)
            val[i], train[i] = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            if replicates > 1:
                boot = rng(seed, "ae-bootstrap", s, r).integers(0, n - n_val, size=n - n_val)
                table[i] = train[i][boot]
            else:
                table[i] = train[i]
            i += 1
    return train, val, table


def noise_pool(seed: int, dim: int) -> torch.Tensor:
    """``[Q, dim]`` standard-normal rows from ``(seed, "ae-noise-pool")`` for denoising.

    Hashing a fresh normal for every input element every step costs more than the AE's
    own step on a CPU; a member instead picks, per sample, one of Q = 2**16 (fewer for very
    wide inputs) fixed noise rows by its counter stream. With 2000 steps of 128 samples a
    member reuses a row about 4 times, each time on a random instance.
    """
    q = int(min(65536, max(4096, (1 << 23) // dim)))
    return torch.from_numpy(rng(seed, "ae-noise-pool").standard_normal((q, dim), dtype=np.float32))


def estimate_member_bytes(spec: AESpec, config: Any, n: int, replicates: int = 1) -> int:
    """Rough device bytes one member needs while training (parameters, Adam, activations)."""
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


def _auto_chunk(spec: AESpec, config: Any, n: int, device: torch.device) -> int:
    per_species = estimate_member_bytes(spec, config, n, config.replicates) * config.replicates
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = 0.6 * free
    else:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 4 << 30
        budget = 0.25 * avail
    size = max(1, int(budget // per_species))
    if device.type == "cpu":
        size = min(size, cpu_chunk_cap(spec, config.batch_size, config.replicates))
    return size


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


# ---------------------------------------------------------------------------- the batched step


@dataclass
class _State:
    params: list[torch.Tensor]
    exp_avg: list[torch.Tensor]
    exp_avg_sq: list[torch.Tensor]
    alive: torch.Tensor  # [M] bool
    death_step: torch.Tensor  # [M] int64, -1 while alive
    curve_sum: torch.Tensor  # [M, n_points] float64
    step: int = 0


def _curve_blocks(steps: int) -> tuple[int, np.ndarray]:
    points = min(CURVE_POINTS, steps)
    block = (np.arange(steps) * points) // steps  # block of each step
    return points, block


class BatchedTrainer:
    """Trains M members of one chunk together (the engine of :func:`train_autoencoders`).

    Parameters
    ----------
    spec, config
        The AE and the AutoencoderConfig (``steps``, ``batch_size``, ``lr``, ``weight_decay``
        and the variant's weights are read from it).
    data
        ``[S_c, N, D]`` float32 instances of the chunk's species (moved to ``device``).
    member_species
        ``[M]`` index into ``data`` of each member's species.
    keys
        ``[M, 2]`` member keys (:func:`streams.member_keys`).
    table
        ``[M, n]`` instance indices each member samples its minibatches from.
    params
        Initial stacked parameters (:func:`model.init_params`).
    device, precision
        ``precision`` is ``fp32``, ``tf32`` or ``bf16``: bf16 autocast on CUDA; on the CPU,
        bf16 runs the layers in bfloat16 (float32 master weights, loss and Adam).
    noise_pool
        ``[Q, D]`` standard-normal rows (:func:`noise_pool`); ``denoising`` draws each sample's
        corruption as a row picked by the member's counter stream.
    compile
        Compile the objective and the Adam update with ``torch.compile``. Should compiling
        fail (no C++ compiler on a CPU machine, say), the trainer logs a warning and runs
        eagerly from the same state.
    """

    def __init__(
        self,
        spec: AESpec,
        config: Any,
        data: torch.Tensor,
        member_species: torch.Tensor,
        keys: torch.Tensor,
        table: torch.Tensor,
        params: dict[str, torch.Tensor],
        *,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        noise_pool: torch.Tensor | None = None,
        compile: bool = False,
    ):
        self.spec = spec
        self.config = config
        self.device = torch.device(device)
        self.precision = precision
        self.names = list(params)
        if spec.variant == "denoising":
            if noise_pool is None:
                raise ValueError("the denoising variant needs a noise_pool")
            self.noise_pool = noise_pool.to(self.device, torch.float32)
        d = data.to(self.device, torch.float32)
        self.n = d.shape[1]
        self.flat = d.reshape(-1, d.shape[-1])
        self.offset = (member_species.to(self.device, torch.int64) * self.n).unsqueeze(1)
        self.keys = keys.to(self.device)
        self._rows: tuple[int, torch.Tensor] = (0, torch.empty(0, device=self.device))
        self.table = table.to(self.device, torch.int64)
        self.m = self.table.shape[0]
        self.points, block = _curve_blocks(config.steps)
        self.block = block.tolist()
        self.block_len = np.bincount(block, minlength=self.points)
        self.block_end = np.array([np.flatnonzero(block == k).max() for k in range(self.points)])
        ps = [
            p.detach().to(self.device, torch.float32).clone().requires_grad_(True)
            for p in params.values()
        ]
        self.state = _State(
            params=ps,
            exp_avg=[torch.zeros_like(p) for p in ps],
            exp_avg_sq=[torch.zeros_like(p) for p in ps],
            alive=torch.ones(self.m, dtype=torch.bool, device=self.device),
            death_step=torch.full((self.m,), -1, dtype=torch.int64, device=self.device),
            curve_sum=torch.zeros(self.m, self.points, dtype=torch.float64, device=self.device),
        )
        # the loss weights as plain floats (a pydantic model is awkward to trace)
        self.weights = types.SimpleNamespace(
            **{
                k: getattr(config, k)
                for k in (
                    "corruption",
                    "sparsity",
                    "sparsity_weight",
                    "sparsity_target",
                    "contractive_weight",
                    "kl_weight",
                    "rate_weight",
                    "duplicate_weight",
                )
            }
        )
        self.compute_dtype = (
            torch.bfloat16 if precision == "bf16" and self.device.type != "cuda" else None
        )
        self._compile_tried = not compile
        self._set_compiled(compile)

    def _set_compiled(self, on: bool) -> None:
        self.compiled = on
        self._objective = _model.member_objective
        self._adam = _adam_update
        if on:
            # specialised to this chunk's shapes: a dynamic-shape kernel compiled for an
            # earlier chunk would make a chunk's arithmetic depend on the run's history
            _allow_recompiles()
            self._objective = torch.compile(_model.member_objective, dynamic=False)
            self._adam = torch.compile(_adam_update, dynamic=False)

    # -- one step ------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def batch_rows(self, step: int) -> torch.Tensor:
        """``[M, B]`` rows of the flattened data in the members' minibatches at ``step``.

        Drawn for a block of steps at once (the same numbers: each is a function of its
        step alone), which spreads the hash's few dozen small ops over the block.
        """
        start, rows = self._rows
        if not start <= step < start + rows.shape[0]:
            batch = self.config.batch_size
            k = max(1, min(ROW_BLOCK_STEPS, ROW_BLOCK_ELEMS // (self.m * batch)))
            steps = torch.arange(step, step + k, device=self.device).unsqueeze(1)
            base = streams.step_base(
                self.keys.repeat(k, 1), streams.STREAM_BATCH, steps.expand(k, self.m).reshape(-1)
            )
            pos = streams.randint(base, (batch,), self.table.shape[1]).reshape(k, self.m, batch)
            rows = self.table.unsqueeze(0).expand(k, -1, -1).gather(2, pos) + self.offset
            start = step
            self._rows = (start, rows)
        return rows[step - start]

    def minibatch(self, step: int) -> torch.Tensor:
        """``[M, B, D]`` the members' minibatches at ``step``."""
        idx = self.batch_rows(step)
        return self.flat.index_select(0, idx.reshape(-1)).reshape(*idx.shape, -1)

    def step(self) -> torch.Tensor:
        """One Adam step for every live member; returns the ``[M]`` objective (float32)."""
        if self._compile_tried:
            return self._step()
        self._compile_tried = True
        before = self.state_dict()
        try:
            return self._step()
        except Exception as exc:  # the compiler's errors have no common base class
            log.warning(
                "torch.compile failed (%s: %s); training eagerly instead",
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
            self.load_state_dict(before)
            self._set_compiled(False)
            return self._step()

    def _step(self) -> torch.Tensor:
        st, cfg, spec = self.state, self.config, self.spec
        t = st.step
        x = self.minibatch(t)
        noise = eps = None
        if spec.variant == "denoising":
            rows = streams.randint(
                streams.step_base(self.keys, streams.STREAM_NOISE, t),
                (x.shape[1],),
                self.noise_pool.shape[0],
            )
            noise = self.noise_pool[rows]
        elif spec.variant == "variational":
            eps = streams.normal(
                streams.step_base(self.keys, streams.STREAM_EPS, t), (x.shape[1], spec.latent)
            )
        extra = _variants.step_inputs(spec, cfg, self.keys, t, x.shape[1], self.device)
        params = dict(zip(self.names, st.params))
        with self._autocast():
            loss = self._objective(
                params,
                spec,
                x,
                self.weights,
                noise=noise,
                eps=eps,
                compute_dtype=self.compute_dtype,
                **extra,
            )
        loss = loss.float()
        alive = st.alive & torch.isfinite(loss)
        total = torch.where(alive, loss, torch.zeros_like(loss)).sum()
        grads = torch.autograd.grad(total, st.params)
        tf = float(t + 1)
        step_size: float | torch.Tensor = cfg.lr / (1.0 - BETAS[0] ** tf)
        bc2_sqrt: float | torch.Tensor = math.sqrt(1.0 - BETAS[1] ** tf)
        if self.compiled:  # tensors, so the compiled update is not specialised on every step
            step_size = torch.full((), step_size, device=self.device)
            bc2_sqrt = torch.full((), bc2_sqrt, device=self.device)
        with torch.no_grad():
            alive = self._adam(
                st.params,
                list(grads),
                st.exp_avg,
                st.exp_avg_sq,
                alive,
                step_size,
                bc2_sqrt,
                cfg.weight_decay,
            )
            newly_dead = st.alive & ~alive
            st.death_step = torch.where(
                newly_dead, torch.full_like(st.death_step, t), st.death_step
            )
            st.alive = alive
            k = self.block[t]
            st.curve_sum[:, k] += torch.where(alive, loss, torch.zeros_like(loss)).double()
        st.step = t + 1
        return loss

    # -- results -------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, index: torch.Tensor, max_elems: int = 1 << 24) -> np.ndarray:
        """``[M]`` reconstruction MSE of the deterministic reconstruction on instances ``index``.

        ``index`` is ``[M, n]`` instance indices within each member's species; NaN if n = 0.
        """
        index = index.to(self.device, torch.int64)
        n = index.shape[1]
        if n == 0:
            return np.full(self.m, np.nan)
        params = dict(zip(self.names, self.state.params))
        per = max(1, max_elems // max(1, self.m * (self.spec.input_dim + sum(self.spec.hidden))))
        total = torch.zeros(self.m, dtype=torch.float64, device=self.device)
        for a in range(0, n, per):
            idx = index[:, a : a + per] + self.offset
            x = self.flat.index_select(0, idx.reshape(-1)).reshape(*idx.shape, -1)
            with self._autocast():
                r = _model.reconstruct(params, self.spec, x)
            total += (r.float() - x).pow(2).sum((1, 2)).double()
        return (total / (n * self.spec.input_dim)).cpu().numpy()

    def curve(self) -> np.ndarray:
        """``[M, n_points]`` mean objective per block of steps; NaN from a member's death on."""
        cs = self.state.curve_sum.cpu().numpy() / self.block_len
        death = self.state.death_step.cpu().numpy()
        for i in np.flatnonzero(death >= 0):
            cs[i, self.block_end >= death[i]] = np.nan
        return cs

    def params_cpu(self) -> dict[str, torch.Tensor]:
        """The current parameters, detached, on the CPU."""
        return {k: p.detach().to("cpu").clone() for k, p in zip(self.names, self.state.params)}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (per-step randomness has no state)."""
        st = self.state
        cpu = lambda ts: [t.detach().to("cpu").clone() for t in ts]  # noqa: E731
        return {
            "step": st.step,
            "params": cpu(st.params),
            "exp_avg": cpu(st.exp_avg),
            "exp_avg_sq": cpu(st.exp_avg_sq),
            "alive": st.alive.cpu(),
            "death_step": st.death_step.cpu(),
            "curve_sum": st.curve_sum.cpu(),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        st = self.state
        with torch.no_grad():
            for dst, key in (
                (st.params, "params"),
                (st.exp_avg, "exp_avg"),
                (st.exp_avg_sq, "exp_avg_sq"),
            ):
                for a, b in zip(dst, sd[key]):
                    a.copy_(b)
        st.alive = sd["alive"].to(self.device)
        st.death_step = sd["death_step"].to(self.device)
        st.curve_sum = sd["curve_sum"].to(self.device)
        st.step = int(sd["step"])


def _adam_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avg: list[torch.Tensor],
    exp_avg_sq: list[torch.Tensor],
    alive: torch.Tensor,
    step_size: float | torch.Tensor,
    bc2_sqrt: float | torch.Tensor,
    weight_decay: float,
) -> torch.Tensor:
    """torch.optim.Adam's update (L2 weight decay), applied only to live members.

    A member with a non-finite gradient dies here. A dead member's gradient is replaced
    by 0 before it reaches the moments (so its NaNs stay out) and its update is masked, so
    its parameters stay exactly where they were. Returns the ``[M]`` live mask.
    """
    beta1, beta2 = BETAS
    for g in grads:  # a sum is non-finite iff an element is (or it overflows: diverging too)
        alive = alive & torch.isfinite(g.reshape(alive.shape[0], -1).sum(1))
    for p, g, m, v in zip(params, grads, exp_avg, exp_avg_sq):
        mask = alive.reshape(-1, *([1] * (p.dim() - 1)))
        if weight_decay:
            g = g + weight_decay * p
        g = torch.where(mask, g, torch.zeros_like(g))
        m.lerp_(g, 1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        denom = (v.sqrt() / bc2_sqrt).add_(ADAM_EPS)
        p.addcdiv_(m * (mask.to(m.dtype) * -step_size), denom)
    return alive


# ---------------------------------------------------------------------------- driver


@contextlib.contextmanager
def _matmul_precision(device: torch.device, precision: str):
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


COMPILE_MIN_MEMBER_STEPS = 500_000
"""``compile: auto`` compiles on the CPU from this many member-steps (AEs x steps) up: compiling
takes 5-15 s and saves about 60 us per member-step (bench/RESULTS.md)."""


RECOMPILE_LIMIT = 64


def _allow_recompiles() -> None:
    # Every chunk shape, variant and precision is its own compiled graph; past torch's
    # default limit of 8 per function, dynamo would silently run the rest eagerly.
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):  # the name before torch 2.6
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))
            return


def use_compile(setting: bool | str, device: torch.device, member_steps: int) -> bool:
    """Whether to ``torch.compile`` the step, for the ``autoencoder.compile`` setting."""
    if setting != "auto":
        return bool(setting)
    return device.type == "cuda" or member_steps >= COMPILE_MIN_MEMBER_STEPS


_M_TOP_PAD = -2  # glibc <malloc.h>


@functools.cache
def keep_freed_memory(pad: int = 256 << 20) -> bool:
    """Ask glibc's malloc to keep ``pad`` bytes of freed heap instead of trimming it.

    Every step frees and re-allocates the same few MB-sized activations; trimmed
    memory comes back as fresh pages, each faulted and zeroed again. Returns whether the
    setting took (False off glibc). Process-wide, and done once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_TOP_PAD, pad))
    except (OSError, AttributeError):
        return False


def _fingerprint(instances: np.ndarray, names: list[str], seed: int, config: Any) -> str:
    cfg = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(vars(config))
    for k in ("device", "chunk_size", "checkpoint_every"):  # these do not change the result
        cfg.pop(k, None)
    h = hashlib.blake2b(digest_size=16)
    h.update(
        json.dumps(
            {"cfg": cfg, "seed": seed, "species": names, "shape": list(instances.shape)},
            sort_keys=True,
        ).encode()
    )
    h.update(memoryview(np.ascontiguousarray(instances)).cast("B"))  # no copy
    return h.hexdigest()


class _Checkpoints:
    """Files in ``checkpoint_dir``: the chunk plan, finished chunks, the running chunk."""

    def __init__(self, directory: str | Path | None, fingerprint: str):
        self.dir = None if directory is None else Path(directory)
        self.fp = fingerprint

    def _load(self, name: str) -> dict | None:
        if self.dir is None or not (self.dir / name).exists():
            return None
        try:
            obj = runio.torch_load(self.dir / name)
        except Exception as exc:  # a damaged checkpoint is ignored, never fatal
            log.warning("ignoring unreadable checkpoint %s: %s", self.dir / name, exc)
            return None
        if not isinstance(obj, dict) or obj.get("fingerprint") != self.fp:
            return None
        return obj

    def _save(self, name: str, obj: dict) -> None:
        if self.dir is not None:
            runio.torch_save(self.dir / name, {"fingerprint": self.fp, **obj})

    def plan(self) -> list[tuple[int, int]] | None:
        obj = self._load("ae-plan.pt")
        return None if obj is None else [tuple(c) for c in obj["chunks"]]

    def save_plan(self, chunks: list[tuple[int, int]]) -> None:
        self._save("ae-plan.pt", {"chunks": [list(c) for c in chunks]})

    def chunk(self, a: int, b: int) -> dict | None:
        return self._load(f"ae-chunk-{a}-{b}.pt")

    def save_chunk(self, a: int, b: int, result: dict) -> None:
        self._save(f"ae-chunk-{a}-{b}.pt", result)

    def running(self, a: int, b: int) -> dict | None:
        obj = self._load("ae-running.pt")
        if obj is None or tuple(obj["chunk"]) != (a, b):
            return None
        return obj

    def save_running(self, a: int, b: int, state: dict) -> None:
        self._save("ae-running.pt", {"chunk": [a, b], "state": state})


def train_autoencoders(
    data: Any,
    config: Any,
    species: Sequence[str] | None = None,
    *,
    seed: int | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> AEBank:
    """Train one autoencoder per species (times ``config.replicates``), all at once.

    Parameters
    ----------
    data
        A Simulation (its ``instances`` ``[S, N, D]`` and ``species``) or an array
        ``[S, N, D]``.
    config
        An :class:`~evosim.scenario.AutoencoderConfig` (or a dict of its fields).
    species
        For an array: the S species names (default ``s1..sS``). For a Simulation: an
        optional subset of its species to train.
    seed
        Defaults to ``data.scenario.seed`` for a Simulation, 0 for an array.
    checkpoint_dir
        Where to checkpoint every ``config.checkpoint_every`` steps; a run finding a
        checkpoint of the same data, seed and config there continues from it, and ends
        with the same bank (bit-identical on CPU) as an uninterrupted run.
    progress
        Show a progress bar (species-steps/s) on stderr.

    Returns
    -------
    AEBank
        Members species-major (member m = species m // R, replicate m % R).

    Notes
    -----
    Species are trained in chunks that fit the device (``config.chunk_size`` or an
    estimate from free memory); a CUDA out-of-memory error halves the chunk and retries.
    ``precision: bf16`` autocasts the forward pass on CUDA and runs the layers in bfloat16
    on the CPU (float32 master weights both ways); ``tf32`` only matters on CUDA.
    ``compile: auto`` compiles the step with ``torch.compile`` on CUDA, and on the CPU when
    the run is long enough (:data:`COMPILE_MIN_MEMBER_STEPS`) to repay the compile time.
    Eager and compiled steps agree to float rounding, not bit for bit; the choice depends
    only on the config and the data's size, so a resumed run makes the same one.
    On Linux, CPU training asks glibc's malloc to keep freed memory (``M_TOP_PAD``,
    256 MB) instead of returning it to the system after every step; the page faults of
    re-allocating the activations otherwise cost a third of the step.
    """
    if isinstance(config, dict):
        from evosim.scenario import AutoencoderConfig

        config = AutoencoderConfig.model_validate(config)
    instances, names, seed = _resolve_data(data, species, seed)
    s_count, n, d = instances.shape
    reps = config.replicates
    spec = AESpec.from_config(config, d)
    device = resolve_device(config.device, "autoencoder.device")
    precision = config.precision
    if device.type != "cuda" and precision == "tf32":
        log.info("precision tf32 applies to CUDA only; training in fp32 on %s", device)
        precision = "fp32"
    compile_step = use_compile(config.compile, device, s_count * reps * config.steps)
    if device.type == "cpu":
        keep_freed_memory()
    m_total = s_count * reps
    member_names = [s for s in names for _ in range(reps)]
    member_reps = [r for _ in names for r in range(reps)]
    train_idx, val_idx, table = member_splits(seed, names, reps, n, config.validation_fraction)
    ckpt = _Checkpoints(checkpoint_dir, _fingerprint(instances, names, seed, config))

    chunks = ckpt.plan()
    if chunks is None:
        size = config.chunk_size or _auto_chunk(spec, config, n, device)
        chunks = [(a, min(a + size, s_count)) for a in range(0, s_count, size)]
        ckpt.save_plan(chunks)
    log.info(
        "training %d AEs (%s %s) on %s, %s%s, in %d chunk(s)",
        m_total,
        spec.variant,
        [d, *spec.hidden, spec.latent],
        device,
        precision,
        ", compiled" if compile_step else "",
        len(chunks),
    )

    results: dict[tuple[int, int], dict] = {}
    bar = tqdm(
        total=m_total * config.steps,
        unit="species-step",
        unit_scale=True,
        file=sys.stderr,
        disable=not progress,
        desc="training AEs",
        dynamic_ncols=True,
    )
    try:
        with _matmul_precision(device, precision):
            k = 0
            while k < len(chunks):
                a, b = chunks[k]
                done = ckpt.chunk(a, b)
                if done is not None:
                    results[(a, b)] = done
                    bar.update((b - a) * reps * config.steps)
                    k += 1
                    continue
                out_of_memory = False
                try:
                    results[(a, b)] = _train_chunk(
                        a,
                        b,
                        instances,
                        spec,
                        config,
                        seed,
                        member_names,
                        member_reps,
                        train_idx,
                        val_idx,
                        table,
                        device,
                        precision,
                        ckpt,
                        bar,
                        compile_step,
                    )
                except _OOM:
                    if b - a == 1:
                        raise
                    out_of_memory = True
                if out_of_memory:  # outside the except block, so the failed chunk is freed
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    size = (b - a) // 2
                    log.warning(
                        "out of memory with %d species per chunk; halving to %d", b - a, size
                    )
                    # this chunk and every later one (none has started) use the new size
                    chunks[k:] = [(p, min(p + size, s_count)) for p in range(a, s_count, size)]
                    ckpt.save_plan(chunks)
                    bar.reset(total=m_total * config.steps)
                    bar.update(sum((q - p) * reps * config.steps for p, q in results))
                    continue
                ckpt.save_chunk(a, b, results[(a, b)])
                k += 1
    finally:
        bar.close()

    order = [results[c] for c in chunks]
    params = {key: torch.cat([r["params"][key] for r in order]) for key in spec.param_shapes()}
    losses = {
        key: np.concatenate([np.asarray(r[key]) for r in order])
        for key in ("train", "val", "curve")
    }
    diverged = np.concatenate([np.asarray(r["diverged"]) for r in order])
    if diverged.any():
        log.warning(
            "%d of %d AEs diverged (loss NaN/inf) and were frozen: %s",
            int(diverged.sum()),
            m_total,
            [member_names[i] for i in np.flatnonzero(diverged)[:10]],
        )
    ref_rng = rng(seed, "ae-reference-inputs")
    p = min(REFERENCE_INPUTS, s_count * train_idx.shape[1])
    sp = ref_rng.integers(0, s_count, size=p)
    pos = ref_rng.integers(0, train_idx.shape[1], size=p)
    reference = instances[sp, train_idx[sp * reps, pos]]
    from evosim import __version__

    info = {
        "evosim_version": __version__,
        "seed": seed,
        "steps": config.steps,
        "device": str(device),
        "precision": precision,
        "compiled": all(r.get("compiled", False) for r in order),
        "config": config.model_dump(mode="json") if hasattr(config, "model_dump") else {},
        "n_train": int(train_idx.shape[1]),
        "n_val": int(val_idx.shape[1]),
    }
    return AEBank(
        spec,
        params,
        names,
        reps,
        losses=losses,
        diverged=diverged,
        reference_inputs=reference,
        info=info,
    )


def _train_chunk(
    a: int,
    b: int,
    instances: np.ndarray,
    spec: AESpec,
    config: Any,
    seed: int,
    member_names: list[str],
    member_reps: list[int],
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    table: np.ndarray,
    device: torch.device,
    precision: str,
    ckpt: _Checkpoints,
    bar: Any,
    compile_step: bool = False,
) -> dict:
    reps = config.replicates
    ma, mb = a * reps, b * reps
    names, rs = member_names[ma:mb], member_reps[ma:mb]
    trainer = BatchedTrainer(
        spec,
        config,
        torch.from_numpy(instances[a:b]),
        torch.arange(b - a).repeat_interleave(reps),
        streams.member_keys(seed, names, rs),
        torch.from_numpy(table[ma:mb]),
        _model.init_params(spec, seed, names, rs, config.init),
        device=device,
        precision=precision,
        compile=compile_step,
        noise_pool=noise_pool(seed, spec.input_dim) if spec.variant == "denoising" else None,
    )
    running = ckpt.running(a, b)
    if running is not None:
        trainer.load_state_dict(running["state"])
        log.info("resuming species %d..%d at step %d", a, b, trainer.state.step)
    bar.update((mb - ma) * trainer.state.step)
    while trainer.state.step < config.steps:
        trainer.step()
        t = trainer.state.step
        bar.update(mb - ma)
        if t % config.checkpoint_every == 0 and t < config.steps and ckpt.dir is not None:
            ckpt.save_running(a, b, trainer.state_dict())
        if _after_step_hook is not None:
            _after_step_hook((a, b), t)
    return {
        "params": trainer.params_cpu(),
        "train": trainer.evaluate(torch.from_numpy(train_idx[ma:mb])),
        "val": trainer.evaluate(torch.from_numpy(val_idx[ma:mb])),
        "curve": trainer.curve(),
        "diverged": (~trainer.state.alive).cpu().numpy(),
        "compiled": trainer.compiled,
    }
