"""Motion capture (BVH) keypoint clips, with labelled anomalies injected into held-out sequences."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from data_modules.motion_base import MotionDataModule
from seqnrl.data.motion_windows import MotionClipDataset, MotionSequence
from seqnrl.data.render import project_3d, render_skeleton
from seqnrl.data.synthetic_motion import inject_freeze, inject_tremor, random_span
from seqnrl.errors import ConfigError, ManifestError
from seqnrl.io.bvh import body_height, forward_kinematics, read_bvh, resample_motion

log = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[1]
MOCAP_ANOMALIES = ("freeze", "tremor")


def _render(kp_px: np.ndarray, parents: list[int], size: int, seed: int) -> torch.Tensor:
    return render_skeleton(
        kp_px, parents, size=(size, size), background="noise", seed=seed, normalised=False
    )


def resolve_root(root: str | Path) -> Path:
    """``root`` as given, or relative to the repository when it does not exist relative to
    the working directory. Raises :class:`ManifestError` saying where data is expected."""
    p = Path(root).expanduser()
    tried = [p.resolve()]
    if p.is_dir():
        return p
    if not p.is_absolute():
        q = (_REPO / p).resolve()
        tried.append(q)
        if q.is_dir():
            return q
    raise ManifestError(
        "mocap data folder not found; put BVH files (*.bvh, e.g. CMU mocap) there "
        f"(looked in: {', '.join(str(t) for t in tried)})",
        path=root,
    )


def split_bvh_files(files: list[Path], val_files: list[str] | None, test_files: list[str] | None) -> dict[str, list[Path]]:
    """``train`` / ``val`` / ``test`` lists of BVH ``files``: ``val_files`` (names or stems;
    default the last file), ``test_files`` (default the validation files), the rest train
    (possibly none). Raises :class:`ManifestError` naming a held-out file that is not there."""
    by_name = {p.name: p for p in files} | {p.stem: p for p in files}

    def pick(names: list[str], what: str) -> list[Path]:
        out = []
        for n in names:
            if Path(n).name not in by_name:
                raise ManifestError(
                    f"{what} file {n!r} not found among {[p.name for p in files]}",
                    path=files[0].parent,
                )
            out.append(by_name[Path(n).name])
        return out

    val = pick(val_files, "val") if val_files else [files[-1]]
    test = pick(test_files, "test") if test_files else list(val)
    held = set(val) | set(test)
    return {"train": [p for p in files if p not in held], "val": val, "test": test}


class MocapDataModule(MotionDataModule):
    """Keypoint clips from every ``*.bvh`` file in ``root``.

    Each file is parsed, forward-kinematics gives joint positions, which are resampled by
    time from the file's rate (CMU: 120 fps) to ``fps``. Files in ``val_files`` (default:
    the last file in sorted order) are held out; the others are for training (normal,
    ``frame_label`` 0). Validation and test use the held-out files (``test_files``, default
    the validation files): each appears once unchanged and once per ``anomaly_types`` with
    a segment perturbed (``freeze``: pose held; ``tremor``: 6-10 Hz jitter of a limb) and
    labelled 1; the perturbed spans differ between val and test and are fixed by ``seed``.
    Evaluation windows overlap (``stride``, default ``clip_len // 2``) and cover every frame;
    predict = test.

    ``normalise`` (``dim=3``): positions relative to the root joint, divided by the
    skeleton's rest-pose height (so a body is ~1 tall). ``dim=2``: the ``view`` projection
    (root-centred) in normalised image coordinates [0, 1]. ``render``: add a
    ``(1, T, image_size, image_size)`` video of the projected skeleton.
    """

    def __init__(
        self,
        root: str = "../shared/data/mocap",
        clip_len: int = 32,
        fps: float = 30.0,
        dim: int = 3,
        val_files: list[str] | None = None,
        test_files: list[str] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        normalise: bool = True,
        include_end_sites: bool = False,
        anomaly_types: Sequence[str] = MOCAP_ANOMALIES,
        stride: int | None = None,
        clips_per_sequence: int = 8,
        view: str = "side",
        render: bool = False,
        image_size: int = 64,
    ):
        super().__init__()
        if dim not in (2, 3):
            raise ConfigError(f"dim must be 2 or 3, got {dim}")
        bad = [a for a in anomaly_types if a not in MOCAP_ANOMALIES]
        if bad:
            raise ConfigError(
                f"anomaly_types must be a subset of {MOCAP_ANOMALIES}, got {list(anomaly_types)}"
            )
        if fps <= 0 or clip_len < 1:
            raise ConfigError(f"need fps > 0 and clip_len >= 1, got fps={fps}, clip_len={clip_len}")
        self.root = root
        self.clip_len = int(clip_len)
        self.fps = float(fps)
        self.dim = int(dim)
        self.val_files = list(val_files) if val_files else None
        self.test_files = list(test_files) if test_files else None
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.normalise = bool(normalise)
        self.include_end_sites = bool(include_end_sites)
        self.anomaly_types = tuple(anomaly_types)
        self.stride = stride
        self.clips_per_sequence = int(clips_per_sequence)
        self.view = view
        self.render = bool(render)
        self.image_size = int(image_size)
        self.joint_names: list[str] = []
        self.parents: list[int] = []
        self.datasets: dict[str, MotionClipDataset] = {}

    # -- files ---------------------------------------------------------------------------
    def files(self) -> list[Path]:
        root = resolve_root(self.root)
        files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".bvh" and p.is_file())
        if not files:
            raise ManifestError(
                f"no .bvh files in the mocap data folder {root.resolve()}", path=root
            )
        return files

    def split_files(self) -> dict[str, list[Path]]:
        out = split_bvh_files(self.files(), self.val_files, self.test_files)
        if not out["train"]:
            held = out["val"] + out["test"]
            raise ConfigError(
                f"no training files left in {held[0].parent} after holding out {[p.name for p in held]}; "
                "add .bvh files or choose other val_files/test_files"
            )
        return out

    def load_positions(self, path: Path) -> np.ndarray:
        """``(T, K, 3)`` positions at ``fps`` (normalised when asked), or ``(T, K, 2)`` for dim 2."""
        motion = read_bvh(path)
        pos = forward_kinematics(motion, include_end_sites=self.include_end_sites)
        names, parents = motion.skeleton(self.include_end_sites)
        if not self.parents:
            self.joint_names, self.parents = names, parents
        elif names != self.joint_names:
            raise ManifestError(
                f"skeleton differs from the first file's ({len(names)} vs {len(self.joint_names)} joints)",
                path=path,
            )
        height = body_height(motion, pos) if self.dim == 3 and self.normalise else 1.0
        pos = resample_motion(pos, motion.fps, self.fps)
        if self.dim == 3 and self.normalise:
            pos = (pos - pos[:, :1]) / height
        return pos

    # -- data ----------------------------------------------------------------------------
    def _tremor_joints(self, rng: np.random.Generator) -> tuple[list[int], list[float]]:
        """A limb: the subtree of a leaf's grandparent (weight 1) and its parent (0.5)."""
        par = self.parents
        children = {j: [c for c, p in enumerate(par) if p == j] for j in range(len(par))}
        leaves = [j for j in range(len(par)) if not children[j] and par[j] >= 0]
        leaf = int(rng.choice(leaves))
        base = leaf
        for _ in range(2):
            if par[base] > 0:
                base = par[base]
        sub, stack = [], [base]
        while stack:
            j = stack.pop()
            sub.append(j)
            stack.extend(children[j])
        joints, weights = sorted(sub), [1.0] * len(sub)
        if par[base] >= 0:
            joints.append(par[base])
            weights.append(0.5)
        return joints, weights

    def _scale(self, pos: np.ndarray) -> float:
        """Body size in the units of ``pos`` (for anomaly amplitudes)."""
        if self.dim == 3 and self.normalise:
            return 1.0
        return float(np.nanmedian(np.ptp(pos[..., 1], axis=1)))

    def _sequences(self, split: str, files: list[Path]) -> list[MotionSequence]:
        split_i = ("train", "val", "test").index(split)
        out: list[MotionSequence] = []
        for f_i, path in enumerate(files):
            pos = self.load_positions(path)
            versions: list[tuple[str | None, np.ndarray, np.ndarray]] = []
            n = pos.shape[0]
            versions.append((None, pos, np.zeros(n, dtype=np.int64)))
            if split != "train":
                for a_i, kind in enumerate(self.anomaly_types):
                    rng = np.random.default_rng([self.seed, split_i, f_i, a_i])
                    span = random_span(rng, n)
                    if kind == "freeze":
                        kp = inject_freeze(pos, span, resume=True)
                    else:
                        joints, weights = self._tremor_joints(rng)
                        freq = float(min(rng.uniform(6.0, 10.0), 0.4 * self.fps))
                        amp = rng.uniform(0.02, 0.035) * self._scale(pos)
                        direction = rng.normal(size=3) + np.array([0.0, 1.5, 0.0])
                        kp = inject_tremor(
                            pos,
                            span,
                            joints,
                            weights,
                            self.fps,
                            freq,
                            amp,
                            direction,
                            rng.uniform(0, 2 * np.pi),
                        )
                    lab = np.zeros(n, dtype=np.int64)
                    lab[span[0] : span[1]] = 1
                    versions.append((kind, kp, lab))
            for kind, kp3, lab in versions:
                vid = f"{path.stem}" + (f"-{kind}" if kind else "")
                kp = kp3
                if self.dim == 2:
                    kp = project_3d(kp3, view=self.view, size=(1, 1), normalised=True)
                render = None
                if self.render:
                    px = project_3d(kp3, view=self.view, size=(self.image_size, self.image_size))
                    seed = self.seed * 1_000_003 + split_i * 100_003 + len(out)
                    render = functools.partial(
                        _render, px, list(self.parents), self.image_size, seed
                    )
                out.append(
                    MotionSequence(
                        video_id=vid,
                        keypoints=torch.as_tensor(np.asarray(kp, dtype=np.float32)),
                        frame_label=torch.from_numpy(lab),
                        fps=self.fps,
                        label=int(kind is not None),
                        source=str(path.resolve()),
                        render=render,
                    )
                )
        return out

    def dataset(self, split: str) -> MotionClipDataset:
        split = "test" if split == "predict" else split
        if split not in self.datasets:
            files = self.split_files()[split]
            self.datasets[split] = MotionClipDataset(
                self._sequences(split, files),
                self.clip_len,
                mode="train" if split == "train" else "eval",
                stride=self.stride,
                clips_per_sequence=self.clips_per_sequence,
            )
        return self.datasets[split]
