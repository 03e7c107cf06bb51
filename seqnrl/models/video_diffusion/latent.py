"""A small per-frame convolutional autoencoder for latent video diffusion (optional mode).

Each frame ``(C, H, W)`` in [0, 1] maps to a ``(latent_channels, H / f, W / f)`` latent in
[-1, 1] (tanh), ``f = 2 ** downsample``, and back. Frames are independent: time is left
to the diffusion model. Deterministic (no KL term): the bounded tanh latent keeps the
diffusion model's input in the same range as pixels scaled to [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from seqnrl.nn.unet3d import group_norm


class _Res2d(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.block = nn.Sequential(
            group_norm(ch),
            nn.SiLU(),
            nn.Conv2d(ch, ch, 3, 1, 1),
            group_norm(ch),
            nn.SiLU(),
            nn.Conv2d(ch, ch, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class FrameLatentAutoEncoder(nn.Module):
    """Per-frame encoder/decoder; ``encode``/``decode`` take and return video tensors.

    Args:
        in_channels: image channels.
        latent_channels: channels of the latent.
        width: channels of the first encoder stage (doubled at each downsampling).
        downsample: number of 2x spatial reductions (``f = 2 ** downsample``).
    """

    def __init__(
        self, in_channels: int = 1, latent_channels: int = 4, width: int = 32, downsample: int = 2
    ):
        super().__init__()
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.factor = 2**downsample
        enc: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1)]
        ch = width
        for _ in range(downsample):
            enc += [_Res2d(ch), nn.Conv2d(ch, ch * 2, 4, 2, 1)]
            ch *= 2
        enc += [_Res2d(ch), group_norm(ch), nn.SiLU(), nn.Conv2d(ch, latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, ch, 3, 1, 1), _Res2d(ch)]
        for _ in range(downsample):
            dec += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(ch, ch // 2, 3, 1, 1),
                _Res2d(ch // 2),
            ]
            ch //= 2
        dec += [group_norm(ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, 1, 1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` in [0, 1] -> ``(B, latent_channels, T, H / f, W / f)`` in [-1, 1]."""
        b = video.shape[0]
        h, w = video.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(
                f"frame size {h}x{w} is not divisible by the latent factor {self.factor}"
            )
        z = self.encoder(rearrange(video, "b c t h w -> (b t) c h w") * 2 - 1)
        return rearrange(torch.tanh(z), "(b t) c h w -> b c t h w", b=b)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, latent_channels, T, h, w)`` -> video ``(B, C, T, h * f, w * f)`` in [0, 1]."""
        b = z.shape[0]
        x = self.decoder(rearrange(z, "b c t h w -> (b t) c h w"))
        return rearrange(torch.sigmoid(x), "(b t) c h w -> b c t h w", b=b)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(video)
        return self.decode(z), z

    def loss(self, video: torch.Tensor) -> torch.Tensor:
        """Reconstruction loss (MSE + L1) of a video batch."""
        rec, _ = self(video)
        return F.mse_loss(rec, video) + 0.1 * F.l1_loss(rec, video)
