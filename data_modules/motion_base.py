"""Loaders shared by the keypoint-motion data modules."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from data_modules.sharding import shard
from seqnrl.batch import collate
from seqnrl.data.input_spec import InputSpec
from seqnrl.data.motion_windows import MotionClipDataset


class MotionDataModule(pl.LightningDataModule):
    """Subclasses implement ``dataset(split) -> MotionClipDataset`` and set ``batch_size``,
    ``num_workers`` and ``seed``; training clips come from the dataset's seeded sampler."""

    batch_size: int
    num_workers: int
    seed: int
    clip_len: int
    fps: float | None = None
    stride: int | None = None

    @property
    def input_spec(self) -> InputSpec:
        """Keypoint windows: length, stride and frame rate (no image fields)."""
        return InputSpec(clip_len=self.clip_len, stride=self.stride, fps=self.fps, channels=0, modality="keypoints")

    def dataset(self, split: str) -> MotionClipDataset:
        raise NotImplementedError

    def _loader(self, ds: MotionClipDataset, sampler=None, train: bool = False) -> DataLoader:
        # several processes: each takes every world-th item of this order (see data_modules.sharding)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=shard(self, len(ds), sampler, train=train),
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=False,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        return self._loader(ds, ds.sampler(seed=self.seed, shuffle=True), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"))

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("predict"))

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (predict uses the test split)."""
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
            None: ("train", "val", "test"),
        }[stage]
        for s in wanted:
            self.dataset(s)
