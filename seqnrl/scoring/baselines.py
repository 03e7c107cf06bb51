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


class FlowStatisticsBaseline:
    """Per-location optical-flow statistics, a strong model-free floor for fixed cameras.

    Frames are resized to ``size`` grey, OpenCV Farneback flow magnitude is averaged in
    ``cell`` x ``cell`` pixel cells, each cell is z-scored with the mean of all normal
    training frames and their standard deviation plus ``std_floor``; the frame score is the
    maximum over cells, averaged over a centred window of ``smooth`` frames. Fitting stores
    two numbers per cell: nothing is learned beyond counting.
    """

    def __init__(self, size: tuple[int, int] = (120, 180), cell: int = 12, std_floor: float = 0.25, smooth: int = 5):
        self.size, self.cell, self.std_floor, self.smooth = tuple(size), cell, std_floor, smooth
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def cells(self, frames: torch.Tensor) -> np.ndarray:
        """Cell-mean flow magnitude ``(T, h, w)`` of ``frames`` ``(C, T, H, W)``."""
        from seqnrl.scoring.optical_flow import cell_mean, flow_magnitude, grey_at_size

        return cell_mean(flow_magnitude(grey_at_size(frames[None], self.size))[0], self.cell).numpy()

    def fit(self, videos) -> FlowStatisticsBaseline:
        m = np.concatenate([self.cells(v) for v in videos])
        self.mean, self.std = m.mean(0), m.std(0)
        return self

    def scores(self, frames: torch.Tensor) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("FlowStatisticsBaseline.fit must be called before scores")
        z = (self.cells(frames) - self.mean) / (self.std + self.std_floor)
        from scipy.ndimage import uniform_filter1d

        return uniform_filter1d(z.reshape(len(z), -1).max(1), max(1, int(self.smooth)), mode="nearest")


class JointAngleWindowBaseline:
    """Window statistics of joint-angle changes with k-nearest-neighbour distance: the
    model-free floor for motion capture.

    For each window of ``window`` frames: the mean and standard deviation of the
    frame-to-frame change of every joint-angle channel (degrees, wrapped to [-180, 180)),
    z-scored with the statistics of the normal training windows; the score is the mean
    Euclidean distance to the ``k`` nearest normal training windows (``scipy.spatial.cKDTree``).
    Training windows are taken at every frame (stride 1). Nothing is learned beyond storing
    the normal windows.
    """

    def __init__(self, window: int = 30, k: int = 5):
        if window < 2 or k < 1:
            raise ValueError(f"need window >= 2 and k >= 1, got window={window}, k={k}")
        self.window, self.k = int(window), int(k)
        self.tree = None

    def features(self, angles: np.ndarray) -> np.ndarray:
        """``(n_windows, 2 * C)`` features of the windows ``[s, s + window)`` of ``angles``
        ``(T, C)``, one per start ``s`` (none when ``T < window``)."""
        d = np.diff(np.asarray(angles, dtype=np.float64), axis=0)
        d = (d + 180.0) % 360.0 - 180.0
        w = self.window - 1  # changes inside a window of `window` frames
        if d.shape[0] < w:
            return np.zeros((0, 2 * d.shape[1]))
        view = np.lib.stride_tricks.sliding_window_view(d, w, axis=0)  # (n, C, w)
        return np.concatenate([view.mean(-1), view.std(-1)], axis=1)

    def fit(self, normal: list[np.ndarray]) -> JointAngleWindowBaseline:
        from scipy.spatial import cKDTree

        x = np.concatenate([self.features(a) for a in normal])
        if len(x) <= self.k:
            raise ValueError(f"{len(x)} normal training windows of {self.window} frames: too few for k={self.k}")
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        self.tree = cKDTree((x - self.mean) / self.std)
        return self

    def score(self, angles: np.ndarray) -> np.ndarray:
        """Score of every full window of ``angles``, indexed by the window's first frame."""
        if self.tree is None:
            raise RuntimeError("JointAngleWindowBaseline.score before fit")
        f = self.features(angles)
        if len(f) == 0:
            return np.zeros(0)
        dist, _ = self.tree.query((f - self.mean) / self.std, k=self.k)
        return np.asarray(dist).reshape(len(f), -1).mean(1)
