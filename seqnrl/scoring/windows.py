"""The one window scorer: windows -> model scores -> per-frame mean -> smoothing -> calibration.

Every consumer that turns a model's window scores into per-frame scores goes through
:class:`WindowScorer`: the Lightning validate / test / predict loops
(:class:`~seqnrl.models.base.NormativeModule`), ``seqnrl score``, the summariser, and the
benchmarks (:func:`score_clip` for a clip held in memory).

Invariant: a frame's raw score is the mean, over the windows that contain it, of the model's
finite scores for it (padding frames, index -1, never count); temporal smoothing (the
model's ``smooth_sigma`` unless the caller overrides it) is applied once per video after all
its windows are in; calibration is the model's own :class:`ScoreCalibrator`. So one clip
gets the same per-frame scores through every consumer (``tests/integration/test_one_path.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqnrl import batch as B
from seqnrl.data.clips import eval_window_starts, window_indices
from seqnrl.data.input_spec import InputSpec
from seqnrl.scoring.aggregate import FrameScoreAccumulator, VideoScores, smooth_scores


def model_signals(model: Any, batch: B.Batch) -> dict[str, torch.Tensor]:
    """The model's per-frame signals of a batch of windows: ``{"score": (B, T), ...}``."""
    out = model.score_frames(batch)
    return out if isinstance(out, dict) else {"score": out}


@dataclass
class FrameScores:
    """Per-frame results of one video (arrays of length ``n_frames``; NaN where unscored).

    ``raw`` is smoothed; ``above_threshold`` is 1.0 / 0.0 (NaN where the raw score is not
    finite or the model is uncalibrated); thresholds are ``None`` when uncalibrated."""

    video: VideoScores
    unsmoothed: np.ndarray
    calibrated: np.ndarray
    z: np.ndarray
    p_value: np.ndarray
    above_threshold: np.ndarray
    smooth_sigma: float
    n_windows: int
    threshold_raw: float | None
    threshold_calibrated: float | None

    @property
    def raw(self) -> np.ndarray:
        return self.video.scores

    @property
    def calibration(self) -> dict[str, np.ndarray]:
        return {"calibrated": self.calibrated, "z": self.z, "p_value": self.p_value}


class WindowScorer:
    """Accumulate the model's scores of windows (batches of the batch contract) per video.

    Args:
        model: a normative model (``score_frames`` and a ``calibrator``).
        smooth_sigma: temporal smoothing in frames; ``None`` uses the model's ``smooth_sigma``.
    """

    def __init__(self, model: Any, smooth_sigma: float | None = None):
        self.model = model
        hp = getattr(model, "hparams", None) or {}
        self.smooth_sigma = float(hp.get("smooth_sigma", 0.0) or 0.0) if smooth_sigma is None else float(smooth_sigma)
        self.acc = FrameScoreAccumulator()
        self.n_windows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.acc)

    @torch.no_grad()
    def add(self, batch: B.Batch, scored: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Score a batch of windows (unless ``scored`` already holds the model's signals)
        and add them; returns the signals. Labels, fps and sources are kept when present."""
        if scored is None:
            scored = model_signals(self.model, batch)
        fi = batch[B.FRAME_INDEX]
        extra = {k: v for k, v in scored.items() if k != "score" and tuple(v.shape) == tuple(fi.shape)}
        self.acc.add(
            list(batch[B.VIDEO_ID]),
            fi,
            scored["score"],
            labels=batch.get(B.FRAME_LABEL),
            n_frames=batch.get(B.N_FRAMES),
            fps=batch.get(B.FPS),
            sources=batch.get(B.SOURCE),
            video_labels=batch.get(B.LABEL),
            extra=extra,
        )
        for v in batch[B.VIDEO_ID]:
            self.n_windows[v] = self.n_windows.get(v, 0) + 1
        return scored

    def videos(self) -> dict[str, VideoScores]:
        """Every video's per-frame results, smoothed (not calibrated)."""
        res = self.acc.results()
        for vs in res.values():
            vs.scores = smooth_scores(vs.scores, self.smooth_sigma)
        return res

    def finish(self, video_id: str, n_frames: int | None = None) -> FrameScores:
        """One video's smoothed, calibrated per-frame scores (padded with NaN to ``n_frames``)."""
        res = self.acc.results()
        if video_id not in res:
            raise KeyError(f"no windows of video {video_id!r} were scored")
        vs = res[video_id]
        if n_frames is not None and n_frames > vs.n_frames:
            pad = n_frames - vs.n_frames
            vs.scores = np.pad(vs.scores, (0, pad), constant_values=np.nan)
            vs.labels = np.pad(vs.labels, (0, pad), constant_values=-1)
            vs.counts = np.pad(vs.counts, (0, pad))
            vs.extra = {k: np.pad(v, (0, pad), constant_values=np.nan) for k, v in vs.extra.items()}
        unsmoothed = vs.scores
        vs.scores = smooth_scores(unsmoothed, self.smooth_sigma)
        cal = self.model.calibrator
        out = cal.frame_outputs(vs.scores)
        return FrameScores(
            video=vs,
            unsmoothed=unsmoothed,
            calibrated=out["calibrated"],
            z=out["z"],
            p_value=out["p_value"],
            above_threshold=out["above_threshold"],
            smooth_sigma=self.smooth_sigma,
            n_windows=self.n_windows.get(video_id, 0),
            threshold_raw=float(cal.threshold) if cal.fitted else None,
            threshold_calibrated=cal.threshold_calibrated,
        )


def clip_windows(frames: torch.Tensor, spec: InputSpec, video_id: str = "v") -> list[B.Sample]:
    """The evaluation windows of ``frames`` ``(C, T, H, W)`` at the spec's ``clip_len`` /
    ``stride`` (:func:`eval_window_starts`; a clip shorter than a window is padded by
    repeating its last frame, padding indexed -1), as single-window samples."""
    n = frames.shape[1]
    out = []
    for st in eval_window_starts(n, spec.clip_len, int(spec.stride)):
        idx, valid = window_indices(st, spec.clip_len, n)
        index = torch.where(valid, idx, torch.full_like(idx, -1))
        out.append(B.make_sample(frames[:, idx], video_id=video_id, start_frame=st, frame_index=index, n_frames=n))
    return out


@torch.no_grad()
def score_clip(
    model: Any,
    frames: torch.Tensor,
    spec: InputSpec | None = None,
    smooth_sigma: float | None = None,
    batch_windows: int = 16,
) -> FrameScores:
    """Per-frame scores of a clip held in memory, ``frames`` ``(C, T, H, W)`` in [0, 1],
    windowed by ``spec`` (default: the model's own input spec)."""
    spec = spec or InputSpec.of(model)
    samples = clip_windows(frames, spec)
    scorer = WindowScorer(model, smooth_sigma=smooth_sigma)
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(samples), batch_windows):
            batch = B.collate(samples[s : s + batch_windows])
            batch[B.VIDEO] = batch[B.VIDEO].to(model.device, model.dtype)
            scorer.add(batch)
    finally:
        model.train(was_training)
    return scorer.finish("v", n_frames=frames.shape[1])


def score_video_tensor(
    model: Any, frames: torch.Tensor, clip_len: int, stride: int, batch_windows: int = 16
) -> dict[str, np.ndarray]:
    """Raw (unsmoothed) per-frame signals ``{"score": (T,), ...}`` of ``frames`` in windows of
    ``clip_len`` every ``stride`` frames (:func:`score_clip` with an explicit window)."""
    spec = InputSpec(clip_len=clip_len, stride=stride)
    fs = score_clip(model, frames, spec, smooth_sigma=0.0, batch_windows=batch_windows)
    return {"score": fs.unsmoothed, **fs.video.extra}
