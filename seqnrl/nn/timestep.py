"""Embeddings of diffusion time steps and of scalar conditions (sinusoidal features + MLP)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of ``t`` ``(B,)`` (any real values) -> ``(B, dim)``.

    Half the features are cosines, half sines, at frequencies geometrically spaced from 1 to
    ``1 / max_period`` (DDPM / ADM convention). An odd ``dim`` gets one zero feature appended.
    """
    if t.ndim != 1:
        raise ValueError(f"t must be (B,), got shape {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, device=t.device, dtype=torch.float32)
        / max(half, 1)
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    """Diffusion step ``t`` ``(B,)`` -> ``(B, dim)``: sinusoidal features, then Linear-SiLU-Linear."""

    def __init__(self, dim: int, freq_dim: int | None = None, max_period: float = 10_000.0):
        super().__init__()
        self.freq_dim = freq_dim or dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(self.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # the sinusoid is computed in float32 (or the caller's float64) and cast to the weights
        emb = sinusoidal_embedding(t, self.freq_dim, self.max_period)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class ScalarConditionEmbedding(nn.Module):
    """A normalised scalar condition (e.g. ejection fraction) ``(B,)`` -> ``(B, dim)``.

    The value (expected roughly in [-3, 3] after normalisation) is scaled by ``scale`` and
    embedded like a time step. Where the value is NaN (unknown) or ``drop`` is true
    (classifier-free-guidance dropout, or the unconditional branch at sampling) the output
    is a learned *null* embedding instead, so "no condition" is a point the model learns.
    """

    def __init__(self, dim: int, freq_dim: int = 64, scale: float = 100.0):
        super().__init__()
        self.scale = scale
        self.embed = TimestepEmbedding(dim, freq_dim, max_period=1_000.0)
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, value: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        value = value.float()
        unknown = ~torch.isfinite(value)
        if drop is not None:
            unknown = unknown | drop.bool()
        emb = self.embed(torch.where(unknown, torch.zeros_like(value), value) * self.scale)
        return torch.where(unknown[:, None], self.null.to(emb.dtype).expand_as(emb), emb)
