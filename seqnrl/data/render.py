"""Render skeleton keypoints to video frames (pure torch, vectorised; no OpenCV).

Limbs are drawn as thick, softly anti-aliased capsules with a rounded shading profile,
each bone with its own grey level (or colour), so that an unsupervised pose model can tell
limbs apart from appearance alone. Where limbs overlap, the nearest bone to the pixel wins.

Pixel convention: pixel ``(row i, column j)`` has its centre at ``(x, y) = (j, i)``;
normalised coordinates ``[0, 1]`` map to ``x * W - 0.5`` (so 0 and 1 are the frame edges).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

_GOLDEN = 0.6180339887498949


def limb_values(n_bones: int, channels: int = 1) -> torch.Tensor:
    """Distinct per-bone intensities ``(n_bones, channels)`` in [0.35, 1]."""
    frac = (np.arange(n_bones) * _GOLDEN) % 1.0
    if channels == 1:
        return torch.tensor(0.35 + 0.65 * frac, dtype=torch.float32)[:, None]
    rgb = [colorsys.hsv_to_rgb(f, 0.75, 1.0) for f in frac]
    return torch.tensor(rgb, dtype=torch.float32)


def _background(
    background: str | torch.Tensor | np.ndarray,
    channels: int,
    t: int,
    h: int,
    w: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """``(C, T, H, W)`` float background in [0, 1]."""
    if isinstance(background, str):
        if background == "plain":
            return torch.full((channels, t, h, w), 0.08)
        if background == "noise":
            gh, gw = max(2, h // 8), max(2, w // 8)
            coarse = torch.rand((1, channels, gh, gw), generator=gen)
            tex = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
            tex = 0.05 + 0.25 * tex.clamp(0, 1)
            grain = 0.02 * torch.randn((channels, t, h, w), generator=gen)
            return (tex[:, None] + grain).clamp(0, 1)
        raise ValueError(f"background must be 'noise', 'plain' or a tensor, got {background!r}")
    bg = torch.as_tensor(background)
    bg = bg.float() / 255.0 if bg.dtype == torch.uint8 else bg.float()
    if bg.ndim == 2:
        bg = bg[None, None]
    elif bg.ndim == 3:
        bg = bg[:, None]
    if bg.ndim != 4 or bg.shape[-2:] != (h, w):
        raise ValueError(
            f"background tensor must be (H, W), (C, H, W) or (C, T, H, W) of size {(h, w)}, got {tuple(bg.shape)}"
        )
    return bg.expand(channels if bg.shape[0] == 1 else bg.shape[0], t, h, w).clone()


def render_skeleton(
    keypoints2d: np.ndarray | torch.Tensor,
    parents: Sequence[int],
    size: tuple[int, int] = (64, 64),
    thickness: float | None = None,
    background: Literal["noise", "plain"] | torch.Tensor | np.ndarray = "noise",
    seed: int = 0,
    channels: int = 1,
    normalised: bool | None = None,
    softness: float = 1.0,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw a ``(T, K, 2)`` keypoint sequence as ``(C, T, H, W)`` uint8 video.

    Args:
        keypoints2d: ``(x, y)`` per joint, in pixels or normalised ``[0, 1]``; NaN joints
            (and their bones) are skipped.
        parents: parent index per joint (-1 for roots); one bone per non-root joint.
        size: ``(H, W)``.
        thickness: limb width in pixels (default 5 % of the smaller side, at least 2).
        background: ``'noise'`` (static smooth texture + per-frame grain, from ``seed``),
            ``'plain'`` (dark grey) or an ``(H, W)`` / ``(C, H, W)`` / ``(C, T, H, W)`` tensor.
        channels: 1 (grey levels per limb) or 3 (colours per limb).
        normalised: whether coordinates are normalised; ``None`` guesses (normalised when
            every finite coordinate lies in ``[-0.5, 1.5]``).
        softness: width in pixels of the anti-aliased edge.
        values: optional ``(n_bones, C)`` intensities in [0, 1] replacing :func:`limb_values`.
    """
    kp = torch.as_tensor(
        np.asarray(keypoints2d) if not isinstance(keypoints2d, torch.Tensor) else keypoints2d
    )
    kp = kp.detach().float().cpu()
    if kp.ndim != 3 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints2d must be (T, K, 2), got {tuple(kp.shape)}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    h, w = int(size[0]), int(size[1])
    t, k, _ = kp.shape
    if len(parents) != k:
        raise ValueError(f"{len(parents)} parents for {k} keypoints")
    if normalised is None:
        fin = kp[torch.isfinite(kp)]
        normalised = bool(fin.numel() == 0 or (fin.min() >= -0.5 and fin.max() <= 1.5))
    if normalised:
        kp = kp * torch.tensor([w, h], dtype=torch.float32) - 0.5
    if thickness is None:
        thickness = max(2.0, 0.05 * min(h, w))
    radius = 0.5 * float(thickness)

    child = [j for j, p in enumerate(parents) if p >= 0]
    par = [parents[j] for j in child]
    nb = len(child)
    gen = torch.Generator().manual_seed(int(seed))
    bg = _background(background, channels, t, h, w, gen)
    if nb == 0:
        return (bg * 255).round().clamp(0, 255).to(torch.uint8)
    col = (
        limb_values(nb, channels)
        if values is None
        else torch.as_tensor(values).float().reshape(nb, channels)
    )

    a = kp[:, par]  # (T, B, 2)
    b = kp[:, child]
    ys = torch.arange(h, dtype=torch.float32)
    xs = torch.arange(w, dtype=torch.float32)
    out = torch.empty_like(bg)
    chunk = max(1, int(4_000_000 // max(1, nb * h * w)))
    for t0 in range(0, t, chunk):
        aa, bb = a[t0 : t0 + chunk], b[t0 : t0 + chunk]
        ab = bb - aa
        den = (ab * ab).sum(-1).clamp_min(1e-6)  # (t, B)
        ok = torch.isfinite(aa).all(-1) & torch.isfinite(bb).all(-1)
        ax, ay = aa[..., 0, None, None], aa[..., 1, None, None]
        dx, dy = ab[..., 0, None, None], ab[..., 1, None, None]
        px = xs[None, None, None, :] - ax  # (t, B, 1, W)
        py = ys[None, None, :, None] - ay  # (t, B, H, 1)
        u = ((px * dx + py * dy) / den[..., None, None]).clamp(0.0, 1.0)  # (t, B, H, W)
        d2 = (px - u * dx) ** 2 + (py - u * dy) ** 2
        d2 = torch.where(
            ok[..., None, None] & torch.isfinite(d2), d2, torch.full_like(d2, float("inf"))
        )
        dmin2, idx = d2.min(dim=1)  # (t, H, W)
        dmin = dmin2.sqrt()
        alpha = ((radius - dmin) / softness + 0.5).clamp(0.0, 1.0)
        shade = 1.0 - 0.35 * (dmin / radius).clamp(max=1.0) ** 2
        c = col[idx]  # (t, H, W, C)
        fg = c.permute(3, 0, 1, 2) * shade[None]
        seg = bg[:, t0 : t0 + chunk]
        out[:, t0 : t0 + chunk] = seg * (1 - alpha[None]) + fg * alpha[None]
    return (out * 255).round().clamp(0, 255).to(torch.uint8)


def project_3d(
    positions: np.ndarray | torch.Tensor,
    view: Literal["front", "side"] = "front",
    size: tuple[int, int] = (64, 64),
    margin: float = 0.1,
    up_axis: int = 1,
    centre_root: bool = True,
    root: int = 0,
    normalised: bool = False,
) -> np.ndarray:
    """Orthographic projection of ``(T, J, 3)`` positions to ``(T, J, 2)`` image coordinates.

    ``front`` looks along ``z`` (image ``x`` = world ``x``), ``side`` along ``x`` (image
    ``x`` = world ``z``); image ``y`` points down (world ``up_axis`` up). With
    ``centre_root`` the root's horizontal position is removed per frame (a walking subject
    stays in frame). One scale and offset for the whole sequence (aspect kept) fit every
    finite point inside the frame with ``margin`` (fraction of each side) to spare.
    Returns pixel coordinates (see module docstring) or normalised ``[0, 1]`` ones.
    """
    pos = np.asarray(
        positions.detach().cpu() if isinstance(positions, torch.Tensor) else positions,
        dtype=np.float64,
    )
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions must be (T, J, 3), got {pos.shape}")
    if view not in ("front", "side"):
        raise ValueError(f"view must be 'front' or 'side', got {view!r}")
    horiz = [a for a in range(3) if a != up_axis]
    # front: the first non-up axis (x for y-up); side: the other one (z for y-up)
    hx = horiz[0] if view == "front" else horiz[1]
    pos = pos.copy()
    if centre_root:
        pos[..., horiz] -= pos[:, root : root + 1, horiz]
    u, v = pos[..., hx], -pos[..., up_axis]
    h, w = int(size[0]), int(size[1])
    fin = np.isfinite(u) & np.isfinite(v)
    if not fin.any():
        return np.full(pos.shape[:2] + (2,), np.nan, dtype=np.float32)
    umin, umax = u[fin].min(), u[fin].max()
    vmin, vmax = v[fin].min(), v[fin].max()
    span_u, span_v = max(umax - umin, 1e-9), max(vmax - vmin, 1e-9)
    avail_w, avail_h = w * (1 - 2 * margin), h * (1 - 2 * margin)
    scale = min(avail_w / span_u, avail_h / span_v)
    x = (u - 0.5 * (umin + umax)) * scale + 0.5 * w  # in [0, W] edge coordinates
    y = (v - 0.5 * (vmin + vmax)) * scale + 0.5 * h
    if normalised:
        out = np.stack([x / w, y / h], -1)
    else:
        out = np.stack([x - 0.5, y - 0.5], -1)
    return out.astype(np.float32)
