"""Datasets of clips cut from videos, shared by every video data module.

A :class:`VideoRecord` describes one video (a file, a frame folder, a DICOM, or frames
already in memory) with whatever is known about it. :class:`ClipDataset` turns a list of
records into samples of the batch contract: random clips for training, or deterministic
overlapping windows that cover every frame for evaluation and prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm

from seqnrl.batch import Sample, make_sample
from seqnrl.data.sampling import eval_window_starts, random_clip_start, window_indices


@dataclass
class VideoRecord:
    """One video and what is known about it. Frame-level arrays are at the video's native rate."""

    video_id: str
    source: str = ""
    label: int = -1
    patient: str = ""
    split: str = ""
    frames: torch.Tensor | None = None  # (C, T, H, W) uint8 or float in [0, 1]; in-memory videos
    fps: float | None = None
    frame_labels: torch.Tensor | None = None  # (T,) 0/1, -1 unknown
    ef: float = float("nan")
    ed_es: torch.Tensor | None = None  # (T,)
    pixel_mask: torch.Tensor | None = None  # (1, T, H, W)
    clip_label_to_frames: bool = False  # without frame_labels, every frame takes ``label``
    extra: dict = field(default_factory=dict)


@dataclass
class LoadedVideo:
    frames: torch.Tensor  # (C, T, H, W) uint8
    fps: float
    frame_labels: torch.Tensor
    ed_es: torch.Tensor
    pixel_mask: torch.Tensor | None


@dataclass
class VideoLoader:
    """Decode a record to uint8 frames at the requested rate/size/colour, resampling labels by time."""

    fps: float | None = None
    size: int | tuple[int, int] | None = None
    grayscale: bool = False
    folder_fps: float = 25.0

    def __call__(self, rec: VideoRecord) -> LoadedVideo:
        if rec.frames is not None:
            frames = rec.frames
            if frames.dtype != torch.uint8:
                frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
            native_fps = float(rec.fps or self.folder_fps)
            frames, mask = self._resize(frames, rec.pixel_mask)
            out_fps = native_fps
        else:
            from seqnrl.io.video import read_video

            clip = read_video(
                rec.source,
                fps=self.fps,
                size=self.size,
                grayscale=self.grayscale,
                folder_fps=rec.fps or self.folder_fps,
            )
            frames, out_fps, mask = clip.frames, clip.fps, None
            native_fps = float(rec.fps or out_fps)
            if self.fps is None:
                native_fps = out_fps
        t = frames.shape[1]
        fill = rec.label if rec.clip_label_to_frames else -1
        labels = _resample_1d(rec.frame_labels, t, native_fps, out_fps, fill=fill)
        ed_es = _resample_1d(rec.ed_es, t, native_fps, out_fps, fill=float("nan"))
        return LoadedVideo(frames, out_fps, labels.long(), ed_es.float(), mask)

    def _resize(self, frames: torch.Tensor, mask: torch.Tensor | None):
        if self.grayscale and frames.shape[0] == 3:
            w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1, 1)
            frames = (frames.float() * w).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        if self.size is None:
            return frames, mask
        hw = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        if tuple(frames.shape[-2:]) == hw:
            return frames, mask
        f = torch.nn.functional.interpolate(frames.float().transpose(0, 1), size=hw, mode="area")
        frames = f.transpose(0, 1).round().clamp(0, 255).to(torch.uint8)
        if mask is not None:
            m = torch.nn.functional.interpolate(mask.float().transpose(0, 1), size=hw, mode="nearest")
            mask = m.transpose(0, 1)
        return frames, mask


def _resample_1d(x: torch.Tensor | None, t: int, src_fps: float, dst_fps: float, fill: float) -> torch.Tensor:
    if x is None:
        return torch.full((t,), fill)
    x = torch.as_tensor(x)
    if len(x) == t:
        return x
    # frame k of the output is at time k / dst_fps; take the source frame at or before it
    src = torch.floor(torch.arange(t) * (src_fps / dst_fps) + 1e-6).long().clamp(max=len(x) - 1)
    return x[src]


class ClipDataset(Dataset):
    """Clips of ``clip_len`` frames from a list of records.

    ``mode="train"``: ``samples_per_video`` random clips per record and epoch. Indexed with
    ``(index, item_seed)`` pairs from :class:`SeededEpochSampler`, the clip start depends only
    on the seed, the epoch and the index: identical with any number of workers and after a
    resume from a checkpoint. A plain integer index draws from torch's global RNG.
    ``mode="eval"``: every window from :func:`eval_window_starts`; together they cover each
    frame of each video; padding frames of short videos get ``frame_index`` -1.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        clip_len: int,
        mode: Literal["train", "eval"] = "eval",
        stride: int | None = None,
        loader: VideoLoader | None = None,
        samples_per_video: int = 1,
        preload: bool = True,
        transform: Callable[[Sample], Sample] | None = None,
        progress: bool = False,
    ):
        if not records:
            raise ValueError("ClipDataset needs at least one record")
        self.records = list(records)
        self.clip_len = int(clip_len)
        self.mode = mode
        self.stride = int(stride or max(1, clip_len // 2))
        self.loader = loader or VideoLoader()
        self.samples_per_video = int(samples_per_video)
        self.transform = transform
        self._cache: dict[int, LoadedVideo] = {}
        self._lengths: dict[int, int] = {}
        self.preload = preload or mode == "eval"
        if self.preload:
            it = range(len(self.records))
            if progress:
                it = tqdm(it, desc="decoding videos", leave=False)
            for i in it:
                self._load(i)
        self.index: list[tuple[int, int]] = []
        if mode == "eval":
            for i in range(len(self.records)):
                for s in eval_window_starts(self._lengths[i], self.clip_len, self.stride):
                    self.index.append((i, s))

    def _load(self, i: int) -> LoadedVideo:
        v = self._cache.get(i)
        if v is None:
            v = self.loader(self.records[i])
            self._lengths[i] = v.frames.shape[1]
            if self.preload:
                self._cache[i] = v
        return v

    def video(self, i: int) -> LoadedVideo:
        """The whole ``i``-th video as the loader decodes it (frames ``(C, T, H, W)`` uint8)."""
        return self._load(i)

    def n_frames(self, i: int) -> int:
        if i not in self._lengths:
            self._load(i)
        return self._lengths[i]

    def __len__(self) -> int:
        if self.mode == "eval":
            return len(self.index)
        return len(self.records) * self.samples_per_video

    def __getitem__(self, idx: int | tuple[int, int]) -> Sample:
        if self.mode == "eval":
            i, start = self.index[idx if isinstance(idx, int) else idx[0]]
        else:
            idx, item_seed = idx if isinstance(idx, tuple) else (idx, int(torch.randint(0, 2**62, (1,))))
            i = idx % len(self.records)
            g = torch.Generator().manual_seed(item_seed)
            start = random_clip_start(self.n_frames(i), self.clip_len, g)
        sample = self.clip(i, start)
        return self.transform(sample) if self.transform else sample

    def clip(self, i: int, start: int) -> Sample:
        rec, v = self.records[i], self._load(i)
        n = v.frames.shape[1]
        idx, valid = window_indices(start, self.clip_len, n)
        frame_index = torch.where(valid, idx, torch.full_like(idx, -1))
        mask = v.pixel_mask[:, idx] if v.pixel_mask is not None else None
        return make_sample(
            v.frames[:, idx],
            video_id=rec.video_id,
            source=rec.source,
            start_frame=start,
            fps=v.fps,
            n_frames=n,
            frame_label=torch.where(valid, v.frame_labels[idx], torch.full_like(idx, -1)),
            label=rec.label,
            patient=rec.patient,
            ef=rec.ef if rec.ef is not None and not math.isnan(rec.ef) else float("nan"),
            ed_es=v.ed_es[idx],
            frame_index=frame_index,
            pixel_mask=mask,
        )


class SeededEpochSampler(Sampler):
    """Shuffled indices with a per-item seed, both a function of ``(seed, epoch)`` only.

    Lightning calls :meth:`set_epoch`; where nobody does (e.g. inside a distributed sampler
    wrapper) the epoch is the number of completed passes.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self._epoch_set, self._passes = 0, False, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._epoch_set = int(epoch), True

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        epoch = self.epoch if self._epoch_set else self._passes
        self._passes += 1
        base = (self.seed * 1_000_003 + epoch * 7_919) % (2**62)
        g = torch.Generator().manual_seed(base)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        for i in order.tolist():
            yield (i, (base * 31 + i) % (2**62))
