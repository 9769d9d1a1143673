"""Replicate-based uncertainty: bootstrap clade support and the noise floor.

With ``R > 1`` AE replicates per species, each bootstrap sample redraws, for every
species independently, ``R`` of its replicates with replacement, averages their latent
codes, and rebuilds the tree with the same method. The support of an inferred clade is
the fraction of bootstrap trees that contain it (Felsenstein 1985, with replicates in
place of alignment columns). Clades are compared as unrooted splits, so NJ and UPGMA
trees are treated alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from legacy.analysis.metrics import euclidean, infer_tree
from legacy.phylo import Phylogeny

__all__ = ["bootstrap_support", "noise_floor", "splits", "support_newick"]


def _below(tree: Phylogeny) -> dict[str, frozenset[str]]:
    """Leaf set under every node."""
    out: dict[str, frozenset[str]] = {}
    for node in tree.postorder():
        kids = tree.children(node)
        out[node] = frozenset([node]) if not kids else frozenset().union(*(out[c] for c in kids))
    return out


def _canonical(side: frozenset[str], leaves: frozenset[str], anchor: str) -> frozenset[str]:
    return leaves - side if anchor in side else side


def splits(tree: Phylogeny) -> dict[str, frozenset[str]]:
    """Nontrivial splits of a tree, keyed by the node above which the split's edge lies.

    Each split is given by the side that does not hold the alphabetically first leaf,
    so the same bipartition has the same key in any tree on the same leaves (rooted or
    not). Splits that repeat (the two root edges of a rooted tree) keep one node.
    """
    below = _below(tree)
    leaves = frozenset(l for l in tree.leaves)
    anchor = min(leaves)
    out: dict[str, frozenset[str]] = {}
    seen: set[frozenset[str]] = set()
    for node in tree.preorder():
        if node == tree.root or tree.is_leaf(node):
            continue
        side = _canonical(below[node], leaves, anchor)
        if 2 <= len(side) <= len(leaves) - 2 and side not in seen:
            seen.add(side)
            out[node] = side
    return out


def split_set(tree: Phylogeny) -> set[frozenset[str]]:
    """The set of nontrivial splits (see :func:`splits`)."""
    return set(splits(tree).values())


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
    own = splits(tree)
    if replicates < 2 or n_boot < 1 or not own:
        return {}
    z = np.asarray(member_latents, dtype=np.float64).reshape(len(species), replicates, -1)
    counts = dict.fromkeys(own, 0)
    for _ in range(n_boot):
        pick = rng.integers(0, replicates, size=(len(species), replicates))
        zb = np.take_along_axis(z, pick[:, :, None], axis=1).mean(axis=1)
        found = split_set(infer_tree(euclidean(zb), species, method))
        for node, side in own.items():
            counts[node] += side in found
    return {node: c / n_boot for node, c in counts.items()}


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


_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _label(name: str) -> str:
    if _SAFE.match(name):
        return name
    return "'" + name.replace("'", "''") + "'"


def support_newick(tree: Phylogeny, support: dict[str, float] | None = None) -> str:
    """Newick with branch lengths; internal labels are supports (2 decimals) where known.

    Internal nodes without a support value are written unlabelled.
    """
    support = support or {}

    def walk(node: str) -> str:
        kids = tree.children(node)
        if kids:
            inner = ",".join(walk(c) for c in kids)
            text = f"({inner})"
            if node in support:
                text += f"{support[node]:.2f}"
        else:
            text = _label(node)
        if node != tree.root:
            text += f":{tree.length(node):.6g}"
        return text

    return walk(tree.root) + ";"


def mean_support(
    support: dict[str, float], tree: Phylogeny, true_splits: Iterable[frozenset[str]]
) -> dict[str, float]:
    """Mean support of inferred splits that are true and of those that are false."""
    truth = set(true_splits)
    own = splits(tree)
    t = [v for n, v in support.items() if own[n] in truth]
    f = [v for n, v in support.items() if own[n] not in truth]
    return {
        "mean_support_true": float(np.mean(t)) if t else float("nan"),
        "mean_support_false": float(np.mean(f)) if f else float("nan"),
        "n_true": len(t),
        "n_false": len(f),
    }
