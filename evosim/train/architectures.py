"""Which AE architecture each species gets (``autoencoder.architectures`` and ``assign``).

The assignment is part of building the world: :func:`evosim.simulate` calls
:func:`assign_architectures` (``by_clade`` reads the true tree there), records it in
``Simulation.architectures`` and the run directory's ``architectures.csv``, and the
trainer reads it from the Simulation; training never sees the tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evosim.seeding import rng

__all__ = ["architecture_configs", "assign_architectures"]


def architecture_configs(config: Any) -> list[Any]:
    """One single-architecture ``autoencoder`` section per entry of ``config.architectures``.

    Each is the section with the entry's ``hidden``, ``latent``, ``activation`` and
    ``variant`` and no ``architectures``: exactly the section of a one-architecture run of
    that architecture. Without ``architectures``, ``[config]``.
    """
    archs = list(getattr(config, "architectures", None) or [])
    if not archs:
        return [config]
    out = []
    for a in archs:
        update = {k: getattr(a, k) for k in ("hidden", "latent", "activation", "variant")}
        update = {k: v for k, v in update.items() if v is not None}
        if "hidden" in update:
            update["hidden"] = list(update["hidden"])
        out.append(config.model_copy(update={**update, "architectures": []}))
    return out


def assign_architectures(
    species: Sequence[str],
    n_architectures: int,
    *,
    assign: str = "random",
    seed: int,
    tree: Any = None,
) -> list[int]:
    """The architecture index of every species.

    Parameters
    ----------
    species
        The S species names.
    n_architectures
        K, the number of architectures.
    assign
        ``random``: species ``s`` draws its index uniformly from ``rng(seed,
        "ae-architecture", s)``, so it depends on neither the tree nor the other species.
        ``by_clade``: the tree is cut into K clades, top-down, always splitting the clade with
        the most species (ties: the earlier one in preorder) into its children's clades; the
        clades, in preorder, get architectures 0, 1, ..., K-1 (cyclically, should a polytomy
        give more than K). With a binary tree and K <= S every architecture is one clade.
    seed
        The world's seed.
    tree
        For ``by_clade``: the tree whose leaves include the species (e.g. the extant tree).

    Returns
    -------
    list[int]
        ``[S]`` indices in ``range(n_architectures)``.
    """
    if n_architectures < 1:
        raise ValueError(f"n_architectures must be >= 1, got {n_architectures}")
    if assign == "random":
        return [
            int(rng(seed, "ae-architecture", str(s)).integers(n_architectures)) for s in species
        ]
    if assign != "by_clade":
        raise ValueError(f"assign must be 'random' or 'by_clade', got {assign!r}")
    if tree is None:
        raise ValueError("assign: by_clade needs the tree")
    clades = _cut_into_clades(tree, set(map(str, species)), n_architectures)
    where = {leaf: i % n_architectures for i, clade in enumerate(clades) for leaf in clade}
    missing = [s for s in species if s not in where]
    if missing:
        raise ValueError(f"species not among the tree's leaves: {missing[:5]}")
    return [where[s] for s in species]


def _cut_into_clades(tree: Any, species: set[str], k: int) -> list[list[str]]:
    """At least ``k`` clades (leaf lists, in preorder) partitioning ``species``, top-down."""
    order = {v: i for i, v in enumerate(tree.preorder())}
    below: dict[str, list[str]] = {}
    for v in tree.postorder():
        kids = tree.children(v)
        if kids:
            below[v] = [leaf for c in kids for leaf in below[c]]
        else:
            below[v] = [v] if v in species else []
    clades = [tree.root]
    while len(clades) < k:
        splittable = [v for v in clades if len(below[v]) > 1]
        if not splittable:
            break
        v = max(splittable, key=lambda u: (len(below[u]), -order[u]))
        kids = [c for c in tree.children(v) if below[c]]
        while len(kids) == 1:  # a node whose other children hold no species: look through it
            kids = [c for c in tree.children(kids[0]) if below[c]]
        i = clades.index(v)
        clades[i : i + 1] = kids
    return [below[v] for v in sorted(clades, key=order.__getitem__)]


def check_assignment(assignment: Sequence[int], n_species: int, n_architectures: int) -> np.ndarray:
    """``[S]`` int64 copy of ``assignment``, checked against S and K."""
    a = np.asarray(assignment, dtype=np.int64).reshape(-1)
    if a.shape != (n_species,):
        raise ValueError(f"architecture assignment has {a.size} entries for {n_species} species")
    if a.size and (a.min() < 0 or a.max() >= n_architectures):
        raise ValueError(
            f"architecture indices must be in [0, {n_architectures}), got {sorted(set(a.tolist()))}"
        )
    return a
