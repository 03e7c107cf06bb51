"""A small convolutional frame auto-encoder: the baseline normative model."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


def _block(cin: int, cout: int, down: bool) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 4, 2, 1) if down else nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    return nn.Sequential(conv, nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class FrameAutoEncoder(nn.Module):
    """Encode each frame to a small feature map and decode it back.

    ``forward`` takes video ``(B, C, T, H, W)`` in [0, 1] and returns the reconstruction
    and per-frame embeddings ``(B, T, D)``. H and W must be divisible by ``2**depth``.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, depth: int = 3, latent: int = 32):
        super().__init__()
        enc, dec = [], []
        ch = [in_channels] + [width * 2**i for i in range(depth)]
        for i in range(depth):
            enc.append(_block(ch[i], ch[i + 1], down=True))
        self.encoder = nn.Sequential(*enc, nn.Conv2d(ch[-1], latent, 1))
        dec.append(nn.Conv2d(latent, ch[-1], 1))
        for i in reversed(range(1, depth)):
            dec.append(_block(ch[i + 1], ch[i], down=False))
        dec.append(nn.ConvTranspose2d(ch[1], in_channels, 4, 2, 1))
        self.decoder = nn.Sequential(*dec)
        self.depth = depth

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = video.shape[0]
        x = rearrange(video, "b c t h w -> (b t) c h w") * 2 - 1
        z = self.encoder(x)
        rec = torch.tanh(self.decoder(z)) * 0.5 + 0.5
        emb = rearrange(z.mean(dim=(-2, -1)), "(b t) d -> b t d", b=b)
        return rearrange(rec, "(b t) c h w -> b c t h w", b=b), emb
