"""Tubelet (space-time patch) embedding, patchify/unpatchify and tube masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange, repeat
from torch import nn


def to_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """Frame size ``(H, W)`` of an ``int`` (square) or an ``(H, W)`` pair."""
    if isinstance(size, int):
        return size, size
    hw = tuple(int(v) for v in size)
    if len(hw) != 2:
        raise ValueError(f"image size must be an int or (H, W), got {size!r}")
    return hw[0], hw[1]


class TubeletEmbed(nn.Module):
    """Non-overlapping ``tubelet_size x patch_size x patch_size`` tubelets of a video
    ``(B, C, T, H, W)`` to tokens ``(B, T', N, D)`` with ``T' = T / tubelet_size`` and
    ``N = (H / patch_size) * (W / patch_size)`` (frames need not be square)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int = 8, tubelet_size: int = 1):
        super().__init__()
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=k, stride=k)

    def grid(self, h: int, w: int) -> tuple[int, int]:
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"frame size {h}x{w} (HxW) is not divisible by patch_size {p}")
        return h // p, w // p

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        t = video.shape[2]
        if t % self.tubelet_size:
            raise ValueError(f"{t} frames are not divisible by tubelet_size {self.tubelet_size}")
        self.grid(*video.shape[-2:])
        return rearrange(self.proj(video), "b d t h w -> b t (h w) d")


def patchify(video: torch.Tensor, patch_size: int, tubelet_size: int = 1) -> torch.Tensor:
    """``(B, C, T, H, W)`` to patch pixels ``(B, T', N, tubelet_size * patch_size**2 * C)``."""
    return rearrange(
        video,
        "b c (t pt) (h ph) (w pw) -> b t (h w) (pt ph pw c)",
        pt=tubelet_size,
        ph=patch_size,
        pw=patch_size,
    )


def unpatchify(
    patches: torch.Tensor, patch_size: int, tubelet_size: int, grid: tuple[int, int], channels: int
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, T', N, P)`` to ``(B, C, T, H, W)``."""
    return rearrange(
        patches,
        "b t (h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
        h=grid[0],
        w=grid[1],
        pt=tubelet_size,
        ph=patch_size,
        pw=patch_size,
        c=channels,
    )


def n_hidden(n_patches: int, ratio: float) -> int:
    """Patches hidden by a mask of ``ratio`` (at least one stays visible, at least one hidden)."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    return min(max(int(round(ratio * n_patches)), 1), n_patches - 1)


def random_tube_mask(
    batch: int, n_patches: int, ratio: float, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Tube masks ``(B, N)`` bool, True = hidden: the same spatial patches are hidden in every
    frame of a clip (broadcast over time by the caller); exactly ``n_hidden`` per sample."""
    noise = torch.rand(batch, n_patches, generator=generator)
    order = noise.argsort(dim=1)
    mask = torch.zeros(batch, n_patches, dtype=torch.bool)
    mask.scatter_(1, order[:, : n_hidden(n_patches, ratio)], True)
    return mask.to(device) if device is not None else mask


def complementary_tube_masks(n_patches: int, n_masks: int, seed: int = 0) -> torch.Tensor:
    """``(n_masks, N)`` bool deterministic tube masks whose *visible* sets partition the
    patches (a fixed seeded permutation split into ``n_masks`` groups): mask ``k`` shows only
    group ``k``, so every patch is hidden in ``n_masks - 1`` masks and visible in exactly one.
    With ``n_masks = 1 / (1 - ratio)`` each mask hides the training ratio."""
    if not 2 <= n_masks <= n_patches:
        raise ValueError(f"n_masks must be in [2, {n_patches}], got {n_masks}")
    perm = torch.randperm(n_patches, generator=torch.Generator().manual_seed(seed))
    masks = torch.ones(n_masks, n_patches, dtype=torch.bool)
    for k, grp in enumerate(torch.tensor_split(perm, n_masks)):
        masks[k, grp] = False
    return masks


def mask_to_pixels(
    mask: torch.Tensor, grid: tuple[int, int], patch_size: int, n_frames: int
) -> torch.Tensor:
    """Tube mask ``(B, N)`` to a pixel mask ``(B, 1, T, H, W)`` (float 0/1) repeated over time."""
    m = rearrange(mask.float(), "b (h w) -> b 1 1 h w", h=grid[0], w=grid[1])
    m = repeat(
        m, "b c t h w -> b c (t rt) (h ph) (w pw)", rt=n_frames, ph=patch_size, pw=patch_size
    )
    return m
