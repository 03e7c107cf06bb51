"""Synthetic echocardiography: the embedded default data set (no download needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from data_modules.base import VideoDataModule
from seqnrl.data.clips import VideoRecord
from seqnrl.errors import ConfigError


class SyntheticEchoDataModule(VideoDataModule):
    """Beating left-ventricle-like videos with speckle, known volume/EF/ED/ES and anomalies.

    Training videos are normal; validation and test videos are normal or carry one of
    ``anomalies`` (per-frame labels and per-pixel masks known). Everything is generated
    from ``seed`` in memory.

    Args:
        n_train, n_val, n_test: number of videos per split.
        n_frames: frames per generated video.
        anomaly_fraction: share of validation/test videos with an anomaly.
        anomalies: anomaly kinds to draw from (default: all of the generator's).
        video_fps: frame rate of the generated videos.
        ef_range: ``(low, high)`` in %: every video without an anomaly gets an ejection
            fraction drawn uniformly (seeded) from this range instead of the generator's
            normal 55-70 %. For EF regression and EF-conditioned generation, which need a
            spread of EF values to learn from; leave it unset for anomaly detection (a
            training set with low EF makes the ``reduced_ef`` anomaly normal).
    """

    def __init__(
        self,
        n_train: int = 32,
        n_val: int = 12,
        n_test: int = 12,
        n_frames: int = 64,
        anomaly_fraction: float = 0.5,
        anomalies: Sequence[str] | None = None,
        video_fps: float = 30.0,
        ef_range: tuple[float, float] | None = None,
        image_size: int = 64,
        **kwargs: Any,
    ):
        super().__init__(fps=None, image_size=image_size, grayscale=True, **kwargs)
        self.n = {"train": n_train, "val": n_val, "test": n_test}
        self.n_frames = n_frames
        self.anomaly_fraction = anomaly_fraction
        self.anomalies = tuple(anomalies) if anomalies else None
        self.video_fps = video_fps
        if ef_range is not None:
            lo, hi = (float(v) for v in ef_range)
            if not 5 <= lo <= hi <= 90:
                raise ConfigError(f"ef_range must satisfy 5 <= low <= high <= 90 (%), got {ef_range}")
            ef_range = (lo, hi)
        self.ef_range = ef_range

    def build_records(self) -> dict[str, list[VideoRecord]]:
        from seqnrl.data.synthetic_echo import ANOMALIES, make_echo

        kinds = self.anomalies or ANOMALIES
        out: dict[str, list[VideoRecord]] = {}
        for s_i, split in enumerate(("train", "val", "test")):
            recs = []
            n = self.n[split]
            n_abn = 0 if split == "train" else round(n * self.anomaly_fraction)
            for i in range(n):
                seed = self.seed * 1_000_003 + s_i * 100_003 + i
                anomaly = kinds[i % len(kinds)] if i >= n - n_abn else None
                ef = None
                if self.ef_range is not None and anomaly is None:
                    ef = float(np.random.default_rng([seed, 7]).uniform(*self.ef_range))
                e = make_echo(
                    seed=seed,
                    n_frames=self.n_frames,
                    size=self.image_size,
                    fps=self.video_fps,
                    anomaly=anomaly,
                    ef=ef,
                )
                recs.append(
                    VideoRecord(
                        video_id=f"echo_{split}_{i:03d}" + (f"_{anomaly}" if anomaly else ""),
                        source=f"synthetic://echo/{split}/{i}?seed={seed}",
                        label=int(anomaly is not None),
                        patient=f"{split}_{i}",
                        split=split,
                        frames=e.video,
                        fps=e.fps,
                        frame_labels=e.frame_label,
                        ef=e.ef,
                        ed_es=e.ed_es_signal,
                        pixel_mask=e.pixel_mask,
                        extra={"anomaly": anomaly, "volume": e.volume},
                    )
                )
            out[split] = recs
        return out
