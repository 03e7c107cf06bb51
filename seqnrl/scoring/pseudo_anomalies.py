"""Pseudo-anomalies synthesised from normal clips, for choosing settings without test data.

Invariant: every copy is built from normal frames only, with its frame labels (1 where the
synthetic anomaly is), so anything chosen on them (a score's pooling or weights, a
threshold) never sees a real anomaly.
"""

from __future__ import annotations

import numpy as np
import torch


def speedup_copies(frames, n_copies: int, rng) -> list:
    """Pseudo-anomalous copies ``[(frames (C, T, H, W), labels (T,))]`` of a normal clip, a
    local version of the skipped-frame pseudo-anomalies of Astrid et al. (BMVC 2021): in a
    vertical band of a quarter to a half of the width (the band where the source frames move
    most), frames are taken every 3rd-4th frame for 20-40 frames, so the walkers there move
    at a cyclist's speed; the camera is fixed, so the band's edges show no seam where nothing
    moves. Those frames are labelled 1."""
    c, t, h, w = frames.shape
    x = frames.float()
    col_motion = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(0, 2))  # (T-1, W)
    out = []
    for _ in range(n_copies):
        step = int(rng.integers(3, 5))
        span = int(rng.integers(20, 41))
        span = min(span, (t - 1) // step)
        src = int(rng.integers(0, t - span * step))
        start = int(rng.integers(0, t - span + 1))
        bw = int(rng.integers(w // 4, w // 2 + 1))
        energy = col_motion[src : src + span * step].sum(0).cumsum(0)
        energy = torch.cat([energy.new_zeros(1), energy])
        x0 = int((energy[bw:] - energy[:-bw]).argmax())
        copy, labels = frames.clone(), np.zeros(t, dtype=np.int64)
        idx = torch.arange(span) * step + src
        copy[:, start : start + span, :, x0 : x0 + bw] = frames[:, idx, :, x0 : x0 + bw]
        labels[start : start + span] = 1
        out.append((copy, labels))
    return out


def b_lines(video, seed: int, n_lines: int = 2):
    """``video`` (a normal ``(C, T, H, W)`` uint8 lung-ultrasound clip) with ``n_lines`` bright
    vertical streaks (B-line-like comet tails, 1/40 of the width, from the upper third of the
    sector's central band to its bottom) added to every frame: every frame is labelled 1."""
    from seqnrl.intake.sector import detect_sector
    from seqnrl.models.depth_prior.view import band_box

    g = np.random.default_rng(seed)
    v = video.float().clone()
    c, t, h, w = v.shape
    y0, y1, x0, x1 = band_box(detect_sector(v.mean(0).numpy() / 255.0).mask, h, w)
    peak = float(torch.quantile(v.flatten()[:: max(1, v.numel() // 200000)], 0.99))
    for _ in range(n_lines):
        x = int(g.integers(x0, max(x0 + 1, x1 - max(2, w // 40))))
        top = y0 + (y1 - y0) // 3
        v[:, :, top:y1, x : x + max(2, w // 40)] += 0.6 * max(peak, 60.0)
    return v.clamp(0, 255).to(torch.uint8)


def b_line_copies(frames, n_copies: int, rng) -> list:
    """``n_copies`` copies ``[(frames, labels)]`` of a normal clip with synthetic B-lines
    (:func:`b_lines`, a seed from ``rng`` each), every frame labelled 1."""
    return [
        (b_lines(frames, int(rng.integers(0, 2**31 - 1))), np.ones(frames.shape[1], dtype=np.int64))
        for _ in range(n_copies)
    ]


PSEUDO_ANOMALIES = {"speedup": speedup_copies, "b_lines": b_line_copies}

