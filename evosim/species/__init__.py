"""Species families: a species' trait vector -> a class of instances (vectors in R^D).

``make_family(config, trait_dim, seed)`` builds the family named by ``config.family``:

- ``development`` (default): a fixed random genotype-to-phenotype network,
- ``circles``: the MAE paper's circles (D = 2),
- ``outline``: 2-D closed outlines from Fourier harmonics (D = 2 * outline_points).

``family.instances(name, traits, *, individuals=None) -> [N, D] float32`` and
``family.dim`` (D). See :class:`~evosim.species.base.Family`.
"""

from __future__ import annotations

from evosim.scenario import SpeciesConfig
from evosim.species.base import Family
from evosim.species.circles import Circles
from evosim.species.development import Development
from evosim.species.outline import Outline, outline_radius

__all__ = ["Circles", "Development", "Family", "Outline", "make_family", "outline_radius"]

FAMILIES: dict[str, type[Family]] = {
    "development": Development,
    "circles": Circles,
    "outline": Outline,
}


def make_family(config: SpeciesConfig, trait_dim: int, seed: int) -> Family:
    """Build the species family named by ``config.family``.

    Parameters
    ----------
    config
        The ``species:`` section of a scenario.
    trait_dim
        Traits per species (``traits.dim``).
    seed
        The scenario seed (development weights and every species' instances derive from it).

    Returns
    -------
    Family

    Raises
    ------
    ValueError
        Unknown family name.
    """
    try:
        cls = FAMILIES[config.family]
    except KeyError:
        raise ValueError(
            f"unknown species.family {config.family!r}; expected one of {sorted(FAMILIES)}"
        ) from None
    return cls(config, trait_dim, seed)
