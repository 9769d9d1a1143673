"""2-D closed body outlines from Fourier harmonics, as in geometric morphometrics."""

from __future__ import annotations

import numpy as np

from evosim.species.base import Family

__all__ = ["Outline", "outline_radius"]

#: How strongly one unit of trait moves the log radius (harmonic h gets SCALE * 2 / h).
SCALE = 0.12


def outline_radius(genotypes: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Radius of each genotype's outline at each angle.

    ``log r(phi) = SCALE * g_1 + sum_h SCALE * (2 / h) (g_{2h-2} cos(h phi) + g_{2h-1} sin(h phi))``
    for harmonics ``h = 2, 3, ...`` fed by consecutive trait pairs (a lone last trait drives
    only the cosine of its harmonic). Trait 1 sets the overall size; the first harmonic,
    which would only shift the outline, is left out; higher harmonics are damped as ``1/h``
    so outlines stay smooth. The exponential keeps the radius positive, so every outline is
    a simple closed, star-shaped curve (a radial Fourier outline, Zahn & Roskies 1972 style;
    elliptic Fourier analysis, Kuhl & Giardina 1982, generalises it to non-star shapes).

    Parameters
    ----------
    genotypes
        ``[N, k]`` trait vectors.
    angles
        ``[M]`` angles in radians.

    Returns
    -------
    np.ndarray
        ``[N, M]`` radii.
    """
    genotypes = np.asarray(genotypes, dtype=np.float64)
    n, k = genotypes.shape
    log_r = np.repeat(SCALE * genotypes[:, :1], len(angles), axis=1)
    rest = genotypes[:, 1:]
    if rest.shape[1] % 2:
        rest = np.concatenate([rest, np.zeros((n, 1))], axis=1)
    n_h = rest.shape[1] // 2
    if n_h:
        h = np.arange(2, n_h + 2, dtype=np.float64)  # [H]
        basis_cos = np.cos(h[:, None] * angles[None, :])  # [H, M]
        basis_sin = np.sin(h[:, None] * angles[None, :])
        weight = SCALE * 2.0 / h  # [H]
        log_r += (rest[:, 0::2] * weight) @ basis_cos + (rest[:, 1::2] * weight) @ basis_sin
    return np.exp(log_r)


class Outline(Family):
    """Species are closed 2-D outlines; an instance is one individual's outline (D = 2M).

    The outline is sampled at ``M = species.outline_points`` fixed, equally spaced angles
    (see :func:`outline_radius`), so outlines are aligned: centred on the origin, same
    starting point, no rotation (as after Procrustes superimposition). Individual variation
    perturbs the harmonic amplitudes (the genotype); observation noise is added to each
    coordinate. The instance vector interleaves coordinates: ``(x_1, y_1, x_2, y_2, ...)``,
    so ``instance.reshape(M, 2)`` gives the points in order. ``species.ambient_dim`` and
    ``species.instance_latent`` are ignored.
    """

    name = "outline"

    @property
    def dim(self) -> int:
        return 2 * self.config.outline_points

    @property
    def angles(self) -> np.ndarray:
        """``[M]`` the sampling angles."""
        m = self.config.outline_points
        return 2.0 * np.pi * np.arange(m) / m

    def _phenotype(self, genotypes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        angles = self.angles
        r = outline_radius(genotypes, angles)  # [N, M]
        xy = np.stack([r * np.cos(angles), r * np.sin(angles)], axis=2)  # [N, M, 2]
        return xy.reshape(len(genotypes), -1)
