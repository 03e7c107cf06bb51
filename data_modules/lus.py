"""Lung point-of-care ultrasound clips (``../shared/data/lus``): leave-patient-out splits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_modules.base import VideoDataModule
from data_modules.folder import parse_label, split_by_patient
from seqnrl.data.clips import VideoRecord
from seqnrl.data.manifest import read_manifest
from seqnrl.errors import ManifestError


class LUSDataModule(VideoDataModule):
    """Lung ultrasound (POCUS data set of Born et al.): ``videos/*`` + ``manifest.csv``.

    Split by patient: ``test_patients`` / ``val_patients`` when given (e.g. ``["pat3"]``),
    otherwise a seeded patient-level split. Training uses normal clips only; validation
    and test mix normal and pathological clips. Frame labels are the clip label (the data
    set has no frame annotations), so the meaningful figure is the video-level AUROC.
    """

    def __init__(
        self,
        root: str = "../shared/data/lus",
        test_patients: Sequence[str] | None = None,
        val_patients: Sequence[str] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.3,
        fps: float | None = 10.0,
        samples_per_video: int = 8,
        **kwargs: Any,
    ):
        super().__init__(fps=fps, samples_per_video=samples_per_video, train_on_all=False, **kwargs)
        self.root = Path(root)
        self.test_patients = list(test_patients) if test_patients else None
        self.val_patients = list(val_patients) if val_patients else None
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def all_records(self) -> list[VideoRecord]:
        m = self.root / "manifest.csv"
        if not m.is_file():
            raise ManifestError("manifest.csv not found (expected ../shared/data/lus layout)", self.root)
        rows = read_manifest(m, self.root / "videos", required=("file", "label", "patient"))
        recs = []
        for r in rows:
            label = parse_label(r.fields["label"])
            recs.append(
                VideoRecord(
                    video_id=Path(r.fields["file"]).stem,
                    source=str(r.path),
                    label=label,
                    patient=r.fields["patient"],
                    clip_label_to_frames=True,
                    extra={"label_name": r.fields["label"], "probe": r.fields.get("probe", "")},
                )
            )
        return recs

    def build_records(self) -> dict[str, list[VideoRecord]]:
        recs = self.all_records()
        if self.test_patients is None and self.val_patients is None:
            out = split_by_patient(recs, self.val_fraction, self.test_fraction, self.seed)
        else:
            test, val = set(self.test_patients or []), set(self.val_patients or [])
            out = {"train": [], "val": [], "test": []}
            for r in recs:
                if r.patient in test or (r.label == 1 and r.patient not in val):
                    out["test"].append(r)
                elif r.patient in val:
                    out["val"].append(r)
                else:
                    out["train"].append(r)
        for name, split in out.items():
            for r in split:
                r.split = name
        return out
