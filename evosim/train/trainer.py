"""The batched trainer's driver: every species' autoencoder trained at once.

All members' parameters are stacked (``[M, in, out]``) and driven by batched matrix
products; the objective is the sum of the members' losses, so each member's gradient
is its own, and Adam is elementwise, so this is mathematically M independent
trainings. What a member sees depends only on ``(seed, species name, replicate)``: its
initial weights (:func:`model.init_params`),
its train/validation split and bootstrap sample, and at every step its minibatch and
noise (:mod:`evosim.train.streams`, counter-based, so no generator state exists to
checkpoint). Hence a species' AE is the same whether trained among 4 or 64 species,
in any chunking, in a world of one architecture or several, and a resumed run is
bit-identical to an uninterrupted one on CPU. The compiled step (``compile``) keeps the
resume guarantee; across chunk sizes its fused kernels agree with each other and with the
eager step to float rounding.

The work is split four ways: this module (the driver: groups, chunks, assembling the
bank), :mod:`~evosim.train.engine` (the step), :mod:`~evosim.train.resources` (memory,
chunking, compiling, process settings) and :mod:`~evosim.train.checkpoints`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from evosim.devices import resolve_device
from evosim.errors import FileFormatError
from evosim.train import model as _model
from evosim.train import streams
from evosim.train.architectures import (
    architecture_configs,
    assign_architectures,
    check_assignment,
)
from evosim.train.bank import AEBank
from evosim.train.bankset import AEBankSet
from evosim.train.checkpoints import Checkpoints, fingerprint
from evosim.train.data import member_splits, noise_pool, reference_inputs, resolve_data
from evosim.train.engine import BatchedTrainer
from evosim.train.resources import (
    chunk_size,
    openmp_wait_policy,
    training_settings,
    use_compile,
)
from evosim.train.spec import AESpec

__all__ = ["train_autoencoders", "StepEvent", "GroupPlan", "train_chunk"]

log = logging.getLogger(__name__)

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass(frozen=True)
class StepEvent:
    """What ``train_autoencoders(..., callback=)`` is told after every training step.

    Attributes
    ----------
    architecture
        Index of the architecture group in ``autoencoder.architectures`` (0 without).
    chunk
        ``(a, b)``: the chunk's species are the group's ``a..b-1``.
    step
        Steps the chunk has done.
    steps
        Steps it will do.
    """

    architecture: int
    chunk: tuple[int, int]
    step: int
    steps: int


Callback = Callable[[StepEvent], None]


@dataclass
class GroupPlan:
    """One architecture group's training: what every chunk of it shares.

    Attributes
    ----------
    architecture
        The group's index in ``autoencoder.architectures`` (0 without).
    spec, config
        The group's AE and its single-architecture ``autoencoder`` section.
    seed
        The run's seed.
    instances
        ``[S_g, N, D]`` float32 instances of the group's species.
    species
        Their names.
    train_idx, val_idx, table
        ``[M_g, .]`` per-member splits and sampling tables (:func:`data.member_splits`).
    device, precision, compile
        How to step (``compile``: the same decision for every group of the run).
    checkpoints
        The group's checkpoint files.
    """

    architecture: int
    spec: AESpec
    config: Any
    seed: int
    instances: np.ndarray
    species: list[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    table: np.ndarray
    device: torch.device
    precision: str
    compile: bool
    checkpoints: Checkpoints

    @property
    def replicates(self) -> int:
        """R, members per species."""
        return self.config.replicates

    def members(self, a: int, b: int) -> slice:
        """Member rows of species ``a..b-1`` (species-major, R per species)."""
        return slice(a * self.replicates, b * self.replicates)


def train_chunk(
    plan: GroupPlan,
    a: int,
    b: int,
    *,
    bar: Any = None,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Train the group's species ``a..b-1`` (resuming from a running checkpoint).

    Returns the chunk's result as tensors and plain data (a checkpoint stores it as is):
    ``params``, ``train``, ``val``, ``curve``, ``diverged`` and ``compiled``.
    """
    cfg, reps = plan.config, plan.replicates
    rows = plan.members(a, b)
    names = [s for s in plan.species[a:b] for _ in range(reps)]
    rs = [r for _ in range(a, b) for r in range(reps)]
    trainer = BatchedTrainer(
        plan.spec,
        cfg,
        torch.from_numpy(plan.instances[a:b]),
        torch.arange(b - a).repeat_interleave(reps),
        streams.member_keys(plan.seed, names, rs),
        torch.from_numpy(plan.table[rows]),
        _model.init_params(plan.spec, plan.seed, names, rs, cfg.init),
        device=plan.device,
        precision=plan.precision,
        compile=plan.compile,
        noise_pool=noise_pool(plan.seed, plan.spec.input_dim)
        if plan.spec.variant == "denoising"
        else None,
    )
    ckpt = plan.checkpoints
    running = ckpt.running(a, b)
    if running is not None:
        try:
            trainer.load_state_dict(running["state"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise FileFormatError(
                f"{ckpt.dir}: the running checkpoint does not match this training ({exc})",
                hint=f"delete {ckpt.dir} and rerun with --resume",
            ) from None
        log.info("resuming species %d..%d at step %d", a, b, trainer.state.step)
    m = trainer.m
    if bar is not None:
        bar.update(m * trainer.state.step)
    while trainer.state.step < cfg.steps:
        trainer.step()
        t = trainer.state.step
        if bar is not None:
            bar.update(m)
        if t % cfg.checkpoint_every == 0 and t < cfg.steps and ckpt.enabled:
            ckpt.save_running(a, b, trainer.state_dict())
        if callback is not None:
            callback(StepEvent(plan.architecture, (a, b), t, cfg.steps))
    return {
        "params": trainer.params_cpu(),
        "train": torch.from_numpy(trainer.evaluate(torch.from_numpy(plan.train_idx[rows]))),
        "val": torch.from_numpy(trainer.evaluate(torch.from_numpy(plan.val_idx[rows]))),
        "curve": torch.from_numpy(trainer.curve()),
        "diverged": (~trainer.state.alive).cpu(),
        "compiled": bool(trainer.compiled),
    }


def train_autoencoders(
    data: Any,
    config: Any,
    *,
    species: Sequence[str] | None = None,
    seed: int | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> AEBank | AEBankSet:
    """Train one autoencoder per species (times ``config.replicates``), all at once.

    Parameters
    ----------
    data
        A Simulation (its ``instances`` ``[S, N, D]``, ``species`` and, with several
        architectures, ``architectures``) or an array ``[S, N, D]``.
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
        with the same bank (bit-identical on CPU) as an uninterrupted run. A file there
        that is not a checkpoint is refused (:class:`~evosim.errors.FileFormatError`).
    progress
        Show a progress bar (species-steps/s) on stderr.
    callback
        Called after every step with a :class:`StepEvent` (an exception it raises stops
        training; the checkpoints written so far stay).

    Returns
    -------
    AEBank or AEBankSet
        Members species-major (member m = species m // R, replicate m % R). With more than
        one entry in ``config.architectures``, an :class:`~evosim.train.AEBankSet`: one
        bank per architecture that has species, each trained batched on its own, with the
        reference inputs pooled over all species.

    Notes
    -----
    Species get their architecture from the Simulation (``Simulation.architectures``,
    assigned when the world was built); for an array, or a Simulation that has none,
    ``assign: random`` is computed here from the seed and the species names (the same
    rule), and ``by_clade`` is an error (it needs the tree). A species' AE equals the one
    a single-architecture run of its architecture trains.

    Species are trained in chunks that fit the device (``config.chunk_size`` or an
    estimate, :func:`~evosim.train.resources.chunk_size`); a CUDA out-of-memory error
    halves the chunk and retries. ``precision: bf16`` autocasts the forward pass on CUDA
    and runs the layers in bfloat16 on the CPU (float32 master weights both ways);
    ``tf32`` only matters on CUDA. ``compile: auto`` compiles the step with
    ``torch.compile`` on CUDA, and on the CPU when the run is long enough
    (:data:`~evosim.train.resources.COMPILE_MIN_MEMBER_STEPS` member-steps, counted over
    the whole run) to repay the compile time. Eager and compiled steps agree to float
    rounding, not bit for bit; the choice depends only on the config and the data's size,
    so a resumed run makes the same one. Process-wide settings training changes (glibc's
    malloc top pad on Linux, dynamo's recompile limit, TF32) are
    restored when it ends (:func:`~evosim.train.resources.training_settings`).
    """
    if isinstance(config, dict):
        from evosim.scenario import AutoencoderConfig

        config = AutoencoderConfig.model_validate(config)
    td = resolve_data(data, species, seed)
    instances, names, seed = td.instances, td.species, td.seed
    s_count, n, d = instances.shape
    reps = config.replicates
    device = resolve_device(config.device, "autoencoder.device")
    precision = config.precision
    if device.type != "cuda" and precision == "tf32":
        log.info("precision tf32 applies to CUDA only; training in fp32 on %s", device)
        precision = "fp32"
    compile_step = use_compile(config.compile, device, s_count * reps * config.steps)
    if device.type == "cpu" and torch.get_num_threads() > 1 and openmp_wait_policy() != "passive":
        log.info(
            "torch's OpenMP threads spin while they wait (wait policy %s): on a busy machine "
            "set OMP_WAIT_POLICY=PASSIVE before torch is imported, or use one thread",
            openmp_wait_policy(),
        )

    archs = architecture_configs(config)
    if len(archs) == 1:
        groups = [(0, None)]
    else:
        assignment = td.architectures
        if assignment is None:
            if config.assign != "random":
                raise ValueError(
                    "autoencoder.assign is 'by_clade' but the data carries no architecture "
                    "assignment: train on a Simulation built with this autoencoder section"
                )
            assignment = assign_architectures(names, len(archs), assign="random", seed=seed)
        assignment = check_assignment(assignment, s_count, len(archs))
        groups = [(k, np.flatnonzero(assignment == k)) for k in range(len(archs))]
        groups = [(k, rows) for k, rows in groups if rows.size]

    bar = tqdm(
        total=s_count * reps * config.steps,
        unit="species-step",
        unit_scale=True,
        file=sys.stderr,
        disable=None if progress else True,  # None: off when stderr is not a terminal
        desc="training AEs",
        dynamic_ncols=True,
    )
    banks = []
    try:
        with training_settings(device, precision=precision, compile=compile_step):
            for k, rows in groups:
                sub = (
                    (instances, names)
                    if rows is None
                    else (instances[rows], [names[i] for i in rows])
                )
                banks.append(
                    _train_group(
                        k,
                        archs[k],
                        sub[0],
                        sub[1],
                        seed,
                        device=device,
                        precision=precision,
                        compile_step=compile_step,
                        checkpoint_dir=checkpoint_dir,
                        prefix="ae" if len(archs) == 1 else f"ae-arch{k}",
                        bar=bar,
                        callback=callback,
                    )
                )
    finally:
        bar.close()
    if len(archs) == 1:
        return banks[0]
    train_idx, _, _ = member_splits(seed, names, reps, n, config.validation_fraction)
    info = {
        **{k: v for k, v in banks[0].info.items() if k not in ("architecture", "config")},
        "compiled": all(b.info["compiled"] for b in banks),
        "config": config.model_dump(mode="json"),
        "architectures": [int(a) for a in assignment],
    }
    return AEBankSet(
        banks,
        names,
        reference_inputs=reference_inputs(instances, train_idx, reps, seed),
        info=info,
    )


def _train_group(
    architecture: int,
    config: Any,
    instances: np.ndarray,
    names: list[str],
    seed: int,
    *,
    device: torch.device,
    precision: str,
    compile_step: bool,
    checkpoint_dir: str | Path | None,
    prefix: str,
    bar: Any,
    callback: Callback | None,
) -> AEBank:
    """One architecture's species, in chunks: exactly a single-architecture run of them."""
    s_count, n, d = instances.shape
    reps = config.replicates
    steps = config.steps
    spec = AESpec.from_config(config, d)
    train_idx, val_idx, table = member_splits(seed, names, reps, n, config.validation_fraction)
    plan = GroupPlan(
        architecture=architecture,
        spec=spec,
        config=config,
        seed=seed,
        instances=instances,
        species=names,
        train_idx=train_idx,
        val_idx=val_idx,
        table=table,
        device=device,
        precision=precision,
        compile=compile_step,
        checkpoints=Checkpoints(
            checkpoint_dir, fingerprint(instances, names, seed, config), prefix=prefix
        ),
    )
    ckpt = plan.checkpoints
    chunks = ckpt.plan()
    if chunks is None:
        size = config.chunk_size or chunk_size(spec, config, n, device)
        chunks = [(a, min(a + size, s_count)) for a in range(0, s_count, size)]
        ckpt.save_plan(chunks)
    log.info(
        "training %d AEs (%s %s) on %s, %s%s, in %d chunk(s)",
        s_count * reps,
        spec.variant,
        [d, *spec.hidden, spec.latent],
        device,
        precision,
        ", compiled" if compile_step else "",
        len(chunks),
    )

    start = bar.n
    results: dict[tuple[int, int], dict] = {}
    k = 0
    while k < len(chunks):
        a, b = chunks[k]
        done = ckpt.chunk(a, b)
        if done is not None:
            results[(a, b)] = done
            bar.update((b - a) * reps * steps)
            k += 1
            continue
        out_of_memory = False
        try:
            results[(a, b)] = train_chunk(plan, a, b, bar=bar, callback=callback)
        except _OOM:
            if b - a == 1:
                raise
            out_of_memory = True
        if out_of_memory:  # outside the except block, so the failed chunk is freed
            if device.type == "cuda":
                torch.cuda.empty_cache()
            size = (b - a) // 2
            log.warning("out of memory with %d species per chunk; halving to %d", b - a, size)
            # this chunk and every later one (none has started) use the new size
            chunks[k:] = [(p, min(p + size, s_count)) for p in range(a, s_count, size)]
            ckpt.save_plan(chunks)
            bar.n = start + sum((q - p) * reps * steps for p, q in results)
            bar.refresh()
            continue
        ckpt.save_chunk(a, b, results[(a, b)])
        k += 1

    order = [results[c] for c in chunks]
    try:
        params = {key: torch.cat([r["params"][key] for r in order]) for key in spec.param_shapes()}
        losses = {
            key: np.concatenate([torch.as_tensor(r[key]).numpy() for r in order])
            for key in ("train", "val", "curve")
        }
        diverged = np.concatenate([torch.as_tensor(r["diverged"]).numpy() for r in order])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise FileFormatError(
            f"{checkpoint_dir}: a chunk checkpoint does not match this training ({exc})",
            hint=f"delete {checkpoint_dir} and rerun with --resume",
        ) from None
    member_names = [s for s in names for _ in range(reps)]
    if diverged.any():
        log.warning(
            "%d of %d AEs diverged (loss NaN/inf) and were frozen: %s",
            int(diverged.sum()),
            s_count * reps,
            [member_names[i] for i in np.flatnonzero(diverged)[:10]],
        )
    from evosim import __version__

    info = {
        "evosim_version": __version__,
        "seed": seed,
        "steps": steps,
        "device": str(device),
        "precision": precision,
        "compiled": all(bool(r.get("compiled", False)) for r in order),
        "config": config.model_dump(mode="json") if hasattr(config, "model_dump") else {},
        "n_train": int(train_idx.shape[1]),
        "n_val": int(val_idx.shape[1]),
        "architecture": architecture,
    }
    return AEBank(
        spec,
        params,
        names,
        reps,
        losses=losses,
        diverged=diverged,
        reference_inputs=reference_inputs(instances, train_idx, reps, seed),
        info=info,
    )
