"""A fixed random genotype-to-phenotype network: the same "laws of development" for all species."""

from __future__ import annotations

import numpy as np

from evosim import seeding
from evosim.scenario import SpeciesConfig
from evosim.species.base import Family

__all__ = ["Development"]

#: Scale of the first-layer weights on the per-instance latent u ~ U(-1, 1)^L: large
#: enough that the instance manifold bends (tanh leaves its linear range), small enough
#: that it does not fold onto itself.
LATENT_GAIN = 1.5
#: Scale of the first-layer weights on the genotype, per unit of trait across
#: ``sqrt(trait_dim)`` traits: trait vectors from the tree models have sd of a few units,
#: so this keeps most species in tanh's responsive range rather than saturated.
GENOTYPE_GAIN = 0.5


class Development(Family):
    """Phenotype = a fixed random two-layer tanh network of (genotype, per-instance latent).

    ``x = W3 tanh(W2 tanh(W1g g + W1u u + b1) + b2) + b3``, with ``g`` the individual's
    genotype (species traits + individual deviation), ``u ~ U(-1, 1)^L`` the per-instance
    latent (``L = species.instance_latent``, e.g. the individual's age or pose), hidden
    width ``species.development_hidden`` and output ``D = species.ambient_dim``. The weights
    come from ``seeding.rng(seed, "development")`` alone: every species, and every node of
    the tree, develops by the same laws. For a fixed genotype, ``u -> x`` traces an
    L-dimensional curved manifold in R^D, whose position and shape depend on the genotype
    through the shared hidden units; species that are close in trait space therefore have
    similar instance distributions. Weights are scaled so each output coordinate is O(1)
    (the readout has variance 1/H per unit, hidden activations are in [-1, 1]).
    """

    name = "development"

    def __init__(self, config: SpeciesConfig, trait_dim: int, seed: int):
        super().__init__(config, trait_dim, seed)
        rng = seeding.rng(self.seed, "development")
        k, L, H, D = (
            trait_dim,
            config.instance_latent,
            config.development_hidden,
            config.ambient_dim,
        )
        self.w1g = rng.standard_normal((k, H)) * (GENOTYPE_GAIN / np.sqrt(k))
        self.w1u = rng.standard_normal((L, H)) * (LATENT_GAIN / np.sqrt(L))
        self.b1 = rng.standard_normal(H) * 0.5
        self.w2 = rng.standard_normal((H, H)) * (1.5 / np.sqrt(H))
        self.b2 = rng.standard_normal(H) * 0.5
        self.w3 = rng.standard_normal((H, D)) * (1.0 / np.sqrt(H))
        self.b3 = rng.standard_normal(D) * 0.1

    @property
    def dim(self) -> int:
        return self.config.ambient_dim

    def _phenotype(self, genotypes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.uniform(-1.0, 1.0, size=(len(genotypes), self.config.instance_latent))
        return self.develop(genotypes, u)

    def develop(self, genotypes: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The noiseless phenotypes ``[N, D]`` of genotypes ``[N, k]`` at latents ``[N, L]``."""
        h = np.tanh(genotypes @ self.w1g + u @ self.w1u + self.b1)
        h = np.tanh(h @ self.w2 + self.b2)
        return h @ self.w3 + self.b3
