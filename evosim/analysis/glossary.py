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
    "triplet_se": "standard error of triplet where it is estimated from sampled triplets",
    "cophenetic_pearson": "Pearson correlation, over all pairs of species, of the two "
    "trees' patristic (cophenetic) distances (inferred vs true tree)",
    "cophenetic_spearman": "Spearman (rank) correlation, over all pairs of species, of the "
    "two trees' patristic (cophenetic) distances (inferred vs true tree)",
    "distance_pearson": "Pearson correlation of a method's own distances (e.g. the MAE's "
    "latent distances), before any tree is built, with the true patristic distances",
    "distance_spearman": "Spearman (rank) correlation of a method's own distances with the "
    "true patristic distances",
    "mantel_p": "one-sided Mantel permutation p-value of distance_pearson",
}


def _legacy() -> dict[str, str]:
    # Until the analysis reports distance_* (evosim.analysis.metrics), its cophenetic_*
    # are the method's own distances against the truth: say so.
    from evosim.analysis.metrics import METRICS

    if "distance_pearson" in METRICS:
        return {}
    return {
        "cophenetic_pearson": "Pearson correlation of a method's own distances (e.g. the "
        "MAE's latent distances) with the true patristic distances; in `evosim compare`, "
        "of the two trees' patristic distances",
        "cophenetic_spearman": "Spearman (rank) correlation of a method's own distances "
        "with the true patristic distances; in `evosim compare`, of the two trees' "
        "patristic distances",
        "mantel_p": "one-sided Mantel permutation p-value of cophenetic_pearson",
    }


def describe(name: str) -> str:
    """The meaning of metric ``name`` (``""`` if it has none here)."""
    return _legacy().get(name, GLOSSARY.get(name, ""))
