"""A factorised 3D UNet for video: ``(1, 3, 3)`` spatial convolutions, ``(3, 1, 1)`` temporal
convolutions, and factorised space-time attention (spatial, then temporal) at low resolution.

Down- and up-sampling act on space only, so every level keeps all ``T`` frames. An optional
``patch_size`` folds ``p x p`` pixel blocks into channels before the first convolution (and
unfolds them after the last), which makes 64x64 video affordable on a CPU.

Shapes: ``x`` ``(B, C, T, H, W)``, conditioning embedding ``emb`` ``(B, D)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def group_norm(ch: int, max_groups: int = 8) -> nn.GroupNorm:
    g = max_groups
    while ch % g:
        g -= 1
    return nn.GroupNorm(g, ch)


def zero_init(m: nn.Module) -> nn.Module:
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class SpatialConv(nn.Module):
    """A ``(1, 3, 3)`` convolution applied frame by frame, computed as a 2D convolution over
    ``(b t)`` (PyTorch's CPU Conv3d takes a slow non-oneDNN path for these kernels)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = self.conv(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class TemporalConv(nn.Module):
    """A ``(k, 1, 1)`` convolution mixing neighbouring frames at each pixel.

    Computed as a ``(k, 1)`` 2D convolution on the free view ``b c t (h w)`` (PyTorch's CPU
    Conv3d with a ``(k, 1, 1)`` kernel takes a slow path; the 2D one is oneDNN).
    """

    def __init__(self, cin: int, cout: int | None = None, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout or cin, (kernel, 1), padding=(kernel // 2, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return self.conv(x.reshape(b, c, t, h * w)).reshape(b, -1, t, h, w)


class ResBlock3d(nn.Module):
    """GroupNorm-SiLU-conv residual block with scale-shift conditioning on ``emb``, followed
    by a residual temporal convolution (zero-initialised, so training starts per frame)."""

    def __init__(
        self, cin: int, cout: int, emb_dim: int, temporal_conv: bool = True, dropout: float = 0.0
    ):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = SpatialConv(cin, cout)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = group_norm(cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_init(SpatialConv(cout, cout))
        self.skip = TemporalConv(cin, cout, kernel=1) if cin != cout else nn.Identity()
        self.temporal = temporal_conv
        if temporal_conv:
            self.norm_t = group_norm(cout)
            self.conv_t = zero_init(TemporalConv(cout))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = rearrange(self.emb(F.silu(emb)), "b (two c) -> two b c 1 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        x = self.skip(x) + h
        if self.temporal:
            x = x + self.conv_t(F.silu(self.norm_t(x)))
        return x


class SpatialAttention(nn.Module):
    """Self-attention among the ``H*W`` positions of each frame (pre-norm, residual)."""

    def __init__(self, ch: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm = group_norm(ch)
        self.qkv = nn.Linear(ch, 3 * inner, bias=False)
        self.out = zero_init(nn.Linear(inner, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        tok = rearrange(self.norm(x), "b c t h w -> (b t) (h w) c")
        q, k, v = rearrange(
            self.qkv(tok), "n l (three g d) -> three n g l d", three=3, g=self.heads
        )
        y = F.scaled_dot_product_attention(q, k, v)
        y = self.out(rearrange(y, "n g l d -> n l (g d)"))
        return x + rearrange(y, "(b t) (h w) c -> b c t h w", b=b, t=t, h=h, w=w)


class TemporalAttention(nn.Module):
    """Self-attention among the ``T`` frames at each spatial position, with a learned
    relative-position bias per head (distances beyond ``max_distance`` share one bias), so
    it does not depend on absolute frame positions and works for any ``T``."""

    def __init__(self, ch: int, heads: int = 4, dim_head: int = 32, max_distance: int = 32):
        super().__init__()
        self.heads = heads
        self.max_distance = max_distance
        inner = heads * dim_head
        self.norm = group_norm(ch)
        self.qkv = nn.Linear(ch, 3 * inner, bias=False)
        self.rel_bias = nn.Parameter(torch.zeros(heads, 2 * max_distance + 1))
        self.out = zero_init(nn.Linear(inner, ch))

    def bias(self, t: int, device: torch.device) -> torch.Tensor:
        pos = torch.arange(t, device=device)
        rel = (pos[None, :] - pos[:, None]).clamp(
            -self.max_distance, self.max_distance
        ) + self.max_distance
        return self.rel_bias[:, rel]  # (heads, t, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        tok = rearrange(self.norm(x), "b c t h w -> (b h w) t c")
        q, k, v = rearrange(
            self.qkv(tok), "n l (three g d) -> three n g l d", three=3, g=self.heads
        )
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=self.bias(t, x.device).to(q.dtype)[None]
        )
        y = self.out(rearrange(y, "n g l d -> n l (g d)"))
        return x + rearrange(y, "(b h w) t c -> b c t h w", b=b, h=h, w=w)


class SpaceTimeAttention(nn.Module):
    """Factorised space-time attention: spatial attention within frames, then temporal
    attention across frames."""

    def __init__(self, ch: int, heads: int = 4, dim_head: int = 32, max_distance: int = 32):
        super().__init__()
        self.spatial = SpatialAttention(ch, heads, dim_head)
        self.temporal = TemporalAttention(ch, heads, dim_head, max_distance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.spatial(x))


class Downsample(nn.Module):
    """Halve H and W (stride-2 spatial conv); T unchanged."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = SpatialConv(ch, ch, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W (nearest neighbour, then a spatial conv); T unchanged."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = SpatialConv(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))


class _Stage(nn.Module):
    def __init__(self, res: ResBlock3d, attn: nn.Module | None):
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet3D(nn.Module):
    """Video UNet ``(B, in_channels, T, H, W), emb (B, emb_dim) -> (B, out_channels, T, H, W)``.

    Args:
        in_channels, out_channels: channels of input and output.
        emb_dim: size of the conditioning embedding (time step + conditions) fed to every block.
        base_channels: channels of the first level.
        channel_mults: channel multiplier per level; level ``i`` works at ``1 / 2**i`` of the
            (patchified) resolution.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_levels: levels with factorised space-time attention after each block (the
            middle block always has it). Put them at low resolution.
        temporal_conv: add a ``(3, 1, 1)`` temporal convolution to every residual block.
        heads, dim_head: attention heads and head size.
        dropout: dropout inside residual blocks.
        patch_size: fold ``p x p`` pixels into channels first (1 = off).
        max_temporal_distance: relative distances clipped here in temporal attention.

    ``H`` and ``W`` must be divisible by ``patch_size * 2 ** (len(channel_mults) - 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attn_levels: Sequence[int] = (2,),
        temporal_conv: bool = True,
        heads: int = 4,
        dim_head: int = 32,
        dropout: float = 0.0,
        patch_size: int = 1,
        max_temporal_distance: int = 32,
    ):
        super().__init__()
        self.patch_size = int(patch_size)
        self.out_channels = out_channels
        self.n_levels = len(channel_mults)
        p2 = self.patch_size**2
        chs = [base_channels * m for m in channel_mults]

        def attn(ch: int) -> SpaceTimeAttention:
            return SpaceTimeAttention(ch, heads, dim_head, max_temporal_distance)

        def res(cin: int, cout: int) -> ResBlock3d:
            return ResBlock3d(cin, cout, emb_dim, temporal_conv, dropout)

        self.conv_in = SpatialConv(in_channels * p2, chs[0])
        self.down = nn.ModuleList()
        skips = [chs[0]]
        ch = chs[0]
        for i, c in enumerate(chs):
            for _ in range(num_res_blocks):
                self.down.append(_Stage(res(ch, c), attn(c) if i in attn_levels else None))
                ch = c
                skips.append(ch)
            if i < len(chs) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
        self.mid1 = res(ch, ch)
        self.mid_attn = attn(ch)
        self.mid2 = res(ch, ch)
        self.up = nn.ModuleList()
        for i, c in reversed(list(enumerate(chs))):
            for _ in range(num_res_blocks + 1):
                self.up.append(
                    _Stage(res(ch + skips.pop(), c), attn(c) if i in attn_levels else None)
                )
                ch = c
            if i > 0:
                self.up.append(Upsample(ch))
        self.norm_out = group_norm(ch)
        self.conv_out = zero_init(SpatialConv(ch, out_channels * p2))

    @property
    def spatial_multiple(self) -> int:
        return self.patch_size * 2 ** (self.n_levels - 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h_in, w_in = x.shape[-2:]
        m = self.spatial_multiple
        if h_in % m or w_in % m:
            raise ValueError(f"UNet3D needs H and W divisible by {m}, got {h_in}x{w_in}")
        p = self.patch_size
        if p > 1:
            x = rearrange(x, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, _Stage) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, _Stage):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        if p > 1:
            out = rearrange(out, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)
        return out
