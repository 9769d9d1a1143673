"""The step engine: one Adam step for every member of a chunk, batched.

:class:`BatchedTrainer` holds a chunk's stacked parameters, optimizer state and loss
curve, and advances them one step at a time. Everything random a member uses at a step
is a pure function of ``(member key, step)`` (:mod:`evosim.train.streams`), so the engine
has no generator state: :meth:`BatchedTrainer.state_dict` is all a resumed run needs.
What to train, in what chunks, with which process settings, is the driver's business
(:mod:`evosim.train.trainer`); this module only steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evosim.train import model as _model
from evosim.train import streams
from evosim.train import variants as _variants
from evosim.train.spec import AESpec

__all__ = ["BatchedTrainer", "loss_weights", "BETAS", "ADAM_EPS", "CURVE_POINTS"]

log = logging.getLogger(__name__)

BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
CURVE_POINTS = 50
ROW_BLOCK_STEPS = 64  # minibatch rows are drawn this many steps at a time ...
ROW_BLOCK_ELEMS = 1 << 20  # ... or fewer, to stay under this many indices
EVAL_ELEMS = 1 << 24  # evaluation runs in blocks of about this many input and hidden values


def loss_weights(config: Any) -> types.SimpleNamespace:
    """The config's scalar fields as a plain namespace, for :func:`model.member_objective`.

    Every ``bool``/``int``/``float``/``str`` field is copied, so a new variant's weights
    (a new field of the ``autoencoder`` section) reach the objective with no change here.
    A pydantic model is awkward for ``torch.compile`` to trace; a namespace of floats is not.
    """
    if hasattr(config, "model_dump"):
        fields = config.model_dump()
    else:
        fields = dict(vars(config))
    plain = {k: v for k, v in fields.items() if isinstance(v, bool | int | float | str)}
    return types.SimpleNamespace(**plain)


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
    """Trains M members of one chunk together.

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
        ``[Q, D]`` standard-normal rows (:func:`evosim.train.data.noise_pool`); ``denoising``
        draws each sample's corruption as a row picked by the member's counter stream.
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
        self.weights = loss_weights(config)
        self.compute_dtype = (
            torch.bfloat16 if precision == "bf16" and self.device.type != "cuda" else None
        )
        self._compile_tried = not compile
        self._set_compiled(compile)

    def _set_compiled(self, on: bool) -> None:
        self.compiled = on
        self._objective = _model.member_objective
        self._adam = adam_update
        if on:
            # specialised to this chunk's shapes: a dynamic-shape kernel compiled for an
            # earlier chunk would make a chunk's arithmetic depend on the run's history
            self._objective = torch.compile(_model.member_objective, dynamic=False)
            self._adam = torch.compile(adam_update, dynamic=False)

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
    def evaluate(self, index: torch.Tensor, max_elems: int = EVAL_ELEMS) -> np.ndarray:
        """``[M]`` reconstruction MSE of the deterministic reconstruction.

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
        """Everything needed to continue exactly (per-step randomness has no state).

        Tensors and plain data only, so a checkpoint of it loads with ``weights_only=True``.
        """
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
                if len(sd[key]) != len(dst):
                    raise ValueError(f"state has {len(sd[key])} {key} tensors, expected {len(dst)}")
                for a, b in zip(dst, sd[key]):
                    if a.shape != b.shape:
                        raise ValueError(
                            f"{key}: shape {tuple(b.shape)}, expected {tuple(a.shape)}"
                        )
                    a.copy_(b)
        for key in ("alive", "death_step"):
            if sd[key].shape != (self.m,):
                raise ValueError(f"{key}: shape {tuple(sd[key].shape)}, expected ({self.m},)")
        if sd["curve_sum"].shape != st.curve_sum.shape:
            raise ValueError("curve_sum: wrong shape")
        st.alive = sd["alive"].to(self.device, torch.bool)
        st.death_step = sd["death_step"].to(self.device, torch.int64)
        st.curve_sum = sd["curve_sum"].to(self.device, torch.float64)
        st.step = int(sd["step"])


def adam_update(
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

    Why not ``torch.optim.Adam`` over the stacked parameters: ``bench_train.py --adam``
    (1 thread, median over 9 paired rounds of its speed relative to this, with the range)
    measured, with the compiled step, ``fused`` 0.81 (0.59-0.89) and ``foreach`` 0.88
    (0.82-0.93) at 64 species and 0.85 / 0.90 (ranges across 1) at 253: this update compiles
    together with its masking, torch's needs separate masking passes. Eager, equal within
    noise. Masking only after a death (equal within noise) needs a host sync every step on
    CUDA. Figures in bench/RESULTS.md.
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
