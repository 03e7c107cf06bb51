"""Transformer blocks: multi-head self-attention (``scaled_dot_product_attention``),
a pre-norm block over sequences and a factorised space-time block over ``(B, T, N, D)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention over ``(B, L, D)``; ``causal`` lets position ``i`` attend to
    positions ``<= i`` only."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class MLP(nn.Sequential):
    def __init__(self, dim: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        hidden = int(dim * mlp_ratio)
        super().__init__(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block over ``(B, L, D)``."""

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, dropout)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=causal)
        return x + self.mlp(self.norm2(x))


class FactorisedBlock(nn.Module):
    """Divided space-time attention over tokens ``(B, T, N, D)``: spatial attention among the
    ``N`` tokens of each frame, then temporal attention of each spatial position across the
    ``T`` frames (``causal``: frame ``t`` sees frames ``<= t`` only), then an MLP."""

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm_s, self.attn_s = nn.LayerNorm(dim), Attention(dim, heads, dropout)
        self.norm_t, self.attn_t = nn.LayerNorm(dim), Attention(dim, heads, dropout)
        self.norm_m, self.mlp = nn.LayerNorm(dim), MLP(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, t = x.shape[:2]
        s = rearrange(x, "b t n d -> (b t) n d")
        s = s + self.attn_s(self.norm_s(s))
        tt = rearrange(s, "(b t) n d -> (b n) t d", b=b, t=t)
        tt = tt + self.attn_t(self.norm_t(tt), causal=causal)
        x = rearrange(tt, "(b n) t d -> b t n d", b=b)
        return x + self.mlp(self.norm_m(x))
