"""CMU motion capture with four kinds of injected perturbation, and more normal motion to learn from.

For the kinematic prior (:mod:`seqnrl.models.kinematic_prior`), which needs 3-D joint
positions in body heights that keep the body's travel (not root-relative), on one joint
list shared by every source:

* **train**: the CMU files other than ``val_files`` / ``test_files``, plus (``styles_root``)
  the normal training takes of the motion-styles data (even take numbers outside its
  calibration takes: :meth:`MotionStylesDataModule.split_of`), every skeleton mapped to
  ``joint_names`` by name (``joint_map``: source name -> target name; names already in the
  target list map to themselves);
* **val**: the CMU validation file unchanged and one perturbed copy per kind, plus the
  motion-styles calibration takes (normal) — the unchanged file and the normal takes
  calibrate the threshold;
* **test** (= predict): the CMU test file unchanged and one perturbed copy per kind, on
  other spans than validation's (seeded by split).

Perturbations (one span each, 20-40 % of the sequence, :func:`random_span`):
``freeze`` (the pose held, then the motion resumes), ``tremor`` (6-10 Hz jitter of a limb),
``limp`` (one knee bends 25-40 % of what it did: :func:`inject_stiff_knee`) and ``speed``
(the motion played 1.6-2.2 times faster: :func:`inject_speed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from data_modules.mocap import resolve_root, split_bvh_files
from data_modules.motion_base import MotionDataModule
from data_modules.motion_styles import MotionStylesDataModule, load_bvh_positions
from seqnrl.data.motion_windows import MotionClipDataset, MotionSequence
from seqnrl.data.synthetic_motion import (
    inject_freeze,
    inject_speed,
    inject_stiff_knee,
    inject_tremor,
    random_span,
)
from seqnrl.errors import ConfigError, ManifestError

PERTURBATIONS = ("freeze", "tremor", "limp", "speed")

# CMU (subject 131's skeleton) -> the motion-styles skeleton; documented in docs/kinematic_prior.md
CMU_TO_STYLES = {
    "lowerback": "Spine", "Chest2": "Chest",
    "LeftCollar": "Shoulder_L", "LeftShoulder": "UpperArm_L", "LeftElbow": "LowerArm_L", "LeftWrist": "Hand_L",
    "RightCollar": "Shoulder_R", "RightShoulder": "UpperArm_R", "RightElbow": "LowerArm_R", "RightWrist": "Hand_R",
    "LeftHip": "UpperLeg_L", "LeftKnee": "LowerLeg_L", "LeftAnkle": "Foot_L", "LeftToe": "Toes_L",
    "RightHip": "UpperLeg_R", "RightKnee": "LowerLeg_R", "RightAnkle": "Foot_R", "RightToe": "Toes_R",
}  # fmt: skip


def mapped_positions(path: Path, fps: float, joint_names: Sequence[str], joint_map: Mapping[str, str]) -> np.ndarray:
    """``(T, len(joint_names), 3)`` positions of a BVH file at ``fps`` in body heights
    (:func:`~data_modules.motion_styles.load_bvh_positions`), its joints renamed by
    ``joint_map`` (unmapped names kept) and put in ``joint_names`` order. Raises
    :class:`ManifestError` naming the file and the target joints it lacks."""
    pos, names, _ = load_bvh_positions(path, fps)
    renamed = {joint_map.get(n, n): i for i, n in enumerate(names)}
    missing = [n for n in joint_names if n not in renamed]
    if missing:
        raise ManifestError(f"skeleton lacks joints {missing} (after joint_map); it has {names}", path=path)
    return np.ascontiguousarray(pos[:, [renamed[n] for n in joint_names]])


class PerturbedMocapDataModule(MotionDataModule):
    """CMU files with freeze / tremor / limp / speed perturbations (see the module docstring).

    Args:
        root: folder of CMU ``*.bvh`` files.
        joint_names: the target joint list (every source is mapped onto it).
        joint_map: source joint name -> target name (default: CMU's, :data:`CMU_TO_STYLES`).
        styles_root: a motion-styles folder whose normal training takes join the training
            data (``None``: CMU files only).
        val_files, test_files: CMU files held out (default: the last file for both).
        anomaly_types: perturbation kinds (subset of :data:`PERTURBATIONS`).
        clip_len, eval_len, fps, batch_size, num_workers, seed, clips_per_sequence: as
            :class:`~data_modules.motion_styles.MotionStylesDataModule`.
    """

    def __init__(
        self,
        root: str = "../shared/data/mocap",
        joint_names: Sequence[str] = (),
        joint_map: Mapping[str, str] | None = None,
        styles_root: str | None = "../shared/data/motion_styles",
        val_files: Sequence[str] | None = None,
        test_files: Sequence[str] | None = None,
        anomaly_types: Sequence[str] = PERTURBATIONS,
        clip_len: int = 64,
        eval_len: int = 512,
        fps: float = 30.0,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        clips_per_sequence: int = 64,
    ):
        super().__init__()
        bad = [a for a in anomaly_types if a not in PERTURBATIONS]
        if bad or not joint_names:
            raise ConfigError(f"need joint_names and anomaly_types within {PERTURBATIONS}; got {list(joint_names)}, {bad}")
        self.root, self.styles_root = root, styles_root
        self.joint_names = list(joint_names)
        self.joint_map = dict(CMU_TO_STYLES if joint_map is None else joint_map)
        self.val_files = list(val_files) if val_files else None
        self.test_files = list(test_files) if test_files else None
        self.anomaly_types = tuple(anomaly_types)
        self.clip_len, self.eval_len, self.fps = int(clip_len), int(eval_len), float(fps)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.clips_per_sequence = int(clips_per_sequence)
        self.datasets: dict[str, MotionClipDataset] = {}

    # -- files ---------------------------------------------------------------------------
    def split_files(self) -> dict[str, list[Path]]:
        root = resolve_root(self.root)
        files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".bvh" and p.is_file())
        if not files:
            raise ManifestError(f"no .bvh files in the mocap folder {root}", path=root)
        out = split_bvh_files(files, self.val_files, self.test_files)
        if not out["train"] and not self.styles_root:
            raise ConfigError(f"no training files left in {root} and no styles_root")
        return out

    def _styles(self, split: str) -> list[MotionSequence]:
        if not self.styles_root:
            return []
        dm = MotionStylesDataModule(root=self.styles_root)
        out = []
        for row in dm.manifest():
            if row["style"] == "normal" and dm.split_of(row) == split:
                pos = mapped_positions(Path(row["path"]), self.fps, self.joint_names, {})
                out.append(self._seq(f"styles-{Path(row['file']).stem}", pos, np.zeros(len(pos), np.int64), row["path"]))
        return out

    def _seq(self, vid: str, pos: np.ndarray, lab: np.ndarray, source) -> MotionSequence:
        return MotionSequence(video_id=vid, keypoints=torch.from_numpy(np.ascontiguousarray(pos, dtype=np.float32)),
                              frame_label=torch.from_numpy(lab), fps=self.fps, label=int(lab.max() > 0),
                              source=str(Path(source).resolve()))

    def perturb(self, kind: str, pos: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One perturbed copy of ``pos`` and its frame labels."""
        n = pos.shape[0]
        span = random_span(rng, n)
        lab = np.zeros(n, dtype=np.int64)
        lab[span[0] : span[1]] = 1
        j = {name: i for i, name in enumerate(self.joint_names)}
        side = "L" if rng.random() < 0.5 else "R"
        if kind == "freeze":
            return inject_freeze(pos, span, resume=True), lab
        if kind == "tremor":
            arm = [j[f"{n}_{side}"] for n in ("UpperArm", "LowerArm", "Hand")]
            freq = float(rng.uniform(6.0, 10.0))
            amp = float(rng.uniform(0.02, 0.035))
            direction = rng.normal(size=3) + np.array([0.0, 1.5, 0.0])
            return inject_tremor(pos, span, arm, [0.3, 0.7, 1.0], self.fps, freq, amp, direction, rng.uniform(0, 2 * np.pi)), lab
        if kind == "limp":
            below = [j[f"Foot_{side}"], j[f"Toes_{side}"]]
            return inject_stiff_knee(pos, span, j[f"UpperLeg_{side}"], j[f"LowerLeg_{side}"], below,
                                     keep=float(rng.uniform(0.25, 0.4)), fps=self.fps), lab
        return inject_speed(pos, span, float(rng.uniform(1.6, 2.2)))

    def _sequences(self, split: str) -> list[MotionSequence]:
        split_i = ("train", "val", "test").index(split)
        out = []
        for f_i, path in enumerate(self.split_files()[split]):
            pos = mapped_positions(path, self.fps, self.joint_names, self.joint_map)
            out.append(self._seq(path.stem, pos, np.zeros(len(pos), np.int64), path))
            if split == "train":
                continue
            for a_i, kind in enumerate(self.anomaly_types):
                rng = np.random.default_rng([self.seed, split_i, f_i, a_i, 7])
                kp, lab = self.perturb(kind, pos, rng)
                out.append(self._seq(f"{path.stem}-{kind}", kp, lab, path))
        return out + (self._styles("val" if split == "val" else "train") if split != "test" else [])

    def dataset(self, split: str) -> MotionClipDataset:
        split = "test" if split == "predict" else split
        if split not in self.datasets:
            train = split == "train"
            self.datasets[split] = MotionClipDataset(
                self._sequences(split), self.clip_len if train else self.eval_len, mode="train" if train else "eval",
                stride=None if train else self.eval_len // 2, clips_per_sequence=self.clips_per_sequence,
            )  # fmt: skip
        return self.datasets[split]
