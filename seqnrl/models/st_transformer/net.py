"""Spatiotemporal transformer normative encoder (plain torch, no Lightning).

Two backbones behind one interface (tokens ``(B, T', N, D)``, ``N = 1`` for per-frame tokens):

* ``factorised``: tubelet embedding + divided space-time attention blocks (TimeSformer-style)
  with an MAE-style light decoder that fills mask tokens back in;
* ``frame_cnn``: the Ultrasound Video Transformer design, a convolutional encoder per frame,
  a transformer across time on the frame vectors, and a convolutional decoder per frame.

Two self-supervised objectives, both predicting pixels:

* ``masked``: masked tubelet reconstruction with *tube* masks (the same spatial patches are
  hidden in every frame), loss on hidden pixels only;
* ``future``: future-frame prediction, causal temporal attention; the output at tubelet
  ``t`` predicts tubelet ``t + 1`` (with ``residual``: the change from tubelet ``t``, so
  copying the last frame is free and the error is what the motion of normal scenes does not
  explain).

Supervised heads on the shared encoder: ejection fraction from pooled tokens and a per-frame
ED/ES regression signal (UVT).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn

from seqnrl.nn.attention import FactorisedBlock, TransformerBlock
from seqnrl.nn.frame_cnn import FrameDecoder, FrameEncoder
from seqnrl.nn.posenc import PosKind, SpaceTimePosition
from seqnrl.nn.tubelet import (
    TubeletEmbed,
    complementary_tube_masks,
    mask_to_pixels,
    to_hw,
    unpatchify,
)

EF_CENTER, EF_SCALE = 55.0, 10.0  # % : the EF head regresses (EF - 55) / 10
Backbone = Literal["factorised", "frame_cnn"]
Objective = Literal["masked", "future"]


def _check_size(video: torch.Tensor, size: tuple[int, int]) -> None:
    """Frames must have the size the model was built for (a transposed ``W x H`` frame has
    the same number of patches and would otherwise pass silently with scrambled positions)."""
    if tuple(video.shape[-2:]) != size:
        h, w = video.shape[-2:]
        raise ValueError(f"frames are {h}x{w} (HxW) but the model was built for {size[0]}x{size[1]}")


def _visible_index(mask: torch.Tensor) -> torch.Tensor:
    """Indices ``(B, Nv)`` of the visible (False) patches of tube masks ``(B, N)``, ascending."""
    n_vis = (~mask).sum(dim=1)
    if not bool((n_vis == n_vis[0]).all()):
        raise ValueError("every mask of a batch must hide the same number of patches")
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    return order[:, : int(n_vis[0])]


class FactorisedBackbone(nn.Module):
    """Tubelet embedding, divided space-time encoder on the visible tokens, light decoder.
    ``image_size``: ``int`` (square) or ``(H, W)``; the patch grid is ``(H / p, W / p)``."""

    def __init__(
        self,
        in_channels: int,
        image_size: int | Sequence[int],
        max_frames: int,
        patch_size: int,
        tubelet_size: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
        pos_encoding: PosKind,
        decoder_dim: int,
        decoder_depth: int,
    ):
        super().__init__()
        self.in_channels, self.patch_size, self.tubelet_size = in_channels, patch_size, tubelet_size
        self.embed = TubeletEmbed(in_channels, dim, patch_size, tubelet_size)
        self.image_size = to_hw(image_size)
        self.grid = self.embed.grid(*self.image_size)
        t_tokens = max_frames // tubelet_size
        self.pos = SpaceTimePosition(self.grid, t_tokens, dim, pos_encoding)
        self.blocks = nn.ModuleList(
            FactorisedBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.dec_in = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(decoder_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.dec_pos = SpaceTimePosition(self.grid, t_tokens, decoder_dim, pos_encoding)
        dec_heads = max(1, min(heads, decoder_dim // 16))
        self.dec_blocks = nn.ModuleList(
            FactorisedBlock(decoder_dim, dec_heads, mlp_ratio, dropout)
            for _ in range(decoder_depth)
        )
        self.dec_norm = nn.LayerNorm(decoder_dim)
        self.head = nn.Linear(decoder_dim, tubelet_size * patch_size**2 * in_channels)

    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def encode(
        self, video: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        _check_size(video, self.image_size)
        x = self.pos(self.embed(video))
        if mask is not None:
            idx = _visible_index(mask)
            x = torch.gather(x, 2, repeat(idx, "b n -> b t n d", t=x.shape[1], d=x.shape[-1]))
        for blk in self.blocks:
            x = blk(x, causal=causal)
        return self.norm(x)

    def decode(
        self, tokens: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        x = self.dec_in(tokens)
        if mask is not None:
            b, t = x.shape[:2]
            full = repeat(self.mask_token, "d -> b t n d", b=b, t=t, n=self.n_patches).to(x.dtype)
            idx = repeat(_visible_index(mask), "b n -> b t n d", t=t, d=x.shape[-1])
            x = full.scatter(2, idx, x)
        x = self.dec_pos(x)
        for blk in self.dec_blocks:
            x = blk(x, causal=causal)
        patches = self.head(self.dec_norm(x))
        return unpatchify(patches, self.patch_size, self.tubelet_size, self.grid, self.in_channels)


class FrameCNNBackbone(nn.Module):
    """Per-frame CNN encoder, temporal transformer on frame vectors, per-frame CNN decoder.
    Masked patches are blanked in pixel space (set to zero) before the frame encoder.
    ``image_size``: ``int`` (square) or ``(H, W)``."""

    def __init__(
        self,
        in_channels: int,
        image_size: int | Sequence[int],
        max_frames: int,
        patch_size: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
        pos_encoding: PosKind,
        cnn_width: int,
        cnn_depth: int,
    ):
        super().__init__()
        self.in_channels, self.patch_size, self.tubelet_size = in_channels, patch_size, 1
        self.image_size = h, w = to_hw(image_size)
        if h % patch_size or w % patch_size:
            raise ValueError(f"image_size {h}x{w} (HxW) is not divisible by patch_size {patch_size}")
        self.grid = (h // patch_size, w // patch_size)
        self.encoder = FrameEncoder(in_channels, self.image_size, cnn_width, cnn_depth, dim)
        self.pos = SpaceTimePosition((1, 1), max_frames, dim, pos_encoding)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.decoder = FrameDecoder(in_channels, self.image_size, cnn_width, cnn_depth, dim)

    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def encode(
        self, video: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        _check_size(video, self.image_size)
        if mask is not None:
            keep = 1.0 - mask_to_pixels(mask, self.grid, self.patch_size, video.shape[2]).to(video)
            video = video * keep
        x = rearrange(self.encoder(video), "b t d -> b t 1 d")
        x = rearrange(self.pos(x), "b t 1 d -> b t d")
        for blk in self.blocks:
            x = blk(x, causal=causal)
        return rearrange(self.norm(x), "b t d -> b t 1 d")

    def decode(
        self, tokens: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        return self.decoder(rearrange(tokens, "b t 1 d -> b t d"))


class STTransformerNet(nn.Module):
    """Normative spatiotemporal encoder with a self-supervised pixel objective and supervised
    EF / ED-ES heads.

    Args:
        in_channels: video channels.
        image_size: frame size, ``int`` (square) or ``(H, W)`` (e.g. ``(64, 96)`` for the
            3:2 frames of UCSD Ped2); the space positions and the patch grid are made for it.
        max_frames: longest clip (the learned time positions are made for it).
        backbone: ``factorised`` (tubelets + divided space-time attention) or ``frame_cnn``
            (per-frame CNN + temporal transformer, the UVT design).
        objective: ``masked`` (tube-masked reconstruction) or ``future`` (next-frame prediction).
        patch_size: spatial patch of the tubelets and of the tube masks.
        tubelet_size: frames per tubelet (factorised backbone only).
        dim, depth, heads, mlp_ratio, dropout: encoder transformer.
        pos_encoding: ``learned`` or ``sinusoidal`` space and time positions.
        decoder_dim, decoder_depth: factorised MAE decoder.
        cnn_width, cnn_depth: frame CNN (``frame_cnn`` backbone).
        mask_ratio: share of patches hidden by the training tube masks.
        eval_masks: number of complementary deterministic masks used to score.
        residual: ``future`` objective only: the decoder predicts the change from the current
            tubelet to the next (prediction = current frames + output), not the frames.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int | Sequence[int] = 64,
        max_frames: int = 16,
        backbone: Backbone = "factorised",
        objective: Objective = "masked",
        patch_size: int = 8,
        tubelet_size: int = 1,
        dim: int = 96,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pos_encoding: PosKind = "learned",
        decoder_dim: int = 64,
        decoder_depth: int = 1,
        cnn_width: int = 16,
        cnn_depth: int = 3,
        mask_ratio: float = 0.75,
        eval_masks: int = 4,
        residual: bool = False,
    ):
        super().__init__()
        if residual and objective != "future":
            raise ValueError("residual prediction needs the future objective")
        self.backbone_kind, self.objective, self.residual = backbone, objective, bool(residual)
        self.mask_ratio, self.dim = mask_ratio, dim
        # what both backbones take; each adds its own stage settings
        shared = dict(
            in_channels=in_channels,
            image_size=image_size,
            max_frames=max_frames,
            patch_size=patch_size,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            pos_encoding=pos_encoding,
        )
        if backbone == "factorised":
            self.backbone: FactorisedBackbone | FrameCNNBackbone = FactorisedBackbone(
                **shared, tubelet_size=tubelet_size, decoder_dim=decoder_dim, decoder_depth=decoder_depth
            )
        elif backbone == "frame_cnn":
            self.backbone = FrameCNNBackbone(**shared, cnn_width=cnn_width, cnn_depth=cnn_depth)
        else:
            raise ValueError(f"unknown backbone {backbone!r}")
        self.tubelet_size = self.backbone.tubelet_size
        self.register_buffer(
            "eval_mask_set",
            complementary_tube_masks(self.backbone.n_patches, eval_masks),
            persistent=False,
        )
        self.ef_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))
        self.edes_head = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1)
        )

    # -- shapes ---------------------------------------------------------------------------
    @property
    def causal(self) -> bool:
        return self.objective == "future"

    @property
    def n_patches(self) -> int:
        return self.backbone.n_patches

    def pixel_mask(self, mask: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Tube mask ``(B, N)`` to pixels ``(B, 1, T, H, W)``."""
        return mask_to_pixels(mask, self.backbone.grid, self.backbone.patch_size, n_frames)

    # -- objectives -----------------------------------------------------------------------
    def forward_masked(
        self, video: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction ``(B, C, T, H, W)`` of a video seen through tube masks ``(B, N)``
        (True = hidden) and the encoder tokens of the visible part."""
        tokens = self.backbone.encode(video, mask)
        return self.backbone.decode(tokens, mask), tokens

    def forward_future(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-tubelet prediction: output ``pred`` ``(B, C, T, H, W)`` where
        ``pred[:, :, t]`` for ``t >= tubelet_size`` is predicted from frames before its
        tubelet only; the first tubelet (no past) is zero. Also returns the causal tokens."""
        tokens = self.backbone.encode(video, causal=True)
        pred = self.backbone.decode(tokens, causal=True)
        if self.residual:  # frame t + k = frame t + predicted change
            pred = pred + video
        k = self.tubelet_size
        return F.pad(pred[:, :, :-k], (0, 0, 0, 0, k, 0)), tokens

    def forward(
        self, video: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.objective == "future":
            return self.forward_future(video)
        if mask is None:
            raise ValueError("the masked objective needs a tube mask")
        return self.forward_masked(video, mask)

    # -- embeddings and heads -------------------------------------------------------------
    def _merge_views(self, views: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Tokens of the whole video from the encodings of the complementary masked views:
        every patch token is taken from the one view where that patch is visible (factorised),
        or the per-frame tokens of the views are averaged (frame CNN)."""
        if isinstance(self.backbone, FactorisedBackbone):
            tok0 = views[0][0]
            b, t, _, d = tok0.shape
            full = tok0.new_zeros(b, t, self.n_patches, d)
            for tok, mask in views:
                idx = repeat(_visible_index(mask), "b n -> b t n d", t=t, d=d)
                full = full.scatter(2, idx, tok)
            return full
        return torch.stack([tok for tok, _ in views]).mean(dim=0)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Deterministic tokens ``(B, T', N, D)`` of a whole video. ``future``: the causal
        encoder on every frame. ``masked``: assembled from the encoder's views through the
        fixed complementary tube masks, so each token is computed as in training (the
        encoder only ever sees ``1 - mask_ratio`` of the patches)."""
        if self.objective == "future":
            return self.backbone.encode(video, causal=True)
        b = video.shape[0]
        views = []
        for m in self.eval_mask_set:
            mask = repeat(m, "n -> b n", b=b)
            views.append((self.backbone.encode(video, mask), mask))
        return self._merge_views(views)

    def analyse(self, video: torch.Tensor, pool: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic squared pixel errors ``(B, C, T, H, W)`` and tokens (as :meth:`encode`)
        in one set of passes.

        ``masked``: every pixel's error is averaged over the fixed complementary tube masks
        that hide it (each is hidden by ``eval_masks - 1`` of them). ``future``: next-frame
        prediction error; the first tubelet has no past and takes the error of the first
        predicted one.

        ``pool > 1`` compares ``pool x pool`` average-pooled prediction and frame (the error
        of local mean intensity: uncorrelated speckle averages out) and returns the error map
        at full size (each pooled cell repeated)."""

        def sq_err(pred: torch.Tensor) -> torch.Tensor:
            if pool == 1:
                return (pred - video) ** 2
            k = (1, pool, pool)
            e = (F.avg_pool3d(pred, k) - F.avg_pool3d(video, k)) ** 2
            return e.repeat_interleave(pool, dim=-2).repeat_interleave(pool, dim=-1)

        if self.objective == "future":
            pred, tokens = self.forward_future(video)
            err = sq_err(pred)
            k = self.tubelet_size
            return torch.cat((err[:, :, k : 2 * k], err[:, :, k:]), dim=2), tokens
        b, t = video.shape[0], video.shape[2]
        num = torch.zeros_like(video)
        den = torch.zeros_like(video[:, :1])
        views = []
        for m in self.eval_mask_set:
            mask = repeat(m, "n -> b n", b=b)
            tokens = self.backbone.encode(video, mask)
            rec = self.backbone.decode(tokens, mask)
            pm = self.pixel_mask(mask, t).to(video)
            num = num + sq_err(rec) * pm
            den = den + pm
            views.append((tokens, mask))
        return num / den.clamp(min=1), self._merge_views(views)

    def frame_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-frame embeddings ``(B, T, D)``: tokens averaged over space, repeated over the
        frames of each tubelet."""
        e = reduce(tokens, "b t n d -> b t d", "mean")
        return repeat(e, "b t d -> b (t k) d", k=self.tubelet_size)

    def ef(self, tokens: torch.Tensor) -> torch.Tensor:
        """Ejection fraction in % ``(B,)`` from tokens pooled over space and time (the head
        regresses the standardised value ``(EF - 55) / 10``)."""
        pooled = reduce(tokens, "b t n d -> b d", "mean")
        return EF_CENTER + EF_SCALE * rearrange(self.ef_head(pooled), "b 1 -> b")

    def edes(self, tokens: torch.Tensor) -> torch.Tensor:
        """ED/ES regression signal ``(B, T)`` (+1 at ED, -1 at ES)."""
        return rearrange(self.edes_head(self.frame_embeddings(tokens)), "b t 1 -> b t")
