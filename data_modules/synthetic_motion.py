"""Synthetic walking stick figures (keypoints, optionally rendered video) with motion anomalies."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from data_modules.motion_base import MotionDataModule
from seqnrl.data.motion_windows import MotionClipDataset, MotionSequence
from seqnrl.data.render import render_skeleton
from seqnrl.data.synthetic_motion import ANOMALIES, PARENTS, make_motion
from seqnrl.errors import ConfigError

_SPLITS = ("train", "val", "test")


def _render(kp2d: np.ndarray, size: int, seed: int) -> torch.Tensor:
    return render_skeleton(
        kp2d, PARENTS, size=(size, size), background="noise", seed=seed, normalised=True
    )


class SyntheticMotionDataModule(MotionDataModule):
    """Walking stick figures from :func:`seqnrl.data.synthetic_motion.make_motion`.

    Training sequences are normal; validation and test sequences are normal or carry one
    of ``anomaly_types`` (the last ``round(n * val_anomaly_fraction)`` of each split,
    cycling through the types) with per-frame labels. Training draws ``clips_per_sequence``
    random clips per sequence and epoch (seeded by ``seed`` and the epoch); evaluation
    (val/test/predict, predict = test) uses overlapping windows with ``stride`` (default
    ``clip_len // 2``) that cover every frame.

    Samples hold ``keypoints`` ``(T, K, dim)`` (``dim=2``: normalised image coordinates in
    [0, 1]; ``dim=3``: metres, y up), ``frame_label``, ``label`` (1 for a sequence with an
    anomaly), ``video_id``, ``frame_index``, ``n_frames``, ``fps`` and, with ``render``, a
    ``video`` ``(1, T, image_size, image_size)`` of the 2D view.
    """

    def __init__(
        self,
        n_train: int = 32,
        n_val: int = 8,
        n_test: int = 8,
        clip_len: int = 32,
        n_frames: int = 128,
        fps: float = 30.0,
        dim: int = 2,
        render: bool = False,
        image_size: int = 64,
        anomaly_types: Sequence[str] = ANOMALIES,
        val_anomaly_fraction: float = 0.5,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        stride: int | None = None,
        clips_per_sequence: int = 1,
    ):
        super().__init__()
        if dim not in (2, 3):
            raise ConfigError(f"dim must be 2 or 3, got {dim}")
        bad = [a for a in anomaly_types if a not in ANOMALIES]
        if bad or not anomaly_types:
            raise ConfigError(
                f"anomaly_types must be a non-empty subset of {ANOMALIES}, got {anomaly_types}"
            )
        if not 0.0 <= val_anomaly_fraction <= 1.0:
            raise ConfigError(f"val_anomaly_fraction must be in [0, 1], got {val_anomaly_fraction}")
        if clip_len < 1 or n_frames < 2:
            raise ConfigError(f"need clip_len >= 1 and n_frames >= 2, got {clip_len}, {n_frames}")
        self.n = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        self.clip_len = int(clip_len)
        self.n_frames = int(n_frames)
        self.fps = float(fps)
        self.dim = int(dim)
        self.render = bool(render)
        self.image_size = int(image_size)
        self.anomaly_types = tuple(anomaly_types)
        self.val_anomaly_fraction = float(val_anomaly_fraction)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.stride = stride
        self.clips_per_sequence = int(clips_per_sequence)
        self.datasets: dict[str, MotionClipDataset] = {}

    # -- data ----------------------------------------------------------------------------
    @property
    def parents(self) -> list[int]:
        return list(PARENTS)

    @property
    def n_keypoints(self) -> int:
        return len(PARENTS)

    def sequence_seed(self, split: str, i: int) -> int:
        return self.seed * 1_000_003 + _SPLITS.index(split) * 100_003 + i

    def build_sequences(self, split: str) -> list[MotionSequence]:
        n = self.n[split]
        n_abn = 0 if split == "train" else int(round(n * self.val_anomaly_fraction))
        out = []
        for i in range(n):
            seed = self.sequence_seed(split, i)
            j = i - (n - n_abn)
            anomaly = self.anomaly_types[j % len(self.anomaly_types)] if j >= 0 else None
            m = make_motion(
                seed, n_frames=self.n_frames, fps=self.fps, dim=self.dim, anomaly=anomaly
            )
            render = (
                functools.partial(_render, m["keypoints_2d"], self.image_size, seed)
                if self.render
                else None
            )
            out.append(
                MotionSequence(
                    video_id=f"synthetic-motion-{split}-{i:04d}"
                    + (f"-{anomaly}" if anomaly else ""),
                    keypoints=torch.from_numpy(m["keypoints"]),
                    frame_label=torch.from_numpy(m["frame_label"]),
                    fps=self.fps,
                    label=int(anomaly is not None),
                    source=f"synthetic://motion/seed={seed}",
                    render=render,
                )
            )
        return out

    def dataset(self, split: str) -> MotionClipDataset:
        split = "test" if split == "predict" else split
        if split not in self.datasets:
            seqs = self.build_sequences(split)
            if not seqs:
                raise ConfigError(
                    f"{type(self).__name__}: no sequences in split {split!r} (n_{split}=0)"
                )
            self.datasets[split] = MotionClipDataset(
                seqs,
                self.clip_len,
                mode="train" if split == "train" else "eval",
                stride=self.stride,
                clips_per_sequence=self.clips_per_sequence,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
            None: _SPLITS,
        }[stage]
        for s in wanted:
            if self.n[s] > 0:
                self.dataset(s)
