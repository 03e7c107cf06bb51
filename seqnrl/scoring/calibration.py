"""Calibration of raw anomaly scores against normal validation data.

The statistics live in buffers of a module owned by the model, so they travel in the
checkpoint and predictions of different videos (and of a live scan) are comparable. No
per-video normalisation happens at inference.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ScoreCalibrator(nn.Module):
    """Maps raw frame scores to z-scores, empirical p-values and a calibrated value in [0, 1].

    ``calibrated = ECDF_normal(raw)`` (the fraction of normal validation frames scoring
    lower), ``p_value = 1 - calibrated`` with the usual +1 correction, ``z = (raw - mean) / std``.
    The operating threshold is the raw score whose normal false-positive rate is ``target_fpr``.
    """

    def __init__(self, n_quantiles: int = 1001, target_fpr: float = 0.05):
        super().__init__()
        self.n_quantiles = n_quantiles
        self.register_buffer("mean", torch.tensor(0.0))
        self.register_buffer("std", torch.tensor(1.0))
        self.register_buffer("quantiles", torch.linspace(0.0, 1.0, n_quantiles))
        self.register_buffer("n_ref", torch.tensor(0, dtype=torch.long))
        self.register_buffer("target_fpr", torch.tensor(float(target_fpr)))
        self.register_buffer("threshold", torch.tensor(float("inf")))

    @property
    def fitted(self) -> bool:
        return int(self.n_ref) > 0

    @torch.no_grad()
    def fit(self, normal_scores: np.ndarray | torch.Tensor, target_fpr: float | None = None) -> None:
        s = torch.as_tensor(np.asarray(normal_scores, dtype=np.float64)).flatten()
        s = s[torch.isfinite(s)]
        if s.numel() < 2:
            raise ValueError(f"calibration needs at least 2 finite normal scores, got {s.numel()}")
        if target_fpr is not None:
            self.target_fpr.fill_(float(target_fpr))
        q = torch.linspace(0, 1, self.n_quantiles, dtype=torch.float64)
        self.quantiles.copy_(torch.quantile(s, q).to(self.quantiles))
        self.mean.fill_(float(s.mean()))
        self.std.fill_(max(float(s.std()), 1e-12))
        self.n_ref.fill_(int(s.numel()))
        self.threshold.fill_(float(torch.quantile(s, 1.0 - float(self.target_fpr))))

    def _check(self) -> None:
        if not self.fitted:
            raise RuntimeError("ScoreCalibrator is not fitted: run validation on normal data first")

    @torch.no_grad()
    def cdf(self, raw: torch.Tensor) -> torch.Tensor:
        """Empirical CDF of normal scores at ``raw`` (piecewise-linear between quantiles)."""
        self._check()
        q = self.quantiles.to(raw.device, torch.float64)
        x = raw.to(torch.float64)
        levels = torch.linspace(0, 1, len(q), dtype=torch.float64, device=raw.device)
        idx = torch.searchsorted(q, x.clamp(q[0], q[-1]).contiguous(), right=True).clamp(1, len(q) - 1)
        lo, hi = q[idx - 1], q[idx]
        frac = torch.where(hi > lo, (x - lo) / (hi - lo), torch.ones_like(x))
        out = levels[idx - 1] + frac.clamp(0, 1) * (levels[idx] - levels[idx - 1])
        out = torch.where(x < q[0], torch.zeros_like(out), out)
        out = torch.where(x >= q[-1], torch.ones_like(out), out)
        return out.to(torch.float32)

    def calibrated(self, raw: torch.Tensor) -> torch.Tensor:
        return self.cdf(raw)

    def p_value(self, raw: torch.Tensor) -> torch.Tensor:
        n = float(self.n_ref)
        return ((1.0 - self.cdf(raw)) * n + 1.0) / (n + 1.0)

    def z(self, raw: torch.Tensor) -> torch.Tensor:
        self._check()
        return (raw - self.mean.to(raw)) / self.std.to(raw)

    def is_anomalous(self, raw: torch.Tensor) -> torch.Tensor:
        self._check()
        return raw > self.threshold.to(raw)

    def describe(self) -> dict:
        """The calibration as plain numbers (``None`` where unfitted), for run summaries."""
        fitted = self.fitted
        return {
            "fitted": fitted,
            "target_fpr": float(self.target_fpr),
            "threshold_raw": float(self.threshold) if fitted else None,
            "threshold_calibrated": self.threshold_calibrated,
            "normal_mean": float(self.mean) if fitted else None,
            "normal_std": float(self.std) if fitted else None,
            "n_normal_frames": int(self.n_ref),
        }

    @property
    def threshold_calibrated(self) -> float | None:
        """The operating point on the calibrated (normal-CDF) scale, ``1 - target_fpr``;
        ``None`` before fitting."""
        return 1.0 - float(self.target_fpr) if self.fitted else None

    def frame_outputs(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """``calibrated``, ``z``, ``p_value`` and ``above_threshold`` (1.0 / 0.0) per frame of
        ``raw``; NaN where ``raw`` is not finite (flags) and everywhere before fitting."""
        r = np.asarray(raw, dtype=np.float64)
        if not self.fitted:
            nan = np.full(len(r), np.nan)
            return {"calibrated": nan, "z": nan.copy(), "p_value": nan.copy(), "above_threshold": nan.copy()}
        t = torch.as_tensor(r, dtype=torch.float64)
        flags = self.is_anomalous(t).numpy().astype(np.float64)
        flags[~np.isfinite(r)] = np.nan
        return {
            "calibrated": self.calibrated(t).numpy(),
            "z": self.z(t).numpy(),
            "p_value": self.p_value(t).numpy(),
            "above_threshold": flags,
        }
