"""Any folder of videos, described by a CSV manifest or by a train/test folder layout."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_modules.base import VideoDataModule
from seqnrl.data.clips import VideoRecord
from seqnrl.data.manifest import read_manifest
from seqnrl.errors import ManifestError
from seqnrl.io.discovery import list_media

log = logging.getLogger(__name__)

NORMAL_NAMES = {"normal", "healthy", "0", "neg", "negative"}


def parse_label(value: str) -> int:
    """'normal'/'healthy'/'0' -> 0, '' / 'unknown' -> -1, anything else (a pathology) -> 1."""
    v = (value or "").strip().lower()
    if v in ("", "unknown", "-1", "nan"):
        return -1
    return 0 if v in NORMAL_NAMES else 1


def split_by_patient(
    records: Sequence[VideoRecord], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[VideoRecord]]:
    """Patient-level split: all clips of one patient land in the same split.

    Normal patients are divided by the fractions; abnormal clips (never used for training)
    are divided between validation and test in the same ratio.
    """
    rng = random.Random(seed)
    out: dict[str, list[VideoRecord]] = {"train": [], "val": [], "test": []}
    normal_pat = sorted({r.patient for r in records if r.label != 1})
    abn_pat = sorted({r.patient for r in records if r.label == 1} - set(normal_pat))
    rng.shuffle(normal_pat)
    rng.shuffle(abn_pat)
    n = len(normal_pat)
    n_test = max(1, round(n * test_fraction)) if n > 2 else 0
    n_val = max(1, round(n * val_fraction)) if n > 2 else 0
    where = {p: "test" for p in normal_pat[:n_test]}
    where |= {p: "val" for p in normal_pat[n_test : n_test + n_val]}
    where |= {p: "train" for p in normal_pat[n_test + n_val :]}
    frac = val_fraction / max(val_fraction + test_fraction, 1e-9)
    n_abn_val = round(len(abn_pat) * frac)
    where |= {p: "val" for p in abn_pat[:n_abn_val]}
    where |= {p: "test" for p in abn_pat[n_abn_val:]}
    for r in records:
        split = where[r.patient]
        if split == "train" and r.label == 1:
            split = "test"
        out[split].append(r)
    return out


class FolderVideoDataModule(VideoDataModule):
    """Videos of any folder.

    Either a CSV manifest (``manifest``, relative to ``root``) with columns ``file`` and
    optionally ``label`` (normal / a pathology name / 0 / 1), ``split``
    (train/val/test), ``patient`` and ``fps``; or, when there is no manifest, the layout::

        root/
          train/normal/*        normal videos for training
          val/{normal,abnormal}/*   optional
          test/{normal,abnormal}/*
          labels/<video stem>.csv   optional per-frame labels: one 0/1 per line (or column 'anomalous')

    Files may be mp4/avi/mov/mpeg/mkv/gif, DICOM cine or frame folders. Hidden and non-media
    files are ignored and counted in the log. Without a ``split`` column, clips are split by
    patient (``val_fraction``, ``test_fraction``, ``seed``).
    """

    def __init__(
        self,
        root: str,
        manifest: str | None = "manifest.csv",
        strict: bool = True,
        val_fraction: float = 0.2,
        test_fraction: float = 0.3,
        **kwargs: Any,
    ):
        super().__init__(train_on_all=False, **kwargs)
        self.root = Path(root)
        self.manifest = manifest
        self.strict = strict
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def build_records(self) -> dict[str, list[VideoRecord]]:
        if not self.root.is_dir():
            raise ManifestError("data root not found (expected a folder of videos)", self.root)
        mpath = self.root / self.manifest if self.manifest else None
        if mpath is not None and mpath.is_file():
            return self._from_manifest(mpath)
        if (self.root / "train").is_dir():
            return self._from_layout()
        raise ManifestError(
            f"no manifest {self.manifest!r} and no train/ folder: see the README's folder layout", self.root
        )

    def _from_manifest(self, mpath: Path) -> dict[str, list[VideoRecord]]:
        rows = read_manifest(mpath, self.root, required=("file",), strict=self.strict)
        recs, splits = [], []
        for r in rows:
            f = r.fields
            fps = float(f["fps"]) if f.get("fps") else None
            rec = VideoRecord(
                video_id=Path(f["file"]).stem,
                source=str(r.path),
                label=parse_label(f.get("label", "")),
                patient=f.get("patient") or Path(f["file"]).stem,
                split=f.get("split", "").lower(),
                fps=fps if r.path.is_dir() else None,
                extra={"label_name": f.get("label", "")},
            )
            recs.append(rec)
            splits.append(rec.split)
        if all(s in ("train", "val", "test") for s in splits):
            return {s: [r for r in recs if r.split == s] for s in ("train", "val", "test")}
        return split_by_patient(recs, self.val_fraction, self.test_fraction, self.seed)

    def _from_layout(self) -> dict[str, list[VideoRecord]]:
        out: dict[str, list[VideoRecord]] = {"train": [], "val": [], "test": []}
        ignored = 0
        for split in out:
            for cls, label in (("normal", 0), ("abnormal", 1)):
                d = self.root / split / cls
                if not d.is_dir():
                    continue
                items, n_ign = list_media(d)
                ignored += n_ign
                for p in items:
                    out[split].append(
                        VideoRecord(
                            video_id=f"{split}_{cls}_{p.stem}",
                            source=str(p),
                            label=label,
                            patient=p.stem,
                            split=split,
                            frame_labels=self._frame_labels(p.stem),
                        )
                    )
        if ignored:
            log.info("%s: ignored %d hidden or non-media entries", self.root, ignored)
        if not out["val"]:
            # hold out some normal training videos for calibration
            normal = out["train"]
            k = max(1, round(len(normal) * self.val_fraction)) if len(normal) > 1 else 0
            out["val"], out["train"] = normal[len(normal) - k :], normal[: len(normal) - k]
        return out

    def _frame_labels(self, stem: str):
        import torch

        p = self.root / "labels" / f"{stem}.csv"
        if not p.is_file():
            return None
        lines = [ln.strip().split(",")[-1] for ln in p.read_text().splitlines() if ln.strip()]
        vals = [int(v) for v in lines if v.lstrip("-").isdigit()]
        return torch.tensor(vals, dtype=torch.long)
