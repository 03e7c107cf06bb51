"""EchoNet-Dynamic layout: ``Videos/*.avi``, ``FileList.csv``, ``VolumeTracings.csv``."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from data_modules.base import VideoDataModule
from seqnrl.data.clips import VideoRecord
from seqnrl.data.manifest import read_manifest
from seqnrl.errors import ManifestError

FILELIST_COLUMNS = ("FileName", "EF", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")


def ed_es_from_tracings(path: Path) -> dict[str, tuple[int, int]]:
    """ED and ES frame per video from the traced frames: ED is the traced frame with the
    larger LV (longer summed chord lengths), ES the smaller, as in EchoNet-Dynamic."""
    if not path.is_file():
        return {}
    size: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(TRACING_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ManifestError(f"missing column(s) {sorted(missing)}", path)
        for r in reader:
            x1, y1, x2, y2 = (float(r[k]) for k in ("X1", "Y1", "X2", "Y2"))
            size[Path(r["FileName"]).stem][int(r["Frame"])] += math.hypot(x2 - x1, y2 - y1)
    out = {}
    for name, frames in size.items():
        if len(frames) >= 2:
            ordered = sorted(frames.items(), key=lambda kv: kv[1])
            out[name] = (ordered[-1][0], ordered[0][0])
    return out


def ed_es_signal(n_frames: int, ed: int, es: int) -> torch.Tensor:
    """+1 at ED, -1 at ES, cosine in between; unknown (NaN) outside the traced interval."""
    sig = torch.full((n_frames,), float("nan"))
    a, b = sorted((ed, es))
    if b >= n_frames:
        return sig
    t = torch.arange(a, b + 1, dtype=torch.float32)
    phase = (t - ed) / (es - ed) if es != ed else torch.zeros_like(t)
    sig[a : b + 1] = torch.cos(math.pi * phase)
    return sig


def _avi_name(row: dict[str, str]) -> str:
    """EchoNet-Dynamic's FileName has no extension; the videos are ``<FileName>.avi``."""
    fn = (row.get("FileName") or "").strip()
    return fn if not fn or Path(fn).suffix else fn + ".avi"


class EchoNetDynamicDataModule(VideoDataModule):
    """Echocardiography videos in the public EchoNet-Dynamic layout (the data set itself is
    credentialed and cannot be shipped; tests use a generated look-alike).

    Video labels for normative training: EF >= ``normal_ef`` is normal (0), EF <
    ``abnormal_ef`` is abnormal (1), in between unknown (-1). ``FileList.csv``'s ``Split``
    column (TRAIN/VAL/TEST) is used as is.
    """

    def __init__(
        self,
        root: str,
        normal_ef: float = 50.0,
        abnormal_ef: float = 40.0,
        clip_len: int = 32,
        samples_per_video: int = 2,
        **kwargs: Any,
    ):
        super().__init__(clip_len=clip_len, samples_per_video=samples_per_video, **kwargs)
        self.root = Path(root)
        self.normal_ef, self.abnormal_ef = normal_ef, abnormal_ef

    def build_records(self) -> dict[str, list[VideoRecord]]:
        flist = self.root / "FileList.csv"
        if not flist.is_file():
            raise ManifestError("FileList.csv not found (expected the EchoNet-Dynamic layout)", self.root)
        rows = read_manifest(flist, self.root / "Videos", required=FILELIST_COLUMNS, file_of=_avi_name)
        ed_es = ed_es_from_tracings(self.root / "VolumeTracings.csv")
        out: dict[str, list[VideoRecord]] = {"train": [], "val": [], "test": []}
        for r in rows:
            name = Path(r.fields["FileName"]).stem
            ef = float(r.fields["EF"]) if r.fields.get("EF") else float("nan")
            label = 0 if ef >= self.normal_ef else (1 if ef < self.abnormal_ef else -1)
            split = {"train": "train", "val": "val", "test": "test"}.get(r.fields["Split"].lower())
            if split is None:
                continue
            n = int(r.fields["NumberOfFrames"]) if r.fields.get("NumberOfFrames") else None
            sig = ed_es_signal(n, *ed_es[name]) if (n and name in ed_es) else None
            fps = float(r.fields["FPS"]) if r.fields.get("FPS") else None
            out[split].append(
                VideoRecord(video_id=name, source=str(r.path), label=label, patient=name, split=split,
                            ef=ef, ed_es=sig, fps=fps, extra={"ed_es_frames": ed_es.get(name)})
            )
        return out
