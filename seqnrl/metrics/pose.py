"""Keypoint accuracy: PCK and end-point error through ``mmpose.evaluation.functional``, and the
linear-probe protocol of unsupervised keypoint discovery.

mmpose is an optional extra (``pip install -e ".[pose]"``, see the README for the order of
the install steps); this module imports without it and :func:`require_mmpose` raises a
clear :class:`ImportError` when a metric needs it. Nothing here is computed by hand that
mmpose provides: PCK is ``keypoint_pck_accuracy`` and the errors are ``keypoint_epe``.

Protocol (Thewlis et al. 2017; Jakab et al. 2018; Schmidtke et al. 2021): fit a linear map
(least squares, with a bias) from the discovered keypoints of a frame to its true joints on
a training split; apply it to a held-out split; report PCK at 0.05 and 0.1 of the bounding
box size (``max(w, h)`` of the tight box around the true joints, mmpose's ``bbox``
normalisation) and the mean per-joint error.

Arrays: predictions and truths ``(N, K, 2)`` (one row per frame), ``mask`` ``(N, K)`` bool.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np

INSTALL_HINT = (
    "mmpose is not installed; it is the optional 'pose' extra: "
    "make install-pose (or, in order: pip install 'setuptools>=68' wheel 'cython>=3'; "
    "pip install --no-build-isolation chumpy==0.70; "
    "pip install --no-cache-dir --no-build-isolation --no-binary xtcocotools 'xtcocotools>=1.12'; "
    "pip install -e '.[pose]')"
)


def mmpose_available() -> bool:
    """Whether ``mmpose.evaluation.functional`` imports (it is the optional ``pose`` extra)."""
    try:
        require_mmpose()
    except ImportError:
        return False
    return True


def require_mmpose():
    """The ``mmpose.evaluation.functional`` module, or an :class:`ImportError` saying how to
    install it (also when a broken install, e.g. a NumPy-1 ``xtcocotools`` wheel, fails)."""
    try:
        return importlib.import_module("mmpose.evaluation.functional")
    except Exception as e:  # ImportError, or ValueError "numpy.dtype size changed"
        raise ImportError(f"{INSTALL_HINT} [{type(e).__name__}: {e}]") from e


def _prep(pred, gt, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be (N, K, 2), got {pred.shape} and {gt.shape}")
    ok = np.isfinite(gt).all(-1)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    # a missing prediction counts as wrong: put it far away instead of dropping the joint
    pred = np.where(np.isfinite(pred), pred, 1e9)
    gt = np.where(np.isfinite(gt), gt, 0.0)
    return pred, gt, ok


def bbox_size(gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(N,)`` ``max(width, height)`` of the tight box around each frame's visible joints."""
    g = np.asarray(gt, dtype=np.float64)
    ok = np.isfinite(g).all(-1) if mask is None else (np.asarray(mask, bool) & np.isfinite(g).all(-1))
    lo = np.where(ok[..., None], g, np.inf).min(1)
    hi = np.where(ok[..., None], g, -np.inf).max(1)
    size = (hi - lo).max(-1)
    return np.where(np.isfinite(size), size, 0.0)


def pck(
    pred: np.ndarray,
    gt: np.ndarray,
    thr: float,
    mask: np.ndarray | None = None,
    norm: np.ndarray | None = None,
) -> dict[str, Any]:
    """PCK at ``thr`` with ``mmpose``'s ``keypoint_pck_accuracy``.

    ``norm`` ``(N,)``: the per-frame normalising length (default :func:`bbox_size`); frames
    with a zero norm are ignored (mmpose's rule). Returns ``per_joint`` ``(K,)`` (NaN for a
    joint never visible), ``mean`` (mmpose's average over joints with visible instances) and
    ``count`` (joints averaged).
    """
    f = require_mmpose()
    pred, gt, ok = _prep(pred, gt, mask)
    n = bbox_size(gt, ok) if norm is None else np.asarray(norm, dtype=np.float64).reshape(-1)
    norm_factor = np.repeat(n[:, None], 2, axis=1)
    acc, avg, cnt = f.keypoint_pck_accuracy(pred, gt, ok, float(thr), norm_factor.copy())
    acc = np.where(np.asarray(acc) >= 0, acc, np.nan).astype(np.float64)
    return {"per_joint": acc, "mean": float(avg), "count": int(cnt)}


def epe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean end-point (Euclidean) error over visible joints, ``mmpose``'s ``keypoint_epe``."""
    f = require_mmpose()
    pred, gt, ok = _prep(pred, gt, mask)
    return float(f.keypoint_epe(pred, gt, ok))


def pose_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    thrs: Sequence[float] = (0.05, 0.1),
    pixels: float | None = None,
) -> dict[str, float]:
    """``pck@<thr>`` (bbox-normalised) for each threshold, ``mpjpe`` (mean per-joint error in
    the input units), ``mpjpe_bbox`` (each error divided by its frame's bbox size) and, with
    ``pixels`` (the image size for coordinates normalised to [0, 1]), ``mpjpe_px``."""
    pred_, gt_, ok = _prep(pred, gt, mask)
    n = bbox_size(gt_, ok)
    out = {f"pck@{t:g}": pck(pred_, gt_, t, ok, n)["mean"] for t in thrs}
    out["mpjpe"] = epe(pred_, gt_, ok)
    scale = np.where(n > 0, n, 1.0)[:, None, None]
    out["mpjpe_bbox"] = epe(pred_ / scale, gt_ / scale, ok & (n > 0)[:, None])
    if pixels is not None:
        out["mpjpe_px"] = out["mpjpe"] * float(pixels)
    return out


# -- linear probe ----------------------------------------------------------------------------
def fit_linear_map(x: np.ndarray, y: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Least-squares map with bias from discovered keypoints ``x`` ``(N, J, 2)`` to true joints
    ``y`` ``(N, K, 2)``; frames with any non-finite value are left out. Returns ``W``
    ``(2J + 1, 2K)`` for :func:`apply_linear_map`. ``ridge`` (relative to the mean feature
    variance) keeps the solve stable when discovered keypoints are collinear."""
    xf = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    yf = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    ok = np.isfinite(xf).all(1) & np.isfinite(yf).all(1)
    if ok.sum() < 2:
        raise ValueError(f"need at least 2 frames with finite keypoints to fit a map, got {int(ok.sum())}")
    xf, yf = xf[ok], yf[ok]
    mu, ymu = xf.mean(0), yf.mean(0)
    xc, yc = xf - mu, yf - ymu
    lam = ridge * max(float(xc.var(0).mean()), 1e-12) * len(xf)
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(xc.shape[1]), xc.T @ yc)
    b = ymu - mu @ w
    return np.vstack([w, b[None]])


def apply_linear_map(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(N, J, 2)`` -> ``(N, K, 2)`` with a map from :func:`fit_linear_map`."""
    xf = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return (xf @ w[:-1] + w[-1]).reshape(len(x), -1, 2)


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    thrs: Sequence[float] = (0.05, 0.1),
    pixels: float | None = None,
    ridge: float = 1e-6,
) -> dict[str, float]:
    """The standard protocol: fit on ``train``, :func:`pose_metrics` of the mapped ``test``."""
    w = fit_linear_map(train_x, train_y, ridge)
    return pose_metrics(apply_linear_map(test_x, w), test_y, thrs=thrs, pixels=pixels)
