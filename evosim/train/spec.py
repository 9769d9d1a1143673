"""The shape of one autoencoder: :class:`AESpec`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["AESpec", "ACTIVATIONS", "VARIANTS"]

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "softplus", "sigmoid")
VARIANTS = ("plain", "denoising", "sparse", "contractive", "variational", "concrete", "mdl")


@dataclass(frozen=True)
class AESpec:
    """An MLP autoencoder ``input_dim -> hidden... -> latent -> reversed(hidden)... -> input_dim``.

    Hidden layers use ``activation``; the code layer and the output layer are linear.
    The ``variational`` encoder's last layer outputs ``2 * latent`` values, ``[mu, logvar]``.
    The ``concrete`` encoder is a selector layer instead of an MLP: ``selector.logits``
    ``[latent, input_dim]``, one row per selected input feature (the code is those
    ``latent`` features; ``hidden`` shapes the decoder only). The ``mdl`` AE adds a learned
    factorised prior over its quantised code, ``prior.loc`` and ``prior.log_scale``
    ``[latent]`` (:mod:`evosim.train.variants`).

    Parameters
    ----------
    input_dim
        D, the width of one instance.
    hidden
        Encoder hidden widths; the decoder mirrors them.
    latent
        Width of the code.
    activation
        One of :data:`ACTIVATIONS`.
    variant
        One of :data:`VARIANTS` (``variational``, ``concrete`` and ``mdl`` change the
        parameters).
    """

    input_dim: int
    hidden: tuple[int, ...]
    latent: int
    activation: str = "elu"
    variant: str = "plain"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.input_dim < 1 or self.latent < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(
                f"AESpec widths must be >= 1, got input_dim={self.input_dim}, "
                f"hidden={self.hidden}, latent={self.latent}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")

    @property
    def encoder_widths(self) -> list[int]:
        """Widths from input to encoder output (``2 * latent`` for ``variational``).

        ``[input_dim, latent]`` for ``concrete``, whose encoder is a selector, not a layer.
        """
        if self.variant == "concrete":
            return [self.input_dim, self.latent]
        out = 2 * self.latent if self.variant == "variational" else self.latent
        return [self.input_dim, *self.hidden, out]

    @property
    def decoder_widths(self) -> list[int]:
        """Widths from code to reconstruction."""
        return [self.latent, *reversed(self.hidden), self.input_dim]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-member parameter shapes, in layer order (weights are ``[in, out]``)."""
        shapes: dict[str, tuple[int, ...]] = {}
        parts = [("encoder", self.encoder_widths), ("decoder", self.decoder_widths)]
        if self.variant == "concrete":
            shapes["selector.logits"] = (self.latent, self.input_dim)
            parts = parts[1:]
        for part, widths in parts:
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                shapes[f"{part}.{i}.weight"] = (a, b)
                shapes[f"{part}.{i}.bias"] = (b,)
        if self.variant == "mdl":
            shapes["prior.loc"] = (self.latent,)
            shapes["prior.log_scale"] = (self.latent,)
        return shapes

    @property
    def n_params(self) -> int:
        """Number of parameters of one autoencoder."""
        total = 0
        for shape in self.param_shapes().values():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total

    def to_dict(self) -> dict[str, Any]:
        """Plain data (safe for ``torch.load(weights_only=True)``)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AESpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            input_dim=int(d["input_dim"]),
            hidden=tuple(d["hidden"]),
            latent=int(d["latent"]),
            activation=str(d["activation"]),
            variant=str(d["variant"]),
        )

    @classmethod
    def from_config(cls, config: Any, input_dim: int) -> AESpec:
        """The spec an :class:`~evosim.scenario.AutoencoderConfig` asks for on D-dim data.

        A ``concrete`` AE's code is its ``selected_features`` (default ``latent``) inputs.
        """
        latent = int(config.latent)
        if config.variant == "concrete":
            k = getattr(config, "selected_features", None)
            latent = latent if k is None else int(k)
            if latent > int(input_dim):
                from evosim.errors import ScenarioError

                field = "selected_features" if k is not None else "latent"
                raise ScenarioError(
                    f"autoencoder.{field}: a concrete AE selects at most the instance "
                    f"dimension D={input_dim} features, got {latent}"
                )
        return cls(
            input_dim=int(input_dim),
            hidden=tuple(config.hidden),
            latent=latent,
            activation=config.activation,
            variant=config.variant,
        )
