"""UCSD Ped2: frame folders of normal training clips and labelled test clips."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from data_modules.base import VideoDataModule
from seqnrl.data.clips import VideoRecord
from seqnrl.errors import ManifestError
from seqnrl.io.frames import IMAGE_SUFFIXES


def read_ped2_labels(path: Path) -> dict[str, torch.Tensor]:
    """``clip,frame,anomalous`` rows -> per-clip 0/1 frame label tensors."""
    if not path.is_file():
        raise ManifestError("test label file not found", path)
    per: dict[str, dict[int, int]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"clip", "frame", "anomalous"} - set(reader.fieldnames or [])
        if missing:
            raise ManifestError(f"missing column(s) {sorted(missing)}", path)
        for r in reader:
            per.setdefault(r["clip"].strip(), {})[int(r["frame"])] = int(r["anomalous"])
    return {c: torch.tensor([d[i] for i in sorted(d)], dtype=torch.long) for c, d in per.items()}


def _clip_dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ManifestError("folder not found (expected the UCSD Ped2 layout)", folder)
    return sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
        and any(c.suffix.lower() in IMAGE_SUFFIXES for c in p.iterdir())
    )


class Ped2DataModule(VideoDataModule):
    """UCSD Ped2 in its usual layout::

        root/training/<clip>/*.jpg   normal clips
        root/testing/<clip>/*.jpg    test clips (all clips found here are used)
        root/test_labels.csv         clip,frame,anomalous

    The last ``n_val_clips`` training clips are held out as normal validation data (score
    calibration). ``folder_fps`` is the nominal frame rate of the frame folders.
    """

    def __init__(
        self,
        root: str = "../shared/data/ped2",
        train_dir: str = "training",
        test_dir: str = "testing",
        labels_file: str = "test_labels.csv",
        n_val_clips: int = 2,
        folder_fps: float = 10.0,
        clip_len: int = 8,
        stride: int | None = 4,
        image_size: int | tuple[int, int] | None = (64, 96),
        samples_per_video: int = 16,
        **kwargs: Any,
    ):
        super().__init__(clip_len=clip_len, stride=stride, fps=None, image_size=image_size, samples_per_video=samples_per_video, train_on_all=False, **kwargs)
        self.root = Path(root)
        self.train_dir, self.test_dir, self.labels_file = train_dir, test_dir, labels_file
        self.n_val_clips = n_val_clips
        self.folder_fps = folder_fps

    def build_records(self) -> dict[str, list[VideoRecord]]:
        train = [
            VideoRecord(video_id=f"train_{p.name}", source=str(p), label=0, patient=p.name, fps=self.folder_fps,
                        frame_labels=None, clip_label_to_frames=True)
            for p in _clip_dirs(self.root / self.train_dir)
        ]
        labels = read_ped2_labels(self.root / self.labels_file)
        test = []
        for p in _clip_dirs(self.root / self.test_dir):
            fl = labels.get(p.name)
            if fl is None:
                raise ManifestError(f"no labels for test clip {p.name!r}", self.root / self.labels_file)
            test.append(VideoRecord(video_id=f"test_{p.name}", source=str(p), label=int(fl.max()), patient=p.name,
                                    fps=self.folder_fps, frame_labels=fl))
        k = min(self.n_val_clips, max(len(train) - 1, 0))
        return {"train": train[: len(train) - k], "val": train[len(train) - k :], "test": test}
