"""The HDF5 layout of published video-summarisation work (DSN and its successors: the
``eccv16_dataset_{summe,tvsum}_google_pool5.h5`` files), read and written exactly.

One group per video (``video_1``, ``video_2``, ...) holding:

=====================  ==================  ===============================================
dataset                shape               meaning
=====================  ==================  ===============================================
``features``           ``(n_steps, D)``    features of the subsampled frames (GoogLeNet
                                           pool5 in the published files: ``D = 1024``)
``picks``              ``(n_steps,)``      original frame index of every step
``n_frames``           scalar              frames of the original video
``n_steps``            scalar              optional, ``len(picks)``
``change_points``      ``(n_seg, 2)``      shots (KTS) as **inclusive** ``[first, last]``
                                           original frames
``n_frame_per_seg``    ``(n_seg,)``        ``last - first + 1``
``user_summary``       ``(n_users, n_frames)``  0/1 reference summaries (optional)
``gtscore``            ``(n_steps,)``      mean user importance per step (optional)
``gtsummary``          ``(n_steps,)``      0/1 per step (optional)
``video_name``         scalar string       optional
=====================  ==================  ===============================================

:func:`read_summe_h5` / :func:`write_summe_h5` round-trip every dataset exactly (values,
dtypes, shapes; other datasets of a group are kept in ``extra``). :func:`from_recording`
converts a seqnrl recording's per-frame features and ``[start, end)`` shots (e.g. the
``Analysis`` / ``Selection`` of :mod:`seqnrl.summarise`) into this layout;
:func:`to_summariser_items` yields the items :class:`~seqnrl.models.summariser.SummaryFeatureDataset`
takes (``features``, ``relevance`` = ``gtscore``, ``user_summary``), and
:func:`evaluate_step_scores` scores step importances with the published protocol
(step scores -> frames via ``picks`` -> mean per shot -> 0/1 knapsack at 15 % of the frames
-> F-score against every user, max for SumMe, mean for TVSum).

This module knows nothing of models (it follows the ``io/`` rule); it only uses
:mod:`seqnrl.shots` and :mod:`seqnrl.metrics.summary` for the evaluation protocol.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqnrl.errors import SeqNRLError
from seqnrl.io.atomic import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "SummeVideo",
    "evaluate_step_scores",
    "from_recording",
    "read_summe_h5",
    "step_scores_to_frames",
    "summary_from_step_scores",
    "to_summariser_items",
    "write_summe_h5",
]

_ARRAYS = ("features", "picks", "change_points", "n_frame_per_seg", "user_summary", "gtscore", "gtsummary")
_SCALARS = ("n_frames", "n_steps")


class SummeFormatError(SeqNRLError):
    """An HDF5 file that does not follow the video-summarisation layout."""


@dataclass
class SummeVideo:
    """One video group of the layout (arrays keep their dtypes)."""

    features: np.ndarray
    picks: np.ndarray
    n_frames: int
    change_points: np.ndarray
    n_frame_per_seg: np.ndarray
    user_summary: np.ndarray | None = None
    gtscore: np.ndarray | None = None
    gtsummary: np.ndarray | None = None
    video_name: str | None = None
    n_steps: int | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def validate(self, where: str = "") -> None:
        t = len(self.features)
        problems = []
        if self.features.ndim != 2:
            problems.append(f"features must be (n_steps, D), got {self.features.shape}")
        if self.picks.shape != (t,):
            problems.append(f"picks must be ({t},), got {self.picks.shape}")
        elif t and (np.any(np.diff(self.picks) <= 0) or self.picks[0] < 0 or self.picks[-1] >= self.n_frames):
            problems.append("picks must increase strictly within [0, n_frames)")
        cp = self.change_points
        if cp.ndim != 2 or cp.shape[1] != 2:
            problems.append(f"change_points must be (n_seg, 2), got {cp.shape}")
        elif len(cp):
            if cp[0, 0] != 0 or cp[-1, 1] != self.n_frames - 1 or np.any(cp[1:, 0] != cp[:-1, 1] + 1):
                problems.append("change_points must tile [0, n_frames - 1] with inclusive [first, last] shots")
            if self.n_frame_per_seg.shape != (len(cp),) or np.any(self.n_frame_per_seg != cp[:, 1] - cp[:, 0] + 1):
                problems.append("n_frame_per_seg must be last - first + 1 of every shot")
        if self.user_summary is not None and (self.user_summary.ndim != 2 or self.user_summary.shape[1] != self.n_frames):
            problems.append(f"user_summary must be (n_users, {self.n_frames}), got {self.user_summary.shape}")
        for k in ("gtscore", "gtsummary"):
            v = getattr(self, k)
            if v is not None and v.shape != (t,):
                problems.append(f"{k} must be ({t},), got {v.shape}")
        if problems:
            raise SummeFormatError("; ".join(problems), where or None)


def _scalar(v: Any) -> Any:
    a = np.asarray(v)
    return a.item() if a.ndim == 0 else a


def read_summe_h5(path: str | os.PathLike, validate: str = "warn") -> dict[str, SummeVideo]:
    """``{group name: SummeVideo}`` in h5py's key order. ``validate``: ``"raise"`` on layout
    problems, ``"warn"`` (default: published files have small quirks) or ``"off"``."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise SummeFormatError("no such file", path)
    out: dict[str, SummeVideo] = {}
    try:
        with h5py.File(path, "r") as f:
            for name in f.keys():
                g = f[name]
                if not isinstance(g, h5py.Group):
                    continue
                missing = [k for k in ("features", "picks", "n_frames", "change_points", "n_frame_per_seg") if k not in g]
                if missing:
                    raise SummeFormatError(f"group {name!r} lacks {missing}", path)
                vals: dict[str, Any] = {}
                extra: dict[str, np.ndarray] = {}
                for k in g.keys():
                    ds = g[k]
                    if not isinstance(ds, h5py.Dataset):
                        continue
                    data = ds[()]
                    if k in _ARRAYS:
                        vals[k] = np.asarray(data)
                    elif k in _SCALARS:
                        vals[k] = int(_scalar(data))
                    elif k == "video_name":
                        v = _scalar(data)
                        vals[k] = v.decode("utf-8") if isinstance(v, bytes) else str(v)
                    else:
                        extra[k] = np.asarray(data)
                vid = SummeVideo(extra=extra, **vals)
                if validate == "raise":
                    vid.validate(f"{path}:{name}")
                elif validate == "warn":
                    try:
                        vid.validate(f"{path}:{name}")
                    except SummeFormatError as e:
                        log.warning("%s", e)
                out[name] = vid
    except OSError as e:
        raise SummeFormatError(f"not a readable HDF5 file ({e})", path) from e
    return out


def write_summe_h5(path: str | os.PathLike, videos: Mapping[str, SummeVideo], validate: bool = True) -> Path:
    """Write ``{group name: SummeVideo}`` atomically (temporary file, then rename)."""
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, v in videos.items():
                if validate:
                    v.validate(f"{path}:{name}")
                g = f.create_group(name)
                for k in _ARRAYS:
                    a = getattr(v, k)
                    if a is not None:
                        g.create_dataset(k, data=np.asarray(a))
                g.create_dataset("n_frames", data=np.int64(v.n_frames))
                if v.n_steps is not None:
                    g.create_dataset("n_steps", data=np.asarray(v.n_steps, dtype=np.int64))
                if v.video_name is not None:
                    g.create_dataset("video_name", data=v.video_name, dtype=h5py.string_dtype("utf-8"))
                for k, a in v.extra.items():
                    g.create_dataset(k, data=a)
    return path


# ---------------------------------------------------------------------------------------
# conversion from a seqnrl recording
# ---------------------------------------------------------------------------------------
def from_recording(
    features: np.ndarray,
    times: np.ndarray,
    native_fps: float,
    n_frames: int,
    shots: np.ndarray | None = None,
    *,
    user_summary: np.ndarray | None = None,
    gtscore: np.ndarray | None = None,
    video_name: str | None = None,
    feature_dim: int | None = None,
    step: int = 1,
) -> SummeVideo:
    """A seqnrl recording as one video group.

    Args:
        features: ``(T, D)`` per-frame features at the analysis rate (``Analysis.features``).
        times: ``(T,)`` seconds of those frames (``Analysis.times``).
        native_fps, n_frames: frame rate and frame count of the original video
            (``probe_video``); ``picks = round(times * native_fps)``.
        shots: ``(S, 2)`` half-open ``[start, end)`` shots in analysis frames
            (``Selection.shots`` / :func:`seqnrl.shots.kts_shots`); default one shot.
            They become inclusive ``[first, last]`` original frames that tile the video.
        user_summary: ``(U, n_frames)`` 0/1 references at the original rate, if any.
        gtscore: ``(T,)`` importance per step (e.g. calibrated anomaly score), if any.
        feature_dim: zero-pad the features to this width (e.g. 1024 for tools that hard-code
            GoogLeNet's size); default keep ``D``.
        step: keep every ``step``-th analysis frame (DSN subsamples to 2 fps).
    """
    f = np.asarray(features, dtype=np.float32)
    ts = np.asarray(times, dtype=np.float64)
    if f.ndim != 2 or len(f) != len(ts):
        raise ValueError(f"features (T, D) and times (T,) must match; got {f.shape} and {ts.shape}")
    n_frames = int(n_frames)
    picks_all = np.clip(np.round(ts * native_fps).astype(np.int64), 0, n_frames - 1)
    # strictly increasing picks: drop analysis frames that land on the same original frame
    keep = np.r_[True, np.diff(picks_all) > 0]
    idx = np.flatnonzero(keep)[:: max(1, int(step))]
    feats, picks = f[idx], picks_all[idx]
    if feature_dim is not None:
        if feature_dim < feats.shape[1]:
            raise ValueError(f"feature_dim {feature_dim} < feature width {feats.shape[1]}")
        feats = np.pad(feats, ((0, 0), (0, feature_dim - feats.shape[1])))
    if shots is None or len(shots) == 0:
        firsts = np.array([0])
    else:
        sh = np.asarray(shots, dtype=np.int64)
        firsts = np.clip(np.round(ts[np.clip(sh[:, 0], 0, len(ts) - 1)] * native_fps).astype(np.int64), 0, n_frames - 1)
        firsts[0] = 0
        firsts = np.unique(firsts)
    lasts = np.r_[firsts[1:] - 1, n_frames - 1]
    cps = np.stack([firsts, lasts], axis=1).astype(np.int32)
    nfps = (cps[:, 1] - cps[:, 0] + 1).astype(np.int32)
    gts = None if gtscore is None else np.asarray(gtscore, dtype=np.float32)[idx]
    us = None if user_summary is None else np.asarray(user_summary, dtype=np.float32)
    v = SummeVideo(
        features=feats,
        picks=picks.astype(np.int32),
        n_frames=n_frames,
        change_points=cps,
        n_frame_per_seg=nfps,
        user_summary=us,
        gtscore=gts,
        video_name=video_name,
        n_steps=int(len(picks)),
    )
    v.validate(video_name or "")
    return v


# ---------------------------------------------------------------------------------------
# the summariser's view and the published evaluation protocol
# ---------------------------------------------------------------------------------------
def to_summariser_items(videos: Mapping[str, SummeVideo] | Iterable[tuple[str, SummeVideo]]) -> list[dict[str, Any]]:
    """Items for :class:`~seqnrl.models.summariser.SummaryFeatureDataset`: ``video_id``,
    ``features`` ``(n_steps, D)`` float32, ``relevance`` = ``gtscore`` (min-max scaled to
    [0, 1]), ``user_summary`` ``(U, n_frames)``, and the layout's ``picks``,
    ``change_points``, ``n_frame_per_seg``, ``n_frames`` for :func:`evaluate_step_scores`
    (the dataset ignores those keys)."""
    pairs = videos.items() if isinstance(videos, Mapping) else videos
    items = []
    for name, v in pairs:
        it: dict[str, Any] = {"video_id": str(name), "features": np.asarray(v.features, dtype=np.float32)}
        if v.gtscore is not None:
            g = np.asarray(v.gtscore, dtype=np.float32)
            span = float(g.max() - g.min()) if g.size else 0.0
            it["relevance"] = (g - g.min()) / span if span > 0 else np.zeros_like(g)
        if v.user_summary is not None:
            it["user_summary"] = np.asarray(v.user_summary, dtype=np.float32)
        it.update(picks=v.picks, change_points=v.change_points, n_frame_per_seg=v.n_frame_per_seg, n_frames=int(v.n_frames))
        items.append(it)
    return items


def step_scores_to_frames(step_scores: np.ndarray, picks: np.ndarray, n_frames: int) -> np.ndarray:
    """Frame scores ``(n_frames,)``: step ``i``'s score on frames ``[picks[i], picks[i+1])``
    (the last step up to the end; frames before ``picks[0]`` take the first score)."""
    s = np.asarray(step_scores, dtype=np.float64).ravel()
    p = np.asarray(picks, dtype=np.int64).ravel()
    if len(s) != len(p):
        raise ValueError(f"{len(s)} step scores for {len(p)} picks")
    out = np.zeros(int(n_frames))
    edges = np.r_[p, n_frames]
    edges[0] = 0
    for i in range(len(s)):
        out[edges[i] : edges[i + 1]] = s[i]
    return out


def summary_from_step_scores(step_scores: np.ndarray, video: SummeVideo, budget: float = 0.15) -> np.ndarray:
    """0/1 frame summary ``(n_frames,)``: mean frame score per shot, shots chosen by the 0/1
    knapsack with capacity ``floor(budget * n_frames)`` frames."""
    from seqnrl.shots import knapsack

    frames = step_scores_to_frames(step_scores, video.picks, video.n_frames)
    cps = np.asarray(video.change_points, dtype=np.int64)
    seg = np.array([frames[a : b + 1].mean() for a, b in cps])
    chosen = knapsack(np.maximum(seg, 0.0) + 1e-9, np.asarray(video.n_frame_per_seg, dtype=np.int64),
                      int(math.floor(budget * video.n_frames)))
    mask = np.zeros(int(video.n_frames), dtype=np.uint8)
    for i in chosen:
        mask[cps[i, 0] : cps[i, 1] + 1] = 1
    return mask


def evaluate_step_scores(step_scores: np.ndarray, video: SummeVideo, mode: str = "max", budget: float = 0.15) -> dict[str, float]:
    """F-score of step importances under the published protocol (``mode`` ``"max"``: SumMe,
    ``"avg"``: TVSum), via :func:`seqnrl.metrics.summary.evaluate_summary`."""
    from seqnrl.metrics.summary import evaluate_summary

    if video.user_summary is None:
        raise SummeFormatError(f"video {video.video_name or ''} has no user_summary to evaluate against")
    mask = summary_from_step_scores(step_scores, video, budget)
    return evaluate_summary(mask, np.asarray(video.user_summary) > 0, mode)
