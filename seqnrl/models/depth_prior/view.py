"""The lung view a depth prior looks at: the central band of the imaging area, in grey.

Invariant: the view of a window depends only on that window's frames (no state, no look at
other windows or at the rest of the recording), so training, ``seqnrl score`` and the
benchmarks cut the same view from the same frames.

Convex and linear probes, different depths and screen layouts all become one picture:

1. the imaging area is found from the window's frames by :func:`seqnrl.intake.sector.detect_sector`
   (what changes over time; a fan for convex probes, a rectangle for linear ones). When no
   sector is found (a linear image filling the frame, a still window) the whole frame is used;
2. the central band of that area is kept: ``band`` of its width either side of the centre
   (inside the fan of a convex probe whose face is at least ``2 * band`` of its widest
   part, so the black corners never enter), from ``top`` to
   ``bottom`` of its height (below the probe face, above the far-field rim);
3. the band is resized (area averaging) to ``size`` x ``size``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from seqnrl.intake.sector import detect_sector

BAND = 0.22
TOP, BOTTOM = 0.05, 0.85
MAX_PROBE_FRAMES = 32


def band_box(mask: np.ndarray | None, h: int, w: int) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the central band of ``mask``'s imaging area (the whole
    ``h`` x ``w`` frame when ``mask`` is ``None`` or empty)."""
    if mask is None or not mask.any():
        return 0, h, 0, w
    ys, xs = np.nonzero(mask)
    top, bot, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    cx, width, height = (left + right) / 2, right - left, bot - top
    x0, x1 = int(cx - BAND * width), int(cx + BAND * width)
    y0, y1 = int(top + TOP * height), int(top + BOTTOM * height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0, h, 0, w
    return y0, y1, x0, x1


def lung_view(video: torch.Tensor, size: int = 64) -> torch.Tensor:
    """``(B, C, T, H, W)`` frames in [0, 1] -> ``(B, T, 1, size, size)`` grey central-band views."""
    b, c, t, h, w = video.shape
    grey = video.float().mean(1)  # (B, T, H, W)
    out = []
    for i in range(b):
        frames = grey[i]
        step = max(1, t // MAX_PROBE_FRAMES)
        mask = detect_sector(frames[::step].detach().cpu().numpy()).mask
        y0, y1, x0, x1 = band_box(mask, h, w)
        crop = frames[:, y0:y1, x0:x1].unsqueeze(1)  # (T, 1, h', w')
        out.append(F.interpolate(crop, size=(size, size), mode="area"))
    return torch.stack(out).to(video.dtype)
