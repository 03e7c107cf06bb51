"""Lightning module of the unsupervised shape-template pose model.

Training takes clips ``video`` ``(B, C, T, H, W)`` (no labels): from each clip it draws
``pairs_per_clip`` (target, source) frame pairs and minimises

``recon(translator(source, template(target)), target) + anchor_weight * anchor
+ boundary_weight * boundary + scale_weight * scale``

(:mod:`seqnrl.models.pose.net`). The reconstruction loss defaults to ``ms_ssim_l1``:
``0.84 * (1 - MS-SSIM) + 0.16 * L1`` (Zhao et al. 2017), the structural loss that needs no
pretrained network (the perceptual VGG loss of the paper cannot be downloaded here).

Validation logs the same loss on fixed pairs and, when the batch carries true 2D
``keypoints`` and mmpose is installed, the linear-probe accuracy (fit on the first half of
the validation videos, tested on the second half): ``val/pck@0.05``, ``val/pck@0.1``,
``val/mpjpe_bbox``. True keypoints are never used for training.

``predict_step`` returns the discovered keypoints ``(B, T, J, 2)`` in normalised image
coordinates [0, 1] for every frame (with the batch's ``video_id`` / ``frame_index``), ready
for :mod:`seqnrl.io.keypoints_json` and the motion model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from einops import rearrange

from seqnrl import batch as B
from seqnrl.data.input_spec import InputSpec
from seqnrl.errors import ConfigError
from seqnrl.metrics import pose as pose_metrics
from seqnrl.models.base import all_gather_objects, sample_generators, step_salt
from seqnrl.models.pose.net import ReconLoss, ShapeTemplateNet, reconstruction_loss
from seqnrl.models.pose.templates import ShapeTemplate, load_template

log = logging.getLogger(__name__)

VAL_PAIR_SEED = 1000  # validation pairs: the same every epoch


class PoseTemplateModel(pl.LightningModule):
    """Shape-template unsupervised pose (Schmidtke et al., CVPR 2021).

    Args:
        template: built-in template name (``adult``, ``infant``), a YAML file or a mapping
            (see :mod:`seqnrl.models.pose.templates`).
        in_channels: frame channels.
        regressor_width, regressor_depth, regressor_hidden, global_affine: part regressor.
        translator_width, translator_depth, source_heatmaps: translator UNet.
        recon_loss: ``ms_ssim_l1`` (default), ``ms_ssim``, ``ssim``, ``ssim_l1``, ``l1``, ``mse``.
        l1_alpha: weight of the structural term in the ``*_l1`` losses.
        anchor_weight, boundary_weight, boundary_margin: template losses.
        scale_weight, scale_range: the scale prior (allowed stretch of a part, ``(lo, hi)``).
        pairs_per_clip: (target, source) pairs drawn per clip and training step.
        lr, weight_decay: AdamW.
    """

    def __init__(
        self,
        template: str | dict[str, Any] = "adult",
        in_channels: int = 1,
        regressor_width: int = 16,
        regressor_depth: int = 3,
        regressor_hidden: int = 128,
        global_affine: bool = True,
        translator_width: int = 16,
        translator_depth: int = 3,
        source_heatmaps: bool = True,
        recon_loss: ReconLoss = "ms_ssim_l1",
        l1_alpha: float = 0.84,
        anchor_weight: float = 1.0,
        boundary_weight: float = 1.0,
        boundary_margin: float = 0.1,
        scale_weight: float = 1.0,
        scale_range: tuple[float, float] = (0.5, 2.0),
        pairs_per_clip: int = 2,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        input_spec: InputSpec | None = None,
    ):
        super().__init__()
        # linked from the data module by `seqnrl fit` (kept out of the plain-typed hparams)
        self.save_hyperparameters(ignore=["input_spec"])
        self.input_spec = input_spec
        if pairs_per_clip < 1:
            raise ConfigError(f"pairs_per_clip must be >= 1, got {pairs_per_clip}")
        self.template: ShapeTemplate = load_template(template)
        self.net = ShapeTemplateNet(
            template=self.template,
            in_channels=in_channels,
            regressor_width=regressor_width,
            regressor_depth=regressor_depth,
            regressor_hidden=regressor_hidden,
            global_affine=global_affine,
            translator_width=translator_width,
            translator_depth=translator_depth,
            source_heatmaps=source_heatmaps,
        )
        self._probe: list[tuple[str, np.ndarray, np.ndarray]] = []
        self._warned_probe = False

    # -- pairs and losses -----------------------------------------------------------------
    @staticmethod
    def _video(batch: B.Batch) -> torch.Tensor:
        v = batch.get(B.VIDEO)
        if v is None:
            raise ConfigError("the pose model needs batches with 'video' (e.g. SyntheticMotionDataModule(render=True))")
        return v

    def sample_pairs(
        self, video: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``pairs_per_clip`` random (target, source) frames ``(N, C, H, W)`` per clip
        (different frames of the same clip where the clip has more than one). ``generator``:
        one for the batch, or one per clip (then a clip's pairs do not depend on its batch)."""
        b, _, t = video.shape[:3]
        n = self.hparams.pairs_per_clip
        gens = generator if isinstance(generator, list) else [generator]
        if len(gens) not in (1, b):
            raise ValueError(f"{len(gens)} generators for {b} clips")
        ti, off = [], []
        for g in gens:
            m = b if len(gens) == 1 else 1
            ti.append(torch.randint(t, (m, n), generator=g))
            off.append(torch.randint(1, max(t, 2), (m, n), generator=g) if t > 1 else torch.zeros(m, n, dtype=torch.long))
        ti, off = torch.cat(ti), torch.cat(off)
        si = (ti + off) % t
        bi = torch.arange(b)[:, None].expand(b, n)
        frames = rearrange(video, "b c t h w -> b t c h w")
        return frames[bi, ti].flatten(0, 1), frames[bi, si].flatten(0, 1)

    def pair_losses(self, target: torch.Tensor, source: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(target, source)
        rec = reconstruction_loss(out["recon"], target, self.hparams.recon_loss, self.hparams.l1_alpha)
        aff = torch.cat([out["affine"], out["affine_source"]])
        anc = self.net.parts.anchor_loss(aff)
        bnd = self.net.parts.boundary_loss(aff, self.hparams.boundary_margin)
        scl = self.net.parts.scale_loss(aff, *self.hparams.scale_range)
        h = self.hparams
        loss = rec + h.anchor_weight * anc + h.boundary_weight * bnd + h.scale_weight * scl
        return {"loss": loss, "recon": rec.detach(), "anchor": anc.detach(), "boundary": bnd.detach(), "scale": scl.detach()}

    def training_step(self, batch: B.Batch, batch_idx: int) -> torch.Tensor:
        # pairs drawn per clip from its identity and the step: the same whichever process
        # and batch the clip lands in (DDP with R processes of batch B = one of batch R B)
        target, source = self.sample_pairs(self._video(batch), sample_generators(batch, *step_salt(self)))
        terms = self.pair_losses(target, source)
        bs = B.batch_size(batch)
        for k, v in terms.items():
            self.log(f"train/{k}", v, prog_bar=k == "loss", batch_size=bs)
        return terms["loss"]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # -- evaluation -----------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._probe = []

    def validation_step(self, batch: B.Batch, batch_idx: int) -> None:
        video = self._video(batch)
        g = sample_generators(batch, VAL_PAIR_SEED) or torch.Generator().manual_seed(VAL_PAIR_SEED + batch_idx)
        target, source = self.sample_pairs(video, g)
        terms = self.pair_losses(target, source)
        for k, v in terms.items():
            self.log(f"val/{k}", v, batch_size=B.batch_size(batch), sync_dist=True)
        kp_true = batch.get(B.KEYPOINTS)
        if kp_true is not None and kp_true.shape[-1] == 2:
            kp = self.predict_keypoints(video).cpu().numpy()
            valid = (batch[B.FRAME_INDEX] >= 0).cpu().numpy()
            first = batch[B.FRAME_INDEX][:, 0].tolist()
            for i, vid in enumerate(batch[B.VIDEO_ID]):
                self._probe.append((vid, kp[i][valid[i]], kp_true[i].cpu().numpy()[valid[i]], int(first[i])))

    def on_validation_epoch_end(self) -> None:
        probe, self._probe = self._probe, []
        if self.trainer is not None and self.trainer.sanity_checking:
            return
        # windows of every process, in a fixed order: each process fits the same probe
        parts = all_gather_objects(probe)
        probe = [p[:3] for p in sorted((p for part in parts for p in part), key=lambda p: (p[0], p[3]))]
        m = self.probe_metrics(probe)
        for k, v in m.items():
            self.log(f"val/{k}", v)

    def probe_metrics(self, probe: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, float]:
        """Linear probe over collected ``(video_id, discovered, true)`` frames: fit on the
        first half of the videos (sorted ids), test on the rest. Empty without mmpose."""
        vids = sorted({p[0] for p in probe})
        if len(vids) < 2:
            return {}
        if not pose_metrics.mmpose_available():
            if not self._warned_probe:
                log.warning("mmpose not installed: validation PCK not computed (%s)", pose_metrics.INSTALL_HINT)
                self._warned_probe = True
            return {}
        fit = set(vids[: len(vids) // 2])
        xs = {True: [], False: []}
        ys = {True: [], False: []}
        for vid, x, y in probe:
            xs[vid in fit].append(x)
            ys[vid in fit].append(y)
        return pose_metrics.linear_probe(
            np.concatenate(xs[True]), np.concatenate(ys[True]), np.concatenate(xs[False]), np.concatenate(ys[False])
        )

    # -- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def predict_keypoints(self, video: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Discovered keypoints ``(B, T, J, 2)`` ([0, 1] image coordinates) of ``video``
        ``(B, C, T, H, W)`` (or ``(C, T, H, W)`` -> ``(T, J, 2)``), float in [0, 1] or uint8."""
        single = video.ndim == 4
        v = video[None] if single else video
        v = v.to(self.dtype) / 255.0 if v.dtype == torch.uint8 else v.to(self.dtype)
        b = v.shape[0]
        frames = rearrange(v.to(self.device), "b c t h w -> (b t) c h w")
        was = self.training
        self.eval()
        kp = torch.cat([self.net.keypoints(frames[i : i + chunk]) for i in range(0, len(frames), chunk)])
        self.train(was)
        kp = rearrange(kp, "(b t) j d -> b t j d", b=b)
        return kp[0] if single else kp

    def predict_step(self, batch: B.Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return {
            B.VIDEO_ID: batch[B.VIDEO_ID],
            B.FRAME_INDEX: batch[B.FRAME_INDEX],
            "keypoints": self.predict_keypoints(self._video(batch)).cpu(),
        }

    @property
    def joint_names(self) -> list[str]:
        return self.template.joint_names

    @property
    def skeleton(self) -> list[tuple[int, int]]:
        return self.template.skeleton()
