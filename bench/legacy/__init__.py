"""The analysis as it was before issue 17 (commit 4eb2ace), kept for side-by-side benchmarks.

``legacy.phylo`` is the networkx-backed phylogenetics package and ``legacy.analysis`` the
scoring (NJ per method, a fixed-size Mantel test per method, sampled random trees, frozenset
split walks) of that commit, with imports pointed at each other; the baselines, the
report and everything else come from the current ``evosim``. Used only by
``bench/bench_analysis.py``, never by evosim itself.
"""
