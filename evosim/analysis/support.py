"""Replicate-based uncertainty: bootstrap clade support and the noise floor.

With ``R > 1`` AE replicates per species, each bootstrap sample redraws, for every
species independently, ``R`` of its replicates with replacement, averages their latent
codes, and rebuilds the tree with the same method. The support of an inferred clade is
the fraction of bootstrap trees that contain it (Felsenstein 1985, with replicates in
place of alignment columns). Clades are compared as unrooted splits, so NJ and UPGMA
trees are treated alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from evosim.analysis.metrics import euclidean, infer_tree
from evosim.phylo import Phylogeny, shared_splits

__all__ = [
    "bootstrap_support",
    "mean_support",
    "noise_floor",
    "split_set",
    "splits",
    "support_newick",
]


def splits(tree: Phylogeny) -> dict[str, frozenset[str]]:
    """Nontrivial splits of a tree, keyed by the node above which the split's edge lies
    (:meth:`Phylogeny.splits`: the side without the alphabetically first leaf)."""
    return tree.splits()


def split_set(tree: Phylogeny) -> set[frozenset[str]]:
    """The set of nontrivial splits (see :func:`splits`)."""
    return set(tree.splits().values())


def bootstrap_support(
    member_latents: np.ndarray,
    species: list[str],
    replicates: int,
    tree: Phylogeny,
    method: str,
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Support in [0, 1] of every nontrivial split of ``tree``, keyed by node name."""
    own = list(tree.splits())
    if replicates < 2 or n_boot < 1 or not own:
        return {}
    z = np.asarray(member_latents, dtype=np.float64).reshape(len(species), replicates, -1)
    counts = np.zeros(len(own))
    for _ in range(n_boot):
        pick = rng.integers(0, replicates, size=(len(species), replicates))
        zb = np.take_along_axis(z, pick[:, :, None], axis=1).mean(axis=1)
        found = shared_splits(tree, infer_tree(euclidean(zb), species, method))
        counts += [found[node] for node in own]
    return {node: float(c) / n_boot for node, c in zip(own, counts)}


def noise_floor(member_latents: np.ndarray, replicates: int) -> dict[str, float]:
    """Mean latent distance between replicates of one species vs between species.

    ``ratio = within / between``; near 0 means replicate noise is small next to the
    species' differences, near 1 means the latent space mostly encodes noise.
    """
    if replicates < 2:
        return {}
    z = np.asarray(member_latents, dtype=np.float64)
    d = euclidean(z)
    sp = np.arange(len(z)) // replicates
    same = sp[:, None] == sp[None, :]
    off = ~np.eye(len(z), dtype=bool)
    within = float(d[same & off].mean())
    between = float(d[~same].mean()) if (~same).any() else float("nan")
    return {"within": within, "between": between, "ratio": within / between}


def support_newick(tree: Phylogeny, support: dict[str, float] | None = None) -> str:
    """Newick (:meth:`Phylogeny.to_newick`) with supports (2 decimals) as internal labels.

    Internal nodes without a support value are written unlabelled; an unrooted (NJ) tree
    starts with ``[&U]``.
    """
    support = support or {}
    labels = {v: f"{support[v]:.2f}" if v in support else None for v in tree.internal_nodes}
    return tree.to_newick(labels=labels)


def mean_support(
    support: dict[str, float],
    tree: Phylogeny,
    true_splits: Phylogeny | Iterable[frozenset[str]],
) -> dict[str, float]:
    """Mean support of inferred splits that are true and of those that are false.

    ``true_splits``: the true tree (compared by :func:`evosim.phylo.shared_splits`), or
    its split sets.
    """
    if isinstance(true_splits, Phylogeny):
        true = shared_splits(tree, true_splits)
    else:
        truth = set(true_splits)
        own = tree.splits()
        true = {node: side in truth for node, side in own.items()}
    t = [v for n, v in support.items() if true[n]]
    f = [v for n, v in support.items() if not true[n]]
    return {
        "mean_support_true": float(np.mean(t)) if t else float("nan"),
        "mean_support_false": float(np.mean(f)) if f else float("nan"),
        "n_true": len(t),
        "n_false": len(f),
    }
