"""Per-frame convolutional encoder/decoder (the frame auto-encoder of the Ultrasound Video
Transformer design): every frame of ``(B, C, T, H, W)`` to a vector ``(B, T, D)`` and back."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from seqnrl.nn.tubelet import to_hw


def _conv_block(cin: int, cout: int, down: bool) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 4, 2, 1) if down else nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    return nn.Sequential(
        conv,
        nn.GroupNorm(min(8, cout), cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, 1, 1),
        nn.GroupNorm(min(8, cout), cout),
        nn.SiLU(),
    )


def _bottleneck(image_size: int | Sequence[int], depth: int) -> tuple[int, int]:
    """Feature-map size ``(H / 2**depth, W / 2**depth)`` after ``depth`` stride-2 stages."""
    h, w = to_hw(image_size)
    if h % 2**depth or w % 2**depth:
        raise ValueError(f"image_size {h}x{w} (HxW) is not divisible by 2**depth = {2**depth}")
    return h // 2**depth, w // 2**depth


class FrameEncoder(nn.Module):
    """``depth`` stride-2 conv stages (width doubling from ``width``), then a linear map of the
    flattened ``(H / 2**depth) x (W / 2**depth)`` feature map to ``dim`` per frame.
    ``image_size``: ``int`` (square) or ``(H, W)``."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int | Sequence[int] = 64,
        width: int = 16,
        depth: int = 3,
        dim: int = 128,
    ):
        super().__init__()
        self.bottleneck = _bottleneck(image_size, depth)
        ch = [in_channels] + [width * 2**i for i in range(depth)]
        self.convs = nn.Sequential(
            *[_conv_block(ch[i], ch[i + 1], down=True) for i in range(depth)]
        )
        self.proj = nn.Linear(ch[-1] * self.bottleneck[0] * self.bottleneck[1], dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        f = self.convs(rearrange(video, "b c t h w -> (b t) c h w"))
        return rearrange(self.proj(rearrange(f, "bt c h w -> bt (c h w)")), "(b t) d -> b t d", b=b)


class FrameDecoder(nn.Module):
    """Mirror of :class:`FrameEncoder`: per-frame vectors ``(B, T, D)`` to frames ``(B, C, T, H, W)``
    (linear output, no squashing)."""

    def __init__(
        self,
        out_channels: int = 1,
        image_size: int | Sequence[int] = 64,
        width: int = 16,
        depth: int = 3,
        dim: int = 128,
    ):
        super().__init__()
        self.bottleneck = _bottleneck(image_size, depth)
        ch = [width] + [width * 2**i for i in range(depth)]
        self.c0 = ch[-1]
        self.proj = nn.Linear(dim, ch[-1] * self.bottleneck[0] * self.bottleneck[1])
        ups = [_conv_block(ch[i + 1], ch[i], down=False) for i in reversed(range(depth))]
        self.convs = nn.Sequential(*ups, nn.Conv2d(ch[0], out_channels, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        h, w = self.bottleneck
        f = rearrange(self.proj(z), "b t (c h w) -> (b t) c h w", c=self.c0, h=h, w=w)
        return rearrange(self.convs(f), "(b t) c h w -> b c t h w", b=b)
