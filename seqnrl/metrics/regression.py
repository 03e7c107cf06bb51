"""Ejection-fraction regression metrics and ED/ES frame detection from a regression signal.

The ED/ES signal convention follows the Ultrasound Video Transformer: +1 at end-diastole,
-1 at end-systole, smooth in between. ED frames are peaks of the signal, ES frames peaks of
its negative; the average absolute frame difference (aFD) compares them with the true frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.signal import find_peaks
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score


def ef_metrics(pred, target) -> dict[str, float]:
    """EF MAE, RMSE (same unit as the inputs, % points) and R² over pairs with a finite target
    and prediction. NaN where undefined (no pairs; R² needs two and a non-constant target)."""
    p = torch.as_tensor(np.asarray(pred, dtype=np.float64)).flatten()
    y = torch.as_tensor(np.asarray(target, dtype=np.float64)).flatten()
    ok = torch.isfinite(p) & torch.isfinite(y)
    p, y = p[ok], y[ok]
    nan = float("nan")
    if p.numel() == 0:
        return {"ef_mae": nan, "ef_rmse": nan, "ef_r2": nan}
    r2 = float(r2_score(p, y)) if p.numel() >= 2 and float(y.std()) > 0 else nan
    return {
        "ef_mae": float(mean_absolute_error(p, y)),
        "ef_rmse": float(mean_squared_error(p, y, squared=False)),
        "ef_r2": r2,
    }


def _peaks(s: np.ndarray, distance: int, prominence: float, edge_level: float) -> np.ndarray:
    """Peaks of ``s``. The signal is padded with a low value so that a peak close to the
    clip's edge keeps its full prominence; the first/last frame itself counts only where
    the signal falls away from it and it is at least ``edge_level`` (an event the clip cuts
    off), not merely because the clip ends on a slope."""
    n = len(s)
    low = s.min() - 1.0
    pk, _ = find_peaks(np.r_[low, s, low], distance=max(1, distance), prominence=prominence)
    pk = pk - 1
    keep = [int(p) for p in pk if 0 < p < n - 1 or s[p] >= edge_level]
    return np.array(keep, dtype=np.int64)


def find_ed_es(
    signal,
    distance: int = 5,
    prominence: float = 0.25,
    edge_level: float = 0.5,
    fallback: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """ED frames (peaks of ``signal``) and ES frames (peaks of ``-signal``).

    ``distance``: minimum frames between two peaks of one kind; ``prominence``: minimum peak
    prominence (the signal spans [-1, 1]); the first/last frame counts as a peak where the
    signal falls away from it and is beyond ``edge_level`` (``-edge_level`` for ES).
    Non-finite values are interpolated over. With ``fallback`` and no peak found, the global
    maximum (minimum) is returned, so a clip shorter than a beat still gets one estimate each.
    """
    s = np.asarray(signal, dtype=np.float64).ravel()
    ok = np.isfinite(s)
    if not ok.any():
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    if not ok.all():
        s = np.interp(np.arange(len(s)), np.flatnonzero(ok), s[ok])
    ed = _peaks(s, distance, prominence, edge_level)
    es = _peaks(-s, distance, prominence, edge_level)
    if fallback and ed.size == 0:
        ed = np.array([int(np.argmax(s))], dtype=np.int64)
    if fallback and es.size == 0:
        es = np.array([int(np.argmin(s))], dtype=np.int64)
    return ed, es


def true_ed_es(signal, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Labelled ED / ES frames of a target signal: frames at exactly +1 / -1."""
    s = np.asarray(signal, dtype=np.float64).ravel()
    return np.flatnonzero(np.abs(s - 1.0) < tol), np.flatnonzero(np.abs(s + 1.0) < tol)


def afd(pred_frames: Sequence[int], true_frames: Sequence[int]) -> float:
    """Average absolute frame difference: for every true event the distance to the nearest
    predicted event, averaged. NaN without true events or without predictions."""
    p = np.asarray(pred_frames, dtype=np.float64).ravel()
    t = np.asarray(true_frames, dtype=np.float64).ravel()
    if t.size == 0 or p.size == 0:
        return float("nan")
    return float(np.abs(t[:, None] - p[None, :]).min(axis=1).mean())


def ed_es_afd(
    pred_signals: Sequence[np.ndarray],
    true_signals: Sequence[np.ndarray],
    distance: int = 5,
    prominence: float = 0.25,
) -> dict[str, float]:
    """ED and ES aFD over videos: events pooled over all videos (each true event counts once).
    NaN where no video has a labelled event of that kind."""
    d_ed: list[np.ndarray] = []
    d_es: list[np.ndarray] = []
    for ps, ts in zip(pred_signals, true_signals):
        ted, tes = true_ed_es(ts)
        if ted.size == 0 and tes.size == 0:
            continue
        ped, pes = find_ed_es(ps, distance=distance, prominence=prominence)
        for p, t, acc in ((ped, ted, d_ed), (pes, tes, d_es)):
            if t.size and p.size:
                acc.append(np.abs(t[:, None] - p[None, :]).min(axis=1))
    return {
        "ed_afd": float(np.concatenate(d_ed).mean()) if d_ed else float("nan"),
        "es_afd": float(np.concatenate(d_es).mean()) if d_es else float("nan"),
    }
