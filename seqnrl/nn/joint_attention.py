"""Masked factorised attention over joint tokens ``(B, T, K, D)`` (frames x joints).

:mod:`seqnrl.nn.attention` has the unmasked blocks of the video transformer; keypoint
sequences need a *key mask* (missing joints must not be attended to), so this module adds
:class:`MaskedAttention` (``scaled_dot_product_attention`` with a boolean mask) and
:class:`JointSpaceTimeBlock`: spatial attention among the joints of a frame, then temporal
attention of each joint across frames (optionally causal), then an MLP (the MLP of
:mod:`seqnrl.nn.attention`). A query always sees itself, so a token whose keys are all
masked still gets a finite output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from seqnrl.nn.attention import MLP


class MaskedAttention(nn.Module):
    """Multi-head self-attention over ``(B, L, D)`` with a key mask ``(B, L)`` (True = may be
    attended to) and optional causal order."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        n = x.shape[1]
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        allowed = None
        if key_mask is not None or causal:
            eye = torch.eye(n, dtype=torch.bool, device=x.device)
            allowed = torch.ones(n, n, dtype=torch.bool, device=x.device)
            if causal:
                allowed = allowed.tril()
            allowed = repeat(allowed, "i j -> b i j", b=x.shape[0])
            if key_mask is not None:
                allowed = allowed & key_mask[:, None, :]
            allowed = (allowed | eye)[:, None]  # (B, 1, L, L): a query always sees itself
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class JointSpaceTimeBlock(nn.Module):
    """Pre-norm factorised block over joint tokens ``(B, T, K, D)`` with a validity mask
    ``(B, T, K)``: spatial attention within each frame, temporal attention per joint
    (``causal``: frame ``t`` sees frames ``<= t``), MLP."""

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        self.norm_s, self.attn_s = nn.LayerNorm(dim), MaskedAttention(dim, heads, dropout)
        self.norm_t, self.attn_t = nn.LayerNorm(dim), MaskedAttention(dim, heads, dropout)
        self.norm_m, self.mlp = nn.LayerNorm(dim), MLP(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        b, t = x.shape[:2]
        s = rearrange(x, "b t k d -> (b t) k d")
        ms = None if valid is None else rearrange(valid, "b t k -> (b t) k")
        s = s + self.attn_s(self.norm_s(s), ms)
        tt = rearrange(s, "(b t) k d -> (b k) t d", b=b, t=t)
        mt = None if valid is None else rearrange(valid, "b t k -> (b k) t")
        tt = tt + self.attn_t(self.norm_t(tt), mt, causal=causal)
        x = rearrange(tt, "(b k) t d -> b t k d", b=b)
        return x + self.mlp(self.norm_m(x))
