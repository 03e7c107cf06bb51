"""Per-frame scores of a video held in memory: the overlapping windows of the evaluation
loaders (``eval_window_starts`` at ``stride``), each scored by the model, averaged per frame.

Invariant: a frame's raw score is the mean over the windows that contain it of the model's
score for it, exactly as the Lightning validate/test/predict loops and ``seqnrl score``
compute it; smoothing and calibration are applied afterwards by the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from seqnrl import batch as B
from seqnrl.data.clips import eval_window_starts, window_indices
from seqnrl.scoring.aggregate import FrameScoreAccumulator


@torch.no_grad()
def score_video_tensor(
    model: Any, frames: torch.Tensor, clip_len: int, stride: int, batch_windows: int = 16
) -> dict[str, np.ndarray]:
    """Raw per-frame signals ``{"score": (T,), ...}`` of ``frames`` ``(C, T, H, W)`` in [0, 1]."""
    n = frames.shape[1]
    starts = eval_window_starts(n, clip_len, stride)
    acc = FrameScoreAccumulator()
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(starts), batch_windows):
            samples = []
            for st in starts[s : s + batch_windows]:
                idx, valid = window_indices(st, clip_len, n)
                index = torch.where(valid, idx, torch.full_like(idx, -1))
                samples.append(B.make_sample(frames[:, idx], video_id="v", start_frame=st, frame_index=index))
            batch = B.collate(samples)
            batch[B.VIDEO] = batch[B.VIDEO].to(model.device, model.dtype)
            out = model._score_batch(batch)
            acc.add(
                ["v"] * len(samples),
                batch[B.FRAME_INDEX],
                out["score"],
                n_frames=torch.full((len(samples),), n),
                extra={k: v for k, v in out.items() if k != "score"},
            )
    finally:
        model.train(was_training)
    r = acc.results()["v"]
    return {"score": r.scores, **r.extra}
