"""Network of the motion prior: a grey frame (plus its pixel coordinates) -> the expected
flow magnitude of each cell and its spread."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqnrl.nn.posenc import coordinate_channels


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(4, cout), nn.GELU()
    )


class MotionPriorNet(nn.Module):
    """Fully convolutional: ``(N, C, H, W)`` frames -> ``(N, 2, H / cell, W / cell)``: the
    expected cell-mean flow magnitude (>= 0) and its standard deviation (>= ``min_std``).

    Two coordinate channels let it learn what each place of a fixed camera's view usually
    does; the convolutions let it learn what the things seen there usually do (a person
    walks at a walker's speed wherever it is).
    """

    def __init__(self, in_channels: int = 1, width: int = 32, cell: int = 12, min_std: float = 0.05):
        super().__init__()
        self.cell, self.min_std = cell, min_std
        w = width
        self.body = nn.Sequential(
            _block(in_channels + 2, w // 2, 1),
            _block(w // 2, w, 2),
            _block(w, w, 1),
            _block(w, 2 * w, 2),
            _block(2 * w, 2 * w, 1),
        )
        self.context = nn.Sequential(_block(2 * w, 2 * w, 1), _block(2 * w, 2 * w, 1))
        self.head = nn.Conv2d(2 * w, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        f = self.body(coordinate_channels(x))
        f = F.adaptive_avg_pool2d(f, (h // self.cell, w // self.cell))
        out = self.head(self.context(f))
        mean = F.softplus(out[:, 0])
        std = F.softplus(out[:, 1]) + self.min_std
        return mean, std
