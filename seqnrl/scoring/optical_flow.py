"""Dense optical flow of frame sequences (OpenCV Farneback) and its per-cell magnitude.

Invariant: the flow of frame ``t`` is the motion from frame ``t - 1`` to ``t``; the first
frame of a sequence takes the motion from frame 0 to frame 1 (so every frame has a value and
a one-frame sequence has zero motion). Magnitudes are in pixels per frame at the size the
frames are given in.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

# OpenCV's documented example settings: pyramid scale 0.5, 3 levels, 15-px window,
# 3 iterations, 5-px polynomial neighbourhood with sigma 1.2
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


def _grey_uint8(frames: torch.Tensor) -> np.ndarray:
    """``(C, T, H, W)`` in [0, 1] (or uint8) -> ``(T, H, W)`` uint8 grey."""
    x = frames.detach().float().cpu()
    if frames.dtype != torch.uint8:
        x = x * 255.0
    return x.mean(0).round().clamp(0, 255).to(torch.uint8).numpy()


def grey_at_size(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Grey float clips ``(B, 1, T, H', W')`` in [0, 1] of clips ``(B, C, T, H, W)`` (float in
    [0, 1] or uint8), resized to ``size`` (bilinear, antialiased) where they differ."""
    v = video.float()
    if video.dtype == torch.uint8:
        v = v / 255.0
    v = v.mean(1, keepdim=True)
    if tuple(v.shape[-2:]) != tuple(size):
        b, t = v.shape[0], v.shape[2]
        flat = v.transpose(1, 2).reshape(b * t, 1, *v.shape[-2:])
        flat = F.interpolate(flat, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
        v = flat.reshape(b, t, 1, *flat.shape[-2:]).transpose(1, 2)
    return v


def farneback_flow(frames: torch.Tensor) -> np.ndarray:
    """Flow ``(T, H, W, 2)`` (x, y pixels per frame) of one sequence ``(C, T, H, W)``."""
    import cv2

    g = _grey_uint8(frames)
    t, h, w = g.shape
    if t < 2:
        return np.zeros((t, h, w, 2), dtype=np.float32)
    flows = [cv2.calcOpticalFlowFarneback(g[i - 1], g[i], None, *FARNEBACK) for i in range(1, t)]
    return np.stack([flows[0], *flows]).astype(np.float32)


def flow_magnitude(video: torch.Tensor) -> torch.Tensor:
    """Flow magnitude ``(B, T, H, W)`` of a batch of clips ``(B, C, T, H, W)``."""
    out = [np.linalg.norm(farneback_flow(clip), axis=-1) for clip in video]
    return torch.from_numpy(np.stack(out)).to(device=video.device, dtype=video.dtype)


def cell_mean(x: torch.Tensor, cell: int) -> torch.Tensor:
    """Mean over ``cell`` x ``cell`` pixel cells of the last two dimensions (a border that
    does not fill a whole cell is dropped)."""
    lead = x.shape[:-2]
    y = F.avg_pool2d(x.reshape(-1, 1, *x.shape[-2:]), cell)
    return y.reshape(*lead, *y.shape[-2:])


class CellFlowCache:
    """Cell-mean flow magnitudes of frame pairs, remembered by the pairs' pixel content.

    The same pair of frames is met many times (overlapping evaluation windows, training
    clips drawn again every epoch, re-scoring with other score settings); its flow is a pure
    function of the two grey frames, so it is computed once. Least recently used entries go
    beyond ``max_items`` (an entry is ``cells`` floats plus a 16-byte key).
    """

    def __init__(self, max_items: int = 200_000):
        self.max_items = max_items
        self._store: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._store)

    def clip(self, frames: torch.Tensor, cell: int) -> np.ndarray:
        """``(T, H / cell, W / cell)`` of one clip ``(C, T, H, W)`` (rules of
        :func:`farneback_flow`)."""
        import cv2

        g = _grey_uint8(frames)
        t, h, w = g.shape
        if t < 2:
            return np.zeros((t, h // cell, w // cell), dtype=np.float32)
        out = []
        for i in range(1, t):
            pair = g[i - 1].tobytes() + g[i].tobytes() + cell.to_bytes(4, "little")
            key = hashlib.blake2b(pair, digest_size=16).digest()
            m = self._store.get(key)
            if m is None:
                flow = cv2.calcOpticalFlowFarneback(g[i - 1], g[i], None, *FARNEBACK)
                mag = torch.from_numpy(np.linalg.norm(flow, axis=-1).astype(np.float32))
                m = cell_mean(mag, cell).numpy()
                self._store[key] = m
                if len(self._store) > self.max_items:
                    self._store.popitem(last=False)
            else:
                self._store.move_to_end(key)
            out.append(m)
        return np.stack([out[0], *out])

    def batch(self, video: torch.Tensor, cell: int) -> torch.Tensor:
        """``(B, T, H / cell, W / cell)`` of a batch ``(B, C, T, H, W)``."""
        out = np.stack([self.clip(c, cell) for c in video])
        return torch.from_numpy(out).to(device=video.device, dtype=video.dtype)
