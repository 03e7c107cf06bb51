"""Network of the depth prior: the upper part of a lung view -> the expected grey level of
every pixel below it, and its spread."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqnrl.nn.posenc import coordinate_channels


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.SiLU())


class DepthPriorNet(nn.Module):
    """A small U-Net with a fully connected bottleneck: ``(N, 1, S, S)`` view with its lower
    part blanked -> mean and standard deviation (>= ``min_std``) of every pixel, ``(N, 1, S, S)``
    each. ``S`` must be divisible by 8. Two coordinate channels tell it the depth of each pixel;
    the bottleneck lets the whole visible upper part (pleura, ribs, A-line spacing) shape the
    prediction of the whole lower part.
    """

    def __init__(
        self, size: int = 64, width: int = 16, bottleneck: int = 256, min_std: float = 0.02
    ):
        super().__init__()
        if size % 8:
            raise ValueError(f"depth prior view size must be divisible by 8, got {size}")
        c, self.min_std, self.width, self.s8 = width, min_std, width, size // 8
        self.e1, self.e2, self.e3 = _block(3, c), _block(c, 2 * c), _block(2 * c, 4 * c)
        flat = 4 * c * self.s8 * self.s8
        self.mid = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, bottleneck), nn.SiLU(), nn.Linear(bottleneck, flat)
        )
        self.d3, self.d2, self.d1 = _block(8 * c, 2 * c), _block(4 * c, c), _block(2 * c, c)
        self.out = nn.Conv2d(c, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        h1 = self.e1(coordinate_channels(x))
        h2 = self.e2(F.avg_pool2d(h1, 2))
        h3 = self.e3(F.avg_pool2d(h2, 2))
        m = self.mid(F.avg_pool2d(h3, 2)).view(n, 4 * self.width, self.s8, self.s8)
        u3 = self.d3(torch.cat([F.interpolate(m, scale_factor=2), h3], 1))
        u2 = self.d2(torch.cat([F.interpolate(u3, scale_factor=2), h2], 1))
        u1 = self.d1(torch.cat([F.interpolate(u2, scale_factor=2), h1], 1))
        o = self.out(u1)
        return o[:, :1], F.softplus(o[:, 1:]) + self.min_std
