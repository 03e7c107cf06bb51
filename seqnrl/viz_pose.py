"""Skeleton overlays on frames and videos (pure torch rasterisation, no OpenCV).

:func:`draw_skeletons` draws one or more keypoint layers (e.g. discovered keypoints and the
true joints, in different colours) over ``(C, T, H, W)`` frames, upscaled so that the lines
stay visible on tiny frames; :func:`overlay_parts` tints the frames with the transformed
template parts of the pose model; :func:`save_overlay_video` and :func:`save_overlay_grid`
write the result as a video (:func:`seqnrl.io.write.write_video`) or a PNG contact sheet.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seqnrl.io.atomic import atomic_path


@dataclass
class SkeletonLayer:
    """One set of keypoints to draw: ``keypoints`` ``(T, J, 2)`` (normalised [0, 1] unless
    ``normalised=False``: pixels of the original frames), the ``skeleton`` edges (joint index
    pairs) and an RGB ``color`` in [0, 1] (``None``: one hue per edge)."""

    keypoints: np.ndarray | torch.Tensor
    skeleton: Sequence[tuple[int, int]]
    color: tuple[float, float, float] | None = None
    normalised: bool = True
    thickness: float = 2.0
    radius: float = 3.0


def _frames_rgb(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(C, T, H, W)`` (C 1 or 3) or ``(T, H, W)`` uint8/float -> ``(3, T, H, W)`` float [0, 1]."""
    f = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    f = f.detach().cpu()
    f = f.float() / 255.0 if f.dtype == torch.uint8 else f.float()
    if f.ndim == 3:
        f = f[None]
    if f.ndim != 4 or f.shape[0] not in (1, 3):
        raise ValueError(f"frames must be (C, T, H, W) with C 1 or 3, or (T, H, W); got {tuple(f.shape)}")
    return f.expand(3, *f.shape[1:]).clone() if f.shape[0] == 1 else f.clone()


def edge_colors(n: int) -> list[tuple[float, float, float]]:
    return [colorsys.hsv_to_rgb((i * 0.6180339887) % 1.0, 0.85, 1.0) for i in range(n)]


def _auto_scale(h: int, w: int, min_side: int = 256) -> int:
    return max(1, int(np.ceil(min_side / max(1, min(h, w)))))


def draw_skeletons(
    frames: torch.Tensor | np.ndarray,
    layers: Sequence[SkeletonLayer],
    scale: int | None = None,
) -> torch.Tensor:
    """Frames with every layer drawn on top: ``(3, T, H * scale, W * scale)`` uint8.

    ``scale`` (nearest-neighbour upscaling before drawing; default: enough for a 256-pixel
    short side). Missing (NaN) joints and their edges are skipped.
    """
    rgb = _frames_rgb(frames)
    _, t, h, w = rgb.shape
    s = _auto_scale(h, w) if scale is None else int(scale)
    if s > 1:
        rgb = F.interpolate(rgb, scale_factor=s, mode="nearest")
    hh, ww = h * s, w * s
    ys = torch.arange(hh, dtype=torch.float32)[None, None, :, None]
    xs = torch.arange(ww, dtype=torch.float32)[None, None, None, :]
    for layer in layers:
        kp = torch.as_tensor(np.asarray(layer.keypoints, dtype=np.float32))
        if kp.ndim != 3 or kp.shape[0] != t or kp.shape[-1] < 2:
            raise ValueError(f"keypoints must be ({t}, J, 2), got {tuple(kp.shape)}")
        kp = kp[..., :2]
        px = kp * torch.tensor([ww, hh]) - 0.5 if layer.normalised else (kp + 0.5) * s - 0.5
        edges = list(layer.skeleton)
        cols = [layer.color] * len(edges) if layer.color is not None else edge_colors(len(edges))
        jcol = torch.tensor(layer.color if layer.color is not None else (1.0, 1.0, 1.0))
        for (a, b), c in zip(edges, cols):
            pa, pb = px[:, a], px[:, b]  # (T, 2)
            ok = torch.isfinite(pa).all(-1) & torch.isfinite(pb).all(-1)
            pa = torch.where(ok[:, None], pa, torch.zeros_like(pa))
            pb = torch.where(ok[:, None], pb, torch.zeros_like(pb))
            ab = pb - pa
            den = (ab * ab).sum(-1).clamp_min(1e-6)[:, None, None, None]
            ax, ay = pa[:, 0, None, None, None], pa[:, 1, None, None, None]
            dx, dy = ab[:, 0, None, None, None], ab[:, 1, None, None, None]
            u = (((xs - ax) * dx + (ys - ay) * dy) / den).clamp(0, 1)
            d = ((xs - ax - u * dx) ** 2 + (ys - ay - u * dy) ** 2).sqrt()[:, 0]  # (T, H, W)
            alpha = ((0.5 * layer.thickness * s ** 0.5 - d) + 0.5).clamp(0, 1) * ok[:, None, None]
            col = torch.tensor(c, dtype=torch.float32)[:, None, None, None]
            rgb = rgb * (1 - alpha[None]) + col * alpha[None]
        for j in range(px.shape[1]):
            p = px[:, j]
            ok = torch.isfinite(p).all(-1)
            p = torch.where(ok[:, None], p, torch.zeros_like(p))
            d = ((xs - p[:, 0, None, None, None]) ** 2 + (ys - p[:, 1, None, None, None]) ** 2).sqrt()[:, 0]
            alpha = ((layer.radius * s ** 0.5 - d) + 0.5).clamp(0, 1) * ok[:, None, None]
            rgb = rgb * (1 - alpha[None]) + jcol[:, None, None, None] * alpha[None]
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


def overlay_parts(frames: torch.Tensor | np.ndarray, heatmaps: torch.Tensor | np.ndarray, strength: float = 0.6) -> torch.Tensor:
    """Tint frames with part heatmaps ``(T, K, H, W)`` (one hue per part): ``(3, T, H, W)`` uint8."""
    rgb = _frames_rgb(frames)
    hm = torch.as_tensor(np.asarray(heatmaps, dtype=np.float32)).clamp(0, 1)
    if hm.ndim != 4 or hm.shape[0] != rgb.shape[1] or hm.shape[-2:] != rgb.shape[-2:]:
        raise ValueError(f"heatmaps must be (T, K, H, W) matching the frames, got {tuple(hm.shape)}")
    cols = torch.tensor(edge_colors(hm.shape[1]), dtype=torch.float32)  # (K, 3)
    tint = torch.einsum("tkhw,kc->cthw", hm, cols)
    a = (strength * hm.max(dim=1).values).clamp(0, 1)[None]
    out = rgb * (1 - a) + tint.clamp(0, 1) * a
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


def save_overlay_video(
    path: str | os.PathLike,
    frames: torch.Tensor | np.ndarray,
    layers: Sequence[SkeletonLayer],
    fps: float = 30.0,
    scale: int | None = None,
) -> Path:
    """Write the overlay of :func:`draw_skeletons` as a video (H.264, see ``write_video``)."""
    from seqnrl.io.write import write_video

    return write_video(path, draw_skeletons(frames, layers, scale), fps)


def save_overlay_grid(
    path: str | os.PathLike,
    frames: torch.Tensor | np.ndarray,
    layers: Sequence[SkeletonLayer],
    n: int = 8,
    cols: int = 4,
    scale: int | None = None,
) -> Path:
    """PNG contact sheet of ``n`` evenly spaced frames with the skeleton overlay."""
    from PIL import Image

    rgb = _frames_rgb(frames)
    t = rgb.shape[1]
    idx = np.unique(np.linspace(0, t - 1, min(n, t)).round().astype(int))
    sub = [SkeletonLayer(np.asarray(ly.keypoints)[idx], ly.skeleton, ly.color, ly.normalised, ly.thickness, ly.radius) for ly in layers]
    img = draw_skeletons(rgb[:, idx], sub, scale).permute(1, 2, 3, 0).numpy()  # (n, H, W, 3)
    rows = int(np.ceil(len(idx) / cols))
    hh, ww = img.shape[1:3]
    sheet = np.zeros((rows * hh, cols * ww, 3), dtype=np.uint8)
    for i, im in enumerate(img):
        r, c = divmod(i, cols)
        sheet[r * hh : (r + 1) * hh, c * ww : (c + 1) * ww] = im
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return path
