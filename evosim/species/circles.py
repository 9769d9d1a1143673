"""The MAE paper's family: a species is a circle, an instance a noisy point on it."""

from __future__ import annotations

import numpy as np

from evosim.species.base import Family

__all__ = ["Circles"]


class Circles(Family):
    """Species are circles in the plane; instances are points on them (D = 2).

    From an individual's genotype ``g``: radius ``exp(g_1 / 4)`` (1 at trait 0; each unit of
    trait scales it by e^{1/4}), centre ``(g_2, g_3)`` (0 for missing traits; traits beyond the
    third are unused). The per-instance hidden variable is the angle, uniform on [0, 2 pi).
    ``species.ambient_dim`` and ``species.instance_latent`` are ignored: D is always 2,
    columns (x, y).
    """

    name = "circles"

    @property
    def dim(self) -> int:
        return 2

    def _phenotype(self, genotypes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(genotypes)
        radius = np.exp(genotypes[:, 0] / 4.0)
        centre = np.zeros((n, 2))
        k = min(self.trait_dim - 1, 2)
        centre[:, :k] = genotypes[:, 1 : 1 + k]
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        return centre + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
