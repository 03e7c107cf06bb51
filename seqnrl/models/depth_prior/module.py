"""Lightning module of the depth prior: a normative model of what lies below the pleura.

In a normal lung the picture below the pleural line is made by the lines above it: A-lines
(horizontal reverberations of the pleura at multiples of its depth) fading into the dark,
so the upper part of the view predicts the lower part. B-lines (vertical comet tails that
reach the bottom), consolidated or fluid-filled lung and "white lung" put echo where a
normal lung has none. The model learns, from normal clips only, the grey level to expect at
every pixel of the lower part of the view *given the upper part* (mean and spread, Gaussian
likelihood); a frame is anomalous where the lower part is brighter than expected:

    excess = max(0, (observed - expected) / spread)   for every pixel of the lower part

(darker than expected, e.g. a shadow behind a rib, is not a sign of disease); the frame score
pools it: its mean (``pooling="mean"``), or the mean of the ``top_columns`` columns with the
largest mean excess (``pooling="columns"``: B-lines are vertical; what ``configs/lus.yaml``
uses, chosen on validation pseudo-anomalies). Expected
grey levels follow the frame's own gain (they are predicted from its upper part), which is
what lets one threshold hold across probes and settings.

The view (:mod:`seqnrl.models.depth_prior.view`) is cut inside the model from the frames it
is given, so training, ``seqnrl score`` and the benchmarks feed it the same input. Frames
are scored one by one (no look-ahead).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from seqnrl import batch as B
from seqnrl.models.base import NormativeModule, sample_seeds, step_salt
from seqnrl.models.depth_prior.net import DepthPriorNet
from seqnrl.models.depth_prior.view import lung_view

POOLINGS = ("mean", "columns")


class DepthPriorModel(NormativeModule):
    """Depth prior for lung ultrasound (see the module docstring).

    Args:
        in_channels: channels of the input frames (grey is used: colour is averaged).
        view_size: side of the square view the network works at (divisible by 8).
        visible: share of the view's height (from the top) the network sees; it predicts the rest.
        width: channels of the network's first stage.
        pooling: ``"mean"``: the frame score is the mean excess over the lower part;
            ``"columns"``: the mean of the ``top_columns`` columns with the largest mean excess
            (for narrow vertical artefacts).
        top_columns: columns kept by ``"columns"`` pooling.
    """

    score_settings = ("pooling", "top_columns")

    def __init__(
        self,
        in_channels: int = 1,
        view_size: int = 64,
        visible: float = 0.4,
        width: int = 16,
        pooling: str = "mean",
        top_columns: int = 6,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"depth prior pooling must be one of {POOLINGS}, got {pooling!r}")
        if not 0.0 < visible < 1.0:
            raise ValueError(f"depth prior 'visible' must be between 0 and 1, got {visible}")
        self.save_hyperparameters(ignore=["input_spec"])
        self.net = DepthPriorNet(size=view_size, width=width)

    @property
    def cut(self) -> int:
        """First row of the view the network predicts (rows above it are its input)."""
        return int(self.hparams.visible * self.hparams.view_size)

    def _views(self, video: torch.Tensor) -> torch.Tensor:
        """``(B*T, 1, S, S)`` lung views of every frame."""
        return rearrange(lung_view(video, self.hparams.view_size), "b t c h w -> (b t) c h w").to(
            self.dtype
        )

    def predict_lower(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Observed, expected and spread of the lower part of ``views`` (each ``(N, 1, S - cut, S)``)."""
        k = self.cut
        upper = views.clone()
        upper[..., k:, :] = 0
        mean, std = self.net(upper)
        return views[..., k:, :], mean[..., k:, :], std[..., k:, :]

    def excess(self, video: torch.Tensor) -> torch.Tensor:
        """One-sided excess of every pixel of the lower part, ``(B, T, S - cut, S)``."""
        obs, mean, std = self.predict_lower(self._views(video))
        z = ((obs - mean) / std).clamp_min(0)
        return rearrange(z, "(b t) 1 h w -> b t h w", b=video.shape[0])

    def losses(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        video = batch[B.VIDEO]
        views = self._views(video)
        if self.training:  # left-right mirror images are as normal as the originals
            t = video.shape[2]
            seeds = sample_seeds(batch, *step_salt(self), "mirror")
            flip = (
                [s % 2 == 1 for s in seeds]
                if seeds
                else [i % 2 == 1 for i in range(video.shape[0])]
            )
            mask = torch.tensor(flip, device=views.device).repeat_interleave(t)
            views = torch.where(mask[:, None, None, None], views.flip(-1), views)
        obs, mean, std = self.predict_lower(views)
        nll = torch.log(std) + 0.5 * ((obs - mean) / std) ** 2
        return {"loss": nll.mean(), "abs_err": (obs - mean).abs().mean()}

    def score_frames(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        z = self.excess(batch[B.VIDEO])  # (B, T, h, w)
        if self.hparams.pooling == "mean":
            return {"score": z.mean((-2, -1))}
        cols = z.mean(-2)
        k = max(1, min(int(self.hparams.top_columns), cols.shape[-1]))
        return {"score": cols.topk(k, dim=-1).values.mean(-1)}

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        return self.warmup_cosine(opt, warmup_steps=20)
