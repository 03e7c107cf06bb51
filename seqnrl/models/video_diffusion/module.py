"""Lightning module of the conditional video diffusion model and its normative use.

Generation (EchoDiffusion-style): a factorised 3D UNet denoises clips conditioned on a
scalar (ejection fraction, normalised as ``(ef - ef_mean) / ef_std``) added to the step
embedding, and on a reference frame (the clip's first frame) concatenated channel-wise.
Each condition is dropped with its own probability in training (learned null embedding /
zero frame with a presence flag), which enables classifier-free guidance at sampling.
Longer videos than the training window come from overlapping windows (:meth:`generate_long`).

Normative use (pseudo-healthy reconstruction): trained on normal clips only, the model
pulls an input clip noised to intermediate levels (default 0.25, 0.4, 0.55 of the schedule)
back towards normality with deterministic DDIM. The per-pixel difference between input
and restored clip (both slightly blurred, to ignore speckle) is the anomaly map; a frame's
raw score per level is the mean (or top-fraction mean) of its map, and the levels are
combined as the mean of standardised scores, the per-level mean/std being fitted on normal
validation frames and kept in buffers (so they travel in the checkpoint). The starting
noise is drawn from a generator seeded with ``score_seed`` for every call, identically for
every clip of a batch: scoring is deterministic and independent of batching, and goes
through the base class' window aggregation and calibration like every other model.

Prediction type: **v-prediction** (``v = sqrt(abar) * eps - sqrt(1 - abar) * x0``, Salimans
& Ho 2022) by default. With the cosine schedule the last training step has
``abar ~ 2e-9``: an epsilon model's clean-sample estimate ``(x_t - sqrt(1-abar) eps) /
sqrt(abar)`` divides by ~5e-5 there, so the first steps of a few-step DDIM schedule (which
starts from pure noise with "trailing" spacing) are dominated by amplified epsilon errors
and clipping; v is a bounded target at every noise level, interpolating between predicting
epsilon (low noise) and x0 (high noise); v also scored better in
``scripts/bench/diffusion_pseudo_healthy.py --prediction-type {v,epsilon}`` (compare the two
with that command). Set ``prediction_type="epsilon"`` to use the other.

Diversity-aware generation (``feature_cond_dim > 0``; the DiADM idea of Dombrowski et al.,
CVPR 2025, "Image generation diversity issues and how to tame them"): the denoiser is also
conditioned on one self-supervised feature vector per clip, dropped with probability
``p_drop_feature`` in training (learned null embedding, so the same network is the
unconditional model). Features come from the batch (``feature_source="batch"``: key
``feature`` ``(B, feature_cond_dim)`` of the batch contract, e.g. normative-encoder
embeddings added by the data pipeline) or from the built-in fallback
(``feature_source="pixel_pca"``: :class:`~seqnrl.models.video_diffusion.features.PixelPCAFeatures`,
frames pooled to ``feature_pool`` squared, temporal mean and std, whitened PCA fitted on up to
``feature_fit_batches`` training batches at the start of fitting; its buffers travel in the
checkpoint). The mean feature of every training video (by ``video_id``) is collected during
training and saved in the checkpoint; :meth:`VideoDiffusionModel.sample_diverse` steps
through these training items (item ``i mod N`` -> sample ``i``) with guidance
``uncond + w * (cond(item) - uncond)``. Plain :meth:`~VideoDiffusionModel.sample` without
``feature`` is unconditional in the feature. With ``feature_cond_dim=0`` (default) nothing
is added: parameters, buffers and behaviour are those of the model without this option.

Latent mode (``latent=True``): a per-frame conv autoencoder
(:class:`~seqnrl.models.video_diffusion.latent.FrameLatentAutoEncoder`) is trained jointly
(its reconstruction loss always; the diffusion loss on detached latents after
``latent_warmup_steps``), and diffusion runs on its ``H/f x W/f`` latents.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import reduce

from seqnrl import batch as B
from seqnrl.errors import ConfigError
from seqnrl.models.base import NormativeModule
from seqnrl.models.video_diffusion import sampling as S
from seqnrl.models.video_diffusion.features import PixelPCAFeatures
from seqnrl.models.video_diffusion.latent import FrameLatentAutoEncoder
from seqnrl.models.video_diffusion.net import VideoDiffusionNet
from seqnrl.scoring.aggregate import VideoScores, smooth_scores

ITEMS_KEY = "video_diffusion_items"  # checkpoint entry: training-item ids and features


def gaussian_blur_video(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every frame of ``(B, C, T, H, W)`` (replicate padding)."""
    if sigma <= 0:
        return x
    k = max(1, int(math.ceil(3 * sigma)))
    ax = torch.arange(-k, k + 1, dtype=x.dtype, device=x.device)
    w = torch.exp(-(ax**2) / (2 * sigma**2))
    w = w / w.sum()
    b, c, t, h, wd = x.shape
    y = x.reshape(b * c * t, 1, h, wd)
    y = F.conv2d(F.pad(y, (k, k, 0, 0), mode="replicate"), w.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, k, k), mode="replicate"), w.view(1, 1, -1, 1))
    return y.reshape(b, c, t, h, wd)


class VideoDiffusionModel(NormativeModule):
    """Conditional video diffusion: generation and pseudo-healthy anomaly scoring.

    Args:
        in_channels: image channels (1 for echo).
        clip_len, image_size: default clip shape for generation (the data module's values
            are used when known).
        base_channels, channel_mults, num_res_blocks, attn_levels, temporal_conv, heads,
            dim_head, dropout, patch_size, emb_dim: network size (see
            :class:`~seqnrl.nn.unet3d.UNet3D`). Defaults (1.5 M parameters, ~9 GFLOP per
            16x64x64 step) sample a 16x64x64 clip with 25 DDIM steps in 3.8 s on one CPU
            thread (7.8 s with classifier-free guidance, which doubles the batch).
        prediction_type: ``"v_prediction"`` (default) or ``"epsilon"``.
        num_train_timesteps, beta_schedule: the diffusion schedule (cosine by default).
        condition_on_ef, condition_on_reference: which conditions the network takes.
        ef_mean, ef_std: EF normalisation (%).
        p_drop_ef, p_drop_reference: classifier-free-guidance dropout probabilities.
        guidance_scale, sample_steps: sampling defaults.
        ema_decay: exponential moving average of the weights used for sampling and
            scoring (0 = off); the decay warms up as ``min(decay, (1 + n) / (10 + n))``.
        noise_levels: pseudo-healthy noise levels (fractions of the schedule).
        recon_steps: DDIM grid size over the whole schedule used for reconstruction (a
            level of 0.4 then takes ``~0.4 * recon_steps`` steps).
        score_seed: seed of the reconstruction noise.
        score_reduce: per-frame reduction of the anomaly map: ``"mean"`` or ``"top"``
            (mean of the top ``score_top_fraction`` pixels).
        map_blur_sigma: Gaussian blur (pixels) of input and reconstruction before differencing.
        score_use_reference: condition reconstructions on the clip's first frame.
        latent, latent_channels, latent_width, latent_downsample, latent_warmup_steps,
            ae_loss_weight: latent mode.
        lr, weight_decay, smooth_sigma, target_fpr, video_top_fraction: see
            :class:`~seqnrl.models.base.NormativeModule`.
        feature_cond_dim: size of the per-clip feature condition (0 = off, the default).
        feature_source: ``"pixel_pca"`` (built-in fallback features computed from the clip)
            or ``"batch"`` (the batch's ``feature`` key).
        p_drop_feature: classifier-free-guidance dropout probability of the feature.
        feature_pool: pooled frame size of the ``pixel_pca`` features.
        feature_fit_batches: training batches used to fit the ``pixel_pca`` features.
    """

    def __init__(
        self,
        in_channels: int = 1,
        clip_len: int = 16,
        image_size: int = 64,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attn_levels: Sequence[int] = (2,),
        temporal_conv: bool = True,
        heads: int = 4,
        dim_head: int = 32,
        dropout: float = 0.0,
        patch_size: int = 2,
        emb_dim: int = 128,
        prediction_type: Literal["v_prediction", "epsilon"] = "v_prediction",
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        condition_on_ef: bool = True,
        condition_on_reference: bool = True,
        ef_mean: float = 55.0,
        ef_std: float = 12.0,
        p_drop_ef: float = 0.1,
        p_drop_reference: float = 0.1,
        guidance_scale: float = 1.0,
        sample_steps: int = 25,
        ema_decay: float = 0.999,
        noise_levels: Sequence[float] = (0.25, 0.4, 0.55),
        recon_steps: int = 10,
        score_seed: int = 0,
        score_reduce: Literal["mean", "top"] = "mean",
        score_top_fraction: float = 0.02,
        map_blur_sigma: float = 1.0,
        score_use_reference: bool = False,
        latent: bool = False,
        latent_channels: int = 4,
        latent_width: int = 32,
        latent_downsample: int = 2,
        latent_warmup_steps: int = 200,
        ae_loss_weight: float = 1.0,
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        feature_cond_dim: int = 0,
        feature_source: Literal["pixel_pca", "batch"] = "pixel_pca",
        p_drop_feature: float = 0.1,
        feature_pool: int = 8,
        feature_fit_batches: int = 64,
        **kwargs: Any,
    ):
        super().__init__(lr=lr, weight_decay=weight_decay, **kwargs)
        self.save_hyperparameters(ignore=["input_spec"])
        if feature_cond_dim < 0:
            raise ConfigError(f"feature_cond_dim must be >= 0, got {feature_cond_dim}")
        if feature_source not in ("pixel_pca", "batch"):
            raise ConfigError(
                f"feature_source must be 'pixel_pca' or 'batch', got {feature_source!r}"
            )
        feature_kw = {"feature_cond_dim": feature_cond_dim} if feature_cond_dim > 0 else {}
        self.ae = (
            FrameLatentAutoEncoder(in_channels, latent_channels, latent_width, latent_downsample)
            if latent
            else None
        )
        self.net = VideoDiffusionNet(
            channels=latent_channels if latent else in_channels,
            emb_dim=emb_dim,
            condition_on_ef=condition_on_ef,
            condition_on_reference=condition_on_reference,
            base_channels=base_channels,
            channel_mults=tuple(channel_mults),
            num_res_blocks=num_res_blocks,
            attn_levels=tuple(attn_levels),
            temporal_conv=temporal_conv,
            heads=heads,
            dim_head=dim_head,
            dropout=dropout,
            patch_size=patch_size,
            **feature_kw,
        )
        self.feature_extractor = (
            PixelPCAFeatures(in_channels, feature_cond_dim, feature_pool)
            if feature_cond_dim > 0 and feature_source == "pixel_pca"
            else None
        )
        # training items (video_id -> summed feature, count); saved in the checkpoint
        self._item_sum: dict[str, torch.Tensor] = {}
        self._item_count: dict[str, int] = {}
        self.ema = None
        if ema_decay > 0:
            self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.register_buffer("ema_updates", torch.tensor(0, dtype=torch.long))
        n_lev = len(noise_levels)
        self.register_buffer("level_mean", torch.zeros(n_lev))
        self.register_buffer("level_std", torch.ones(n_lev))
        self.register_buffer("level_fitted", torch.tensor(False))
        self.sched_config = S.scheduler_config(num_train_timesteps, beta_schedule, prediction_type)
        self.train_scheduler = S.make_scheduler("ddpm", self.sched_config)

    # -- spaces and conditions ------------------------------------------------------------
    @property
    def denoiser_net(self) -> VideoDiffusionNet:
        """The EMA weights when enabled (and trained at least once), else the live ones."""
        if self.ema is not None and int(self.ema_updates) > 0:
            return self.ema
        return self.net

    def to_model_space(self, video: torch.Tensor) -> torch.Tensor:
        """Video ``(B, C, T, H, W)`` in [0, 1] -> diffusion space (pixels in [-1, 1] or latents)."""
        if self.ae is not None:
            return self.ae.encode(video)
        return video * 2 - 1

    def from_model_space(self, x: torch.Tensor) -> torch.Tensor:
        if self.ae is not None:
            return self.ae.decode(x).clamp(0, 1)
        return ((x + 1) / 2).clamp(0, 1)

    def normalise_ef(
        self, ef: torch.Tensor | float | Sequence[float] | None, n: int
    ) -> torch.Tensor | None:
        if ef is None or not self.hparams.condition_on_ef:
            return None
        ef = torch.as_tensor(ef, dtype=torch.float32, device=self.device).reshape(-1)
        if ef.numel() == 1 and n > 1:
            ef = ef.expand(n)
        return (ef - self.hparams.ef_mean) / self.hparams.ef_std

    def _shape(self, n_frames: int | None, image_size: int | None) -> tuple[int, int, int]:
        spec = self.input_spec
        t = int(n_frames or (spec.clip_len if spec is not None else self.hparams.clip_len))
        size = image_size or (spec.image_size if spec is not None and spec.image_size else self.hparams.image_size)
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if self.ae is not None:
            h, w = h // self.ae.factor, w // self.ae.factor
        return t, h, w

    @property
    def model_channels(self) -> int:
        return self.net.channels

    # -- feature conditioning (DiADM) -----------------------------------------------------
    @property
    def feature_conditioned(self) -> bool:
        return int(self.hparams.get("feature_cond_dim", 0) or 0) > 0

    def clip_features(self, video: torch.Tensor) -> torch.Tensor:
        """Built-in features ``(B, feature_cond_dim)`` of clips ``(B, C, T, H, W)`` in [0, 1]
        (``feature_source="pixel_pca"`` only; fitted at the start of training or by
        :meth:`fit_feature_extractor`)."""
        if self.feature_extractor is None:
            raise ConfigError(
                "clip_features needs feature_cond_dim > 0 and feature_source='pixel_pca' "
                f"(got feature_cond_dim={self.hparams.get('feature_cond_dim', 0)}, "
                f"feature_source={self.hparams.get('feature_source')!r})"
            )
        return self.feature_extractor(video.to(self.device, torch.float32))

    @torch.no_grad()
    def fit_feature_extractor(self, videos: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """Fit the ``pixel_pca`` features on training clips (a tensor or a list of batches)."""
        if self.feature_extractor is None:
            raise ConfigError("fit_feature_extractor needs feature_source='pixel_pca'")
        self.feature_extractor.fit(videos if isinstance(videos, torch.Tensor) else list(videos))

    def batch_features(self, batch: B.Batch) -> torch.Tensor | None:
        """The per-clip condition ``(B, D)`` of a batch, or ``None`` when conditioning is off."""
        if not self.feature_conditioned:
            return None
        if self.hparams.feature_source == "batch":
            if B.FEATURE not in batch:
                raise ConfigError(
                    f"feature_source='batch' needs the batch key {B.FEATURE!r} "
                    f"((B, {self.hparams.feature_cond_dim}) float) from the data pipeline"
                )
            return batch[B.FEATURE].to(self.device, torch.float32)
        return self.clip_features(batch[B.VIDEO]).detach()

    def _collect_items(self, batch: B.Batch, feature: torch.Tensor) -> None:
        ids = batch.get(B.VIDEO_ID)
        if ids is None:
            return
        f = feature.detach().float().cpu()
        for vid, row in zip(ids, f):
            if vid in self._item_sum:
                self._item_sum[vid] += row
                self._item_count[vid] += 1
            else:
                self._item_sum[vid] = row.clone()
                self._item_count[vid] = 1

    def item_features(self) -> tuple[list[str], torch.Tensor]:
        """The training items seen so far: their ``video_id`` (sorted) and mean feature
        ``(N, feature_cond_dim)``."""
        ids = sorted(self._item_sum)
        d = int(self.hparams.get("feature_cond_dim", 0) or 0)
        if not ids:
            return [], torch.zeros(0, d)
        return ids, torch.stack([self._item_sum[i] / self._item_count[i] for i in ids])

    def set_item_features(self, ids: Sequence[str], features: torch.Tensor) -> None:
        """Replace the training-item features (e.g. with ones computed elsewhere)."""
        features = torch.as_tensor(features, dtype=torch.float32).cpu()
        if features.ndim != 2 or len(ids) != features.shape[0]:
            raise ValueError(
                f"need one (D,) feature per id, got {len(ids)} ids, {tuple(features.shape)}"
            )
        self._item_sum = {str(i): f.clone() for i, f in zip(ids, features)}
        self._item_count = dict.fromkeys(self._item_sum, 1)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        fx = self.feature_extractor
        if fx is None or bool(fx.fitted):
            return
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise ConfigError(
                "pixel_pca features are fitted on the data module's training clips: fit with a "
                "datamodule, or call fit_feature_extractor(videos) before training"
            )
        clips = []
        with torch.no_grad():
            for i, batch in enumerate(dm.train_dataloader()):
                if i >= int(self.hparams.feature_fit_batches):
                    break
                clips.append(batch[B.VIDEO])
        fx.fit(clips)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.feature_conditioned:
            ids, feats = self.item_features()
            checkpoint[ITEMS_KEY] = {"ids": ids, "features": feats}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        items = checkpoint.get(ITEMS_KEY)
        if items and len(items.get("ids", [])):
            self.set_item_features(items["ids"], items["features"])

    @staticmethod
    def _n_clips(n, ef, reference, feature) -> int:
        """Batch size from ``n``, else from the first condition given, else 1."""
        if n:
            return int(n)
        if ef is not None:
            return len(torch.as_tensor(ef).reshape(-1))
        if reference is not None:
            return int(reference.shape[0])
        if feature is not None and torch.as_tensor(feature).ndim == 2:
            return int(torch.as_tensor(feature).shape[0])
        return 1

    def _feature_tensor(self, feature, b: int) -> torch.Tensor | None:
        if feature is None:
            return None
        if not self.feature_conditioned:
            raise ConfigError("a feature condition was given but the model has feature_cond_dim=0")
        f = torch.as_tensor(feature, dtype=torch.float32).to(self.device)
        if f.ndim == 1:
            f = f.unsqueeze(0).expand(b, -1)
        if f.shape[0] != b:
            raise ValueError(f"feature has {f.shape[0]} rows for {b} clips")
        return f

    # -- training -------------------------------------------------------------------------
    def losses(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        video = batch[B.VIDEO]
        b = video.shape[0]
        terms: dict[str, torch.Tensor] = {}
        gen = (
            None
            if self.training
            else torch.Generator().manual_seed(int(self.hparams.score_seed) + 1)
        )
        if self.ae is not None:
            terms["ae"] = self.ae.loss(video)
            with torch.no_grad():
                x0 = self.ae.encode(video)
        else:
            x0 = video * 2 - 1
        ef = batch.get(B.EF)
        ef = self.normalise_ef(ef, b) if ef is not None else None
        ref = x0[:, :, 0] if self.hparams.condition_on_reference else None
        feature = self.batch_features(batch)
        if feature is not None and self.training:
            self._collect_items(batch, feature)
        n_t = self.train_scheduler.config.num_train_timesteps
        t = torch.randint(0, n_t, (b,), generator=gen).to(self.device)
        noise = (
            torch.randn(x0.shape, generator=gen).to(x0) if gen is not None else torch.randn_like(x0)
        )
        x_t = self.train_scheduler.add_noise(x0, noise, t)
        if self.training:
            drop_ef = torch.rand(b, device=self.device) < self.hparams.p_drop_ef
            drop_ref = torch.rand(b, device=self.device) < self.hparams.p_drop_reference
        else:
            drop_ef = drop_ref = None
        kw = {}
        if feature is not None:
            drop_f = None
            if self.training:
                drop_f = torch.rand(b, device=self.device) < self.hparams.p_drop_feature
            kw = {"feature": feature, "drop_feature": drop_f}
        out = self.net(x_t, t, ef=ef, ref=ref, drop_ef=drop_ef, drop_ref=drop_ref, **kw)
        target = S.training_target(self.train_scheduler, x0, noise, t)
        terms["diffusion"] = F.mse_loss(out, target)
        loss = terms["diffusion"]
        if self.ae is not None:
            warm = self.global_step >= self.hparams.latent_warmup_steps if self.training else True
            loss = self.hparams.ae_loss_weight * terms["ae"] + (loss if warm else 0.0 * loss)
        terms["loss"] = loss
        return terms

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.ema is None:
            return
        n = int(self.ema_updates)
        d = min(float(self.hparams.ema_decay), (1 + n) / (10 + n))
        for pe, p in zip(self.ema.parameters(), self.net.parameters()):
            pe.lerp_(p.detach(), 1 - d)
        for be, b_ in zip(self.ema.buffers(), self.net.buffers()):
            be.copy_(b_)
        self.ema_updates += 1

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.update_ema()

    # -- generation -----------------------------------------------------------------------
    def _denoiser(self, ef, ref, guidance_scale: float | None, feature=None) -> S.Denoiser:
        g = self.hparams.guidance_scale if guidance_scale is None else guidance_scale
        return S.guided_denoiser(
            self.denoiser_net, ef=ef, ref=ref, guidance_scale=g, feature=feature
        )

    def _ref_model_space(self, reference: torch.Tensor | None) -> torch.Tensor | None:
        """Reference frames ``(B, C, H, W)`` in [0, 1] -> model space ``(B, C', h, w)``."""
        if reference is None or not self.hparams.condition_on_reference:
            return None
        r = reference.to(self.device, torch.float32)
        return self.to_model_space(r.unsqueeze(2))[:, :, 0]

    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        ef: torch.Tensor | Sequence[float] | float | None = None,
        reference: torch.Tensor | None = None,
        n_frames: int | None = None,
        image_size: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        sampler: Literal["ddim", "ddpm"] = "ddim",
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        feature: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Generate clips ``(B, C, T, H, W)`` in [0, 1].

        ``ef`` in % (one per clip, or one for all), ``reference`` frames ``(B, C, H, W)`` in
        [0, 1], ``feature`` ``(B, D)`` or ``(D,)`` (models with ``feature_cond_dim > 0``;
        without it they sample unconditionally in the feature); ``B`` from ``n`` or the
        conditions. ``seed`` seeds a CPU generator unless ``generator`` is given.
        """
        b = self._n_clips(n, ef, reference, feature)
        t, h, w = self._shape(n_frames, image_size)
        gen = generator or (torch.Generator().manual_seed(int(seed)) if seed is not None else None)
        den = self._denoiser(
            self.normalise_ef(ef, b),
            self._ref_model_space(reference),
            guidance_scale,
            self._feature_tensor(feature, b),
        )
        sched = S.make_scheduler(sampler, self.sched_config)
        steps = steps or (self.hparams.sample_steps if sampler == "ddim" else 100)
        x = S.sample(
            den, (b, self.model_channels, t, h, w), sched, steps, generator=gen, device=self.device
        )
        return self.from_model_space(x)

    @torch.no_grad()
    def generate_long(
        self,
        n_frames: int,
        n: int | None = None,
        ef: torch.Tensor | Sequence[float] | float | None = None,
        reference: torch.Tensor | None = None,
        window: int | None = None,
        stride: int | None = None,
        image_size: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        sampler: Literal["ddim", "ddpm"] = "ddim",
        seed: int | None = 0,
        blend: bool = True,
        feature: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """A clip of ``n_frames`` (any length) from overlapping windows of ``window`` frames
        (default the training clip length) every ``stride`` (default ``window // 2``), each
        conditioned on the previous window's last frames (see
        :func:`~seqnrl.models.video_diffusion.sampling.generate_long`). ``feature`` as in
        :meth:`sample`."""
        b = self._n_clips(n, ef, reference, feature)
        t, h, w = self._shape(window, image_size)
        stride = stride or max(1, t // 2)
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        den = self._denoiser(
            self.normalise_ef(ef, b),
            self._ref_model_space(reference),
            guidance_scale,
            self._feature_tensor(feature, b),
        )
        sched = S.make_scheduler(sampler, self.sched_config)
        steps = steps or (self.hparams.sample_steps if sampler == "ddim" else 100)
        x = S.generate_long(
            den,
            n_frames=n_frames,
            window=t,
            stride=stride,
            frame_shape=(b, self.model_channels, h, w),
            scheduler=sched,
            num_steps=steps,
            generator=gen,
            blend=blend,
            device=self.device,
        )
        return self.from_model_space(x)

    @torch.no_grad()
    def sample_diverse(
        self,
        n: int | None = None,
        features: torch.Tensor | None = None,
        guidance_scale: float | None = None,
        n_frames: int | None = None,
        image_size: int | None = None,
        steps: int | None = None,
        sampler: Literal["ddim", "ddpm"] = "ddim",
        seed: int = 0,
        batch_size: int = 16,
    ) -> torch.Tensor:
        """Diversity-aware sampling (DiADM): sample ``i`` is conditioned on training item
        ``i mod N``'s feature, with guidance ``uncond + w * (cond - uncond)`` against the
        unconditional prediction (null feature, and no EF/reference condition).

        ``features`` ``(N, D)`` default to the training items collected during training
        (:meth:`item_features`); ``n`` defaults to ``N``. The starting noise of all ``n``
        clips is drawn at once from a generator seeded with ``seed``, so DDIM results do
        not depend on ``batch_size``. Returns ``(n, C, T, H, W)`` in [0, 1].
        """
        if not self.feature_conditioned:
            raise ConfigError("sample_diverse needs a model trained with feature_cond_dim > 0")
        if features is None:
            features = self.item_features()[1]
        features = torch.as_tensor(features, dtype=torch.float32)
        if features.ndim != 2 or features.shape[0] == 0:
            raise ConfigError(
                "no training-item features: train the model first (they are collected during "
                "training and saved in the checkpoint) or pass features=(N, D)"
            )
        n = int(n or features.shape[0])
        idx = torch.arange(n) % features.shape[0]
        t, h, w = self._shape(n_frames, image_size)
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.randn((n, self.model_channels, t, h, w), generator=gen)
        sched = S.make_scheduler(sampler, self.sched_config)
        steps = steps or (self.hparams.sample_steps if sampler == "ddim" else 100)
        out = []
        for a in range(0, n, max(1, int(batch_size))):
            sl = slice(a, min(n, a + int(batch_size)))
            f = self._feature_tensor(features[idx[sl]], len(idx[sl]))
            den = self._denoiser(None, None, guidance_scale, f)
            x = S.sample(
                den,
                shape=tuple(noise[sl].shape),
                scheduler=sched,
                num_steps=steps,
                generator=gen,
                noise=noise[sl],
                device=self.device,
            )
            out.append(self.from_model_space(x))
        return torch.cat(out)

    # -- pseudo-healthy reconstruction ----------------------------------------------------
    def _level_noise(self, shape: tuple[int, ...], seed: int | None) -> list[torch.Tensor]:
        """One noise tensor per level, shared by every clip of the batch (batch-independent)."""
        g = torch.Generator().manual_seed(int(self.hparams.score_seed if seed is None else seed))
        one = (1, *shape[1:])
        return [
            torch.randn(one, generator=g).expand(shape).to(self.device)
            for _ in self.hparams.noise_levels
        ]

    @torch.no_grad()
    def _reconstruct_model(
        self,
        x0: torch.Tensor,
        level: float,
        noise: torch.Tensor,
        ref: torch.Tensor | None,
        steps: int | None,
    ) -> torch.Tensor:
        den = self._denoiser(None, ref, 1.0)
        sched = S.make_scheduler("ddim", self.sched_config)
        return S.sample(
            den,
            tuple(x0.shape),
            sched,
            steps or self.hparams.recon_steps,
            noise=noise,
            x_start=x0,
            noise_level=level,
        )

    @torch.no_grad()
    def reconstruct(
        self,
        video: torch.Tensor,
        noise_level: float = 0.4,
        steps: int | None = None,
        seed: int | None = None,
        use_reference: bool | None = None,
    ) -> torch.Tensor:
        """Pseudo-healthy version ``(B, C, T, H, W)`` in [0, 1] of ``video``: noise it to
        ``noise_level`` (fraction of the schedule) and denoise with deterministic DDIM."""
        video = video.to(self.device, torch.float32)
        x0 = self.to_model_space(video)
        use_ref = self.hparams.score_use_reference if use_reference is None else use_reference
        ref = x0[:, :, 0] if use_ref and self.hparams.condition_on_reference else None
        g = torch.Generator().manual_seed(int(self.hparams.score_seed if seed is None else seed))
        noise = torch.randn((1, *x0.shape[1:]), generator=g).expand(x0.shape).to(self.device)
        return self.from_model_space(self._reconstruct_model(x0, noise_level, noise, ref, steps))

    @torch.no_grad()
    def error_maps(self, video: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Raw per-level difference maps ``(B, L, T, H, W)`` between the (blurred) input and
        its (blurred) pseudo-healthy reconstruction at each of ``noise_levels``. In latent
        mode the input side is the autoencoder's own reconstruction, so its errors cancel."""
        video = video.to(self.device, torch.float32)
        x0 = self.to_model_space(video)
        ref = (
            x0[:, :, 0]
            if self.hparams.score_use_reference and self.hparams.condition_on_reference
            else None
        )
        base = self.from_model_space(x0) if self.ae is not None else video
        sigma = float(self.hparams.map_blur_sigma)
        base_b = gaussian_blur_video(base, sigma)
        maps = []
        for level, noise in zip(
            self.hparams.noise_levels, self._level_noise(tuple(x0.shape), seed)
        ):
            rec = self.from_model_space(self._reconstruct_model(x0, float(level), noise, ref, None))
            maps.append(
                reduce(
                    (gaussian_blur_video(rec, sigma) - base_b).abs(), "b c t h w -> b t h w", "mean"
                )
            )
        return torch.stack(maps, dim=1)

    def _frame_reduce(self, maps: torch.Tensor) -> torch.Tensor:
        """``(B, L, T, H, W)`` -> ``(B, L, T)``."""
        flat = maps.flatten(-2)
        if self.hparams.score_reduce == "top":
            k = max(1, int(round(self.hparams.score_top_fraction * flat.shape[-1])))
            return flat.topk(k, dim=-1).values.mean(-1)
        return flat.mean(-1)

    def _standardise(self, x: torch.Tensor, level_dim: int) -> torch.Tensor:
        """Mean over levels of ``(x_l - mean_l) / std_l`` (raw mean before fitting)."""
        if not bool(self.level_fitted):
            return x.mean(level_dim)
        shape = [1] * x.ndim
        shape[level_dim] = -1
        mu = self.level_mean.to(x).view(shape)
        sd = self.level_std.to(x).view(shape)
        return ((x - mu) / sd).mean(level_dim)

    @torch.no_grad()
    def anomaly_map(self, video: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Per-pixel abnormality ``(B, 1, T, H, W)``: the levels' difference maps standardised
        with the normal per-frame statistics and averaged (so with ``score_reduce="mean"``
        a frame's spatial mean is its frame score)."""
        return self._standardise(self.error_maps(video, seed), level_dim=1).unsqueeze(1)

    @torch.no_grad()
    def score_frames(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        per_level = self._frame_reduce(self.error_maps(batch[B.VIDEO]))
        out = {"score": self._standardise(per_level, level_dim=1)}
        for i in range(per_level.shape[1]):
            out[f"err_{i}"] = per_level[:, i]
        return out

    def fit_calibration(self, results: dict[str, VideoScores]) -> None:
        """Fit the per-level statistics on normal frames, recompute the combined scores of
        ``results`` with them (in place), then fit the score calibrator as usual."""
        n_lev = len(self.hparams.noise_levels)
        keys = [f"err_{i}" for i in range(n_lev)]
        if results and all(all(k in vs.extra for k in keys) for vs in results.values()):
            pools = [
                self.normal_frames(
                    {v: dataclasses.replace(vs, scores=vs.extra[k]) for v, vs in results.items()}
                )
                for k in keys
            ]
            if all(p.size >= 2 for p in pools):
                self.level_mean.copy_(torch.tensor([float(p.mean()) for p in pools]))
                self.level_std.copy_(torch.tensor([max(float(p.std()), 1e-8) for p in pools]))
                self.level_fitted.fill_(True)
                for vs in results.values():
                    lev = torch.as_tensor(
                        np.stack([vs.extra[k] for k in keys]), dtype=torch.float32
                    )
                    combined = self._standardise(lev, level_dim=0).numpy().astype(np.float64)
                    vs.scores = smooth_scores(combined, self.hparams.smooth_sigma)
        super().fit_calibration(results)


def load_video_diffusion(path: str | Path) -> VideoDiffusionModel:
    """Load a :class:`VideoDiffusionModel` (weights, calibration, data spec) from a Lightning
    checkpoint with ``torch.load(weights_only=True)`` (see :mod:`seqnrl.models.loading`)."""
    from seqnrl.models.loading import load_model

    return load_model(path, expected=VideoDiffusionModel)
