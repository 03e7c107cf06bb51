"""Window -> per-frame score aggregation: overlapping windows, scores averaged per frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d


@dataclass
class VideoScores:
    """Per-frame results of one video; arrays indexed by frame (NaN where never scored)."""

    video_id: str
    scores: np.ndarray
    labels: np.ndarray  # -1 unknown
    counts: np.ndarray  # how many windows scored each frame
    fps: float = float("nan")
    source: str = ""
    label: int = -1
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.scores)

    @property
    def times(self) -> np.ndarray:
        fps = self.fps if np.isfinite(self.fps) and self.fps > 0 else 1.0
        return np.arange(self.n_frames) / fps


class FrameScoreAccumulator:
    """Collect window scores ``(B, T)`` with their frame indices and average them per frame.

    Frames with index -1 (padding) are ignored. ``extra`` per-frame signals (e.g. the ED/ES
    regression output) are averaged the same way. Non-finite contributions (NaN/inf, e.g. a
    signal a window could not compute) are skipped per signal: a frame's value is the mean of
    its finite contributions and NaN only when it has none; ``counts`` stays the number of
    windows that covered the frame.
    """

    def __init__(self) -> None:
        self._sum: dict[str, dict[str, np.ndarray]] = {}
        self._n: dict[str, dict[str, np.ndarray]] = {}  # finite contributions per signal
        self._cnt: dict[str, np.ndarray] = {}
        self._lab: dict[str, np.ndarray] = {}
        self._meta: dict[str, dict] = {}

    def __len__(self) -> int:
        return len(self._cnt)

    def _grow(self, vid: str, n: int, keys) -> None:
        if vid not in self._cnt:
            self._cnt[vid] = np.zeros(n)
            self._lab[vid] = np.full(n, -1, dtype=np.int64)
            self._sum[vid] = {}
            self._n[vid] = {}
        cur = len(self._cnt[vid])
        if n > cur:
            self._cnt[vid] = np.pad(self._cnt[vid], (0, n - cur))
            self._lab[vid] = np.pad(self._lab[vid], (0, n - cur), constant_values=-1)
            for k in self._sum[vid]:
                self._sum[vid][k] = np.pad(self._sum[vid][k], (0, n - cur))
                self._n[vid][k] = np.pad(self._n[vid][k], (0, n - cur))
        for k in keys:
            if k not in self._sum[vid]:
                self._sum[vid][k] = np.zeros(len(self._cnt[vid]))
                self._n[vid][k] = np.zeros(len(self._cnt[vid]))

    def add(
        self,
        video_ids: list[str],
        frame_index: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor | None = None,
        n_frames: torch.Tensor | None = None,
        fps: torch.Tensor | None = None,
        sources: list[str] | None = None,
        video_labels: torch.Tensor | None = None,
        extra: dict[str, torch.Tensor] | None = None,
    ) -> None:
        fi = frame_index.detach().cpu().numpy()
        signals = {"score": scores}
        signals.update(extra or {})
        sig = {k: v.detach().float().cpu().numpy() for k, v in signals.items()}
        lab = labels.detach().cpu().numpy() if labels is not None else None
        for b, vid in enumerate(video_ids):
            valid = fi[b] >= 0
            idx = fi[b][valid]
            if idx.size == 0:
                continue
            n = int(n_frames[b]) if n_frames is not None else int(idx.max()) + 1
            self._grow(vid, max(n, int(idx.max()) + 1), sig.keys())
            np.add.at(self._cnt[vid], idx, 1)
            for k, v in sig.items():
                val = v[b][valid]
                ok = np.isfinite(val)
                np.add.at(self._sum[vid][k], idx[ok], val[ok])
                np.add.at(self._n[vid][k], idx[ok], 1)
            if lab is not None:
                self._lab[vid][idx] = lab[b][valid]
            meta = self._meta.setdefault(vid, {})
            if fps is not None:
                meta["fps"] = float(fps[b])
            if sources is not None:
                meta["source"] = sources[b]
            if video_labels is not None:
                meta["label"] = int(video_labels[b])

    def results(self) -> dict[str, VideoScores]:
        out = {}
        for vid, cnt in self._cnt.items():
            n = self._n[vid]
            with np.errstate(invalid="ignore", divide="ignore"):
                avg = {k: np.where(n[k] > 0, s / np.maximum(n[k], 1), np.nan) for k, s in self._sum[vid].items()}
            m = self._meta.get(vid, {})
            out[vid] = VideoScores(
                video_id=vid,
                scores=avg.pop("score"),
                labels=self._lab[vid].copy(),
                counts=cnt.copy(),
                fps=m.get("fps", float("nan")),
                source=m.get("source", ""),
                label=m.get("label", -1),
                extra=avg,
            )
        return out

    def state(self) -> dict:
        return {"sum": self._sum, "n": self._n, "cnt": self._cnt, "lab": self._lab, "meta": self._meta}

    def merge_state(self, st: dict) -> None:
        """Merge another accumulator's :meth:`state` (e.g. gathered from another process)."""
        for vid, cnt in st["cnt"].items():
            self._grow(vid, len(cnt), st["sum"][vid].keys())
            n = len(cnt)
            self._cnt[vid][:n] += cnt
            for k, s in st["sum"][vid].items():
                self._sum[vid][k][:n] += s
                self._n[vid][k][:n] += st["n"][vid][k] if "n" in st else cnt
            lab = st["lab"][vid]
            known = lab >= 0
            self._lab[vid][:n][known] = lab[known]
            self._meta.setdefault(vid, {}).update(st["meta"].get(vid, {}))


def smooth_scores(scores: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian temporal smoothing (sigma in frames; 0 = none). NaNs are left as they are."""
    if sigma <= 0:
        return scores
    s = np.asarray(scores, dtype=float)
    ok = np.isfinite(s)
    if not ok.any():
        return s
    filled = np.where(ok, s, np.interp(np.arange(len(s)), np.flatnonzero(ok), s[ok]))
    out = gaussian_filter1d(filled, sigma, mode="nearest")
    return np.where(ok, out, np.nan)


def video_score(frame_scores: np.ndarray, top_fraction: float = 0.1) -> float:
    """Video-level score: mean of the top ``top_fraction`` of frame scores (at least one)."""
    s = np.asarray(frame_scores, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan")
    k = max(1, int(round(top_fraction * s.size)))
    return float(np.sort(s)[-k:].mean())
