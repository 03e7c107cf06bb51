"""The conditional video denoiser: a factorised 3D UNet with EchoDiffusion-style conditioning.

- the diffusion step is embedded (sinusoidal + MLP);
- a scalar condition (normalised ejection fraction) is embedded the same way and *added* to
  the step embedding; unknown (NaN) or dropped values use a learned null embedding;
- a reference frame (the clip's first frame) is repeated over time and concatenated to the
  noisy input channel-wise at every step, with one more channel saying whether it is
  present (dropped references are zeros with flag 0);
- optionally (``feature_cond_dim > 0``, off by default, which leaves the parameter set
  unchanged) a per-clip feature vector is projected by an MLP and added to the embedding,
  with its own learned null embedding (DiADM-style diversity-aware conditioning).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import repeat
from torch import nn

from seqnrl.nn.timestep import ScalarConditionEmbedding, TimestepEmbedding
from seqnrl.nn.unet3d import UNet3D


class FeatureConditionEmbedding(nn.Module):
    """A per-clip feature vector ``(B, D)`` -> ``(B, dim)`` (Linear-SiLU-Linear).

    Rows with a non-finite value, or where ``drop`` is true (classifier-free-guidance
    dropout, or the unconditional branch at sampling), get a learned *null* embedding, as
    :class:`~seqnrl.nn.timestep.ScalarConditionEmbedding` does for scalars.
    """

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.in_dim = int(in_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, feature: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        feature = feature.float()
        if feature.ndim != 2 or feature.shape[1] != self.in_dim:
            raise ValueError(f"feature must be (B, {self.in_dim}), got {tuple(feature.shape)}")
        unknown = ~torch.isfinite(feature).all(dim=1)
        if drop is not None:
            unknown = unknown | drop.bool().to(feature.device)
        emb = self.mlp(torch.where(unknown[:, None], torch.zeros_like(feature), feature))
        return torch.where(unknown[:, None], self.null.to(emb.dtype).expand_as(emb), emb)


class VideoDiffusionNet(nn.Module):
    """``forward(x_t (B, C, T, H, W), t (B,), ef=(B,), ref=(B, C, H, W), feature=(B, D))
    -> (B, C, T, H, W)``.

    Args:
        channels: channels of the diffused signal (image channels, or latent channels).
        emb_dim: size of the step/condition embedding.
        condition_on_ef: embed a scalar condition (``ef``, already normalised).
        condition_on_reference: concatenate a reference frame (+ presence flag).
        feature_cond_dim: size of a per-clip feature condition (0 = none).
        base_channels, channel_mults, num_res_blocks, attn_levels, temporal_conv, heads,
        dim_head, dropout, patch_size: see :class:`~seqnrl.nn.unet3d.UNet3D`.
    """

    def __init__(
        self,
        channels: int = 1,
        emb_dim: int = 128,
        condition_on_ef: bool = True,
        condition_on_reference: bool = True,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attn_levels: Sequence[int] = (2,),
        temporal_conv: bool = True,
        heads: int = 4,
        dim_head: int = 32,
        dropout: float = 0.0,
        patch_size: int = 2,
        feature_cond_dim: int = 0,
    ):
        super().__init__()
        self.channels = channels
        self.condition_on_reference = condition_on_reference
        self.time_embed = TimestepEmbedding(emb_dim)
        self.ef_embed = ScalarConditionEmbedding(emb_dim) if condition_on_ef else None
        self.feature_embed = (
            FeatureConditionEmbedding(feature_cond_dim, emb_dim) if feature_cond_dim > 0 else None
        )
        cin = channels + (channels + 1 if condition_on_reference else 0)
        self.unet = UNet3D(
            cin,
            channels,
            emb_dim,
            base_channels=base_channels,
            channel_mults=channel_mults,
            num_res_blocks=num_res_blocks,
            attn_levels=attn_levels,
            temporal_conv=temporal_conv,
            heads=heads,
            dim_head=dim_head,
            dropout=dropout,
            patch_size=patch_size,
        )

    @property
    def spatial_multiple(self) -> int:
        return self.unet.spatial_multiple

    def embedding(
        self,
        t: torch.Tensor,
        ef: torch.Tensor | None,
        drop_ef: torch.Tensor | None,
        feature: torch.Tensor | None = None,
        drop_feature: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = self.time_embed(t.float())
        if self.ef_embed is not None:
            if ef is None:
                ef = torch.full((t.shape[0],), float("nan"), device=t.device)
            emb = emb + self.ef_embed(ef.to(t.device), drop_ef)
        if self.feature_embed is not None:
            if feature is None:
                feature = torch.full((t.shape[0], self.feature_embed.in_dim), float("nan"))
            emb = emb + self.feature_embed(feature.to(t.device), drop_feature)
        elif feature is not None:
            raise ValueError("a feature was given to a network built with feature_cond_dim=0")
        return emb

    def reference_channels(
        self, x: torch.Tensor, ref: torch.Tensor | None, drop_ref: torch.Tensor | None
    ) -> torch.Tensor:
        """``(B, C + 1, T, H, W)``: the reference frame over time and its presence flag."""
        b, _, t, h, w = x.shape
        if ref is None:
            return x.new_zeros(b, self.channels + 1, t, h, w)
        present = torch.ones(b, device=x.device, dtype=x.dtype)
        if drop_ref is not None:
            present = present * (~drop_ref.bool()).to(x.dtype)
        ref = ref.to(x) * present.view(b, 1, 1, 1)
        flag = repeat(present, "b -> b 1 t h w", t=t, h=h, w=w)
        return torch.cat([repeat(ref, "b c h w -> b c t h w", t=t), flag], dim=1)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        ef: torch.Tensor | None = None,
        ref: torch.Tensor | None = None,
        drop_ef: torch.Tensor | None = None,
        drop_ref: torch.Tensor | None = None,
        feature: torch.Tensor | None = None,
        drop_feature: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = self.embedding(t, ef, drop_ef, feature, drop_feature)
        x = x_t
        if self.condition_on_reference:
            x = torch.cat([x_t, self.reference_channels(x_t, ref, drop_ref)], dim=1)
        return self.unet(x, emb)
