"""What each score is called and means: one glossary for ``report.md`` and ``evosim compare``."""

from __future__ import annotations

__all__ = ["GLOSSARY", "describe"]

#: Metric name -> its meaning (the names of ``metrics.json`` and ``evosim compare``).
GLOSSARY = {
    "rf": "Robinson-Foulds distance: splits found in one tree and not the other",
    "nrf": "rf divided by its largest possible value for the two trees (0: same topology)",
    "quartet": "share of 4-leaf subsets whose (unrooted) topologies differ",
    "quartet_se": "standard error of quartet where it is estimated from sampled quartets "
    "(trees over 256 leaves)",
    "triplet": "share of 3-leaf subsets whose rooted topologies differ; n/a unless both "
    "trees are rooted (NJ trees are unrooted)",
    "cophenetic_pearson": "Pearson correlation of all pairwise distances with the true "
    "tree's patristic (cophenetic) distances",
    "cophenetic_spearman": "Spearman (rank) correlation of all pairwise distances with the "
    "true tree's patristic (cophenetic) distances",
    "mantel_p": "one-sided Mantel permutation p-value of cophenetic_pearson",
}

_HERE = {
    "compare": "here, the first tree's patristic distances against the second's",
    "report": "here, each method's own distances, e.g. the MAE's latent distances",
}
_CONTEXT = {
    (context, name): text
    for context, text in _HERE.items()
    for name in ("cophenetic_pearson", "cophenetic_spearman")
}


def describe(name: str, *, context: str = "report") -> str:
    """The meaning of metric ``name`` (``context``: ``"report"`` or ``"compare"``)."""
    text = GLOSSARY.get(name, "")
    extra = _CONTEXT.get((context, name))
    return f"{text}; {extra}" if extra else text
