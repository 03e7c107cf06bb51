"""Keypoint-sequence datasets shared by the motion data modules.

:class:`MotionSequence` holds one keypoint sequence (and optionally a way to render it);
:class:`MotionClipDataset` cuts it into samples of the batch contract, either at keys
``(sequence, start)`` drawn by :class:`RandomClipSampler` (training: random clips that
depend only on the sampler's seed and epoch, never on worker count or global RNG state) or
at the deterministic overlapping windows of :func:`eval_window_starts` (evaluation:
together they cover every frame; padding frames of short sequences get
``frame_index``/``frame_label`` -1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import Dataset, Sampler

from seqnrl.batch import Sample, make_sample
from seqnrl.data.keypoints import check_keypoints
from seqnrl.data.sampling import eval_window_starts, random_clip_start, window_indices

__all__ = [
    "MotionSequence",
    "MotionClipDataset",
    "RandomClipSampler",
    "eval_window_starts",
]


@dataclass
class MotionSequence:
    """One keypoint sequence: ``keypoints`` ``(T, K, D)``, ``frame_label`` ``(T,)``.

    ``render`` (optional, picklable) returns the ``(C, T, H, W)`` uint8 video of the whole
    sequence; it is called once per process and cached.
    """

    video_id: str
    keypoints: torch.Tensor
    frame_label: torch.Tensor
    fps: float
    label: int = 0
    source: str = ""
    patient: str = ""
    render: Callable[[], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        self.keypoints = torch.as_tensor(self.keypoints, dtype=torch.float32)
        self.frame_label = torch.as_tensor(self.frame_label, dtype=torch.long)
        check_keypoints(self.keypoints, self.source or self.video_id)
        if self.frame_label.shape != self.keypoints.shape[:1]:
            raise ValueError(
                f"{self.video_id}: frame_label {tuple(self.frame_label.shape)} does not match "
                f"{self.keypoints.shape[0]} frames"
            )

    @property
    def n_frames(self) -> int:
        return int(self.keypoints.shape[0])


class RandomClipSampler(Sampler):
    """Yields ``(sequence, start)`` keys: ``clips_per_sequence`` random clips of each
    sequence per epoch, in random order, from a generator seeded by ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch; without it the epoch advances by
    one each time the sampler is iterated.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        clip_len: int,
        clips_per_sequence: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ):
        self.lengths = [int(n) for n in lengths]
        self.clip_len = int(clip_len)
        self.clips_per_sequence = int(clips_per_sequence)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths) * self.clips_per_sequence

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        seqs = torch.arange(len(self.lengths)).repeat(self.clips_per_sequence)
        if self.shuffle:
            seqs = seqs[torch.randperm(len(seqs), generator=g)]
        for i in seqs.tolist():
            yield i, random_clip_start(self.lengths[i], self.clip_len, g)


class MotionClipDataset(Dataset):
    """Clips of ``clip_len`` frames from :class:`MotionSequence` objects.

    ``mode="eval"``: integer indices address the windows of :func:`eval_window_starts`
    (stride default ``clip_len // 2``). ``mode="train"``: use with
    :class:`RandomClipSampler` (keys ``(sequence, start)``); a plain integer index picks
    sequence ``idx % n`` at a start drawn from torch's global RNG.
    """

    def __init__(
        self,
        sequences: Sequence[MotionSequence],
        clip_len: int,
        mode: Literal["train", "eval"] = "eval",
        stride: int | None = None,
        clips_per_sequence: int = 1,
    ):
        if not sequences:
            raise ValueError("MotionClipDataset needs at least one sequence")
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.sequences = list(sequences)
        self.clip_len = int(clip_len)
        self.mode = mode
        self.stride = int(stride or max(1, self.clip_len // 2))
        self.clips_per_sequence = int(clips_per_sequence)
        self.index: list[tuple[int, int]] = []
        if mode == "eval":
            for i, s in enumerate(self.sequences):
                for start in eval_window_starts(s.n_frames, self.clip_len, self.stride):
                    self.index.append((i, start))
        self._videos: dict[int, torch.Tensor] = {}

    @property
    def lengths(self) -> list[int]:
        return [s.n_frames for s in self.sequences]

    def sampler(self, seed: int = 0, shuffle: bool = True) -> RandomClipSampler:
        return RandomClipSampler(
            self.lengths, self.clip_len, self.clips_per_sequence, seed, shuffle
        )

    def __len__(self) -> int:
        if self.mode == "eval":
            return len(self.index)
        return len(self.sequences) * self.clips_per_sequence

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        if isinstance(key, tuple | list):
            i, start = int(key[0]), int(key[1])
        elif self.mode == "eval":
            i, start = self.index[key]
        else:
            i = int(key) % len(self.sequences)
            n = self.sequences[i].n_frames
            start = 0 if n <= self.clip_len else int(torch.randint(0, n - self.clip_len + 1, (1,)))
        return self.clip(i, start)

    def video(self, i: int) -> torch.Tensor | None:
        seq = self.sequences[i]
        if seq.render is None:
            return None
        v = self._videos.get(i)
        if v is None:
            v = seq.render()
            self._videos[i] = v
        return v

    def clip(self, i: int, start: int) -> Sample:
        seq = self.sequences[i]
        n = seq.n_frames
        idx, valid = window_indices(start, self.clip_len, n)
        neg = torch.full_like(idx, -1)
        video = self.video(i)
        return make_sample(
            None if video is None else video[:, idx],
            video_id=seq.video_id,
            source=seq.source,
            patient=seq.patient,
            start_frame=start,
            fps=seq.fps,
            n_frames=n,
            frame_label=torch.where(valid, seq.frame_label[idx], neg),
            label=seq.label,
            frame_index=torch.where(valid, idx, neg),
            keypoints=seq.keypoints[idx],
        )
