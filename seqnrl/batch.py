"""The batch contract shared by every data module and every model.

A *sample* is a plain ``dict`` made by :func:`make_sample`; a *batch* is what
:func:`collate` makes of a list of samples. Plain dicts survive worker processes,
``default_collate`` conventions and Lightning's device transfer without custom classes.

Keys (``B`` batch, ``C`` channels, ``T`` frames, ``K`` keypoints, ``D`` 2 or 3):

================  ======================  ===============================================
key               shape / type            meaning
================  ======================  ===============================================
``video``         ``(B, C, T, H, W)``     float32 in [0, 1] (before any normalisation)
``frame_index``   ``(B, T)`` int64        index of each frame in its source video
``frame_label``   ``(B, T)`` int64        1 abnormal, 0 normal, -1 unknown
``label``         ``(B,)`` int64          clip/video label: 1 abnormal, 0 normal, -1 unknown
``start_frame``   ``(B,)`` int64          first frame of the clip in its source video
``start_time``    ``(B,)`` float32        seconds
``fps``           ``(B,)`` float32        frame rate the clip was sampled at
``n_frames``      ``(B,)`` int64          frames in the whole source video
``ef``            ``(B,)`` float32        ejection fraction in % (NaN where unknown)
``ed_es``         ``(B, T)`` float32      ED/ES signal: +1 at ED, -1 at ES (NaN unknown)
``video_id``      ``list[str]``           stable id of the source video
``source``        ``list[str]``           path of the source file/folder
``patient``       ``list[str]``           patient/subject id ("" when unknown)
``keypoints``     ``(B, T, K, D)``        optional; NaN where missing
``pixel_mask``    ``(B, 1, T, H, W)``     optional per-pixel anomaly mask (0/1)
``feature``       ``(B, D)`` float32      optional per-clip conditioning feature (e.g. a
                                          self-supervised embedding; video diffusion's
                                          ``feature_source="batch"``)
================  ======================  ===============================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

VIDEO = "video"
FRAME_INDEX = "frame_index"
FRAME_LABEL = "frame_label"
LABEL = "label"
START_FRAME = "start_frame"
START_TIME = "start_time"
FPS = "fps"
N_FRAMES = "n_frames"
EF = "ef"
ED_ES = "ed_es"
VIDEO_ID = "video_id"
SOURCE = "source"
PATIENT = "patient"
KEYPOINTS = "keypoints"
PIXEL_MASK = "pixel_mask"
FEATURE = "feature"

STRING_KEYS = (VIDEO_ID, SOURCE, PATIENT)
OPTIONAL_KEYS = (KEYPOINTS, PIXEL_MASK, VIDEO, FEATURE)

Sample = dict[str, Any]
Batch = dict[str, Any]


def _known_length(frame_index: torch.Tensor, fallback: int) -> int:
    """Frames known to exist: one past the last valid (non -1) index of a window."""
    valid = frame_index[frame_index >= 0]
    return int(valid.max()) + 1 if valid.numel() else fallback


def make_sample(
    video: torch.Tensor | None,
    *,
    video_id: str,
    source: str = "",
    start_frame: int = 0,
    fps: float = float("nan"),
    n_frames: int | None = None,
    frame_label: torch.Tensor | None = None,
    label: int = -1,
    patient: str = "",
    ef: float = float("nan"),
    ed_es: torch.Tensor | None = None,
    frame_index: torch.Tensor | None = None,
    keypoints: torch.Tensor | None = None,
    pixel_mask: torch.Tensor | None = None,
    start_time: float | None = None,
    feature: torch.Tensor | None = None,
) -> Sample:
    """Build one sample with every contract key filled (unknowns as -1 / NaN / "").

    ``video`` is ``(C, T, H, W)`` (uint8 is converted to float in [0, 1]); for motion-only
    samples it may be ``None`` and ``keypoints`` ``(T, K, D)`` gives ``T``.
    """
    if video is not None:
        if video.ndim != 4:
            raise ValueError(f"video must be (C, T, H, W), got shape {tuple(video.shape)}")
        if video.dtype == torch.uint8:
            video = video.float().div_(255.0)
        t = video.shape[1]
    elif keypoints is not None:
        t = keypoints.shape[0]
    else:
        raise ValueError("a sample needs a video or keypoints")
    if frame_index is None:
        frame_index = torch.arange(start_frame, start_frame + t, dtype=torch.long)
    if frame_label is None:
        frame_label = torch.full((t,), -1, dtype=torch.long)
    if ed_es is None:
        ed_es = torch.full((t,), float("nan"))
    if start_time is None:
        start_time = start_frame / fps if fps and math.isfinite(fps) and fps > 0 else 0.0
    s: Sample = {
        FRAME_INDEX: frame_index.long(),
        FRAME_LABEL: frame_label.long(),
        LABEL: torch.tensor(int(label), dtype=torch.long),
        START_FRAME: torch.tensor(int(start_frame), dtype=torch.long),
        START_TIME: torch.tensor(float(start_time), dtype=torch.float32),
        FPS: torch.tensor(float(fps), dtype=torch.float32),
        N_FRAMES: torch.tensor(int(n_frames if n_frames is not None else _known_length(frame_index, start_frame + t))),
        EF: torch.tensor(float(ef), dtype=torch.float32),
        ED_ES: ed_es.float(),
        VIDEO_ID: str(video_id),
        SOURCE: str(source),
        PATIENT: str(patient),
    }
    if video is not None:
        s[VIDEO] = video.float()
    if keypoints is not None:
        s[KEYPOINTS] = keypoints.float()
    if pixel_mask is not None:
        s[PIXEL_MASK] = pixel_mask.float()
    if feature is not None:
        s[FEATURE] = torch.as_tensor(feature).float().reshape(-1)
    return s


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack tensors, list strings. Optional keys must be present in all samples or none."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    keys = samples[0].keys()
    out: Batch = {}
    for k in keys:
        vals = [s.get(k) for s in samples]
        if any(v is None for v in vals):
            raise ValueError(f"key {k!r} is missing from some samples of the batch")
        if k in STRING_KEYS or isinstance(vals[0], str):
            out[k] = list(vals)
        else:
            out[k] = torch.stack(vals)
    for s in samples[1:]:
        if s.keys() != keys:
            raise ValueError(f"samples disagree on keys: {sorted(keys)} vs {sorted(s.keys())}")
    return out


def batch_size(batch: Batch) -> int:
    return int(batch[FRAME_INDEX].shape[0])
