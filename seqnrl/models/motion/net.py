"""Spatiotemporal transformer over keypoint sequences, plain torch.

Each joint of each frame is a token: an embedding of its (clip-normalised) position and
velocity, plus a learned joint embedding and a sinusoidal time embedding. Blocks alternate
spatial attention among the joints of a frame and temporal attention of each joint across
frames (:class:`seqnrl.nn.joint_attention.JointSpaceTimeBlock`); temporal attention is
causal by default, so frame ``t`` only sees frames ``<= t``.

Two self-supervised heads share the encoder:

* masked-joint reconstruction: hidden tokens (a random share in training, a fixed
  partition at scoring time) are replaced by a learned mask token; the model predicts
  their position from the other joints of the frame and the past;
* future-pose prediction: from the tokens of frame ``t`` it predicts every joint's
  position at ``t + 1`` (as a displacement from the observed, or reconstructed, position).

Missing keypoints (NaN) are never attended to (key mask), never enter the loss and are
replaced by the mask token in the input.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from seqnrl.nn.joint_attention import JointSpaceTimeBlock
from seqnrl.nn.posenc import sinusoidal_1d


def normalise_clip(kp: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre each clip on the mean of its valid keypoints and divide by their RMS distance
    to it. ``kp`` ``(B, T, K, D)`` (NaN where missing), ``valid`` ``(B, T, K)``. Returns the
    normalised keypoints (0 where missing), centres ``(B, 1, 1, D)`` and scales ``(B, 1, 1, 1)``."""
    w = valid.unsqueeze(-1).to(kp.dtype)
    x = torch.where(valid.unsqueeze(-1), kp, torch.zeros_like(kp))
    n = w.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
    centre = x.sum(dim=(1, 2), keepdim=True) / n
    d2 = (((x - centre) ** 2).sum(-1, keepdim=True) * w).sum(dim=(1, 2), keepdim=True) / n
    scale = d2.sqrt().clamp_min(1e-6)
    return (x - centre) / scale * w, centre, scale


def partition_masks(t: int, k: int, n: int, device=None) -> torch.Tensor:
    """``(n, T, K)`` bool: ``n`` complementary hiding patterns (token ``(t, k)`` is hidden in
    pass ``(k + t) % n``), so that every token is hidden exactly once."""
    tt = torch.arange(t, device=device)[:, None]
    kk = torch.arange(k, device=device)[None, :]
    return torch.stack([((kk + tt) % n) == i for i in range(n)])


class MotionTransformerNet(nn.Module):
    """Args:
    n_joints: keypoints per frame (the joint-embedding table).
    coord_dim: 2 or 3.
    dim, depth, heads, mlp_ratio, dropout: the transformer.
    causal: causal temporal attention (needed for honest future prediction).
    max_len: longest clip (time table size).
    """

    def __init__(
        self,
        n_joints: int,
        coord_dim: int = 2,
        dim: int = 64,
        depth: int = 3,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        causal: bool = True,
        max_len: int = 256,
    ):
        super().__init__()
        self.n_joints, self.coord_dim, self.causal, self.max_len = n_joints, coord_dim, causal, max_len
        self.embed = nn.Sequential(nn.Linear(2 * coord_dim + 1, dim), nn.GELU(), nn.Linear(dim, dim))
        self.joint_emb = nn.Parameter(torch.randn(n_joints, dim) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.register_buffer("time_emb", sinusoidal_1d(max_len, dim), persistent=False)
        self.blocks = nn.ModuleList(JointSpaceTimeBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.rec_head = nn.Linear(dim, coord_dim)
        self.fut_head = nn.Linear(dim, coord_dim)
        nn.init.zeros_(self.fut_head.weight)
        nn.init.zeros_(self.fut_head.bias)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, hide: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` ``(B, T, K, D)`` normalised (finite), ``valid`` / ``hide`` ``(B, T, K)`` bool.

        Returns ``rec`` (the model's position of every token at ``t``) and ``future`` (its
        prediction of the position at ``t + 1``, made at ``t``), both ``(B, T, K, D)``.
        """
        b, t, k, _ = x.shape
        if k != self.n_joints:
            raise ValueError(f"the model was built for {self.n_joints} joints, got {k}")
        if t > self.max_len:
            raise ValueError(f"clip of {t} frames exceeds max_len {self.max_len}")
        vis = valid & ~hide
        prev_vis = torch.zeros_like(vis)
        prev_vis[:, 1:] = vis[:, :-1]
        vel_ok = vis & prev_vis
        vel = torch.zeros_like(x)
        vel[:, 1:] = x[:, 1:] - x[:, :-1]
        vel = vel * vel_ok.unsqueeze(-1)
        feats = torch.cat([x * vis.unsqueeze(-1), vel, vel_ok.unsqueeze(-1).to(x.dtype)], dim=-1)
        tok = self.embed(feats)
        tok = torch.where(vis.unsqueeze(-1), tok, self.mask_token.expand_as(tok))
        tok = tok + self.joint_emb + rearrange(self.time_emb[:t], "t d -> t 1 d")
        for blk in self.blocks:
            tok = blk(tok, valid, causal=self.causal)
        tok = self.norm(tok)
        rec = self.rec_head(tok)
        base = torch.where(vis.unsqueeze(-1), x, rec)
        return {"rec": rec, "future": base + self.fut_head(tok), "tokens": tok}
