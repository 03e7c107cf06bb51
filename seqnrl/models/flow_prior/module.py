"""Lightning module of the motion prior: a normative model of how much things move where.

From normal video it learns, for every cell of the view, the flow magnitude to expect *given
what the frame shows there* (mean and spread, Gaussian likelihood). A frame is anomalous
when something moves faster than the model expects of it: score = the largest one-sided
excess ``(observed - expected) / (spread + std_floor)`` over cells. Slower than expected is
not an anomaly (people stop; a bicycle among walkers does not).

Motion is explicit in the input: dense optical flow (OpenCV Farneback, see
:mod:`seqnrl.scoring.optical_flow`) is computed inside the model from the frames it is
given, so training, ``seqnrl score`` and the benchmarks see one input pipeline. The network
sees one grey frame (not two: from two frames it could measure the motion instead of
expecting it).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from seqnrl import batch as B
from seqnrl.models.base import NormativeModule
from seqnrl.models.flow_prior.net import MotionPriorNet
from seqnrl.scoring.optical_flow import CellFlowCache, grey_at_size


class FlowPriorModel(NormativeModule):
    """Appearance-conditioned motion prior (see the module docstring).

    Args:
        in_channels: channels of the input frames (grey is used: colour is averaged).
        image_size: ``(H, W)`` the model works at; other inputs are resized to it (flow is
            measured in pixels per frame at this size).
        cell: side of the square cells, pixels at ``image_size``.
        width: channels of the network's first stage.
        std_floor: added to the expected spread in the score (pixels per frame), so cells
            that never move do not turn sensor noise into alarms.
        topk: the frame score is the mean of this many largest cell excesses (1 = maximum).
    """

    score_settings = ("std_floor", "topk")

    def __init__(
        self,
        in_channels: int = 1,
        image_size: tuple[int, int] = (120, 180),
        cell: int = 12,
        width: int = 32,
        std_floor: float = 0.25,
        topk: int = 1,
        lr: float = 2e-3,
        smooth_sigma: float = 2.0,
        **kwargs: Any,
    ):
        super().__init__(lr=lr, smooth_sigma=smooth_sigma, **kwargs)
        self.save_hyperparameters(ignore=["input_spec"])
        self.net = MotionPriorNet(in_channels=1, width=width, cell=cell)
        self.flow_cache = CellFlowCache()  # not state: a pure function of the frames

    def _inputs(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grey frames ``(B*T, 1, H, W)`` at the model's size and the observed cell-mean flow
        magnitude ``(B*T, H / cell, W / cell)``."""
        v = grey_at_size(video, tuple(self.hparams.image_size))  # (B, 1, T, H, W)
        mag = self.flow_cache.batch(v, self.hparams.cell)  # (B, T, h, w)
        frames = rearrange(v, "b c t h w -> (b t) c h w")
        return frames.to(self.dtype), rearrange(mag, "b t h w -> (b t) h w").to(self.dtype)

    def cell_excess(self, video: torch.Tensor) -> torch.Tensor:
        """One-sided motion excess per frame and cell ``(B, T, h, w)``."""
        frames, observed = self._inputs(video)
        mean, std = self.net(frames)
        z = (observed - mean) / (std + self.hparams.std_floor)
        return rearrange(z, "(b t) h w -> b t h w", b=video.shape[0])

    def losses(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        frames, observed = self._inputs(batch[B.VIDEO])
        mean, std = self.net(frames)
        nll = torch.log(std) + 0.5 * ((observed - mean) / std) ** 2
        return {"loss": nll.mean(), "abs_err": (observed - mean).abs().mean()}

    def score_frames(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        z = self.cell_excess(batch[B.VIDEO]).flatten(2)  # (B, T, cells)
        k = max(1, min(int(self.hparams.topk), z.shape[-1]))
        return {"score": z.topk(k, dim=-1).values.mean(-1)}

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        return self.warmup_cosine(opt, warmup_steps=20)
