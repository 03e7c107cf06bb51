"""Clip sampling: random clips for training, overlapping windows that cover every frame for evaluation."""

from __future__ import annotations

import torch


def eval_window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """Start indices of overlapping windows that together cover frames ``0..n_frames-1``.

    Windows start every ``stride`` frames; the last window is aligned to the end of the
    video so that no frame is left out. A video shorter than ``window`` gets one window
    starting at 0 (the caller pads it, see :func:`window_indices`).
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    if n_frames < 1:
        raise ValueError(f"cannot window a video with {n_frames} frames")
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] != n_frames - window:
        starts.append(n_frames - window)
    return starts


def window_indices(start: int, window: int, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source-frame indices of one window and which of them are real frames.

    Frames past the end of a short video repeat the last frame; they are marked invalid
    (``frame_index`` -1 in the batch) so score aggregation ignores them.
    """
    idx = torch.arange(start, start + window)
    valid = idx < n_frames
    return idx.clamp(max=n_frames - 1), valid


def random_clip_start(n_frames: int, window: int, generator: torch.Generator) -> int:
    if n_frames <= window:
        return 0
    return int(torch.randint(0, n_frames - window + 1, (1,), generator=generator))
