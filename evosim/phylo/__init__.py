"""Phylogenetics toolkit: trees, Newick, growth models, distance methods, comparison.

See :class:`Phylogeny` for the tree conventions shared by every stage of evosim.
"""

from evosim.phylo.compare import (
    compare_trees,
    cophenetic_correlation,
    quartet_distance,
    quartet_distance_estimate,
    robinson_foulds,
    shared_splits,
    triplet_distance,
    triplet_distance_estimate,
)
from evosim.phylo.growth import birth_death, coalescent, grow_tree, yule
from evosim.phylo.inference import neighbor_joining, upgma
from evosim.phylo.newick import NewickError
from evosim.phylo.tree import Phylogeny, TreeArrays

__all__ = [
    "NewickError",
    "Phylogeny",
    "TreeArrays",
    "birth_death",
    "coalescent",
    "compare_trees",
    "cophenetic_correlation",
    "grow_tree",
    "neighbor_joining",
    "quartet_distance",
    "quartet_distance_estimate",
    "robinson_foulds",
    "shared_splits",
    "triplet_distance",
    "triplet_distance_estimate",
    "upgma",
    "yule",
]
