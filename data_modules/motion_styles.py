"""Stylised real motion (Bandai Namco Research motion data set 2): normal, elderly, exhausted.

The folder holds BVH takes and a ``manifest.csv`` (columns ``file, content, style, take``):
five activities (``content``: walk, run, walk-turn-right, wave-right-hand,
raise-up-right-hand) performed in three styles by professional actors. ``normal`` is the
normative class; every other style is the anomaly, whole takes at a time.

Splits are by take, never by window, so no take is in two splits:

* **train**: normal takes whose take number is even and not in ``val_takes``;
* **val**: normal takes numbered ``val_takes`` (default 14 and 16: even, so outside the
  test split) — the held-out normal takes that calibrate the threshold;
* **test** (= predict): every odd-numbered normal take and every take of another style.

This is the protocol of the issue that introduced the data (normal even takes train, all
else test), with two even takes per activity kept back for calibration.

Keypoints are the BVH's joint positions (forward kinematics, end sites dropped) at ``fps``,
divided by the skeleton's rest-pose height (a body is about 1 tall), **not** made
root-relative: how the body travels (speed, height of the hips) is part of how a person
moves, and the model (:mod:`seqnrl.models.kinematic_prior`) takes what it needs from them.
Evaluation windows are ``eval_len`` frames long (default 512, longer than any take here),
so a causal model scores each take in one pass, every frame with all of its past.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from data_modules.mocap import resolve_root
from data_modules.motion_base import MotionDataModule
from seqnrl.data.motion_windows import MotionClipDataset, MotionSequence
from seqnrl.errors import ConfigError, ManifestError
from seqnrl.io.bvh import body_height, forward_kinematics, read_bvh, resample_motion

MANIFEST_COLUMNS = ("file", "content", "style", "take")


def load_bvh_positions(path: Path, fps: float) -> tuple[np.ndarray, list[str], list[int]]:
    """``(T, K, 3)`` joint positions of a BVH file at ``fps`` in body heights (see
    :func:`seqnrl.io.bvh.body_height`), its joint names and parents (end sites dropped)."""
    motion = read_bvh(path)
    pos = forward_kinematics(motion, include_end_sites=False)
    names, parents = motion.skeleton(include_end_sites=False)
    pos = resample_motion(pos, motion.fps, fps) / body_height(motion, pos)
    return pos.astype(np.float32), names, parents


class MotionStylesDataModule(MotionDataModule):
    """Normal / elderly / exhausted takes of real motion capture (see the module docstring).

    Args:
        root: folder with ``manifest.csv`` and the BVH files it lists.
        clip_len: frames of a training clip.
        eval_len: frames of an evaluation window (a take shorter than this is one window).
        fps: frame rate the takes are resampled to.
        val_takes: even take numbers held out (normal style) for validation / calibration.
        contents: activities to use (default: all in the manifest).
        batch_size, num_workers, seed: loader settings.
        clips_per_sequence: random training clips per take and epoch.
    """

    def __init__(
        self,
        root: str = "../shared/data/motion_styles",
        clip_len: int = 64,
        eval_len: int = 512,
        fps: float = 30.0,
        val_takes: Sequence[int] = (14, 16),
        contents: Sequence[str] | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        clips_per_sequence: int = 64,
    ):
        super().__init__()
        if fps <= 0 or clip_len < 2 or eval_len < 2:
            raise ConfigError(f"need fps > 0, clip_len >= 2, eval_len >= 2; got {fps}, {clip_len}, {eval_len}")
        odd = [t for t in val_takes if int(t) % 2]
        if odd:
            raise ConfigError(f"val_takes must be even take numbers (odd normal takes are test takes), got {odd}")
        self.root = root
        self.clip_len = int(clip_len)
        self.eval_len = int(eval_len)
        self.fps = float(fps)
        self.val_takes = tuple(int(t) for t in val_takes)
        self.contents = tuple(contents) if contents else None
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.clips_per_sequence = int(clips_per_sequence)
        self.joint_names: list[str] = []
        self.parents: list[int] = []
        self.datasets: dict[str, MotionClipDataset] = {}

    def manifest(self) -> list[dict[str, str]]:
        """Rows of ``manifest.csv`` (restricted to ``contents``), each with a ``path``."""
        root = resolve_root(self.root)
        path = root / "manifest.csv"
        if not path.is_file():
            raise ManifestError("motion-styles folder has no manifest.csv (columns: file, content, style, take)", path=root)
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        missing = [c for c in MANIFEST_COLUMNS if rows and c not in rows[0]]
        if not rows or missing:
            raise ManifestError(f"manifest has no rows or lacks columns {missing or list(MANIFEST_COLUMNS)}", path=path)
        if self.contents:
            known = {r["content"] for r in rows}
            unknown = [c for c in self.contents if c not in known]
            if unknown:
                raise ConfigError(f"contents {unknown} not in {path} (it has {sorted(known)})")
            rows = [r for r in rows if r["content"] in self.contents]
        for r in rows:
            r["path"] = str(root / r["file"])
            if not Path(r["path"]).is_file():
                raise ManifestError(f"manifest lists {r['file']!r}, which does not exist", path=path)
            try:
                r["take_no"] = int(r["take"])
            except ValueError:
                raise ManifestError(f"take {r['take']!r} of {r['file']!r} is not a number", path=path) from None
        return rows

    def split_of(self, row: dict) -> str:
        """``train``, ``val`` or ``test`` for a manifest row (see the module docstring)."""
        if row["style"] != "normal" or row["take_no"] % 2 == 1:
            return "test"
        return "val" if row["take_no"] in self.val_takes else "train"

    def _sequences(self, split: str) -> list[MotionSequence]:
        out = []
        for row in self.manifest():
            if self.split_of(row) != split:
                continue
            pos, names, parents = load_bvh_positions(Path(row["path"]), self.fps)
            if not self.joint_names:
                self.joint_names, self.parents = names, parents
            elif names != self.joint_names:
                raise ManifestError(
                    f"skeleton differs from the first take's ({len(names)} vs {len(self.joint_names)} joints)",
                    path=row["path"],
                )
            abnormal = int(row["style"] != "normal")
            out.append(
                MotionSequence(
                    video_id=Path(row["file"]).stem,
                    keypoints=torch.from_numpy(pos),
                    frame_label=torch.full((pos.shape[0],), abnormal, dtype=torch.long),
                    fps=self.fps,
                    label=abnormal,
                    source=str(Path(row["path"]).resolve()),
                    patient=f"{row['content']}/{row['style']}",
                )
            )
        if not out:
            raise ConfigError(f"the motion-styles {split} split is empty (root {self.root}, contents {self.contents})")
        return out

    def dataset(self, split: str) -> MotionClipDataset:
        split = "test" if split == "predict" else split
        if split not in self.datasets:
            train = split == "train"
            self.datasets[split] = MotionClipDataset(
                self._sequences(split),
                self.clip_len if train else self.eval_len,
                mode="train" if train else "eval",
                stride=None if train else self.eval_len // 2,
                clips_per_sequence=self.clips_per_sequence,
            )
        return self.datasets[split]
