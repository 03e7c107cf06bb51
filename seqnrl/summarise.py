"""Recording -> summary: the pipeline behind ``scripts/summarise_recordings.py``.

For each recording (video file, DICOM cine or frame folder):

1. **One streaming pass** (:func:`analyse_recording`) decodes the recording once at the
   analysis rate with :func:`seqnrl.io.iter_frames`, a chunk of 16 frames at a time, and
   keeps only per-frame features, per-frame scores and small thumbnails. Thumbnails go to a
   raw spool file on disk, so memory does not grow with the recording's length beyond the
   features (about 1 KB per frame).
   Features and scores come from

   * a **normative model checkpoint** (any :class:`~seqnrl.models.base.NormativeModule` with
     ``embed_frames``): windows of the checkpoint's ``clip_len``/``stride`` at its ``fps``,
     ``image_size`` and colour mode, window outputs averaged per frame; raw scores smoothed
     as the model is configured and calibrated with the model's calibrator (normal-data
     ECDF in [0, 1]); or
   * the **fallback** when no checkpoint is given: grey 32x32 frames, PCA fitted on the
     recording itself (``torch.pca_lowrank``, 32 dims) as features, and as a *proxy*
     anomaly score the distance of each frame's PCA feature to the recording's median
     feature, ranked within the recording (ECDF in [0, 1]). It is labelled as a fallback
     in every output: it measures "unlike the rest of this recording", not "unlike normal".

2. **Selection** (:func:`select_summary`): the DSN policy (:mod:`seqnrl.models.summariser`)
   is fitted to the recording's own features at 2 Hz (its rewards need no labels) or taken
   from a trained summariser checkpoint; frame importance = the policy's probability
   (min-max scaled in the recording) ``+ normative_weight *`` calibrated anomaly score; KTS
   cuts shots on the features (shots longer than ``max_shot_seconds`` are split); within the
   budget (15 % of the duration by default) the shots are chosen either for coverage of
   the whole recording plus importance (``selection="coverage"``, the default: greedy
   budgeted facility location, :func:`seqnrl.shots.select_shots_coverage`) or by the DSN
   pipeline's exact knapsack on per-shot importance (``selection="knapsack"``; mean per
   shot, DSN's convention, or total with ``shot_value="sum"``).

3. **Outputs** (:func:`write_outputs`) in ``<out>/<name>/``: ``summary.mp4`` (selected
   segments, timestamp drawn into the frames), ``keyframes/*.png`` (highest-score frame of
   each segment) and their contact sheet ``keyframes.png``, ``summary.json``, ``scores.csv``, ``timeline.png``.

:func:`summarise_batch` runs many recordings: each one is written to
``<out>/<name>.partial/`` and renamed when complete, finished ones are skipped unless
``overwrite``, failures are reported (file and reason) and the batch goes on; an
``index.md`` links everything.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import logging
import math
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image
from tqdm import tqdm

from seqnrl import batch as B
from seqnrl.data.input_spec import InputSpec
from seqnrl.errors import CheckpointError, SeqNRLError
from seqnrl.io.atomic import atomic_path, write_json, write_text
from seqnrl.io.discovery import walk_media
from seqnrl.io.names import display_path
from seqnrl.io.names import safe_name as _safe_name
from seqnrl.io.video import iter_frames, luma, probe_video, resize_frames
from seqnrl.io.write import write_video_stream
from seqnrl.models.summariser.net import DSNPolicy, fit_policy
from seqnrl.scoring.aggregate import smooth_scores
from seqnrl.scoring.input_profile import coloured_fraction, frame_statistics, input_warnings
from seqnrl.scoring.windows import WindowScorer
from seqnrl.shots import (
    fill_budget,
    kts_shots,
    mask_to_segments,
    select_shots,
    select_shots_coverage,
    shots_to_boundaries,
    split_long_shots,
)
from seqnrl.viz import plot_image_grid, plot_score_timeline

if TYPE_CHECKING:  # Lightning is imported only when a checkpoint is used
    from seqnrl.models.base import NormativeModule

log = logging.getLogger(__name__)

PARTIAL = ".partial"
DONE_MARKER = "summary.json"


# ---------------------------------------------------------------------------------------
# configuration and results
# ---------------------------------------------------------------------------------------
@dataclass
class SummariseConfig:
    """Settings of the recording -> summary pipeline (all recorded in ``summary.json``).

    Attributes:
        budget: summary length as a fraction of the recording (knapsack capacity).
        fps: analysis frame rate; a checkpoint's own input-spec fps wins when it has one.
        normative_weight: weight of the calibrated anomaly score, both in the policy's
            reward and in the frame importance used for shot selection (0 = plain DSN).
        relevance_weight: weight of a ``relevance`` signal, when the model provides one.
        policy_fps: rate at which the policy reads the recording (DSN: 2 fps).
        policy_steps: REINFORCE steps of the per-recording fit (0 = no policy: importance is
            the normative term alone).
        policy_hidden: LSTM size of the per-recording policy.
        summariser_ckpt: a trained :class:`SummariserModule` checkpoint used instead of a
            per-recording fit (its ``in_dim`` must match the feature source).
        shot_seconds: mean shot length KTS aims for; min_shot_seconds: shortest shot;
            max_shot_seconds: longer KTS shots are cut into equal parts (so that a summary
            can hold a glimpse of every part of the recording).
        selection: ``"coverage"`` (default): shots maximising coverage of the whole
            recording plus importance under the budget (:func:`select_shots_coverage`);
            ``"knapsack"``: the DSN pipeline's exact knapsack on per-shot importance.
        coverage_importance: weight of the importance term against coverage in
            ``"coverage"`` selection; coverage_bandwidth: its kernel width relative to the
            median squared distance between frames (smaller: coverage is more local).
        shot_value: knapsack value of a shot, ``"sum"`` (total importance) or ``"mean"``
            (DSN's convention, which favours many short shots).
        kts_kernel: ``"cosine"`` or ``"linear"``.
        thumb_size: longest side of the summary video frames and key frames (pixels).
        fallback_size, fallback_dims: grey thumbnail side and PCA dimension of the fallback.
        batch_windows: windows per model forward pass.
        crf: H.264 quality of summary.mp4.
        seed: seeds the policy fit.
        device: torch device of the normative model and the policy.
    """

    budget: float = 0.15
    fps: float = 10.0
    normative_weight: float = 1.0
    relevance_weight: float = 0.0
    policy_fps: float = 2.0
    policy_steps: int = 60
    policy_hidden: int = 64
    summariser_ckpt: str | None = None
    shot_seconds: float = 1.0
    min_shot_seconds: float = 0.5
    max_shot_seconds: float = 2.0
    selection: str = "coverage"
    coverage_importance: float = 0.5
    coverage_bandwidth: float = 0.25
    shot_value: str = "mean"
    kts_kernel: str = "cosine"
    thumb_size: int = 240
    fallback_size: int = 32
    fallback_dims: int = 32
    batch_windows: int = 8
    crf: int = 23
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        if not 0 < self.budget <= 1:
            raise SeqNRLError(f"budget must be in (0, 1], got {self.budget}")
        if not self.fps > 0 or not self.policy_fps > 0:
            raise SeqNRLError(f"fps and policy_fps must be positive, got {self.fps}, {self.policy_fps}")
        if self.normative_weight < 0 or self.relevance_weight < 0:
            raise SeqNRLError("reward weights must be >= 0")
        if self.selection not in ("coverage", "knapsack"):
            raise SeqNRLError(f"selection must be 'coverage' or 'knapsack', got {self.selection!r}")
        if not self.max_shot_seconds >= self.min_shot_seconds:
            raise SeqNRLError(f"max_shot_seconds ({self.max_shot_seconds}) must be >= min_shot_seconds ({self.min_shot_seconds})")
        if self.shot_value not in ("sum", "mean"):
            raise SeqNRLError(f"shot_value must be 'sum' or 'mean', got {self.shot_value!r}")
        if self.thumb_size < 16:
            raise SeqNRLError(f"thumb_size must be >= 16, got {self.thumb_size}")


@dataclass
class Analysis:
    """Pass-1 result of one recording: everything per frame at the analysis rate."""

    source: str
    fps: float
    times: np.ndarray  # (T,) seconds
    features: np.ndarray  # (T, D) float32
    raw: np.ndarray  # (T,) raw anomaly score (model) or proxy
    calibrated: np.ndarray  # (T,) in [0, 1]
    relevance: np.ndarray | None
    feature_info: dict[str, Any]
    thumbs: ThumbSpool | None = None
    decode_seconds: float = 0.0

    @property
    def n_frames(self) -> int:
        return len(self.times)


@dataclass
class Selection:
    policy_prob: np.ndarray  # (T,)
    importance: np.ndarray  # (T,)
    shots: np.ndarray  # (S, 2)
    chosen_shots: np.ndarray
    mask: np.ndarray  # (T,) bool
    segments: np.ndarray  # (K, 2) [start, end) frames
    policy_info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# frame conversion: each decoded frame is converted once for every consumer
# ---------------------------------------------------------------------------------------
class FrameBatch:
    """A few consecutive decoded RGB frames, each ``(3, H, W)`` uint8, numbered from
    ``start``; every conversion the consumers need is computed once and cached."""

    def __init__(self, frames: list[torch.Tensor], start: int):
        self.frames = frames
        self.start = int(start)
        self._float: torch.Tensor | None = None
        self._luma: torch.Tensor | None = None
        self._thumbs: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.frames[0].shape[-2]), int(self.frames[0].shape[-1])

    @property
    def float(self) -> torch.Tensor:
        if self._float is None:
            self._float = torch.stack(self.frames).float()
        return self._float

    @property
    def luma(self) -> torch.Tensor:
        """uint8 ``(N, 1, H, W)`` ITU-R 601 luma, by the readers' own :func:`seqnrl.io.video.luma`."""
        if self._luma is None:
            self._luma = torch.from_numpy(luma(torch.stack(self.frames).numpy(), axis=1))[:, None]
        return self._luma

    def model_input(self, size: int | Sequence[int] | None, grayscale: bool) -> torch.Tensor:
        """uint8 ``(N, C, h, w)``: the pixels ``seqnrl.io`` gives for ``size``/``grayscale``."""
        if size is None:
            return self.luma if grayscale else torch.stack(self.frames)
        hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return resize_frames(self.luma if grayscale else self.float, hw)

    def thumbnails(self, factor: int) -> torch.Tensor:
        """uint8 RGB ``(N, 3, h, w)`` shrunk by an integer ``factor`` (box filter: PIL's
        ``reduce`` per colour plane, several times faster than torch on a small CPU),
        cropped to even sides. Cached for the last factor."""
        if self._thumbs is None or self._thumbs[0] != factor:
            self._thumbs = (factor, torch.from_numpy(np.stack([_reduce_planes(f.numpy(), factor) for f in self.frames])))
        return self._thumbs[1]

    def small_grey(self, size: int, factor: int) -> np.ndarray:
        """Grey ``(N, size, size)`` float32 in [0, 255] from the thumbnails: ITU-R 601 luma,
        then block means over the largest centred crop divisible by ``size`` (vectorised;
        the fallback's input, so the few cropped border pixels do not matter)."""
        th = self.thumbnails(factor).numpy().astype(np.float32)
        grey = 0.299 * th[:, 0] + 0.587 * th[:, 1] + 0.114 * th[:, 2]
        n, h, w = grey.shape
        if h < size or w < size:
            t = torch.from_numpy(grey)[:, None]
            return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
        bh, bw = h // size, w // size
        y0, x0 = (h - bh * size) // 2, (w - bw * size) // 2
        crop = grey[:, y0 : y0 + bh * size, x0 : x0 + bw * size]
        return crop.reshape(n, size, bh, size, bw).mean(axis=(2, 4))


def _reduce_planes(x: np.ndarray, factor: int) -> np.ndarray:
    """``(C, H, W)`` uint8 -> ``(C, H // factor, W // factor)`` box-filtered, even sides."""
    c, h, w = x.shape
    hh, ww = max(2, h // factor // 2 * 2), max(2, w // factor // 2 * 2)
    out = np.empty((c, hh, ww), dtype=np.uint8)
    for k in range(c):
        r = np.asarray(Image.fromarray(x[k]).reduce(factor)) if factor > 1 else x[k]
        out[k] = r[:hh, :ww]
    return out


def thumb_factor(height: int, width: int, max_side: int) -> int:
    """Integer shrink factor that brings the longest side to at most ``max_side``."""
    return max(1, math.ceil(max(height, width) / max_side))


class ThumbSpool:
    """Fixed-size RGB thumbnails appended to a raw file (planar, as decoded); random access
    by frame index.

    Frames live on disk, not in memory: a 10-minute recording at 10 fps and 240 px is a few
    hundred MB of spool but no resident memory.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.hw: tuple[int, int] | None = None
        self.n = 0
        self._f = open(self.path, "wb")  # noqa: SIM115 - closed in close()

    @property
    def frame_bytes(self) -> int:
        assert self.hw is not None
        return self.hw[0] * self.hw[1] * 3

    def append(self, thumbs: torch.Tensor) -> None:
        """``(N, 3, h, w)`` uint8."""
        if self.hw is None:
            self.hw = (int(thumbs.shape[-2]), int(thumbs.shape[-1]))
        self._f.write(thumbs.contiguous().numpy().tobytes())
        self.n += int(thumbs.shape[0])

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, (h, w, 3) uint8)`` for ``indices`` (sorted reads are sequential)."""
        self.close()
        assert self.hw is not None
        h, w = self.hw
        with open(self.path, "rb") as f:
            for i in indices:
                f.seek(int(i) * self.frame_bytes)
                buf = f.read(self.frame_bytes)
                yield int(i), np.ascontiguousarray(np.frombuffer(buf, dtype=np.uint8).reshape(3, h, w).transpose(1, 2, 0))

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# feature sources
# ---------------------------------------------------------------------------------------
class _PerFrame:
    """Per-frame sums and counts of ``dim``-d vectors, growing as frames arrive."""

    def __init__(self, dim: int):
        self.sum = np.zeros((256, dim))
        self.cnt = np.zeros(256)

    def add(self, idx: np.ndarray, values: np.ndarray) -> None:
        need = int(idx.max()) + 1
        if need > len(self.cnt):
            cap = max(need, 2 * len(self.cnt))
            self.sum = np.concatenate([self.sum, np.zeros((cap - len(self.sum), self.sum.shape[1]))])
            self.cnt = np.concatenate([self.cnt, np.zeros(cap - len(self.cnt))])
        np.add.at(self.sum, idx, values)
        np.add.at(self.cnt, idx, 1)

    def mean(self, n: int) -> np.ndarray:
        s, c = self.sum[:n], self.cnt[:n]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(c[:, None] > 0, s / np.maximum(c, 1)[:, None], np.nan)


class FeatureSource:
    """Consumer of the streaming pass: gets every decoded frame once, a few at a time."""

    fps: float

    def add(self, new: FrameBatch) -> None:
        raise NotImplementedError

    def finish(self, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """``(features (T, D), raw (T,), calibrated (T,), relevance (T,) | None, info)``."""
        raise NotImplementedError


def within_recording_ecdf(x: np.ndarray) -> np.ndarray:
    """Rank of every value among the recording's own values, in [0, 1] (ties averaged)."""
    from scipy.stats import rankdata

    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    out = np.full(len(x), np.nan)
    if ok.sum() == 1:
        out[ok] = 0.5
    elif ok.any():
        r = rankdata(x[ok], method="average")
        out[ok] = (r - 1) / (ok.sum() - 1)
    return out


class FallbackFeatures(FeatureSource):
    """No checkpoint: grey ``size`` x ``size`` frames -> per-recording PCA features; proxy
    score = distance to the recording's median feature, ranked within the recording."""

    def __init__(self, fps: float, size: int = 32, dims: int = 32, thumb_size: int = 240):
        self.fps, self.size, self.dims = float(fps), int(size), int(dims)
        self.thumb_size = int(thumb_size)
        self._chunks: list[np.ndarray] = []

    def add(self, new: FrameBatch) -> None:
        f = thumb_factor(*new.hw, max(self.thumb_size, 2 * self.size))
        small = new.small_grey(self.size, f)
        self._chunks.append(np.rint(small).astype(np.uint8).reshape(len(new), -1))

    def finish(self, n_frames: int):
        x = torch.from_numpy(np.concatenate(self._chunks)[:n_frames]).float().div_(255.0)
        self._chunks = []
        t, d = x.shape
        k = max(1, min(self.dims, t - 1, d))
        mean = x.mean(0, keepdim=True)
        if t >= 3:
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(0)  # pca_lowrank is randomised: keep the features reproducible
            _, _, v = torch.pca_lowrank(x, q=k, center=True, niter=4)
            torch.random.set_rng_state(gen_state)
            feats = (x - mean) @ v[:, :k]
        else:
            feats = (x - mean)[:, :k]
        f = feats.numpy().astype(np.float32)
        if f.shape[1] < self.dims:  # very short recordings: keep the feature size fixed
            f = np.pad(f, ((0, 0), (0, self.dims - f.shape[1])))
        med = np.median(f, axis=0)
        raw = np.linalg.norm(f - med, axis=1).astype(np.float64)
        raw = smooth_scores(raw, max(0.0, 0.25 * self.fps))
        info = {
            "kind": "fallback",
            "description": f"FALLBACK (no checkpoint): grey {self.size}x{self.size} frames, PCA fitted on this "
            f"recording ({k} dims); proxy anomaly score = distance to the recording's median feature",
            "dims": int(f.shape[1]),
            "pca_components": int(k),
            "score": "proxy: distance to the recording's median PCA feature (not a normative model)",
            "calibration": "within-recording ECDF (rank among this recording's frames; not comparable across recordings)",
        }
        return f, raw, within_recording_ecdf(raw), None, info


def load_normative_checkpoint(path: str | os.PathLike, device: str = "cpu") -> NormativeModule:
    """Rebuild a :class:`NormativeModule` from its checkpoint alone (see
    :func:`seqnrl.models.loading.load_model`); it must offer ``embed_frames`` for features."""
    from seqnrl.models.base import NormativeModule
    from seqnrl.models.loading import load_model

    model = load_model(path, expected=NormativeModule)
    if not callable(getattr(model, "embed_frames", None)):
        raise CheckpointError(f"{type(model).__name__} has no embed_frames(): cannot give summariser features", path)
    model.summarise_checkpoint_path = str(path)
    return model.eval().to(device)


class NormativeFeatures(FeatureSource):
    """Windows at the checkpoint's data spec through ``score_frames`` and ``embed_frames``,
    averaged per frame; raw scores smoothed (model's ``smooth_sigma``) and calibrated."""

    def __init__(self, model: NormativeModule, fps: float, batch_windows: int = 8, device: str = "cpu"):
        spec = InputSpec.of(model)
        self.model = model
        self.spec = spec
        self.window = spec.clip_len
        self.stride = int(spec.stride)
        # a model trained at the native rate (fps None) is analysed at the summary's rate
        self.fps = spec.fps or float(fps)
        self.size = spec.image_size
        self.grayscale = spec.grayscale
        self.batch_windows = max(1, int(batch_windows))
        self.device = device
        self._pending: list[B.Sample] = []
        # converted frames of the current window; keeps the last `window` frames so that
        # the end-aligned last window can be built
        self._frames: deque[tuple[int, torch.Tensor]] = deque()
        self._next = 0  # start of the next full window
        self._n = 0  # frames seen
        self._covered = 0  # frames [0, covered) are in an emitted window
        self._emb: _PerFrame | None = None
        self._scorer = WindowScorer(model)  # the scores every other consumer computes
        self._stats: list[np.ndarray] = []
        self._colour: float | None = None  # coloured share of the first native frames

    def add(self, new: FrameBatch) -> None:
        if self._colour is None and len(new):
            self._colour = coloured_fraction(torch.stack(new.frames[:8]))
        conv = new.model_input(self.size, self.grayscale)
        self._frames.extend((new.start + i, conv[i]) for i in range(len(new)))
        # brightness / contrast of every model-input frame (uint8), once: out-of-distribution check
        self._stats.append(frame_statistics(rearrange(conv, "t c h w -> c t h w").float() / 255.0))
        self._n = new.start + len(new)
        # full windows at 0, stride, 2 stride, ... as frames arrive
        while self._next + self.window <= self._n:
            self._emit(self._next, self.window)
            self._covered = self._next + self.window
            self._next += self.stride
        keep_from = min(self._next, self._n - self.window)
        while self._frames and self._frames[0][0] < keep_from:
            self._frames.popleft()

    def _emit(self, start: int, n_valid: int) -> None:
        frames = [f for i, f in self._frames if start <= i < start + n_valid]
        frames += [frames[-1]] * (self.window - len(frames))
        video = rearrange(torch.stack(frames), "t c h w -> c t h w")
        idx = torch.arange(start, start + self.window)
        idx[n_valid:] = -1
        self._pending.append(B.make_sample(video, video_id="rec", fps=self.fps, frame_index=idx, start_frame=start))
        if len(self._pending) >= self.batch_windows:
            self._flush()

    def _finish_windows(self) -> None:
        """Frames after the last full window: one window aligned to the end of the
        recording (as :func:`seqnrl.data.sampling.eval_window_starts`), or a padded one
        when the whole recording is shorter than a window."""
        if self._covered >= self._n:
            return
        if self._n >= self.window:
            self._emit(self._n - self.window, self.window)
        else:
            self._emit(0, self._n)

    @torch.no_grad()
    def _flush(self) -> None:
        if not self._pending:
            return
        batch = B.collate(self._pending)
        self._pending = []
        video = batch[B.VIDEO].to(self.device)
        batch[B.VIDEO] = video
        self._scorer.add(batch)
        emb = self.model.embed_frames(video)
        fi = batch[B.FRAME_INDEX].numpy()
        valid = fi >= 0
        e = emb.detach().float().cpu().numpy()[valid]
        if self._emb is None:
            self._emb = _PerFrame(e.shape[-1])
        self._emb.add(fi[valid], e)

    def finish(self, n_frames: int):
        self._finish_windows()
        self._flush()
        if self._emb is None or not len(self._scorer):
            raise SeqNRLError("the model produced no scores")
        feats = self._emb.mean(n_frames).astype(np.float32)
        fs = self._scorer.finish("rec", n_frames=n_frames)
        raw = fs.raw
        cal_fitted = bool(self.model.calibrator.fitted)
        if cal_fitted:
            cal = np.where(np.isfinite(raw), fs.calibrated.astype(np.float64), np.nan)
        else:
            cal = within_recording_ecdf(raw)
        relevance = fs.video.extra.get("relevance")
        ood = input_warnings(self.model, np.concatenate(self._stats) if self._stats else None, raw, self._colour)
        cls = f"{type(self.model).__module__}.{type(self.model).__qualname__}"
        info = {
            "kind": "checkpoint",
            "description": f"normative model {cls} from {getattr(self.model, 'summarise_checkpoint_path', '?')}",
            "checkpoint": getattr(self.model, "summarise_checkpoint_path", None),
            "model_class": cls,
            "input_spec": self.spec.to_dict(),
            "window": self.window,
            "stride": self.stride,
            "dims": int(feats.shape[1]),
            "score": "raw per-frame anomaly score of the model (windows averaged per frame)",
            "calibration": "model calibrator: ECDF of normal validation scores"
            if cal_fitted
            else "UNCALIBRATED checkpoint: within-recording ECDF",
            "out_of_distribution": bool(ood),
            "warnings": ood,
        }
        return feats, raw, cal, relevance, info


# ---------------------------------------------------------------------------------------
# pass 1: stream the recording
# ---------------------------------------------------------------------------------------
def analyse_recording(
    path: str | os.PathLike,
    source: FeatureSource,
    *,
    thumbs: ThumbSpool | None = None,
    thumb_size: int = 240,
    progress: tqdm | None = None,
    chunk: int = 16,
) -> Analysis:
    """Decode ``path`` once at the source's rate, hand every ``chunk`` frames to ``source``,
    spool thumbnails; memory holds one chunk of full-resolution frames."""
    t0 = time.perf_counter()
    times: list[float] = []
    n = 0
    factor = None
    buf: list[torch.Tensor] = []

    def flush() -> None:
        nonlocal factor, n
        new = FrameBatch(buf, n)
        if thumbs is not None:
            if factor is None:
                factor = thumb_factor(*new.hw, thumb_size)
            thumbs.append(new.thumbnails(factor))
        source.add(new)
        n += len(new)
        if progress is not None:
            progress.update(len(new))

    for t, frame in iter_frames(path, fps=source.fps):
        times.append(t)
        buf.append(frame)
        if len(buf) == chunk:
            flush()
            buf = []
    if buf:
        flush()
    if n == 0:
        raise SeqNRLError("no frames decoded", path)
    feats, raw, cal, rel, info = source.finish(n)
    if thumbs is not None:
        thumbs.close()
    return Analysis(
        source=str(path),
        fps=source.fps,
        times=np.asarray(times, dtype=np.float64),
        features=feats,
        raw=raw,
        calibrated=cal,
        relevance=rel,
        feature_info=info,
        thumbs=thumbs,
        decode_seconds=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------------------------
# pass 2: selection
# ---------------------------------------------------------------------------------------
def _bin_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over consecutive groups of ``k`` rows (the last group may be shorter)."""
    t = len(x)
    nb = math.ceil(t / k)
    pad = nb * k - t
    xp = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x
    return xp.reshape(nb, k, *x.shape[1:]).mean(1)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = np.nanmin(x), np.nanmax(x)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def load_summariser(path: str | os.PathLike) -> DSNPolicy:
    """The policy of a trained :class:`SummariserModule` checkpoint (``weights_only=True``)."""
    from seqnrl.models.summariser.module import SummariserModule

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        module = SummariserModule(**dict(ckpt["hyper_parameters"]))
        module.load_state_dict(ckpt["state_dict"])
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"not a summariser checkpoint: {type(e).__name__}: {e}", path) from e
    return module.policy.eval()


def select_summary(an: Analysis, cfg: SummariseConfig) -> Selection:
    """Policy importance (+ normative term), KTS shots, knapsack under the budget."""
    t = an.n_frames
    feats = np.nan_to_num(an.features.astype(np.float64))
    std = feats.std(0)
    z = (feats - feats.mean(0)) / np.where(std > 1e-8, std, 1.0)
    cal = np.nan_to_num(an.calibrated.astype(np.float64), nan=0.0)
    rel = None if an.relevance is None else np.nan_to_num(_minmax(an.relevance))
    k = max(1, int(round(an.fps / cfg.policy_fps)))
    info: dict[str, Any] = {"policy_fps": an.fps / k, "bin_frames": k}
    if cfg.summariser_ckpt:
        policy = load_summariser(cfg.summariser_ckpt)
        with torch.no_grad():
            pb = policy(torch.as_tensor(_bin_mean(z, k), dtype=torch.float32))[0].numpy()
        info.update(kind="trained summariser", checkpoint=str(cfg.summariser_ckpt))
    elif cfg.policy_steps > 0:
        zb = torch.as_tensor(_bin_mean(z, k), dtype=torch.float32)
        cb = torch.as_tensor(_bin_mean(cal, k), dtype=torch.float32)
        rb = None if rel is None else torch.as_tensor(_bin_mean(rel, k), dtype=torch.float32)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a small LSTM: extra threads only add contention
        try:
            policy, hist = fit_policy(
                zb, cb, rb,
                steps=cfg.policy_steps, seed=cfg.seed, hidden=cfg.policy_hidden, lr=1e-2,
                normative_weight=cfg.normative_weight,
                relevance_weight=cfg.relevance_weight if rb is not None else 0.0,
                target_rate=cfg.budget,
            )
        finally:
            torch.set_num_threads(threads)
        with torch.no_grad():
            pb = policy(zb)[0].numpy()
        info.update(
            kind="DSN policy fitted to this recording (REINFORCE, unsupervised rewards)",
            steps=cfg.policy_steps,
            reward_first=hist[0]["reward"],
            reward_last=float(np.mean([h["reward"] for h in hist[-5:]])),
        )
    else:
        pb = np.zeros(math.ceil(t / k))
        info.update(kind="none (importance = normative term only)")
    prob = np.repeat(pb, k)[:t].astype(np.float64)
    importance = (_minmax(prob) if prob.max() > prob.min() else np.zeros(t)) + cfg.normative_weight * cal
    if rel is not None and cfg.relevance_weight:
        importance = importance + cfg.relevance_weight * rel
    min_shot = max(1, int(round(cfg.min_shot_seconds * an.fps)))
    shots = kts_shots(z, fps=an.fps, shot_seconds=cfg.shot_seconds, min_shot_frames=min_shot, kernel=cfg.kts_kernel)
    # a shot may take at most half the budget, so an important stretch longer than the budget
    # is still eligible (in parts) instead of being skipped for lying in one long shot
    budget_frames = int(math.floor(cfg.budget * t))
    max_shot = min(int(round(cfg.max_shot_seconds * an.fps)), budget_frames // 2)
    shots = split_long_shots(shots, max(min_shot, max_shot))
    if cfg.selection == "coverage":
        mask, chosen = select_shots_coverage(feats, importance, shots, cfg.budget, importance_weight=cfg.coverage_importance,
                                              bandwidth=cfg.coverage_bandwidth)
    else:
        mask, chosen = select_shots(importance, shots, cfg.budget, value=cfg.shot_value)
        fill_budget(mask, importance, shots, budget_frames)
    info["selection"] = cfg.selection
    if not mask.any():  # every shot is longer than the budget: the best window of the best shot
        n_keep = max(1, int(math.floor(cfg.budget * t)))
        best = int(np.argmax([importance[a:b].mean() for a, b in shots]))
        a, b = shots[best]
        centre = a + int(np.argmax(importance[a:b]))
        s0 = int(np.clip(centre - n_keep // 2, a, max(a, b - n_keep)))
        mask[s0 : min(b, s0 + n_keep)] = True
        chosen = np.array([best])
    return Selection(prob, importance, shots, chosen, mask, mask_to_segments(mask), info)


# ---------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def draw_label(frame: np.ndarray, text: str) -> np.ndarray:
    """Draw ``text`` on a black box in the top-left corner of an ``(H, W, 3)`` frame."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(frame))
    d = ImageDraw.Draw(im)
    font = _font()
    box = d.textbbox((3, 2), text, font=font)
    d.rectangle((0, 0, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    d.text((3, 2), text, fill=(255, 255, 255), font=font)
    return np.asarray(im)


def _fmt_time(t: float) -> str:
    m, s = divmod(max(0.0, float(t)), 60.0)
    return f"{int(m):d}:{s:04.1f}"


def _f(x: float, nd: int = 6) -> float | None:
    return round(float(x), nd) if np.isfinite(x) else None


MAX_SHEET = 24  # key frames on the keyframes.png contact sheet


def write_outputs(out_dir: Path, an: Analysis, sel: Selection, cfg: SummariseConfig, extra: dict | None = None) -> dict:
    """Write every per-recording output into ``out_dir``; returns the summary record."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t, fps = an.n_frames, an.fps
    times = an.times
    segments = []
    key_idx = []
    for k, (a, b) in enumerate(sel.segments):
        cal = an.calibrated[a:b]
        best = a + int(np.nanargmax(cal)) if np.isfinite(cal).any() else a + int(np.argmax(sel.importance[a:b]))
        key_idx.append(best)
        segments.append({
            "index": k,
            "start_s": _f(times[a]),
            "end_s": _f(times[b - 1] + 1.0 / fps),
            "start_frame": int(a),
            "end_frame": int(b),
            "n_frames": int(b - a),
            "mean_score": _f(np.nanmean(cal)) if np.isfinite(cal).any() else None,
            "max_score": _f(np.nanmax(cal)) if np.isfinite(cal).any() else None,
            "mean_raw_score": _f(np.nanmean(an.raw[a:b])) if np.isfinite(an.raw[a:b]).any() else None,
            "mean_importance": _f(sel.importance[a:b].mean()),
            "keyframe": f"keyframes/segment_{k:03d}.png",
            "keyframe_frame": int(best),
            "keyframe_s": _f(times[best]),
        })
    files = {"scores": "scores.csv", "timeline": "timeline.png", "summary_video": None, "keyframes": []}
    if an.thumbs is not None and an.thumbs.n > 0 and len(sel.segments):
        from PIL import Image

        kf_dir = out_dir / "keyframes"
        kf_dir.mkdir(exist_ok=True)
        sheet, sheet_titles = [], []
        for seg, (i, img) in zip(segments, an.thumbs.read(key_idx)):
            with atomic_path(kf_dir / Path(seg["keyframe"]).name) as tmp:
                Image.fromarray(draw_label(img, f"{_fmt_time(times[i])}  seg {seg['index'] + 1}")).save(tmp, format="PNG")
            files["keyframes"].append(seg["keyframe"])
            if len(sheet) < MAX_SHEET:
                sheet.append(img)
                score = "" if seg["max_score"] is None else f"  score {seg['max_score']:.2f}"
                sheet_titles.append(f"{seg['index'] + 1}: {_fmt_time(times[i])}{score}")
        plot_image_grid(out_dir / "keyframes.png", sheet, sheet_titles,
                        suptitle=f"{display_path(Path(an.source).name)}: key frame of each summary segment"
                        + (f" (first {MAX_SHEET})" if len(segments) > MAX_SHEET else ""))
        files["keyframe_sheet"] = "keyframes.png"
        seg_of = {}
        for k, (a, b) in enumerate(sel.segments):
            for i in range(a, b):
                seg_of[i] = k
        order = np.flatnonzero(sel.mask)
        n_seg = len(sel.segments)
        frames = (
            draw_label(img, f"{_fmt_time(times[i])}  {seg_of[i] + 1}/{n_seg}") for i, img in an.thumbs.read(order)
        )
        write_video_stream(out_dir / "summary.mp4", frames, fps, an.thumbs.hw, crf=cfg.crf)
        files["summary_video"] = "summary.mp4"
    else:
        for seg in segments:
            seg["keyframe"] = None
    # per-frame table
    shot_id = np.zeros(t, dtype=np.int64)
    for s, (a, b) in enumerate(sel.shots):
        shot_id[a:b] = s
    buf = io.StringIO()
    w = csv.writer(buf)
    header = ["frame", "time_s", "raw", "calibrated", "policy_prob", "importance", "shot", "selected"]
    if an.relevance is not None:
        header.insert(4, "relevance")
    w.writerow(header)
    for i in range(t):
        row = [i, f"{times[i]:.4f}", f"{an.raw[i]:.6g}", f"{an.calibrated[i]:.6f}"]
        if an.relevance is not None:
            row.append(f"{an.relevance[i]:.6g}")
        row += [f"{sel.policy_prob[i]:.6f}", f"{sel.importance[i]:.6f}", int(shot_id[i]), int(sel.mask[i])]
        w.writerow(row)
    write_text(out_dir / "scores.csv", buf.getvalue())
    fallback = an.feature_info.get("kind") == "fallback"
    plot_score_timeline(
        out_dir / "timeline.png",
        times,
        an.calibrated,
        title=f"{display_path(Path(an.source).name)}: {len(sel.segments)} segments, "
        f"{sel.mask.sum() / fps:.1f} s of {t / fps:.1f} s" + ("  [FALLBACK proxy score]" if fallback else ""),
        ylabel="proxy score (rank in recording)" if fallback else "calibrated anomaly score",
        selected=sel.mask,
        shots=shots_to_boundaries(sel.shots),
    )
    record = {
        "source": an.source,
        "status": "complete",
        "fps": fps,
        "n_frames": int(t),
        "duration_s": _f(t / fps, 3),
        "budget": cfg.budget,
        "summary_frames": int(sel.mask.sum()),
        "summary_s": _f(sel.mask.sum() / fps, 3),
        "summary_fraction": _f(sel.mask.mean(), 4),
        "n_shots": int(len(sel.shots)),
        "n_segments": int(len(segments)),
        "segments": segments,
        "feature_source": an.feature_info,
        "policy": sel.policy_info,
        "importance": f"minmax(policy probability) + {cfg.normative_weight} * calibrated score"
        + (f" + {cfg.relevance_weight} * relevance" if an.relevance is not None and cfg.relevance_weight else ""),
        "files": files,
        "settings": asdict(cfg),
    }
    if extra:
        record.update(extra)
    write_json(out_dir / DONE_MARKER, record)
    return record


# ---------------------------------------------------------------------------------------
# one recording, many recordings
# ---------------------------------------------------------------------------------------
def make_source(model: NormativeModule | None, cfg: SummariseConfig) -> FeatureSource:
    if model is None:
        return FallbackFeatures(cfg.fps, cfg.fallback_size, cfg.fallback_dims, thumb_size=cfg.thumb_size)
    return NormativeFeatures(model, cfg.fps, cfg.batch_windows, cfg.device)


def summarise_recording(
    path: str | os.PathLike,
    out_dir: str | os.PathLike | None,
    cfg: SummariseConfig | None = None,
    model: NormativeModule | None = None,
    progress: bool = False,
) -> tuple[Analysis, Selection, dict | None]:
    """Analyse, select and (when ``out_dir`` is given) write one recording's outputs into
    ``out_dir`` directly (no partial/rename: :func:`summarise_batch` does that)."""
    cfg = cfg or SummariseConfig()
    cfg.validate()
    t0 = time.perf_counter()
    source = make_source(model, cfg)
    spool = None
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        spool = ThumbSpool(Path(out_dir) / ".thumbs.raw")
    bar = None
    try:
        if progress:
            try:
                info = probe_video(path)
                total = int(math.floor(info.duration * source.fps)) or None
            except SeqNRLError:
                total = None
            bar = tqdm(total=total, desc=Path(path).name[:30], unit="frame", leave=False, position=1, file=sys.stderr)
        an = analyse_recording(path, source, thumbs=spool, thumb_size=cfg.thumb_size, progress=bar)
        for w in an.feature_info.get("warnings", []):  # e.g. the input is unlike the model's data
            tqdm.write(f"WARNING {display_path(path)}: {w}", file=sys.stderr)
        t1 = time.perf_counter()
        sel = select_summary(an, cfg)
        t2 = time.perf_counter()
        record = None
        if out_dir is not None:
            timings = {"analyse_s": round(t1 - t0, 3), "select_s": round(t2 - t1, 3)}
            duration = an.n_frames / an.fps
            record = write_outputs(Path(out_dir), an, sel, cfg, {"timings": timings})
            timings["total_s"] = round(time.perf_counter() - t0, 3)
            timings["x_realtime"] = round(duration / max(timings["total_s"], 1e-9), 2)
            record["timings"] = timings
            write_json(Path(out_dir) / DONE_MARKER, record)
        return an, sel, record
    finally:
        if bar is not None:
            bar.close()
        if spool is not None:
            spool.delete()


@dataclass
class BatchReport:
    done: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def find_recordings(inputs: Sequence[str | os.PathLike], exclude: Path | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and folders into recordings; returns ``(recordings, missing)``.

    A file given explicitly is always a recording (a bad one fails later with its reason).
    A folder is searched recursively by the one discovery rule
    (:func:`seqnrl.io.discovery.walk_media`: media files, suffix-less DICOM, frame folders).
    """
    out: list[Path] = []
    missing: list[tuple[str, str]] = []
    for inp in inputs:
        p = Path(inp)
        if not p.exists():
            missing.append((str(p), "no such file or folder"))
        elif p.is_file():
            out.append(p)
        else:
            try:
                out.extend(walk_media(p, exclude))
            except OSError as e:
                missing.append((str(p), f"cannot list folder: {e}"))
    seen, uniq = set(), []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            uniq.append(p)
    return uniq, missing


def safe_name(name: str) -> str:
    return _safe_name(name, fallback="recording")


def output_names(recordings: Sequence[Path]) -> list[str]:
    """One folder name per recording: its (sanitised) stem; a short hash of the full path
    is appended to names that would otherwise collide."""
    stems = [safe_name(p.stem if p.is_file() else p.name) for p in recordings]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s.lower()] = counts.get(s.lower(), 0) + 1
    names = []
    for p, s in zip(recordings, stems):
        if counts[s.lower()] > 1:
            s = f"{s}-{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:6]}"
        names.append(s)
    return names


def is_complete(folder: Path) -> bool:
    return (folder / DONE_MARKER).is_file()


def _publish(partial: Path, final: Path) -> None:
    """Replace ``final`` by the finished ``partial`` folder (rename; old one removed after)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(partial, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summarise_batch(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    cfg: SummariseConfig | None = None,
    *,
    ckpt: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> BatchReport:
    """Summarise every recording found in ``inputs`` into ``out_dir/<name>/``.

    Completed folders (with ``summary.json``) are kept and skipped unless ``overwrite``; each
    recording is written into ``<name>.partial/`` and renamed when complete, so an
    interrupted batch resumes where it stopped. Failures are printed as
    ``ERROR <file>: <reason>`` and collected; the batch continues. Writes ``index.md``.
    """
    cfg = cfg or SummariseConfig()
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_normative_checkpoint(ckpt, cfg.device) if ckpt else None
    recs, missing = find_recordings(inputs, exclude=out)
    report = BatchReport()

    def fail(path: str, reason: str) -> None:
        report.failed.append((path, reason))
        tqdm.write(f"ERROR {display_path(path)}: {reason}", file=sys.stderr)

    for path, reason in missing:
        fail(path, reason)
    names = output_names(recs)
    bar = tqdm(total=len(recs), desc="recordings", unit="rec", position=0, disable=not progress, file=sys.stderr)
    for path, name in zip(recs, names):
        final = out / name
        if is_complete(final) and not overwrite:
            report.skipped.append(str(path))
            bar.update(1)
            continue
        partial = out / f"{name}{PARTIAL}"
        if partial.exists():
            shutil.rmtree(partial)
        try:
            _, _, record = summarise_recording(path, partial, cfg, model, progress=progress)
            _publish(partial, final)
            record["folder"] = name
            report.done.append(record)
        except KeyboardInterrupt:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        except SeqNRLError as e:
            shutil.rmtree(partial, ignore_errors=True)
            fail(str(path), e.cause if e.path else str(e))
        except Exception as e:  # noqa: BLE001 - one bad recording must not stop the batch
            shutil.rmtree(partial, ignore_errors=True)
            log.debug("unexpected failure on %s", path, exc_info=True)
            fail(str(path), f"{type(e).__name__}: {e}")
        bar.update(1)
    bar.close()
    write_index(out, list(zip(recs, names)), report)
    return report


def write_index(out: Path, recordings: Sequence[tuple[Path, str]], report: BatchReport) -> Path:
    """``index.md``: one row per completed recording (this run or earlier), then failures."""
    import json

    lines = [
        "# Recording summaries",
        "",
        "| recording | duration | summary | segments | features / score | video | timeline |",
        "|---|---|---|---|---|---|---|",
    ]
    failed = {p for p, _ in report.failed}
    for path, name in recordings:
        f = out / name / DONE_MARKER
        if str(path) in failed or not f.is_file():
            continue
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        kind = rec.get("feature_source", {}).get("kind", "?")
        kind = "FALLBACK proxy" if kind == "fallback" else "normative model"
        video = f"[summary.mp4]({name}/summary.mp4)" if rec.get("files", {}).get("summary_video") else "-"
        lines.append(
            f"| [{name}]({name}/summary.json) | {rec.get('duration_s', 0):.1f} s | {rec.get('summary_s', 0):.1f} s | "
            f"{rec.get('n_segments', 0)} | {kind} | {video} | ![]({name}/timeline.png) |"
        )
    if report.failed:
        lines += ["", "## Failed", ""]
        lines += [f"- `{p}`: {r}" for p, r in report.failed]
    lines.append("")
    return write_text(out / "index.md", "\n".join(lines))
