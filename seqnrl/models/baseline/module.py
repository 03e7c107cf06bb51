"""Lightning module of the baseline frame auto-encoder: score = per-frame reconstruction error."""

from __future__ import annotations

from typing import Any

import torch
from einops import reduce

from seqnrl import batch as B
from seqnrl.models.base import NormativeModule
from seqnrl.models.baseline.net import FrameAutoEncoder


class FrameAutoEncoderModel(NormativeModule):
    """Baseline normative model: a convolutional auto-encoder applied to every frame.

    Trained on normal clips to reconstruct them; a frame's anomaly score is its mean
    squared reconstruction error. It ignores time, which is what the spatiotemporal
    models must beat.
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 16,
        depth: int = 3,
        latent: int = 32,
        lr: float = 2e-3,
        **kwargs: Any,
    ):
        super().__init__(lr=lr, **kwargs)
        self.save_hyperparameters(ignore=["input_spec"])
        self.net = FrameAutoEncoder(in_channels, width, depth, latent)

    def _errors(self, batch: B.Batch) -> torch.Tensor:
        video = batch[B.VIDEO]
        rec, _ = self.net(video)
        return reduce((rec - video) ** 2, "b c t h w -> b t", "mean")

    def losses(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        return {"loss": self._errors(batch).mean()}

    def score_frames(self, batch: B.Batch) -> torch.Tensor:
        return self._errors(batch)

    @torch.no_grad()
    def embed_frames(self, video: torch.Tensor) -> torch.Tensor:
        """Per-frame embeddings ``(B, T, D)``."""
        return self.net(video)[1]
