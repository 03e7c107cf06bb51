"""Lightning module of the kinematic prior: a normative model of how a healthy body moves next.

From normal motion only, a causal temporal network learns, for every frame, the distribution
of the next frame's motion features (:mod:`seqnrl.models.kinematic_prior.features`: joint
positions relative to the pelvis, joint velocities, the pelvis' speed and height, in the
body's own frame) given the past ``receptive_field`` frames (about 2 s at 30 fps with the
default dilations): mean and spread per feature, Gaussian likelihood. Context over seconds
is what lets it know *what* the person is doing (walking, running, waving) before judging
*how*: a slow, stooped or shuffling version of a movement is unlikely under the normal
dynamics of that movement, whichever movement it is, so one threshold serves all of them.

Frame score = the *surprise* of the frame: the mean over features of the squared
standardised error ``((observed - predicted mean) / predicted spread) ** 2`` of the
prediction made one frame earlier (frame 0 of a window takes frame 1's value). This is the
likelihood without its ``log spread`` term: a fast, inherently less predictable activity
(running) has a larger spread everywhere, and a normal run must not look less normal than a
normal walk for that reason; the surprise asks only whether the frame is where the normal
dynamics of *this* movement put it. Training minimises the full Gaussian negative
log-likelihood. The score is causal: a frame's score depends on that frame and the frames before it only (the network
normalises each frame on its own, never over time), so it can run on a live stream.

Features are standardised with the mean and standard deviation of the normal training
sequences, fitted once when training starts (:meth:`KinematicPriorModel.fit_standardisation`)
and kept in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqnrl import batch as B
from seqnrl.data.keypoints import keypoint_mask
from seqnrl.errors import ConfigError, KeypointError
from seqnrl.models.base import NormativeModule, sample_seeds, step_salt
from seqnrl.models.kinematic_prior.features import feature_joints, motion_features, n_features
from seqnrl.models.kinematic_prior.net import CausalTCN
from seqnrl.models.motion.descriptors import mirror_pairs


class KinematicPriorModel(NormativeModule):
    """Causal kinematic prior (see the module docstring).

    Args:
        n_joints: joints per frame (3-D keypoints).
        root_joint: index of the pelvis (the joint other positions are taken relative to).
        up_axis: index of the vertical coordinate (1 for BVH's y-up).
        heading_joints: ``[left hip, right hip]`` indices that give the facing direction;
            ``None`` keeps the world frame.
        ignore_joints: joints left out of the features (e.g. a fixed world-origin joint).
        joint_names: names of the joints (for reports and mirror pairs; optional).
        width: channels of the network.
        dilations: dilations of the causal convolutions (receptive field ``1 + 2 * sum``).
        pace_weight: weight of the *pace* term in the score (0: none, no pace head). A small
            network reads the body's pose in one frame (joint positions relative to the
            pelvis, body frame) and predicts how fast the joints move in that frame (mean and
            spread of the log mean joint speed); the term is the squared standardised error
            of the observed speed. A pose held mid-stride (a freeze) or a pose moving far
            faster than such a pose does is atypical even when it is predictable from the
            frames before it, which is all the surprise asks.
        mirror: train also on left-right mirror images of the clips (half of them, seeded per
            sample): a mirrored healthy movement is a healthy movement. Needs ``joint_names``
            with left/right pairs (``Shoulder_L`` / ``Shoulder_R``, ``LeftArm`` / ``RightArm``).
    """

    def __init__(
        self,
        n_joints: int = 22,
        root_joint: int = 0,
        up_axis: int = 1,
        heading_joints: Sequence[int] | None = None,
        ignore_joints: Sequence[int] = (),
        joint_names: Sequence[str] | None = None,
        width: int = 64,
        dilations: Sequence[int] = (1, 2, 4, 8, 16),
        mirror: bool = False,
        pace_weight: float = 0.0,
        lr: float = 2e-3,
        **kwargs: Any,
    ):
        super().__init__(lr=lr, **kwargs)
        if not 0 <= root_joint < n_joints:
            raise ConfigError(f"root_joint {root_joint} is not a joint index (n_joints={n_joints})")
        if heading_joints is not None and (
            len(heading_joints) != 2 or not all(0 <= j < n_joints for j in heading_joints)
        ):
            raise ConfigError(f"heading_joints must be two joint indices below {n_joints}, got {heading_joints}")
        bad = [j for j in ignore_joints if not 0 <= j < n_joints or j == root_joint or j in (heading_joints or [])]
        if bad:
            raise ConfigError(f"ignore_joints {bad}: not joint indices, or the root / a heading joint")
        if joint_names is not None and len(joint_names) != n_joints:
            raise ConfigError(f"{len(joint_names)} joint_names for n_joints={n_joints}")
        self.mirror_perm: list[int] | None = None
        if mirror:
            pairs = mirror_pairs(joint_names or [])
            if not pairs:
                raise ConfigError("mirror: true needs joint_names with left/right pairs (e.g. Hand_L / Hand_R)")
            perm = list(range(n_joints))
            for a, b in pairs:
                perm[a], perm[b] = b, a
            self.mirror_perm = perm
        self.save_hyperparameters(ignore=["input_spec"])
        # joints whose relative position and velocity are features, in feature order
        self.feature_joints = feature_joints(n_joints, root_joint, ignore_joints)
        nf = n_features(n_joints, heading_joints is not None, len(set(ignore_joints)))
        self.net = CausalTCN(nf, width=width, dilations=dilations)
        if pace_weight < 0:
            raise ConfigError(f"pace_weight must be >= 0, got {pace_weight}")
        n_pose = 3 * len(self.feature_joints)
        self.pace_head = (
            nn.Sequential(nn.Linear(n_pose, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 2))
            if pace_weight > 0
            else None
        )
        self.register_buffer("feat_mean", torch.zeros(nf))
        self.register_buffer("feat_std", torch.ones(nf))
        self.register_buffer("standardised", torch.tensor(False))

    @property
    def receptive_field(self) -> int:
        return self.net.receptive_field

    # -- inputs -----------------------------------------------------------------------------
    def features(self, kp: torch.Tensor, video_id: str | None = None) -> torch.Tensor:
        """Raw ``(B, T, F)`` features of keypoints ``(B, T, K, 3)``; missing joints (NaN) are
        filled with the last seen position (or the next one at the start)."""
        n = self.hparams.n_joints
        if kp.ndim != 4 or kp.shape[2] != n or kp.shape[3] != 3:
            raise KeypointError(f"the kinematic prior needs keypoints (B, T, {n}, 3), got {tuple(kp.shape)}", video_id)
        valid = keypoint_mask(kp)
        if not bool(valid.all()):
            kp = _fill_missing(kp, valid, video_id)
        heading = self.hparams.heading_joints
        return motion_features(
            kp.to(self.feat_mean.dtype),
            root=self.hparams.root_joint,
            up=self.hparams.up_axis,
            heading=tuple(heading) if heading is not None else None,
            ignore=tuple(self.hparams.ignore_joints),
        )

    def standardise(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.feat_mean) / self.feat_std

    @torch.no_grad()
    def fit_standardisation(self, sequences: Sequence[torch.Tensor]) -> None:
        """Feature mean and spread over every frame of normal keypoint sequences ``(T, K, 3)``."""
        feats = torch.cat([self.features(torch.as_tensor(s)[None].to(self.feat_mean.device))[0] for s in sequences])
        self.feat_mean.copy_(feats.mean(0))
        self.feat_std.copy_(feats.std(0).clamp_min(1e-3))
        self.standardised.fill_(True)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if bool(self.standardised):
            return
        dm = getattr(self.trainer, "datamodule", None)
        ds = dm.dataset("train") if dm is not None and hasattr(dm, "dataset") else None
        if ds is None or not hasattr(ds, "sequences"):
            raise ConfigError("the kinematic prior fits its feature statistics on the data module's training sequences (MotionClipDataset)")
        self.fit_standardisation([s.keypoints for s in ds.sequences])

    # -- objective and score ----------------------------------------------------------------
    def frame_terms(self, kp: torch.Tensor, video_id: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, F)`` squared standardised errors and log spreads of each frame's features
        under the prediction from the frames before it; frame 0 takes frame 1's values."""
        return self._surprise_terms(self.features(kp, video_id))

    def _surprise_terms(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`frame_terms` of raw features ``f`` ``(B, T, F)``."""
        x = self.standardise(f)
        if x.shape[1] < 2:
            zero = torch.zeros_like(x)
            return zero, zero
        mean, std = self.net(x[:, :-1])
        z2 = ((x[:, 1:] - mean) / std) ** 2
        log_std = torch.log(std)
        return torch.cat([z2[:, :1], z2], dim=1), torch.cat([log_std[:, :1], log_std], dim=1)

    def surprise(self, kp: torch.Tensor, video_id: str | None = None) -> torch.Tensor:
        """``(B, T, F)`` per-feature surprise (squared standardised error) of every frame."""
        return self.frame_terms(kp, video_id)[0]

    def mirrored(self, kp: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """``kp`` with the clips where ``which`` ``(B,)`` is true reflected left-right: left
        and right joints swapped and one horizontal axis negated."""
        axis = next(a for a in range(3) if a != self.hparams.up_axis)
        m = kp[:, :, self.mirror_perm].clone()
        m[..., axis] = -m[..., axis]
        return torch.where(which[:, None, None, None], m, kp)

    def pace_terms(self, kp: torch.Tensor, video_id: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T)`` squared standardised error and log spread of each frame's log mean
        joint speed under the pace head's prediction from that frame's pose alone."""
        return self._pace_terms(self.features(kp, video_id))

    def _pace_terms(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`pace_terms` of raw features ``f`` ``(B, T, F)``."""
        n = len(self.feature_joints)
        speed = torch.log(f[..., 3 * n : 6 * n].unflatten(-1, (n, 3)).norm(dim=-1).mean(-1) + 1e-4)
        out = self.pace_head(self.standardise(f)[..., : 3 * n])
        mean, std = out[..., 0], F.softplus(out[..., 1]) + 0.05
        return ((speed - mean) / std) ** 2, torch.log(std)

    def losses(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        ids = batch.get(B.VIDEO_ID) or [None]
        kp = batch[B.KEYPOINTS]
        if self.training and self.mirror_perm is not None:
            seeds = sample_seeds(batch, *step_salt(self), "mirror")
            flip = [s % 2 == 1 for s in seeds] if seeds else [i % 2 == 1 for i in range(kp.shape[0])]
            kp = self.mirrored(kp, torch.tensor(flip, device=kp.device))
        f = self.features(kp, ids[0])
        z2, log_std = self._surprise_terms(f)
        nll = (log_std + 0.5 * z2).mean(-1)
        valid = (batch[B.FRAME_INDEX] >= 0).to(nll.dtype)
        valid[:, 0] = 0  # frame 0 repeats frame 1
        out = {"loss": (nll * valid).sum() / valid.sum().clamp_min(1)}
        if self.pace_head is not None:
            p2, p_log_std = self._pace_terms(f)
            pace = ((p_log_std + 0.5 * p2) * valid).sum() / valid.sum().clamp_min(1)
            out["pace_nll"] = pace
            out["loss"] = out["loss"] + pace
        return out

    def frame_scores(self, kp: torch.Tensor, video_id: str | None = None, pace_weight: float | None = None) -> torch.Tensor:
        """``(B, T)`` frame scores: the mean surprise plus ``pace_weight`` (default: the
        model's) times the pace term."""
        return self._scores(self.features(kp, video_id), pace_weight)[0]

    def _scores(self, f: torch.Tensor, pace_weight: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame scores ``(B, T)`` and per-feature surprise ``(B, T, F)`` of raw features."""
        z2 = self._surprise_terms(f)[0]
        score = z2.mean(-1)
        w = self.hparams.pace_weight if pace_weight is None else pace_weight
        if self.pace_head is not None and w > 0:
            score = score + w * self._pace_terms(f)[0]
        return score, z2

    def score_frames(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        ids = batch.get(B.VIDEO_ID) or [None]
        return {"score": self.frame_scores(batch[B.KEYPOINTS], ids[0])}

    @torch.no_grad()
    def score_sequence(self, positions, pace_weight: float | None = None) -> np.ndarray:
        """Per-frame scores ``(T,)`` of one sequence of positions ``(T, K, 3)`` in one causal
        pass (what ``scripts/score_bvh.py`` and the benchmark use)."""
        return self.explain_sequence(positions, pace_weight)[0]

    @torch.no_grad()
    def explain_sequence(self, positions, pace_weight: float | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Per-frame scores ``(T,)`` and each joint's share of the surprise per frame
        ``(T, K)`` (:meth:`joint_surprise`) of one sequence, from one pass."""
        kp = torch.as_tensor(positions, dtype=self.feat_mean.dtype, device=self.feat_mean.device)[None]
        score, z2 = self._scores(self.features(kp), pace_weight)
        return score[0].double().cpu().numpy(), self.joint_surprise(z2[0])

    def joint_surprise(self, z2: torch.Tensor) -> torch.Tensor:
        """``(..., K)`` share of each joint in per-feature surprise ``(..., F)``: a joint's
        relative-position and velocity features; the pelvis (root) also takes its speed,
        height and turning features; ignored joints get 0."""
        joints = self.feature_joints
        n = len(joints)
        out = z2.new_zeros(*z2.shape[:-1], self.hparams.n_joints)
        per = z2[..., : 3 * n].unflatten(-1, (n, 3)).sum(-1) + z2[..., 3 * n : 6 * n].unflatten(-1, (n, 3)).sum(-1)
        out[..., joints] = per
        out[..., self.hparams.root_joint] = z2[..., 6 * n :].sum(-1)
        return out / z2.shape[-1]

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        return self.warmup_cosine(opt, warmup_steps=50)


def _fill_missing(kp: torch.Tensor, valid: torch.Tensor, video_id: str | None) -> torch.Tensor:
    """Carry each joint's last valid position forward (and the first one backward)."""
    if not bool(valid.any(1).all()):
        raise KeypointError("a joint is missing (NaN/inf) in every frame of the clip", video_id)
    out = kp.clone()
    t = kp.shape[1]
    for i in range(1, t):
        out[:, i] = torch.where(valid[:, i, :, None], out[:, i], out[:, i - 1])
    first = valid.float().argmax(1)  # (B, K) first valid frame
    b_idx, k_idx = torch.meshgrid(torch.arange(kp.shape[0]), torch.arange(kp.shape[2]), indexing="ij")
    start = kp[b_idx, first, k_idx]  # (B, K, 3)
    seen = valid.cumsum(1) > 0
    return torch.where(seen[..., None], out, start[:, None])
