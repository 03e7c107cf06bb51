"""Causal temporal convolution network of the kinematic prior."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class CausalTCN(nn.Module):
    """Residual stack of causal dilated convolutions (kernel 3) over ``(B, T, F)``
    features; for every frame ``t`` it predicts the mean and spread of frame ``t + 1``'s
    features from frames ``<= t``. The receptive field is ``1 + 2 * sum(dilations)`` frames.
    """

    def __init__(self, n_features: int, width: int = 64, dilations: Sequence[int] = (1, 2, 4, 8, 16)):
        super().__init__()
        self.dilations = tuple(int(d) for d in dilations)
        self.inp = nn.Conv1d(n_features, width, 1)
        self.convs = nn.ModuleList(nn.Conv1d(width, width, 3, dilation=d) for d in self.dilations)
        # per-frame normalisation (over channels only): a norm over time would let the
        # statistics of later frames into earlier frames' outputs
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in self.dilations)
        self.out = nn.Conv1d(width, 2 * n_features, 1)

    @property
    def receptive_field(self) -> int:
        return 1 + 2 * sum(self.dilations)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.inp(rearrange(x, "b t f -> b f t"))
        for conv, norm, d in zip(self.convs, self.norms, self.dilations):
            y = conv(F.pad(h, (2 * d, 0)))
            h = h + F.silu(rearrange(norm(rearrange(y, "b f t -> b t f")), "b t f -> b f t"))
        mean, raw = rearrange(self.out(h), "b (two f) t -> two b t f", two=2)
        return mean, F.softplus(raw) + 1e-2
