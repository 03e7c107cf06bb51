"""Shared LightningDataModule for video datasets: subclasses only say which records exist."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from data_modules.sharding import shard
from seqnrl.batch import collate
from seqnrl.data.clips import ClipDataset, SeededEpochSampler, VideoLoader, VideoRecord
from seqnrl.data.input_spec import InputSpec

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "predict")


class VideoDataModule(pl.LightningDataModule):
    """Base video data module.

    Subclasses implement :meth:`build_records` returning records per split. Training uses
    random clips of *normal* videos only (``label == 0`` or unknown ``-1``) unless
    ``train_on_all`` is set; validation, test and predict use overlapping windows that
    score every frame.

    Args:
        clip_len: frames per clip.
        stride: stride of evaluation windows (default ``clip_len // 2``).
        fps: resample every video to this rate by timestamps (``None`` keeps the native rate).
        image_size: resize frames to ``image_size`` (square) or ``(H, W)``.
        grayscale: convert to one channel.
        batch_size, num_workers: loader settings.
        samples_per_video: random training clips per video and epoch.
        seed: seed of any random split/generation done by the data module.
    """

    # the masking frames get before the model: data modules decode frames unmasked, so a
    # checkpoint records "none" and ``seqnrl score`` feeds its model what training fed it
    sector_mask: str = "none"

    def __init__(
        self,
        clip_len: int = 16,
        stride: int | None = None,
        fps: float | None = None,
        image_size: int | tuple[int, int] | None = 64,
        grayscale: bool = True,
        batch_size: int = 8,
        num_workers: int = 0,
        samples_per_video: int = 4,
        train_on_all: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.clip_len = clip_len
        self.stride = stride
        self.fps = fps
        self.image_size = image_size
        self.grayscale = grayscale
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.samples_per_video = samples_per_video
        self.train_on_all = train_on_all
        self.seed = seed
        self.datasets: dict[str, ClipDataset] = {}
        self._records: dict[str, list[VideoRecord]] | None = None

    # -- to implement ---------------------------------------------------------------------
    def build_records(self) -> dict[str, list[VideoRecord]]:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    @property
    def loader(self) -> VideoLoader:
        return VideoLoader(fps=self.fps, size=self.image_size, grayscale=self.grayscale)

    @property
    def input_spec(self) -> InputSpec:
        """What every clip of this data module looks like; linked into the model by
        ``seqnrl fit`` and saved in its checkpoint."""
        return InputSpec(
            clip_len=self.clip_len,
            stride=self.stride,
            fps=self.fps,
            image_size=self.image_size,
            channels=self.channels,
            sector_mask=self.sector_mask,
        )

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    def records(self) -> dict[str, list[VideoRecord]]:
        if self._records is None:
            self._records = self.build_records()
            self._records.setdefault("predict", self._records.get("test", []))
        return self._records

    def dataset(self, split: str) -> ClipDataset:
        if split not in self.datasets:
            recs = self.records().get(split, [])
            if split == "train" and not self.train_on_all:
                recs = [r for r in recs if r.label in (0, -1)]
            if not recs:
                raise ValueError(f"{type(self).__name__}: no videos in split {split!r}")
            mode = "train" if split == "train" else "eval"
            self.datasets[split] = ClipDataset(
                recs,
                clip_len=self.clip_len,
                mode=mode,
                stride=self.stride,
                loader=self.loader,
                samples_per_video=self.samples_per_video,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
            None: ("train", "val", "test"),
        }[stage]
        for s in wanted:
            if self.records().get(s):
                self.dataset(s)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.dataset(split)
        sampler = SeededEpochSampler(len(ds), seed=self.seed) if shuffle else None
        # several processes: each takes every world-th item of this order (see data_modules.sharding)
        sampler = shard(self, len(ds), sampler, train=shuffle)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)
