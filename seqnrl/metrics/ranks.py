"""Rank statistics with numpy and scipy only (no torchmetrics import: seconds per process)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def rank_auroc(scores, labels) -> float:
    """Mann-Whitney U based AUROC (ties averaged); labels -1 and non-finite scores are
    ignored; NaN when a class is missing. Used by the dataset summary and as a cross-check
    of :func:`seqnrl.metrics.anomaly.frame_metrics` (torchmetrics)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    ok = np.isfinite(s) & (y >= 0)
    s, y = s[ok], y[ok]
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
