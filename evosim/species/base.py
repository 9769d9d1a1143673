"""What every species family shares: per-species seeding, individual variation, noise."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from evosim import seeding
from evosim.scenario import SpeciesConfig

__all__ = ["Family"]


class Family(ABC):
    """Turns a species' trait vector into a class of instances (vectors in R^D).

    An instance is one individual of the species, observed once. Its genotype is the
    species' trait vector plus an individual deviation ``N(0, individual_variation^2 I)``
    (or, for an individual-based population model, a row drawn from that species'
    ``individuals``); the family maps it, together with any per-instance hidden
    variables, to a phenotype in R^D; observation noise ``N(0, noise^2 I)`` is added.

    Every random draw for species ``name`` comes from ``seeding.rng(seed, "instances",
    name)``, so a species' instances depend only on (seed, name, traits): the same
    whether the world has 8 species or 64.

    Parameters
    ----------
    config
        The ``species:`` section of a scenario.
    trait_dim
        Number of traits per species (``traits.dim``).
    seed
        The scenario seed.
    """

    #: Family name as used by ``species.family``.
    name: str = ""

    def __init__(self, config: SpeciesConfig, trait_dim: int, seed: int):
        if int(trait_dim) != trait_dim or trait_dim < 1:
            raise ValueError(f"trait_dim must be a positive integer, got {trait_dim!r}")
        self.config = config
        self.trait_dim = int(trait_dim)
        self.seed = int(seed)

    @property
    @abstractmethod
    def dim(self) -> int:
        """D, the dimension of one instance."""

    @abstractmethod
    def _phenotype(self, genotypes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``[N, trait_dim]`` genotypes -> ``[N, D]`` noiseless phenotypes (float64)."""

    def instances(
        self, name: str, traits: np.ndarray, *, individuals: np.ndarray | None = None
    ) -> np.ndarray:
        """Sample ``config.instances`` instances of species (or ancestral node) ``name``.

        Parameters
        ----------
        name
            The node's name; seeds its stream.
        traits
            ``[trait_dim]`` the species' mean traits.
        individuals
            Optional ``[P, trait_dim]`` genotypes of the species' individuals (population
            model); each instance is then a row drawn uniformly with replacement, and no
            further individual deviation is added.

        Returns
        -------
        np.ndarray
            ``[N, D]`` float32, N = ``config.instances``.
        """
        traits = np.asarray(traits, dtype=np.float64)
        if traits.shape != (self.trait_dim,):
            raise ValueError(
                f"traits of {name!r} must have shape ({self.trait_dim},), got {traits.shape}"
            )
        if not np.all(np.isfinite(traits)):
            raise ValueError(f"traits of {name!r} are not finite")
        n = self.config.instances
        rng = seeding.rng(self.seed, "instances", name)
        if individuals is None:
            genotypes = traits + self.config.individual_variation * rng.standard_normal(
                (n, self.trait_dim)
            )
        else:
            individuals = np.asarray(individuals, dtype=np.float64)
            if individuals.ndim != 2 or individuals.shape[1] != self.trait_dim:
                raise ValueError(
                    f"individuals of {name!r} must have shape (P, {self.trait_dim}), "
                    f"got {individuals.shape}"
                )
            genotypes = individuals[rng.integers(0, len(individuals), size=n)]
        x = self._phenotype(genotypes, rng)
        x += self.config.noise * rng.standard_normal(x.shape)
        return x.astype(np.float32)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(trait_dim={self.trait_dim}, dim={self.dim}, seed={self.seed})"
        )
