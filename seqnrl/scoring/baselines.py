"""Model-free reference scores that every learned model must beat."""

from __future__ import annotations

import numpy as np
import torch


def frame_difference_scores(frames: torch.Tensor, top_fraction: float = 0.01, smooth_sigma: float = 2.0) -> np.ndarray:
    """Per-frame score = mean of the top ``top_fraction`` absolute pixel differences to the
    previous frame (the first frame copies the second's score), Gaussian-smoothed over time.

    ``frames``: ``(C, T, H, W)`` uint8 or float. Motion-based anomalies (fast objects) give
    large differences; it knows nothing about what is normal.
    """
    from seqnrl.scoring.aggregate import smooth_scores

    x = frames.float()
    if x.shape[1] < 2:
        return np.zeros(x.shape[1])
    d = (x[:, 1:] - x[:, :-1]).abs().mean(0).flatten(1)  # (T-1, H*W)
    k = max(1, int(round(top_fraction * d.shape[1])))
    s = d.topk(k, dim=1).values.mean(1).numpy()
    s = np.r_[s[0], s]
    return smooth_scores(s, smooth_sigma)
