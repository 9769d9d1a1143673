"""Phylogenetics toolkit: trees, Newick, growth models, distance methods, comparison.

See :class:`Phylogeny` for the tree conventions shared by every stage of evosim.
"""

from legacy.phylo.compare import (
    compare_trees,
    cophenetic_correlation,
    quartet_distance,
    quartet_distance_estimate,
    robinson_foulds,
    triplet_distance,
)
from legacy.phylo.growth import birth_death, coalescent, grow_tree, yule
from legacy.phylo.inference import neighbor_joining, upgma
from legacy.phylo.newick import NewickError
from legacy.phylo.tree import Phylogeny

__all__ = [
    "NewickError",
    "Phylogeny",
    "birth_death",
    "coalescent",
    "compare_trees",
    "cophenetic_correlation",
    "grow_tree",
    "neighbor_joining",
    "quartet_distance",
    "quartet_distance_estimate",
    "robinson_foulds",
    "triplet_distance",
    "upgma",
    "yule",
]
