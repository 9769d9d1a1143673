"""The MAE's networks: an encoder from a representation to a code, and a hypernetwork decoder.

:class:`Encoder`
    An MLP from the representation's principal-axis coordinates to a code head. The head
    (``prior``) turns the MLP's output into the code: ``none`` (the output is the code),
    ``variational`` (mean and log-variance of a Gaussian posterior, Kingma & Welling 2014)
    or ``archetypal`` (Deep Archetypal Analysis, Keller et al. 2021: the A head's simplex
    weights times the fixed archetypes ``Z*`` give the posterior mean, the B head's logits
    write the archetypes as mixtures of the batch's codes, and a log-variance makes the
    posterior Gaussian; see :mod:`evosim.meta.archetypal`). Each head returns ``(code
    mean, extra)`` so other priors can plug in.
:class:`SideHead`
    Deep AA's side information: an MLP from a code to a species-level variable it must
    predict (the deep variational information bottleneck's second decoder).
:class:`HyperDecoder`
    From any code, every parameter of one AE architecture (an :class:`~evosim.train.AESpec`),
    plus the law of that AE's codes on its species' region, as ``K`` particles whose kernel
    density :meth:`~evosim.meta.MetaResult.generate` samples. Parameters are
    ``theta = theta0 + MLP(z)``: ``theta0`` is a working AE of the architecture (the
    bank's medoid member of it, when there is one), so the network only learns how
    species differ from it; the last layer starts at zero, so
    before training every code decodes to ``theta0``. One decoder for all species (Ha,
    Dai & Le 2017, *HyperNetworks*; as a decoder of a model population, Schuerholt et al.
    2022, *Hyper-representations as generative models*).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from evosim.meta.archetypal import a_weights, archetype_coordinates, latent_mean
from evosim.train.spec import AESpec

__all__ = [
    "LAW_PARTICLES",
    "PRIORS",
    "Encoder",
    "HyperDecoder",
    "SideHead",
    "linear",
    "particle_bandwidth",
    "particle_sample",
]

PRIORS = ("none", "variational", "archetypal")
#: Particles of a decoded AE's code law.
LAW_PARTICLES = 32
#: Archetypal head: added to the log-variance output, so that an untrained encoder's
#: posterior sd is about e^-2 = 0.14, a seventh of the simplex's unit circumradius (the
#: decoder first learns from codes that are mostly signal).
LOGVAR_OFFSET = -4.0
#: Hidden width of the side-information head.
SIDE_HIDDEN = 64


def linear(n_in: int, n_out: int, gen: torch.Generator, *, zero: bool = False) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default init drawn from ``gen`` (or all zeros)."""
    layer = nn.Linear(n_in, n_out)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        if zero:
            layer.weight.zero_()
            layer.bias.zero_()
        else:
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
    return layer


def _mlp(widths: list[int], gen: torch.Generator) -> nn.ModuleList:
    return nn.ModuleList([linear(a, b, gen) for a, b in zip(widths[:-1], widths[1:])])


def _run(layers: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
    for layer in layers[:-1]:
        h = F.elu(layer(h))
    return layers[-1](h)


class Encoder(nn.Module):
    """Representation coordinates ``[n, r]`` -> code mean ``[n, k]`` (and the head's extra).

    Parameters
    ----------
    n_in
        r, the number of input coordinates.
    hidden
        Hidden widths (ELU).
    latent
        k, the code size.
    prior
        One of :data:`PRIORS`.
    archetypes
        Number of archetypes (``archetypal`` only): must be ``latent + 1``, the corners of
        a regular simplex in the code space (:func:`~evosim.meta.archetypal.archetype_coordinates`).
    gen
        Seeds the initialisation.
    """

    def __init__(
        self,
        n_in: int,
        hidden: list[int],
        latent: int,
        prior: str,
        archetypes: int,
        gen: torch.Generator,
    ) -> None:
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        self.prior = prior
        self.latent = latent
        if prior == "archetypal":
            if archetypes != latent + 1:
                raise ValueError(
                    f"archetypal prior: {archetypes} archetypes need a code of size "
                    f"{archetypes - 1}, got {latent}"
                )
            self.k = archetypes
            # A logits, B logits (one column per archetype), log-variance
            head = 2 * archetypes + latent
            self.register_buffer("z_fixed", archetype_coordinates(latent))
        else:
            head = {"none": latent, "variational": 2 * latent}[prior]
        self.layers = _mlp([n_in, *hidden, head], gen)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """``(code mean [n, k], extra)``.

        ``extra``: ``None`` (``none``), the log-variance ``[n, k]`` (``variational``), or
        for ``archetypal`` a dict: ``weights`` the A weights ``[n, k + 1]``, ``b_logits``
        ``[n, k + 1]`` (one column per archetype, see
        :func:`~evosim.meta.archetypal.b_weights`), ``logvar`` ``[n, k]``.
        """
        h = _run(self.layers, x)
        if self.prior == "variational":
            return h[:, : self.latent], h[:, self.latent :].clamp(-12.0, 6.0)
        if self.prior == "archetypal":
            k = self.k
            a = a_weights(h[:, :k])
            extra = {
                "weights": a,
                "b_logits": h[:, k : 2 * k],
                "logvar": (h[:, 2 * k :] + LOGVAR_OFFSET).clamp(-12.0, 6.0),
            }
            return latent_mean(a, self.z_fixed), extra
        return h, None


class SideHead(nn.Module):
    """Code ``[n, k]`` -> predicted side information ``[n, q]`` (standardised units).

    Deep AA's side information (Keller et al. 2021, after the deep variational information
    bottleneck of Alemi et al. 2017): the code must also predict a known variable, which
    steers what the archetypes mean.
    """

    def __init__(self, latent: int, n_out: int, gen: torch.Generator) -> None:
        super().__init__()
        self.layers = _mlp([latent, SIDE_HIDDEN, n_out], gen)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _run(self.layers, z)


class HyperDecoder(nn.Module):
    """Code ``[n, k]`` -> stacked parameters ``{name: [n, ...]}`` of ``spec``, and a code law.

    Parameters
    ----------
    latent
        k, the code size.
    hidden
        Hidden widths of the hypernetwork (ELU).
    spec
        The architecture of the AEs it writes.
    theta0
        ``{name: tensor}`` one AE's parameters (unstacked), the decoder's starting point.
    gen
        Seeds the initialisation.
    """

    def __init__(
        self,
        latent: int,
        hidden: list[int],
        spec: AESpec,
        theta0: dict[str, torch.Tensor],
        gen: torch.Generator,
        law_codes: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.shapes = spec.param_shapes()
        if list(theta0) != list(self.shapes):
            raise ValueError(f"theta0 keys must be {list(self.shapes)}, got {list(theta0)}")
        flat = torch.cat([theta0[k].reshape(-1).float() for k in self.shapes])
        self.register_buffer("theta0", flat)
        self.n_params = int(flat.numel())
        self.code_dim = spec.latent
        n_law = LAW_PARTICLES * self.code_dim
        self.body = _mlp([latent, *hidden], gen) if hidden else nn.ModuleList()
        width = hidden[-1] if hidden else latent
        self.params_out = linear(width, self.n_params, gen, zero=True)
        self.law_out = linear(width, n_law, gen, zero=True)
        # Particles live in the units of theta0's own codes (law_codes [N, c]: its codes of
        # some inputs), so that Adam's steps, about one unit of the output, are a fraction
        # of the codes' spread whatever the AE's code scale; they start at K of those codes.
        loc, scale = torch.zeros(self.code_dim), torch.ones(self.code_dim)
        start = torch.randn(LAW_PARTICLES, self.code_dim, generator=gen)
        if law_codes is not None and len(law_codes) >= 2:
            law_codes = law_codes.float()
            loc = law_codes.mean(0)
            scale = law_codes.std(0).clamp_min(1e-6)
            pick = torch.randint(0, len(law_codes), (LAW_PARTICLES,), generator=gen)
            start = (law_codes[pick] - loc) / scale
        self.register_buffer("law_loc", loc)
        self.register_buffer("law_scale", scale)
        with torch.no_grad():
            self.law_out.bias.copy_(start.reshape(-1))

    @staticmethod
    def unflatten_theta(flat: torch.Tensor, spec: AESpec) -> dict[str, torch.Tensor]:
        """One AE's flat parameter vector -> ``{name: tensor}`` (the inverse of ``theta0``)."""
        out, start = {}, 0
        for name, shape in spec.param_shapes().items():
            size = math.prod(shape)
            out[name] = flat[start : start + size].reshape(shape)
            start += size
        if start != flat.numel():
            raise ValueError(f"expected {start} parameters for {spec}, got {flat.numel()}")
        return out

    def _hidden(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.body:
            h = F.elu(layer(h))
        return h

    def _flat(self, h: torch.Tensor) -> torch.Tensor:
        return self.theta0 + self.params_out(h)

    def flat(self, z: torch.Tensor) -> torch.Tensor:
        """``[n, n_params]`` flattened parameters (in ``spec.param_shapes()`` order)."""
        return self._flat(self._hidden(z))

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stacked parameters ``{name: [n, *shape]}`` of the AEs decoded from ``z``."""
        return self.unflatten(self.flat(z))

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start, n = {}, 0, flat.shape[0]
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            out[name] = flat[:, start : start + size].reshape(n, *shape)
            start += size
        return out

    def decode_all(self, z: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Parameters, and the code law's particles ``[n, K, c]``."""
        h = self._hidden(z)
        return self.unflatten(self._flat(h)), self._law(h)

    def code_law(self, z: torch.Tensor) -> torch.Tensor:
        """Particles ``[n, K, c]`` of the decoded AEs' code law (see :func:`particle_sample`)."""
        return self._law(self._hidden(z))

    def _law(self, h: torch.Tensor) -> torch.Tensor:
        out = self.law_out(h).reshape(h.shape[0], LAW_PARTICLES, self.code_dim)
        return self.law_loc + self.law_scale * out


def particle_bandwidth(particles: torch.Tensor) -> torch.Tensor:
    """``[n]`` kernel bandwidth of each particle set: half the median nearest-neighbour distance."""
    d = torch.cdist(particles, particles)
    inf = torch.full(d.shape[:2], float("inf"), dtype=d.dtype, device=d.device)
    d = d + torch.diag_embed(inf).nan_to_num(posinf=float("inf"))
    return 0.5 * d.min(dim=2).values.median(dim=1).values


def particle_sample(particles: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``[m, n, c]`` codes drawn from the kernel density of each particle set ``[m, K, c]``.

    A uniformly chosen particle plus Gaussian noise of :func:`particle_bandwidth`.
    """
    m, k, c = particles.shape
    pick = torch.randint(0, k, (m, n), generator=gen)
    base = particles.gather(1, pick[..., None].expand(m, n, c))
    eps = torch.randn(m, n, c, generator=gen, dtype=particles.dtype)
    return base + particle_bandwidth(particles)[:, None, None] * eps
