"""Lightning module of the motion normative model (spatiotemporal transformer on keypoints).

Training (normal motion only): random joint tokens are hidden (``mask_ratio``) and the loss
is ``recon_weight * masked-joint error + future_weight * next-frame error`` (mean Euclidean
distance in clip-normalised units, valid keypoints only). The default encoder is causal in
time (frame ``t`` sees frames ``<= t``), which future prediction needs; ``causal=False,
future_weight=0`` gives masked-joint modelling with bidirectional temporal attention.

Scoring: ``eval_masks`` complementary hiding patterns hide every token once (masked-joint
distance); one more pass with nothing hidden gives the future-prediction distance (the
prediction made at ``t - 1`` for ``t``) and the joint tokens, whose mean distance to their
``embed_k`` nearest normal tokens *of the same joint* (a memory bank) is the embedding
distance. Each per-token distance is divided by its mean on normal clips at the same clip
position and joint (buffer ``ref_error``), giving ratios ``r = d / ref + 0.01``, smoothed
along time per joint (``ratio_smooth``). The log root-mean-square ratio over the valid joints
of a frame (a few joints far off dominate it) is standardised with its mean and std on
normal clips (buffer ``frame_stats``): ``z_rec``, ``z_fut``, ``z_emb``.

Frame score ``= recon_weight |z_rec| + future_weight |z_fut| + embed_weight max(z_emb, 0)``.
The error terms are two-sided (a typicality test, Nalisnick et al. 2019): motion far easier
to predict than normal walking (a frozen pose, which a predictor extrapolates perfectly) is
as atypical as motion that is harder (tremor); ``typicality="upper"`` counts larger errors
only. The embedding term is one-sided (being very close to normal tokens is normal).

Left/right asymmetry channel (``asymmetry_weight``, 0 = off): for every pair of joints whose
names mirror each other (``l_knee``/``r_knee``, ``LeftKnee``/``RightKnee``, see
:func:`descriptors.mirror_pairs`), the log ratio of their movement amplitudes (windowed
variance around the frame centroid, ``asymmetry_window`` frames;
:func:`descriptors.limb_asymmetry_torch`) is standardised per clip position and pair with its
mean and std on the same normal clips as the reference (buffer ``asym_ref``); the frame
statistic ``log RMS`` of these z-scores over the pairs is standardised again (buffer
``asym_stats``) into ``z_asym``, and ``asymmetry_weight * max(z_asym - asymmetry_margin, 0)``
is added to the frame score: only asymmetry beyond the normal range counts, so the channel
adds (almost) nothing to normal frames and does not dilute the other terms. Gait is
left/right symmetric, so a limp (one leg's excursion cut) is a large, sustained deviation of
this channel that the per-token errors see only weakly (a shortened stride is as easy to
predict as a normal one). The channel needs no training; in ``contrib_<joint>`` its term is
shared by the joints of the pairs in proportion to the pair's squared z-score (half to
each side). Defaults (weight 2, window 16 frames, margin 2) were chosen on the validation
split of the synthetic walking benchmark; it is a gait prior: set ``asymmetry_weight=0`` for
motion that is not expected to be left/right symmetric. Per-frame signals: ``z_asym`` and
``asym_term`` (what the channel adds to the score).

Interpretability: ``contrib_<joint>`` is each joint's share of the frame score (a term is
shared in proportion to the joints' ratios when errors are larger than usual, to their
inverse when smaller); contributions add up to the score. Missing joints contribute nothing;
a frame with no valid joint scores 0 (typical). Other per-frame signals (averaged over
windows like the score): ``recon_ratio``, ``future_ratio``, ``embed_ratio`` (mean ratios over
the valid joints, 1 = as usual), ``z_rec``, ``z_fut``, ``z_emb`` and ``speed`` (mean joint
speed, clip-normalised units per second). Per-video descriptors (cadence, variability,
asymmetry, each joint's share of the score in the worst frames):
:meth:`MotionTransformerModel.describe`.

The bank, the reference and the frame statistics are buffers (they travel in the
checkpoint), refitted from a uniform sample of training clips (bank from half of them,
reference and statistics from the other half) before every validation, and before testing or
predicting when training has moved on since. Under DDP the samples of all processes are
merged first, so every process fits the same buffers on the clips one process would keep.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from seqnrl import batch as B
from seqnrl.data.keypoints import keypoint_mask
from seqnrl.errors import ConfigError, KeypointError
from seqnrl.models.base import (
    NormativeModule,
    all_gather_objects,
    sample_generators,
    sample_seeds,
    step_salt,
    world_size,
)
from seqnrl.models.motion import descriptors as D
from seqnrl.models.motion.net import MotionTransformerNet, normalise_clip, partition_masks

log = logging.getLogger(__name__)

MASK_SEED = 4321
COMPONENTS = ("rec", "fut", "emb")
RATIO_NAMES = {"rec": "recon_ratio", "fut": "future_ratio", "emb": "embed_ratio"}
RATIO_FLOOR = 0.01


def smooth_time(v: torch.Tensor, m: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked Gaussian smoothing of ``v`` ``(B, T, K)`` along ``T`` (``sigma`` frames; 0 = none).
    Returns the smoothed values (where ``m`` has a neighbour) and the new mask."""
    if sigma <= 0:
        return v, m
    half = max(1, int(round(3 * sigma)))
    x = torch.arange(-half, half + 1, device=v.device, dtype=v.dtype)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    mf = m.to(v.dtype)
    b, t, k = v.shape
    kernel = w.view(1, 1, -1)
    num = F.conv1d(rearrange(v * mf, "b t k -> (b k) 1 t"), kernel, padding=half)
    den = F.conv1d(rearrange(mf, "b t k -> (b k) 1 t"), kernel, padding=half)
    num = rearrange(num, "(b k) 1 t -> b t k", b=b)
    den = rearrange(den, "(b k) 1 t -> b t k", b=b)
    ok = den > 1e-6
    return torch.where(ok, num / den.clamp_min(1e-6), torch.ones_like(v)), ok


class MotionTransformerModel(NormativeModule):
    """Motion normative model.

    Args:
        n_joints: keypoints per frame.
        coord_dim: 2 (image) or 3 (world) coordinates.
        joint_names: names for the ``contrib_<name>`` signals (default ``j00``, ``j01``, ...).
        dim, depth, heads, mlp_ratio, dropout, causal, max_len: see :class:`MotionTransformerNet`.
        mask_ratio: share of joint tokens hidden in training.
        recon_weight, future_weight: weights of the two objectives, in the loss and the score.
        embed_weight: weight of the token-embedding kNN distance in the score.
        typicality: ``two_sided`` (default) or ``upper`` standardised prediction errors.
        ratio_smooth: Gaussian smoothing (frames) of each joint's error ratios before the
            frame statistic (sustained deviations stand out of per-frame noise; 0 = none).
        embed_k: nearest neighbours for the embedding distance.
        bank_size: normal tokens kept per joint (buffer ``(n_joints, bank_size, dim)``).
        eval_masks: complementary hiding patterns used for scoring (``1 / mask_ratio`` hides
            the training share in each).
        normalise: ``clip`` (centre + RMS scale per clip) or ``none``.
        stat_clips: training clips kept (reservoir) to refit the bank and the reference.
        warmup_steps: linear learning-rate warm-up, then cosine decay to 10 % of ``lr`` over
            the run (``trainer.estimated_stepping_batches``).
        lr, weight_decay, smooth_sigma, target_fpr, video_top_fraction: see the base class.
        asymmetry_weight: weight of the left/right asymmetry channel in the score (0 = off;
            no effect without mirrored joint names).
        asymmetry_window: Gaussian window (sigma, frames) of the movement amplitudes it compares.
        asymmetry_margin: only ``z_asym`` beyond this many normal standard deviations counts.
    """

    def __init__(
        self,
        n_joints: int = 16,
        coord_dim: int = 2,
        joint_names: Sequence[str] | None = None,
        dim: int = 64,
        depth: int = 3,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        causal: bool = True,
        max_len: int = 256,
        mask_ratio: float = 0.25,
        recon_weight: float = 1.0,
        future_weight: float = 1.0,
        embed_weight: float = 1.0,
        typicality: Literal["two_sided", "upper"] = "two_sided",
        ratio_smooth: float = 1.5,
        embed_k: int = 5,
        bank_size: int = 512,
        eval_masks: int = 4,
        normalise: Literal["clip", "none"] = "clip",
        stat_clips: int = 64,
        warmup_steps: int = 50,
        lr: float = 2e-3,
        asymmetry_weight: float = 2.0,
        asymmetry_window: float = 16.0,
        asymmetry_margin: float = 2.0,
        **kwargs: Any,
    ):
        super().__init__(lr=lr, **kwargs)
        self.save_hyperparameters(ignore=["input_spec"])
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if future_weight > 0 and not causal:
            raise ConfigError(
                "future_weight > 0 needs causal=True (with bidirectional temporal attention the "
                "tokens of frame t see frame t + 1, so its prediction would be copied)"
            )
        if joint_names is not None and len(joint_names) != n_joints:
            raise ValueError(f"{len(joint_names)} joint_names for {n_joints} joints")
        self.joint_names = list(joint_names) if joint_names else [f"j{i:02d}" for i in range(n_joints)]
        self.net = MotionTransformerNet(n_joints, coord_dim, dim, depth, heads, mlp_ratio, dropout, causal, max_len)
        # mean distance (0 reconstruction, 1 future, 2 embedding) per clip position and joint
        self.register_buffer("ref_error", torch.ones(3, max_len, n_joints))
        self.register_buffer("ref_fitted", torch.tensor(False))
        # mean and std of the frame-level mean log-ratio on normal clips, per component
        self.register_buffer("frame_stats", torch.tensor([[0.0, 1.0]] * 3))
        self.register_buffer("bank", torch.zeros(n_joints, bank_size, dim))
        self.register_buffer("bank_count", torch.zeros(n_joints, dtype=torch.long))
        # asymmetry channel: mean/std per clip position and mirrored pair, frame-statistic mean/std
        self.mirror_pairs = D.mirror_pairs(self.joint_names)
        n_pairs = len(self.mirror_pairs)
        self.register_buffer("asym_ref", torch.stack([torch.zeros(max_len, n_pairs), torch.ones(max_len, n_pairs)]))
        self.register_buffer("asym_stats", torch.tensor([0.0, 1.0]))
        self.register_buffer("asym_fitted", torch.tensor(False))
        # kept training clips: (key, clip), the stat_clips smallest keys seen (sorted)
        self._reservoir: list[tuple[int, torch.Tensor]] = []
        self._dirty = False
        self._res_gen = torch.Generator().manual_seed(0)

    # -- inputs -----------------------------------------------------------------------------
    def prepare(self, batch: B.Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised keypoints, validity ``(B, T, K)`` and per-clip scale ``(B,)``.

        Raises :class:`KeypointError` (naming the video) when a clip has no valid keypoint or
        its shape does not fit the model."""
        kp = batch.get(B.KEYPOINTS)
        if kp is None:
            raise KeypointError("the batch has no 'keypoints' (the motion model needs keypoint clips)")
        ids = list(batch.get(B.VIDEO_ID) or [""] * len(kp))
        if kp.ndim != 4 or kp.shape[-1] != self.hparams.coord_dim or kp.shape[2] != self.hparams.n_joints:
            raise KeypointError(
                f"keypoints must be (B, T, {self.hparams.n_joints}, {self.hparams.coord_dim}), got {tuple(kp.shape)}",
                ids[0] or None,
            )
        valid = keypoint_mask(kp)
        empty = ~valid.flatten(1).any(1)
        if bool(empty.any()):
            i = int(empty.nonzero()[0, 0])
            raise KeypointError(
                f"every keypoint is missing (NaN/inf) in all {kp.shape[1]} frames of the clip", ids[i] or None
            )
        if self.hparams.normalise == "clip":
            x, _, scale = normalise_clip(kp, valid)
        else:
            x = torch.where(valid.unsqueeze(-1), kp, torch.zeros_like(kp))
            scale = torch.ones(kp.shape[0], 1, 1, 1, device=kp.device, dtype=kp.dtype)
        return x, valid, scale.flatten()

    @staticmethod
    def _future_errors(out: dict[str, torch.Tensor], x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance ``(B, T, K)`` of the prediction made at ``t - 1`` for ``t``, and its mask."""
        d = torch.zeros(valid.shape, device=x.device, dtype=x.dtype)
        m = torch.zeros_like(valid)
        d[:, 1:] = (out["future"][:, :-1] - x[:, 1:]).norm(dim=-1)
        m[:, 1:] = valid[:, 1:] & valid[:, :-1]
        return d, m

    # -- training ---------------------------------------------------------------------------
    def losses(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        """Loss terms of a batch: means over its clips of each clip's mean error, so that
        DDP's average over processes is the loss of the whole global batch. Training masks
        are drawn per clip from its identity and the step (:func:`sample_seeds`), validation
        masks per clip from a fixed seed: neither depends on the batch a clip lands in."""
        x, valid, _ = self.prepare(batch)
        salt = step_salt(self) if self.training else (MASK_SEED,)
        gens = sample_generators(batch, *salt)
        if gens is not None:
            shape = valid.shape[1:]
            hide = torch.stack([torch.rand(shape, generator=g) for g in gens]).to(x.device) < self.hparams.mask_ratio
        elif self.training:
            hide = torch.rand(valid.shape, device=x.device) < self.hparams.mask_ratio
        else:  # deterministic validation loss
            g = torch.Generator().manual_seed(MASK_SEED)
            hide = (torch.rand(valid.shape, generator=g) < self.hparams.mask_ratio).to(x.device)
        if self.training:
            self._remember(batch[B.KEYPOINTS], sample_seeds(batch, *salt, "reservoir"))
        out = self.net(x, valid, hide)
        rec_d, rec_m = (out["rec"] - x).norm(dim=-1), hide & valid
        rec = self._clip_mean(rec_d, rec_m)
        terms = {"loss": self.hparams.recon_weight * rec, "recon": rec.detach()}
        if self.uses_future:
            fut_d, fut_m = self._future_errors(out, x, valid)
            fut = self._clip_mean(fut_d, fut_m)
            terms["loss"] = terms["loss"] + self.hparams.future_weight * fut
            terms["future"] = fut.detach()
        return terms

    @staticmethod
    def _clip_mean(d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Mean over clips of the masked mean of ``d`` ``(B, T, K)`` within each clip."""
        per_clip = (d * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
        return per_clip.mean()

    @property
    def uses_future(self) -> bool:
        return self.hparams.future_weight > 0

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        return self.warmup_cosine(opt, self.hparams.warmup_steps)

    def _remember(self, kp: torch.Tensor, keys: list[int] | None = None) -> None:
        """Uniform sample of the training clips seen (all epochs) for the bank and the
        reference: every clip gets a random key, the ``stat_clips`` smallest keys are kept
        (bottom-k sampling). ``keys`` come from the clips' identities (:func:`sample_seeds`),
        so the kept set does not depend on the order clips arrive in or on how they are
        split across processes: the union of the processes' samples, cut to the smallest
        keys, is the single-process sample (:meth:`_merged_reservoir`)."""
        clips = kp.detach().cpu()
        if keys is None:
            keys = [int(torch.randint(2**62, (1,), generator=self._res_gen)) for _ in range(len(clips))]
        self._reservoir = self._bottom_k([*self._reservoir, *zip(keys, clips)])
        self._dirty = True

    def _bottom_k(self, items: list[tuple[int, torch.Tensor]]) -> list[tuple[int, torch.Tensor]]:
        unique = dict(items)  # a clip gathered from several processes counts once
        return sorted(unique.items(), key=lambda kv: kv[0])[: self.hparams.stat_clips]

    def _merged_reservoir(self) -> list[torch.Tensor]:
        """The kept clips of all processes (a collective under DDP: every process calls it
        and gets the same clips, so the bank and the statistics are fitted on the same data
        everywhere and equal those of one process that saw every clip)."""
        if world_size() > 1:
            parts = all_gather_objects(self._reservoir)
            self._reservoir = self._bottom_k([kv for p in parts for kv in p])
        return [c for _, c in self._reservoir]

    # -- per-token distances --------------------------------------------------------------
    def token_distances(self, x: torch.Tensor, valid: torch.Tensor, use_bank: bool = True) -> dict[str, torch.Tensor]:
        """Raw per-token distances ``(B, T, K)`` with masks: ``rec`` / ``rec_mask`` (each token
        hidden once by the partition masks), ``fut`` / ``fut_mask``, ``emb`` / ``emb_mask``
        (kNN distance to the bank; absent with ``use_bank=False``) and the ``tokens``."""
        b, t, k = valid.shape
        rec = torch.zeros(b, t, k, device=x.device, dtype=x.dtype)
        rec_m = torch.zeros(b, t, k, dtype=torch.bool, device=x.device)
        for m in partition_masks(t, k, self.hparams.eval_masks, device=x.device):
            hide = m.expand(b, t, k)
            out = self.net(x, valid, hide)
            rm = hide & valid
            rec = torch.where(rm, (out["rec"] - x).norm(dim=-1), rec)
            rec_m |= rm
        out = self.net(x, valid, torch.zeros_like(valid))
        res = {"rec": rec, "rec_mask": rec_m, "tokens": out["tokens"], "valid": valid}
        if self.uses_future:
            res["fut"], res["fut_mask"] = self._future_errors(out, x, valid)
        if use_bank:
            res["emb"] = self.knn_distance(out["tokens"])
            res["emb_mask"] = valid & (self.bank_count > 0)
        return res

    def knn_distance(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean distance ``(B, T, K)`` of L2-normalised tokens ``(B, T, K, dim)`` to their
        ``embed_k`` nearest normal tokens of the same joint (0 where the bank is empty)."""
        z = F.normalize(tokens, dim=-1)
        out = torch.zeros(tokens.shape[:3], device=tokens.device, dtype=tokens.dtype)
        for j in range(tokens.shape[2]):
            n = int(self.bank_count[j])
            if n == 0:
                continue
            d = torch.cdist(z[:, :, j].reshape(-1, z.shape[-1]), self.bank[j, :n].to(z))
            kk = min(self.hparams.embed_k, n)
            out[:, :, j] = d.topk(kk, largest=False).values.mean(-1).reshape(tokens.shape[:2])
        return out

    # -- normal bank and reference -----------------------------------------------------------
    @torch.no_grad()
    def fit_normal(self, keypoints: torch.Tensor | Sequence[torch.Tensor] | None = None, batch_size: int = 16) -> None:
        """Refit the token bank and the reference distances ``ref_error`` from normal clips
        (default: the training reservoir): ``(N, T, K, D)`` or a list of ``(T, K, D)`` of equal
        length. The bank takes the even clips, the reference the odd ones (all of them when
        there is a single clip)."""
        clips = self._merged_reservoir() if keypoints is None else keypoints
        if len(clips) == 0:
            return
        clips = clips if isinstance(clips, torch.Tensor) else torch.stack(list(clips))
        was = self.training
        self.eval()
        bank_clips = clips[0::2]
        ref_clips = clips[1::2] if len(clips) > 1 else clips
        # bank: tokens of valid joints, a seeded random subset when there are more than fit
        per_joint: list[list[torch.Tensor]] = [[] for _ in range(self.hparams.n_joints)]
        for i in range(0, len(bank_clips), batch_size):
            x, valid, _ = self._prepare_clips(bank_clips[i : i + batch_size])
            tok = F.normalize(self.net(x, valid, torch.zeros_like(valid))["tokens"], dim=-1)
            for j in range(len(per_joint)):
                per_joint[j].append(tok[:, :, j][valid[:, :, j]].cpu())
        g = torch.Generator().manual_seed(0)
        cap = self.hparams.bank_size
        self.bank.zero_()
        for j, parts in enumerate(per_joint):
            z = torch.cat(parts) if parts else torch.zeros(0, self.bank.shape[-1])
            if len(z) > cap:
                z = z[torch.randperm(len(z), generator=g)[:cap]]
            self.bank[j, : len(z)] = z.to(self.bank)
            self.bank_count[j] = len(z)
        # reference: mean distances per (clip position, joint)
        t, k = clips.shape[1], clips.shape[2]
        s = torch.zeros(3, t, k, dtype=torch.float64)
        n = torch.zeros(3, t, k, dtype=torch.float64)
        dists = []
        for i in range(0, len(ref_clips), batch_size):
            x, valid, _ = self._prepare_clips(ref_clips[i : i + batch_size])
            d = self.token_distances(x, valid)
            dists.append(d)
            for c, key in enumerate(COMPONENTS):
                if key not in d:
                    continue
                m = d[f"{key}_mask"]
                s[c] += (d[key] * m).sum(0).double().cpu()
                n[c] += m.sum(0).double().cpu()
        self.train(was)
        mean = s / n.clamp_min(1)
        per_j = s.sum(1) / n.sum(1).clamp_min(1)  # (3, K)
        glob = s.sum((1, 2)) / n.sum((1, 2)).clamp_min(1)  # (3,)
        per_j = torch.where(n.sum(1) > 0, per_j, glob[:, None])
        mean = torch.where(n > 0, mean, per_j[:, None, :].expand_as(mean))
        ref = per_j[:, None, :].expand(3, self.hparams.max_len, k).clone()
        ref[:, :t] = mean
        self.ref_error.copy_(ref.clamp_min(1e-6).to(self.ref_error))
        # frame-level statistics of the mean log-ratio on the same clips
        frames = {c: [] for c in COMPONENTS}
        for d in dists:
            for c, (r, m) in self.ratios(d).items():
                fm, ok = self._frame_stat(r, m)
                frames[c].append(fm[ok].cpu())
        for c, key in enumerate(COMPONENTS):
            v = torch.cat(frames[key]).double() if frames[key] else torch.zeros(0)
            if v.numel() >= 2:
                self.frame_stats[c, 0] = float(v.mean())
                self.frame_stats[c, 1] = float(v.std().clamp_min(1e-3))
        self.fit_asymmetry(ref_clips, batch_size)
        self.ref_fitted.fill_(True)
        self._dirty = False

    def ratios(self, d: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-token ratios ``d / ref + 0.01`` ``(B, T, K)``, smoothed along time within each
        joint (Gaussian, ``ratio_smooth`` frames; tokens without a distance left out, e.g. the
        first frame's future error, and filled from their neighbours), and their mask (valid
        joints with a neighbouring distance)."""
        t = d["rec"].shape[1]
        ref = self.ref_error[:, :t].to(d["rec"])
        out = {}
        for c, key in enumerate(COMPONENTS):
            if key in d:
                r, m = d[key] / ref[c] + RATIO_FLOOR, d[f"{key}_mask"]
                sm, ok = smooth_time(r, m, self.hparams.ratio_smooth)
                out[key] = (sm, ok & d["valid"] if "valid" in d else ok)
        return out

    @staticmethod
    def _frame_stat(r: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log`` of the root-mean-square ratio over the masked joints of each frame
        ``(B, T)`` (a few joints far off dominate it), and which frames have any such joint."""
        cnt = m.sum(-1)
        ms = (r * r * m).sum(-1) / cnt.clamp_min(1)
        return 0.5 * torch.log(ms.clamp_min(1e-12)), cnt > 0

    def _prepare_clips(self, kp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.prepare({B.KEYPOINTS: kp.to(self.device), B.VIDEO_ID: [""] * len(kp)})

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        if self._dirty and not (self.trainer is not None and self.trainer.sanity_checking):
            self.fit_normal()

    def on_train_end(self) -> None:
        if self._dirty:
            self.fit_normal()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        if self._dirty:
            self.fit_normal()
        if not bool(self.ref_fitted):
            log.warning("normal bank/reference not fitted (no training): ratios are raw distances")

    def on_predict_epoch_start(self) -> None:
        if self._dirty:
            self.fit_normal()

    # -- scoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def score_frames(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        x, valid, _ = self.prepare(batch)
        b, t, k = valid.shape
        d = self.token_distances(x, valid)
        weights = {"rec": self.hparams.recon_weight, "fut": self.hparams.future_weight, "emb": self.hparams.embed_weight}
        two_sided = {"rec": self.hparams.typicality == "two_sided", "fut": self.hparams.typicality == "two_sided", "emb": False}
        score = torch.zeros(b, t, device=x.device, dtype=x.dtype)
        contrib = torch.zeros(b, t, k, device=x.device, dtype=x.dtype)
        out: dict[str, torch.Tensor] = {}
        for key, (r, m) in self.ratios(d).items():
            c = COMPONENTS.index(key)
            mu, sd = self.frame_stats[c, 0].to(x), self.frame_stats[c, 1].to(x)
            fs, ok = self._frame_stat(r, m)
            z = torch.where(ok, (fs - mu) / sd, torch.zeros_like(fs))
            term = z.abs() if two_sided[key] else z.clamp_min(0)
            score = score + weights[key] * term
            # joints share a frame's term by their ratio (z > 0) or inverse ratio (z < 0)
            w = torch.where((z >= 0)[..., None], r, 1.0 / r) * m
            contrib = contrib + weights[key] * term[..., None] * w / w.sum(-1, keepdim=True).clamp_min(1e-12)
            out[f"z_{key}"] = z
            out[RATIO_NAMES[key]] = torch.where(ok, ((r - RATIO_FLOOR) * m).sum(-1) / m.sum(-1).clamp_min(1), torch.ones_like(fs))
        if self.uses_asymmetry:
            score, contrib = self._add_asymmetry(x, valid, score, contrib, out)
        fps = batch.get(B.FPS)
        fps_t = fps.to(x) if isinstance(fps, torch.Tensor) else torch.full((b,), float("nan"), device=x.device)
        fps_t = torch.where(torch.isfinite(fps_t) & (fps_t > 0), fps_t, torch.ones_like(fps_t))
        out = {"score": score, **out, "speed": D.frame_speed_torch(x, valid) * fps_t[:, None]}
        for j, name in enumerate(self.joint_names):
            out[f"contrib_{name}"] = contrib[..., j]
        return out

    # -- left/right asymmetry channel --------------------------------------------------------
    @property
    def uses_asymmetry(self) -> bool:
        return self.hparams.get("asymmetry_weight", 0.0) > 0 and len(self.mirror_pairs) > 0 and bool(self.asym_fitted)

    def asymmetry(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pair log amplitude ratios ``(B, T, P)`` of prepared clips and their mask."""
        return D.limb_asymmetry_torch(x, valid, self.mirror_pairs, self.hparams.get("asymmetry_window", 16.0))

    def _asym_frame_stat(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``log RMS`` over the pairs of their standardised ratios ``(B, T)``, which frames have
        a pair, and the per-pair squared z-scores ``(B, T, P)``."""
        a, m = self.asymmetry(x, valid)
        t = a.shape[1]
        z2 = ((a - self.asym_ref[0, :t].to(a)) / self.asym_ref[1, :t].to(a)) ** 2 * m
        cnt = m.sum(-1)
        return 0.5 * torch.log(z2.sum(-1) / cnt.clamp_min(1) + 1e-6), cnt > 0, z2

    @torch.no_grad()
    def fit_asymmetry(self, clips: torch.Tensor, batch_size: int = 16) -> None:
        """Fit ``asym_ref`` (per clip position and pair) and ``asym_stats`` on normal clips
        ``(N, T, K, D)``; positions beyond ``T`` take the pooled per-pair values."""
        if not self.mirror_pairs or len(clips) == 0:
            return
        parts = [self.asymmetry(*self._prepare_clips(clips[i : i + batch_size])[:2]) for i in range(0, len(clips), batch_size)]
        a, m = torch.cat([p[0] for p in parts]).double(), torch.cat([p[1] for p in parts]).double()
        n = m.sum(0)
        mean = (a * m).sum(0) / n.clamp_min(1)
        var = ((a - mean) ** 2 * m).sum(0) / (n - 1).clamp_min(1)
        pooled_mean = (a * m).sum((0, 1)) / m.sum((0, 1)).clamp_min(1)
        pooled_sd = (((a - pooled_mean) ** 2 * m).sum((0, 1)) / (m.sum((0, 1)) - 1).clamp_min(1)).sqrt()
        sd = torch.where(n > 1, var.sqrt(), pooled_sd).clamp_min(1e-3)
        mean = torch.where(n > 0, mean, pooled_mean)
        t = a.shape[1]
        ref = torch.stack([pooled_mean.expand(self.hparams.max_len, -1), pooled_sd.clamp_min(1e-3).expand(self.hparams.max_len, -1)]).clone()
        ref[:, :t] = torch.stack([mean, sd])
        self.asym_ref.copy_(ref.to(self.asym_ref))
        fs = torch.cat([f[ok] for f, ok, _ in (self._asym_frame_stat(*self._prepare_clips(clips[i : i + batch_size])[:2]) for i in range(0, len(clips), batch_size))])
        if fs.numel() >= 2:
            self.asym_stats.copy_(torch.stack([fs.mean(), fs.std().clamp_min(1e-3)]).to(self.asym_stats))
            self.asym_fitted.fill_(True)

    def _add_asymmetry(self, x, valid, score, contrib, out):
        """Add ``asymmetry_weight * max(z_asym - asymmetry_margin, 0)`` to ``score`` ``(B, T)`` and share it among
        the joints of the pairs in ``contrib`` ``(B, T, K)``; puts ``z_asym`` and the added
        ``asym_term`` in ``out`` (``score - asym_term`` is the score without the channel)."""
        fs, ok, z2 = self._asym_frame_stat(x, valid)
        z = torch.where(ok, (fs - self.asym_stats[0].to(x)) / self.asym_stats[1].to(x), torch.zeros_like(fs))
        term = self.hparams.asymmetry_weight * (z - self.hparams.get("asymmetry_margin", 2.0)).clamp_min(0)
        share = torch.zeros_like(contrib)
        for c, (li, ri) in enumerate(self.mirror_pairs):
            share[..., li] += 0.5 * z2[..., c]
            share[..., ri] += 0.5 * z2[..., c]
        out["z_asym"], out["asym_term"] = z, term
        return score + term, contrib + term[..., None] * share / share.sum(-1, keepdim=True).clamp_min(1e-12)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the asymmetry channel: keep it off (unfitted) instead of failing
        if prefix + "ref_error" in state_dict and prefix + "asym_fitted" not in state_dict:
            state_dict[prefix + "asym_ref"] = torch.stack([torch.zeros_like(self.asym_ref[0]), torch.ones_like(self.asym_ref[1])])
            state_dict[prefix + "asym_stats"] = torch.tensor([0.0, 1.0])
            state_dict[prefix + "asym_fitted"] = torch.tensor(False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- per-video descriptors ------------------------------------------------------------
    def describe(
        self,
        keypoints: np.ndarray | torch.Tensor,
        fps: float,
        extra: dict[str, np.ndarray] | None = None,
        scores: np.ndarray | None = None,
        parents: Sequence[int] | None = None,
    ) -> dict[str, Any]:
        """Interpretable per-video summary: :func:`descriptors.motion_descriptors` of the whole
        ``(T, K, D)`` sequence, plus (given the per-frame ``extra`` signals of a scored video,
        e.g. ``VideoScores.extra``) each joint's share of the score over the highest-scoring
        frames."""
        out = D.motion_descriptors(keypoints, fps, self.joint_names, parents)
        if extra is not None:
            out["joint_contribution"] = D.contribution_summary(extra, self.joint_names, scores)
        return out
