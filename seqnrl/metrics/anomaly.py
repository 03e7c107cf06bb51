"""Frame- and video-level anomaly metrics (pure functions of scores and labels).

torchmetrics' binary metrics apply a sigmoid to inputs outside [0, 1]; large raw anomaly
scores would all saturate to 1.0 and the AUROC would silently collapse to ~0.5. Every score
is therefore rank-transformed into [0, 1] first (a monotone map: AUROC, AP and EER are
unchanged by it, ties are kept).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.stats import rankdata
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_roc,
)

from seqnrl.metrics.ranks import rank_auroc  # noqa: F401 - re-exported (its home is ranks)


def to_unit_interval(scores: np.ndarray) -> torch.Tensor:
    """Monotone rank transform of scores into [0, 1] (ties share a value)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size < 2:
        return torch.zeros(s.size)
    r = rankdata(s, method="average")
    return torch.as_tensor((r - r.min()) / max(r.max() - r.min(), 1e-12), dtype=torch.float64)


def _prep(scores, labels) -> tuple[torch.Tensor, torch.Tensor] | None:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    ok = np.isfinite(s) & (y >= 0)
    s, y = s[ok], y[ok].astype(np.int64)
    if s.size == 0 or y.min() == y.max():
        return None  # undefined without both classes
    return to_unit_interval(s), torch.as_tensor(y)


def auroc(scores, labels) -> float:
    p = _prep(scores, labels)
    return float("nan") if p is None else float(binary_auroc(*p))


def average_precision(scores, labels) -> float:
    p = _prep(scores, labels)
    return float("nan") if p is None else float(binary_average_precision(*p))


def eer(scores, labels) -> float:
    """Equal error rate: where the false-positive rate equals the false-negative rate."""
    p = _prep(scores, labels)
    if p is None:
        return float("nan")
    fpr, tpr, _ = binary_roc(*p)
    fnr = 1 - tpr
    diff = (fpr - fnr).numpy()
    i = int(np.flatnonzero(diff >= 0)[0]) if (diff >= 0).any() else len(diff) - 1
    if i == 0:
        return float(fpr[0])
    # linear interpolation between the two ROC points around the crossing
    d0, d1 = diff[i - 1], diff[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def minmax_per_video(scores: np.ndarray) -> np.ndarray:
    """Per-video min-max normalisation used by many papers (needs the whole video: not live)."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = np.nanmin(s), np.nanmax(s)
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def frame_metrics(
    scores: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    labels: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    video_labels: Mapping[str, int] | None = None,
    video_scores: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Frame AUROC micro (all frames pooled) and macro (mean over videos with both classes),
    pooled AP and EER, the per-video min-max normalised pooled AUROC (for comparison with
    papers only), and the video-level AUROC when video labels and scores are given."""
    if isinstance(scores, Mapping):
        keys = list(scores)
        s_list = [np.asarray(scores[k], float) for k in keys]
        y_list = [np.asarray(labels[k]) for k in keys]
    else:
        keys = list(range(len(scores)))
        s_list = [np.asarray(s, float) for s in scores]
        y_list = [np.asarray(y) for y in labels]
    if not s_list:
        return {}
    s_all, y_all = np.concatenate(s_list), np.concatenate(y_list)
    per_video = [auroc(s, y) for s, y in zip(s_list, y_list)]
    per_video = [a for a in per_video if np.isfinite(a)]
    out = {
        "frame_auroc_micro": auroc(s_all, y_all),
        "frame_auroc_macro": float(np.mean(per_video)) if per_video else float("nan"),
        "frame_ap": average_precision(s_all, y_all),
        "frame_eer": eer(s_all, y_all),
        "frame_auroc_micro_pervideo_norm": auroc(np.concatenate([minmax_per_video(s) for s in s_list]), y_all),
    }
    if video_labels is not None and video_scores is not None:
        vk = [k for k in keys if k in video_labels and k in video_scores]
        out["video_auroc"] = auroc([video_scores[k] for k in vk], [video_labels[k] for k in vk])
    return out
