"""Analysis: latent space -> inferred tree -> scores against the truth, with baselines.

See :func:`analyse` and :class:`Report`.
"""

from evosim.analysis.analyse import analyse
from evosim.analysis.baselines import BASELINES
from evosim.analysis.metrics import METRICS, mantel, score_distances
from evosim.analysis.report import Report

__all__ = ["BASELINES", "METRICS", "Report", "analyse", "mantel", "score_distances"]
