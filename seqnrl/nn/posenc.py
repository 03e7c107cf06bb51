"""Positional encodings: fixed sinusoidal or learned tables for time, space and space-time."""

from __future__ import annotations

import math
from typing import Literal

import torch
from einops import rearrange
from torch import nn

PosKind = Literal["learned", "sinusoidal"]


def sinusoidal_1d(n: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Transformer sine/cosine table ``(n, dim)`` for positions ``0..n-1`` (``dim`` even)."""
    if dim % 2:
        raise ValueError(f"sinusoidal encodings need an even dim, got {dim}")
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    ang = pos * freq[None]
    return rearrange(torch.stack((ang.sin(), ang.cos()), dim=-1), "n f two -> n (f two)").float()


def sinusoidal_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Table ``(h * w, dim)``: half the channels encode the row, half the column (``dim % 4 == 0``)."""
    if dim % 4:
        raise ValueError(f"2-D sinusoidal encodings need dim divisible by 4, got {dim}")
    ey = sinusoidal_1d(h, dim // 2)
    ex = sinusoidal_1d(w, dim // 2)
    grid = torch.cat((ey[:, None].expand(h, w, -1), ex[None].expand(h, w, -1)), dim=-1)
    return rearrange(grid, "h w d -> (h w) d")


class PositionTable(nn.Module):
    """An additive position table ``(n, dim)``; learned (truncated-normal init) or sinusoidal
    (a non-persistent buffer, recomputed on construction). ``grid=(h, w)`` makes the
    sinusoidal table 2-D; a learned table ignores the layout."""

    def __init__(
        self, n: int, dim: int, kind: PosKind = "learned", grid: tuple[int, int] | None = None
    ):
        super().__init__()
        self.n, self.kind = n, kind
        if kind == "learned":
            self.table = nn.Parameter(torch.zeros(n, dim))
            nn.init.trunc_normal_(self.table, std=0.02)
        elif kind == "sinusoidal":
            tab = sinusoidal_2d(*grid, dim) if grid is not None else sinusoidal_1d(n, dim)
            self.register_buffer("table", tab, persistent=False)
        else:
            raise ValueError(f"unknown positional encoding kind {kind!r}")

    def forward(self, n: int | None = None) -> torch.Tensor:
        n = self.n if n is None else n
        if n > self.n:
            raise ValueError(f"{n} positions requested but the table has {self.n}")
        return self.table[:n]


class SpaceTimePosition(nn.Module):
    """Adds separate spatial and temporal position tables to tokens ``(B, T, N, D)``.

    ``grid`` is the patch grid ``(h, w)`` (``N = h * w``; ``N = 1`` for per-frame tokens),
    ``max_frames`` the longest token sequence in time.
    """

    def __init__(self, grid: tuple[int, int], max_frames: int, dim: int, kind: PosKind = "learned"):
        super().__init__()
        self.grid = tuple(grid)
        n_space = grid[0] * grid[1]
        self.space = PositionTable(n_space, dim, kind, grid=self.grid) if n_space > 1 else None
        self.time = PositionTable(max_frames, dim, kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, n = x.shape[1], x.shape[2]
        x = x + rearrange(self.time(t), "t d -> 1 t 1 d")
        if self.space is not None:
            if n != self.space.n:
                raise ValueError(
                    f"{n} spatial tokens but the position table is for {self.space.n} {self.grid}"
                )
            x = x + rearrange(self.space(n), "n d -> 1 1 n d")
        return x


def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` with two channels appended: the row and the column of each pixel,
    each from -1 to 1 (what lets a convolution learn what each place of a fixed view does)."""
    n, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")).expand(n, 2, h, w)
    return torch.cat([x, grid], 1)
