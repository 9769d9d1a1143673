"""The stacked MLP autoencoder: M members' parameters ``[M, in, out]`` driven by ``bmm``.

Everything here is functional over a ``params`` dict (keys as in
:meth:`AESpec.param_shapes`, each with a leading member axis M), so one call runs
every member's AE on its own minibatch. Members never mix: each op is batched over
the member axis, so member m's loss depends only on member m's parameters and data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evosim.seeding import rng
from evosim.train import ops as _ops
from evosim.train import variants as _variants
from evosim.train.spec import AESpec

__all__ = [
    "activation_fn",
    "activation_grad",
    "encode",
    "decode",
    "reconstruct",
    "member_objective",
    "contractive_penalty",
    "gaussian_kl",
    "sparse_kl",
    "init_params",
    "SpeciesAE",
]

Params = dict[str, torch.Tensor]


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The elementwise activation called ``name``."""
    return {
        "relu": F.relu,
        "tanh": torch.tanh,
        "elu": _ops.elu,
        "gelu": F.gelu,
        "softplus": F.softplus,
        "sigmoid": torch.sigmoid,
    }[name]


def activation_grad(name: str, pre: torch.Tensor) -> torch.Tensor:
    """Closed-form derivative of the activation at ``pre`` (differentiable, NaN-free)."""
    if name == "relu":
        return (pre > 0).to(pre.dtype)
    if name == "tanh":
        return 1.0 - torch.tanh(pre) ** 2
    if name == "elu":
        # clamp so the unused branch never overflows (where() would turn 0 * inf into NaN)
        return torch.where(pre > 0, torch.ones_like(pre), torch.exp(pre.clamp(max=0.0)))
    if name == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(pre * (1.0 / math.sqrt(2.0))))
        pdf = torch.exp(-0.5 * pre * pre) * (1.0 / math.sqrt(2.0 * math.pi))
        return cdf + pre * pdf
    if name == "softplus":  # F.softplus is the identity above its threshold of 20
        return torch.where(pre > 20, torch.ones_like(pre), torch.sigmoid(pre))
    if name == "sigmoid":
        s = torch.sigmoid(pre)
        return s * (1.0 - s)
    raise ValueError(f"unknown activation {name!r}")


def _n_layers(params: Params, part: str) -> int:
    n = 0
    while f"{part}.{n}.weight" in params:
        n += 1
    return n


def _linear(params: Params, key: str, h: torch.Tensor) -> torch.Tensor:
    # h [M, B, in] @ W [M, in, out] + b [M, 1, out]
    w = params[f"{key}.weight"]
    b = params[f"{key}.bias"]
    if h.dim() == 2:  # the same inputs for every member
        h = h.unsqueeze(0).expand(w.shape[0], *h.shape)
    return _ops.batched_linear(h, w.to(h.dtype), b.to(h.dtype))


def _mlp(
    params: Params,
    part: str,
    act: Callable,
    h: torch.Tensor,
    pres: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    n = _n_layers(params, part)
    for i in range(n):
        h = _linear(params, f"{part}.{i}", h)
        if i < n - 1:
            if pres is not None:
                pres.append(h)
            h = act(h)
    return h


def encode(params: Params, spec: AESpec, x: torch.Tensor) -> torch.Tensor:
    """Codes ``[M, B, latent]`` of inputs ``x`` (``[M, B, D]``, or ``[B, D]`` shared by all).

    The variational code is the posterior mean; the concrete code is the selected input
    features (argmax of each selector row); the MDL code is quantised to integers (with a
    straight-through gradient).
    """
    if spec.variant == "concrete":
        return _variants.select(x, _variants.hard_selection(params["selector.logits"]))
    out = _mlp(params, "encoder", activation_fn(spec.activation), x)
    if spec.variant == "mdl":
        return _variants.quantise(out)
    return out[..., : spec.latent]


def decode(params: Params, spec: AESpec, z: torch.Tensor) -> torch.Tensor:
    """Reconstructions ``[M, B, D]`` of codes ``z`` (``[M, B, latent]`` or ``[B, latent]``)."""
    return _mlp(params, "decoder", activation_fn(spec.activation), z)


def reconstruct(params: Params, spec: AESpec, x: torch.Tensor) -> torch.Tensor:
    """``decode(encode(x))``: the deterministic reconstruction (posterior mean for a VAE)."""
    return decode(params, spec, encode(params, spec, x))


def contractive_penalty(
    params: Params, spec: AESpec, pres: Sequence[torch.Tensor], batch_size: int
) -> torch.Tensor:
    """Squared Frobenius norm of the encoder Jacobian ``dz/dx`` per sample, ``[M, B]``.

    Exact, by the chain rule through the layers from the code back to the input
    (``J^T = W_L^T diag(a'_{L-1}) W_{L-1}^T ...``), carried as ``[M, width, B, latent]`` so
    each product is one ``bmm`` over members (Rifai et al. 2011, ICML).

    Parameters
    ----------
    pres
        Pre-activations of the encoder's hidden layers, each ``[M, B, width]``.
    batch_size
        B (needed when the encoder has no hidden layer).
    """
    n = _n_layers(params, "encoder")
    w_last = params[f"encoder.{n - 1}.weight"][..., : spec.latent]  # [M, h, k]
    m, _, k = w_last.shape
    if n == 1:  # linear encoder: the Jacobian is the weight, the same for every sample
        return w_last.pow(2).sum((1, 2)).unsqueeze(1).expand(m, batch_size)
    g = w_last.unsqueeze(2)  # [M, h, 1, k]
    for i in range(n - 2, -1, -1):
        pre = pres[i]  # [M, B, h_i]
        bsz = pre.shape[1]
        d = activation_grad(spec.activation, pre).transpose(1, 2).unsqueeze(-1)  # [M, h_i, B, 1]
        g = d * g  # [M, h_i, B, k]
        w = params[f"encoder.{i}.weight"]  # [M, h_{i-1}, h_i]
        g = torch.bmm(w.to(g.dtype), g.reshape(m, w.shape[2], bsz * k)).reshape(
            m, w.shape[1], bsz, k
        )
    return g.pow(2).sum((1, 3))


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the last axis (Kingma & Welling 2014)."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def sparse_kl(code: torch.Tensor, target: float) -> torch.Tensor:
    """Sparsity penalty ``sum_j KL(rho || rho_hat_j)``, ``[M]``.

    ``rho_hat_j`` is the batch-mean of ``sigmoid(code_j)`` (the code itself is linear, so it
    is squashed into (0, 1) for the penalty only; Ng 2011, "Sparse autoencoder").
    """
    rho_hat = torch.sigmoid(code).mean(1).clamp(1e-6, 1 - 1e-6)  # [M, k]
    rho = target
    kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
    return kl.sum(-1)


def member_objective(
    params: Params,
    spec: AESpec,
    x: torch.Tensor,
    config: Any,
    *,
    noise: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    compute_dtype: torch.dtype | None = None,
    gumbel: torch.Tensor | None = None,
    temperature: torch.Tensor | float | None = None,
    quant_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-member training objective ``[M]`` on minibatches ``x`` ``[M, B, D]``.

    Reconstruction is the mean squared error over the minibatch and the D inputs; the
    variant adds its term (weights from ``config``, an AutoencoderConfig):

    * ``denoising``: the encoder sees ``x + corruption * noise`` (``noise`` standard normal);
    * ``sparse``: ``sparsity_weight`` times the mean L1 norm of the code
      (``sparsity: l1``) or :func:`sparse_kl` to ``sparsity_target`` (``sparsity: kl``);
    * ``contractive``: ``contractive_weight`` times the batch mean of
      :func:`contractive_penalty`;
    * ``variational``: the code is ``mu + exp(logvar / 2) * eps`` and ``kl_weight`` times the
      batch mean of :func:`gaussian_kl` is added;
    * ``concrete``: the code is the relaxed selection of inputs by the selector rows at
      ``temperature`` with Gumbel noise ``gumbel`` ``[M, k, D]``, and ``duplicate_weight``
      times the duplicate-selection penalty is added;
    * ``mdl``: the code is the encoder output plus ``quant_noise`` (U(-1/2, 1/2)) and
      ``rate_weight`` times its batch-mean bits under the learned prior is added
      (:mod:`evosim.train.variants`).

    ``compute_dtype`` (e.g. bfloat16) runs the layers in that dtype; the parameters stay as
    they are (cast per layer) and the reconstruction is compared with ``x`` in float32.
    """
    variant = spec.variant
    act = activation_fn(spec.activation)
    inp = x
    if variant == "denoising":
        if noise is None:
            raise ValueError("denoising needs noise")
        inp = x + config.corruption * noise.to(x.dtype)
    if compute_dtype is not None:
        inp = inp.to(compute_dtype)
    pres: list[torch.Tensor] | None = [] if variant == "contractive" else None
    penalty = None
    if variant == "concrete":
        if gumbel is None or temperature is None:
            raise ValueError("concrete needs gumbel and temperature")
        sel = _variants.concrete_selection(params["selector.logits"], gumbel, temperature)
        out = _variants.select(inp, sel)
        if config.duplicate_weight:
            dup = _variants.duplicate_penalty(params["selector.logits"], temperature)
            penalty = config.duplicate_weight * dup
    else:
        out = _mlp(params, "encoder", act, inp, pres)
    if variant == "mdl":
        if quant_noise is None:
            raise ValueError("mdl needs quant_noise")
        code = out + quant_noise.to(out.dtype)
        penalty = config.rate_weight * _variants.code_bits(code, params).mean(1)
    elif variant == "variational":
        if eps is None:
            raise ValueError("variational needs eps")
        mu, logvar = out[..., : spec.latent], out[..., spec.latent :]
        code = mu + torch.exp(0.5 * logvar) * eps.to(mu.dtype)
        penalty = config.kl_weight * gaussian_kl(mu.float(), logvar.float()).mean(1)
    else:
        code = out
    if variant == "sparse":
        if config.sparsity == "l1":
            penalty = config.sparsity_weight * code.float().abs().sum(-1).mean(1)
        else:
            penalty = config.sparsity_weight * sparse_kl(code.float(), config.sparsity_target)
    elif variant == "contractive":
        jac = contractive_penalty(params, spec, pres, x.shape[-2]).float()
        penalty = config.contractive_weight * jac.mean(1)
    recon = _mlp(params, "decoder", act, code)
    loss = (recon.float() - x.float()).pow(2).mean((1, 2))
    return loss if penalty is None else loss + penalty


def _uniform_layer(gen: np.random.Generator, fan_in: int, shape: tuple[int, ...]) -> np.ndarray:
    # torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    bound = 1.0 / math.sqrt(fan_in)
    return gen.uniform(-bound, bound, size=shape).astype(np.float32)


def _draw(spec: AESpec, gen: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for key, shape in spec.param_shapes().items():
        if key in _variants.NON_LAYER_PARAMS:
            out[key] = _variants.init_param(key, shape, gen)
            continue
        fan_in = (
            shape[0]
            if key.endswith("weight")
            else spec.param_shapes()[key[: -len("bias")] + "weight"][0]
        )
        out[key] = _uniform_layer(gen, fan_in, shape)
    return out


def init_params(
    spec: AESpec,
    seed: int,
    species: Sequence[str],
    replicates: Sequence[int],
    init: str = "shared",
) -> Params:
    """Initial stacked parameters for members ``(species[m], replicates[m])``.

    ``shared``: every species' replicate r starts from the weights drawn from
    ``(seed, "ae-init")`` (r = 0) or ``(seed, "ae-init", r)``; ``independent``: from
    ``(seed, "ae-init", species, r)``. Never from a member's position in the batch.
    Weights are drawn like ``torch.nn.Linear``'s default, U(+-1/sqrt(fan_in)).
    """
    if init not in ("shared", "independent"):
        raise ValueError(f"init must be 'shared' or 'independent', got {init!r}")
    cache: dict[Any, dict[str, np.ndarray]] = {}
    per_member = []
    for s, r in zip(species, replicates):
        r = int(r)
        if init == "shared":
            key: tuple = ("ae-init",) if r == 0 else ("ae-init", r)
        else:
            key = ("ae-init", s, r)
        if key not in cache:
            cache[key] = _draw(spec, rng(seed, *key))
        per_member.append(cache[key])
    return {k: torch.from_numpy(np.stack([p[k] for p in per_member])) for k in spec.param_shapes()}


class SpeciesAE(nn.Module):
    """One member of a bank as an ordinary module: ``forward(x) = decode(encode(x))``.

    ``encode`` returns the code (the posterior mean for a variational AE), so ``forward``
    computes exactly what :meth:`AEBank.reconstruct` does for this member.
    """

    def __init__(self, spec: AESpec, params: dict[str, torch.Tensor]):
        super().__init__()
        self.spec = spec

        def build(part: str, widths: list[int]) -> nn.Sequential:
            layers: list[nn.Module] = []
            n = len(widths) - 1
            for i in range(n):
                lin = nn.Linear(widths[i], widths[i + 1])
                with torch.no_grad():
                    lin.weight.copy_(params[f"{part}.{i}.weight"].T)
                    lin.bias.copy_(params[f"{part}.{i}.bias"])
                layers.append(lin)
                if i < n - 1:
                    layers.append(_Activation(spec.activation))
            return nn.Sequential(*layers)

        if spec.variant == "concrete":
            self.encoder: nn.Module = _Select(
                _variants.selected_indices(params["selector.logits"].unsqueeze(0))[0]
            )
        else:
            self.encoder = build("encoder", spec.encoder_widths)
        self.decoder = build("decoder", spec.decoder_widths)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Code ``[..., latent]`` (posterior mean for ``variational``, integers for ``mdl``)."""
        z = self.encoder(x)[..., : self.spec.latent]
        return _variants.quantise(z) if self.spec.variant == "mdl" else z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[..., D]`` of a code."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class _Select(nn.Module):
    """The concrete AE's test-time encoder: the inputs at fixed indices."""

    def __init__(self, index: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index.to(torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(-1, self.index)

    def extra_repr(self) -> str:
        return f"features={self.index.tolist()}"


class _Activation(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = activation_fn(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name
