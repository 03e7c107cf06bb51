"""Lightning module of the spatiotemporal transformer normative model.

Per-frame anomaly score = ``error_weight * z(recon_err) + embed_weight * z(embed_dist)``:

* ``recon_err``: the error of the deterministic masked reconstruction or of the next-frame
  prediction, from the log-MSE of every patch (PSNR up to sign and scale): either the
  patch log-MSE standardised per patch position with normal training statistics, as the
  mean absolute z of the worst patches (``error_norm="position"``), or the plain log-MSE of
  the frame's worst ``error_topk`` share of patches (``error_norm="none"``);
* ``embed_dist``: distance of the frame's L2-normalised token embeddings to their ``embed_k``
  nearest neighbours in a memory bank of normal training frames, per patch position (the
  mean of the worst positions) or per frame (``embed_level``);
* ``z(.)``: standardised with the mean/std of that component on normal training frames.

The bank and the standardisation statistics are buffers (they travel in the checkpoint);
they are refreshed at the start of every validation epoch (and at the end of a training
epoch without validation) from a reservoir sample of that epoch's training clips. The base
class then calibrates the combined score on normal validation frames.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat

from seqnrl import batch as B
from seqnrl.metrics.regression import ed_es_afd, ef_metrics
from seqnrl.models.base import NormativeModule, all_gather_objects, sample_generators, step_salt
from seqnrl.models.st_transformer.net import EF_SCALE, Backbone, Objective, STTransformerNet
from seqnrl.nn.posenc import PosKind
from seqnrl.nn.tubelet import patchify, random_tube_mask

EmbedLevel = Literal["patch", "frame"]
ErrorNorm = Literal["position", "none"]

log = logging.getLogger(__name__)

EVAL_MASK_SEED = 1234  # masks of the (validation) loss: the same every call


def _dist() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class STTransformerModel(NormativeModule):
    """Spatiotemporal transformer normative model (self-supervised on normal clips) with
    optional supervised EF and ED/ES heads sharing the encoder.

    Args:
        in_channels: video channels.
        image_size: frame size the patch grid and position tables are made for: ``int``
            (square) or ``[H, W]`` (e.g. ``[64, 96]`` for UCSD Ped2's 240x360 frames).
        clip_len: frames per clip (longest sequence of the time position table).
        backbone: ``factorised`` (tubelets, divided space-time attention) or ``frame_cnn``
            (per-frame CNN + temporal transformer, the Ultrasound Video Transformer design).
        objective: ``masked`` (tube-masked tubelet reconstruction) or ``future``
            (next-frame prediction with causal temporal attention).
        future_residual: with ``future``, predict the change from the current frame (the
            prediction is the current frame plus the decoder's output): a scene that moves
            as normal scenes do is predicted well and the error measures unexpected motion
            (UCSD Ped2's cyclists and cars) rather than how hard a frame is to draw.
        patch_size, tubelet_size: tubelet shape (the tube masks use ``patch_size``).
        dim, depth, heads, mlp_ratio, dropout, pos_encoding: encoder transformer.
        decoder_dim, decoder_depth: MAE decoder of the factorised backbone.
        cnn_width, cnn_depth: frame CNN of the ``frame_cnn`` backbone.
        mask_ratio: share of patches hidden by training tube masks.
        eval_masks: complementary deterministic tube masks used for scoring
            (``1 / (1 - mask_ratio)`` hides the training ratio in each).
        error_norm: ``position``: each patch's log-MSE is standardised with the mean/std of
            normal training frames at that patch position and a frame's ``recon_err`` is the
            mean absolute z of its worst ``error_topk`` share of patches (two-sided: a patch
            far darker and smoother than usual deviates too); ``none``: the log of the mean
            squared error of the worst ``error_topk`` share of patches (PSNR up to sign/scale).
        error_topk: share of a frame's patches (the worst) that make its ``recon_err``
            (1.0 = the whole frame).
        error_pool: compare ``error_pool x error_pool`` average-pooled prediction and frame
            (1 = pixels; must divide ``patch_size``): speckle averages out, structure stays.
        error_weight, embed_weight: weights of the standardised components in the score.
            The defaults (embedding distance alone for the masked objective) are the weights
            picked on validation videos by ``scripts/bench/st_objectives.py``; the future
            objective's error gets useful with training (its config uses 0.5). ``recon_err``
            is computed and exported whatever its weight.
        embed_level: ``patch``: every patch token is compared with the bank's tokens of the
            same spatial position (the frame's ``embed_dist`` is the mean of its worst
            ``embed_topk`` share of positions; localised anomalies stand out); ``frame``: the
            L2-normalised frame embedding (tokens averaged over space) against a bank of
            frame embeddings. The ``frame_cnn`` backbone has one token per frame, so both
            are the same there.
        embed_k: nearest neighbours for the embedding distance.
        embed_topk: share of patch positions (the most distant) averaged per frame.
        bank_size: normal training frames in the bank (buffer ``(positions, bank_size, dim)``).
        bank_clips: training clips kept (reservoir sample per epoch) to refill the bank.
        ef_weight: weight of the EF regression loss, squared error in units of 10 % points
            (0 = head off).
        edes_weight: weight of the ED/ES signal regression loss (0 = head off).
        peak_distance: minimum frames between two ED (or ES) peaks of the predicted signal.
        warmup_steps: linear learning-rate warm-up, then cosine decay to 10 %.
        lr, weight_decay, smooth_sigma, target_fpr, video_top_fraction: see the base class.
    """

    #: how the two components become a score; chosen after training on validation data
    #: (:mod:`seqnrl.scoring.selection`), their statistics refreshed on each change
    score_settings = ("error_topk", "embed_topk", "error_weight", "embed_weight")

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 64,
        clip_len: int = 16,
        backbone: Backbone = "factorised",
        objective: Objective = "masked",
        future_residual: bool = False,
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
        error_norm: ErrorNorm = "position",
        error_topk: float = 0.1,
        error_pool: int = 1,
        error_weight: float = 0.0,
        embed_weight: float = 1.0,
        embed_level: EmbedLevel = "patch",
        embed_k: int = 5,
        embed_topk: float = 0.1,
        bank_size: int = 512,
        bank_clips: int = 48,
        ef_weight: float = 0.0,
        edes_weight: float = 0.0,
        peak_distance: int = 5,
        warmup_steps: int = 50,
        weight_decay: float = 0.05,
        **kwargs: Any,
    ):
        super().__init__(weight_decay=weight_decay, **kwargs)
        if not isinstance(image_size, int):  # a plain [H, W] list in hparams (YAML-safe)
            image_size = [int(v) for v in image_size]
        self.save_hyperparameters(ignore=["input_spec"])
        if not 0.0 < error_topk <= 1.0:
            raise ValueError(f"error_topk must be in (0, 1], got {error_topk}")
        if not 0.0 < embed_topk <= 1.0:
            raise ValueError(f"embed_topk must be in (0, 1], got {embed_topk}")
        if error_pool < 1 or patch_size % error_pool:
            raise ValueError(f"error_pool must divide patch_size {patch_size}, got {error_pool}")
        self.net = STTransformerNet(
            in_channels=in_channels,
            image_size=image_size,
            max_frames=clip_len,
            backbone=backbone,
            objective=objective,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            pos_encoding=pos_encoding,
            decoder_dim=decoder_dim,
            decoder_depth=decoder_depth,
            cnn_width=cnn_width,
            cnn_depth=cnn_depth,
            mask_ratio=mask_ratio,
            eval_masks=eval_masks,
            residual=future_residual,
        )
        # heads without a loss take no gradient (DDP would stop on parameters unused in the loss)
        if ef_weight == 0:
            self.net.ef_head.requires_grad_(False)
        if edes_weight == 0:
            self.net.edes_head.requires_grad_(False)
        # normal-frame memory bank and standardisation statistics: in the checkpoint
        positions = self.net.n_patches if embed_level == "patch" and backbone == "factorised" else 1
        self.register_buffer("bank", torch.zeros(positions, bank_size, dim))
        self.register_buffer("bank_count", torch.tensor(0, dtype=torch.long))
        self.register_buffer("err_pos_mean", torch.zeros(self.net.n_patches))
        self.register_buffer("err_pos_std", torch.ones(self.net.n_patches))
        self.register_buffer("err_mean", torch.tensor(0.0))
        self.register_buffer("err_std", torch.tensor(1.0))
        self.register_buffer("dist_mean", torch.tensor(0.0))
        self.register_buffer("dist_std", torch.tensor(1.0))
        self._reservoir: list[tuple[torch.Tensor, str]] = []
        self._seen = 0  # clips offered to the reservoir this epoch
        self._seen_total = 0
        self._res_gen = torch.Generator().manual_seed(0)
        self._bank_seen = -1
        self._gt: dict[str, dict[str, dict[str, Any]]] = {}

    # -- per-frame signals ----------------------------------------------------------------
    def patch_errors(self, pixel_err: torch.Tensor) -> torch.Tensor:
        """Log-MSE per patch ``(B, T, N)`` of squared pixel errors ``(B, C, T, H, W)``."""
        per_patch = reduce(
            patchify(pixel_err, self.hparams.patch_size, 1), "b t n p -> b t n", "mean"
        )
        return torch.log(per_patch + 1e-8)

    def frame_errors(self, patch_err: torch.Tensor) -> torch.Tensor:
        """Per-frame ``recon_err`` ``(B, T)`` from patch log-MSE ``(B, T, N)`` (see ``error_norm``)."""
        hp = self.hparams
        k = max(1, math.ceil(hp.error_topk * patch_err.shape[-1]))
        if hp.error_norm == "position":
            z = ((patch_err - self.err_pos_mean) / self.err_pos_std).abs()
            return z.topk(k, dim=-1).values.mean(dim=-1)
        mse = patch_err.exp()
        return torch.log(mse.topk(k, dim=-1).values.mean(dim=-1) + 1e-8)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised embeddings ``(B, T, P, D)`` compared with the bank: per patch position
        (``P = N``) or per frame (``P = 1``)."""
        if self.bank.shape[0] == 1:
            return F.normalize(self.net.frame_embeddings(tokens), dim=-1).unsqueeze(2)
        return F.normalize(
            repeat(tokens, "b t n d -> b (t k) n d", k=self.net.tubelet_size), dim=-1
        )

    def _knn(
        self, emb: torch.Tensor, bank: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-frame distances ``(B, T)`` of embeddings ``(B, T, P, D)`` to a bank
        ``(P, M, D)``: mean over the ``embed_k`` nearest entries of the same position, then
        the mean of the worst ``embed_topk`` share of positions. ``exclude`` ``(B, M)`` bool
        drops bank entries per clip (entries of the clip's own video)."""
        b, t, p, _ = emb.shape
        q = rearrange(emb, "b t p d -> p (b t) d")
        d = torch.cdist(q, bank.to(q))  # p, (b t), m
        if exclude is not None:
            ex = repeat(exclude, "b m -> 1 (b t) m", t=t)
            d = d.masked_fill(ex, float("inf"))
        k = min(self.hparams.embed_k, bank.shape[1])
        nn_d = d.topk(k, dim=-1, largest=False).values
        nn_d = torch.where(torch.isfinite(nn_d), nn_d, torch.nan).nanmean(dim=-1)
        per_pos = rearrange(nn_d, "p (b t) -> b t p", b=b)
        if p > 1 and self.hparams.embed_topk < 1.0:
            kk = max(1, math.ceil(self.hparams.embed_topk * p))
            per_pos = per_pos.topk(kk, dim=-1).values
        return per_pos.mean(dim=-1)

    def knn_distance(self, emb: torch.Tensor) -> torch.Tensor:
        """Embedding distance to normal ``(B, T)`` of embeddings ``(B, T, P, D)`` from
        :meth:`_embed` (zeros while the bank is empty)."""
        n = int(self.bank_count)
        if n == 0:
            return emb.new_zeros(emb.shape[:2])
        return self._knn(emb, self.bank[:, :n])

    def components(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """All per-frame signals of a video ``(B, C, T, H, W)``: ``score``, ``recon_err``,
        ``embed_dist`` and, with their heads on, ``edes`` and ``ef`` (broadcast over frames)."""
        pixel_err, tokens = self.net.analyse(video, self.hparams.error_pool)
        err = self.frame_errors(self.patch_errors(pixel_err))
        dist = self.knn_distance(self._embed(tokens))
        z_err = (err - self.err_mean) / self.err_std
        z_dist = (dist - self.dist_mean) / self.dist_std
        hp = self.hparams
        out = {
            "score": hp.error_weight * z_err + hp.embed_weight * z_dist,
            "recon_err": err,
            "embed_dist": dist,
        }
        if hp.edes_weight > 0:
            out["edes"] = self.net.edes(tokens)
        if hp.ef_weight > 0:
            out["ef"] = repeat(self.net.ef(tokens), "b -> b t", t=video.shape[2])
        return out

    def score_frames(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        return self.components(batch[B.VIDEO])

    @torch.no_grad()
    def embed_frames(self, video: torch.Tensor) -> torch.Tensor:
        """L2-normalised per-frame embeddings ``(B, T, D)`` of the normative encoder (tokens
        averaged over space); deterministic."""
        return F.normalize(self.net.frame_embeddings(self.net.encode(video)), dim=-1)

    @torch.no_grad()
    def predict_ef(self, video: torch.Tensor) -> torch.Tensor:
        """Ejection fraction in % ``(B,)``."""
        return self.net.ef(self.net.encode(video))

    @torch.no_grad()
    def predict_edes(self, video: torch.Tensor) -> torch.Tensor:
        """ED/ES regression signal ``(B, T)``."""
        return self.net.edes(self.net.encode(video))

    # -- objective ------------------------------------------------------------------------
    def losses(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        video = batch[B.VIDEO]
        hp = self.hparams
        if hp.objective == "masked":
            # masks drawn per clip from its identity: a DDP run draws what one process draws
            # (outside a Trainer there is no step count: training masks then come from the
            # global random stream, so repeated calls still draw new masks)
            if not self.training:
                gens = sample_generators(batch, EVAL_MASK_SEED)
            else:
                gens = sample_generators(batch, *step_salt(self)) if self._trainer is not None else None
            if gens is None:
                gen = None if self.training else torch.Generator().manual_seed(EVAL_MASK_SEED)
                mask = random_tube_mask(video.shape[0], self.net.n_patches, hp.mask_ratio, gen, video.device)
            else:
                mask = torch.cat(
                    [random_tube_mask(1, self.net.n_patches, hp.mask_ratio, g, video.device) for g in gens]
                )
            rec, tokens = self.net.forward_masked(video, mask)
            w = self.net.pixel_mask(mask, video.shape[2]).to(video)
        else:
            rec, tokens = self.net.forward_future(video)
            w = torch.ones_like(video[:, :1])
            w[:, :, : self.net.tubelet_size] = 0
        sq = (rec - video) ** 2 * w
        terms = {"recon": sq.sum() / (w.sum() * video.shape[1]).clamp(min=1)}
        loss = terms["recon"]
        if hp.ef_weight > 0:
            target = batch[B.EF].to(video)
            ok = torch.isfinite(target)
            pred = self.net.ef(tokens)
            ef_loss = (
                ((pred[ok] - target[ok]) / EF_SCALE).pow(2).mean() if ok.any() else pred.sum() * 0.0
            )
            terms["ef"] = ef_loss
            loss = loss + hp.ef_weight * ef_loss
        if hp.edes_weight > 0:
            target = batch[B.ED_ES].to(video)
            ok = torch.isfinite(target)
            pred = self.net.edes(tokens)
            edes_loss = (pred[ok] - target[ok]).pow(2).mean() if ok.any() else pred.sum() * 0.0
            terms["edes"] = edes_loss
            loss = loss + hp.edes_weight * edes_loss
        terms["loss"] = loss
        return terms

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        return self.warmup_cosine(opt, self.hparams.warmup_steps)

    # -- memory bank ----------------------------------------------------------------------
    def training_step(self, batch: B.Batch, batch_idx: int) -> torch.Tensor:
        self._remember(batch)
        return super().training_step(batch, batch_idx)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()  # per-epoch reseed of the base class
        self._seen = 0

    def _remember(self, batch: B.Batch) -> None:
        """Reservoir-sample ``bank_clips`` training clips of the epoch (CPU copies of raw
        clips, embedded with the current weights when the bank is refreshed). The first
        ``bank_clips`` clips of an epoch overwrite the slots in order, so a complete epoch
        leaves a uniform sample of that epoch, and an epoch cut short (a time budget) keeps
        the previous epoch's clips in the slots it did not reach instead of a tiny bank."""
        cap = self.hparams.bank_clips
        video = batch[B.VIDEO].detach().cpu()
        for i, vid in enumerate(batch[B.VIDEO_ID]):
            self._seen += 1
            self._seen_total += 1
            if self._seen <= cap:
                if len(self._reservoir) < self._seen:
                    self._reservoir.append((video[i], vid))
                else:
                    self._reservoir[self._seen - 1] = (video[i], vid)
            else:
                j = int(torch.randint(0, self._seen, (1,), generator=self._res_gen))
                if j < cap:
                    self._reservoir[j] = (video[i], vid)

    def reservoir(self) -> tuple[torch.Tensor, list[str]]:
        """The normal training clips ``(n, C, T, H, W)`` kept from the current/last epoch and
        their video ids."""
        if not self._reservoir:
            raise RuntimeError("no training clips kept yet (train for at least one step)")
        return torch.stack([c for c, _ in self._reservoir]), [v for _, v in self._reservoir]

    def on_score_settings_changed(self) -> None:
        """The components' standardisation depends on the top-k settings: refit it on the
        kept normal clips (validation keeps this bank)."""
        self.refresh_bank()
        self._bank_seen = self._seen_total

    @torch.no_grad()
    def refresh_bank(
        self, clips: torch.Tensor | None = None, video_ids: list[str] | None = None, chunk: int = 16
    ) -> None:
        """Refill the bank with the frame embeddings of normal ``clips`` ``(n, C, T, H, W)``
        (default: the reservoir of training clips) and fit the standardisation of both score
        components on them. The embedding distance of a frame is measured against the bank
        without frames of its own video (``video_ids``), as a new normal video would be."""
        if clips is None:
            kept = self._reservoir
            if _dist() and torch.distributed.get_world_size() > 1:
                # every process's kept clips, interleaved as one process would have met them
                parts = all_gather_objects(kept)
                kept = [p[i] for i in range(max(map(len, parts))) for p in parts if i < len(p)]
                kept = kept[: self.hparams.bank_clips]
            if not kept:
                return
            clips, video_ids = torch.stack([c for c, _ in kept]), [v for _, v in kept]
        if video_ids is None:
            video_ids = [str(i) for i in range(len(clips))]
        was_training = self.training
        self.eval()
        try:
            embs, perrs = [], []
            for s in range(0, len(clips), chunk):
                v = clips[s : s + chunk].to(self.device)
                pixel_err, tokens = self.net.analyse(v, self.hparams.error_pool)
                perrs.append(self.patch_errors(pixel_err).cpu())
                embs.append(self._embed(tokens).cpu())
            emb, perr = torch.cat(embs), torch.cat(perrs)  # (n, T, P, D), (n, T, N)
            self.err_pos_mean.copy_(perr.mean(dim=(0, 1)).to(self.err_pos_mean))
            if perr.shape[0] * perr.shape[1] > 1:
                self.err_pos_std.copy_(perr.std(dim=(0, 1)).clamp(min=1e-3).to(self.err_pos_std))
            err = self.frame_errors(perr.to(self.err_pos_mean.device)).cpu()  # (n, T)
            n, t = err.shape
            codes = {v: i for i, v in enumerate(dict.fromkeys(video_ids))}
            owner = torch.tensor([codes[v] for v in video_ids])
            frame_owner = owner.repeat_interleave(t)
            flat = rearrange(emb, "n t p d -> p (n t) d")
            cap = self.bank.shape[1]
            pick = torch.arange(n * t)
            if n * t > cap:
                pick = torch.linspace(0, n * t - 1, cap).round().long()
            bank, bank_owner = flat[:, pick], frame_owner[pick]
            # distance statistics of normal frames, each against the bank without its own video
            dists = []
            for s in range(0, n, chunk):
                ex = owner[s : s + chunk, None] == bank_owner[None, :] if len(codes) > 1 else None
                dists.append(self._knn(emb[s : s + chunk], bank, ex))
            nn_d = torch.cat(dists).flatten()
            nn_d = nn_d[torch.isfinite(nn_d)]
            self.bank.zero_()
            self.bank[:, : len(pick)] = bank.to(self.bank)
            self.bank_count.fill_(len(pick))
            self.err_mean.fill_(float(err.mean()))
            self.err_std.fill_(max(float(err.std()), 1e-6) if err.numel() > 1 else 1.0)
            if nn_d.numel() > 1:
                self.dist_mean.fill_(float(nn_d.mean()))
                self.dist_std.fill_(max(float(nn_d.std()), 1e-6))
        finally:
            self.train(was_training)
        if _dist():
            for buf in (
                self.bank,
                self.bank_count,
                self.err_pos_mean,
                self.err_pos_std,
                self.err_mean,
                self.err_std,
                self.dist_mean,
                self.dist_std,
            ):
                torch.distributed.broadcast(buf, src=0)

    def _maybe_refresh(self) -> None:
        if self.trainer is not None and self.trainer.sanity_checking:
            return
        if self._reservoir and self._bank_seen != self._seen_total:
            self.refresh_bank()
            self._bank_seen = self._seen_total

    def on_train_epoch_end(self) -> None:
        self._maybe_refresh()

    # -- evaluation: EF and ED/ES metrics ------------------------------------------------
    def _record_targets(self, split: str, batch: B.Batch) -> None:
        gt = self._gt.setdefault(split, {})
        fi = batch[B.FRAME_INDEX].cpu().numpy()
        edes = batch[B.ED_ES].float().cpu().numpy()
        ef = batch[B.EF].float().cpu().numpy()
        nf = batch[B.N_FRAMES].cpu().numpy()
        for b, vid in enumerate(batch[B.VIDEO_ID]):
            rec = gt.setdefault(vid, {"ef": float(ef[b]), "ed_es": np.full(int(nf[b]), np.nan)})
            ok = (fi[b] >= 0) & (fi[b] < len(rec["ed_es"]))
            rec["ed_es"][fi[b][ok]] = edes[b][ok]

    def validation_step(self, batch: B.Batch, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self._record_targets("val", batch)

    def test_step(self, batch: B.Batch, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self._record_targets("test", batch)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._gt["val"] = {}
        self._maybe_refresh()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._gt["test"] = {}

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer is not None and self.trainer.sanity_checking:
            return
        self._log_regression("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_regression("test")

    def regression_metrics(self, split: str) -> dict[str, float]:
        """EF MAE/RMSE/R² (per-video EF = mean of the window predictions) and ED/ES aFD
        (peaks of the per-frame averaged predicted signal) of the last evaluated epoch."""
        gt = self._gt.get(split, {})
        if _dist():
            parts: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, gt)
            gt = {k: v for p in parts for k, v in p.items()}
        res = self.last_results
        vids = [v for v in res if v in gt]
        out: dict[str, float] = {}
        if self.hparams.ef_weight > 0 and vids:
            pred = [float(np.nanmean(res[v].extra["ef"])) for v in vids if "ef" in res[v].extra]
            true = [gt[v]["ef"] for v in vids if "ef" in res[v].extra]
            out.update(ef_metrics(pred, true))
        if self.hparams.edes_weight > 0 and vids:
            have = [v for v in vids if "edes" in res[v].extra]
            out.update(
                ed_es_afd(
                    [res[v].extra["edes"] for v in have],
                    [gt[v]["ed_es"] for v in have],
                    distance=self.hparams.peak_distance,
                )
            )
        return out

    def _log_regression(self, split: str) -> None:
        m = self.regression_metrics(split)
        self.last_metrics.update(m)
        for k, v in m.items():
            if math.isfinite(v):
                self.log(f"{split}/{k}", v, sync_dist=False, rank_zero_only=True)
