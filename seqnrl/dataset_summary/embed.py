"""Video-level embeddings of a collection: what a recording looks like and how it moves.

Every video is decoded once at a low analysis rate (at most ``max_frames`` frames spread
over the whole video) and turned into per-frame features ``f_t`` by a *frame encoder*:

* :class:`NormativeFrameEncoder` -- a trained seqnrl normative model (``embed_frames``)
  loaded from its checkpoint alone (:func:`seqnrl.models.loading.load_model`), at the
  checkpoint's own ``fps``, ``image_size``, colour mode and ``clip_len`` windows;
* :class:`FallbackFrameEncoder` -- **fallback without a checkpoint**: grey ``size`` x
  ``size`` frames, PCA fitted on the frames of the collection (or of a reference set, e.g.
  the training set in an audit). Pixels, not a learned representation: every output says so.

A video's descriptor has two blocks (:func:`video_descriptor`):

* **appearance** -- the mean of ``f_t`` over the video;
* **motion** -- statistics of the frame-to-frame feature change ``d_t = f_{t+1} - f_t``:
  mean ``|d_t|`` per dimension (which features move), and of the speed ``|d_t| * fps``
  the mean, standard deviation, 10th and 90th percentiles (log1p), plus the strength and
  period (s) of its strongest autocorrelation peak between 0.25 and 3 s (heart beats,
  breathing, probe sweeps).

:class:`DescriptorScaler` z-scores every column over a reference collection and weights
the blocks so that motion carries ``motion_weight`` of the total variance; the result is
the space where cosine similarities, kNN graphs and distances are computed.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from seqnrl.data.input_spec import InputSpec
from seqnrl.data.manifest import resolve_under
from seqnrl.errors import ManifestError, SeqNRLError
from seqnrl.io.discovery import list_media
from seqnrl.io.video import probe_video, read_video

log = logging.getLogger(__name__)

N_MOTION_SCALARS = 6
MOTION_SCALARS = ("speed_mean", "speed_std", "speed_q10", "speed_q90", "period_strength", "period_s")


# ---------------------------------------------------------------------------------------
# items of a collection
# ---------------------------------------------------------------------------------------
@dataclass
class VideoItem:
    """One recording of a collection. ``label`` is the class used for per-class budgets
    ('' when unknown); ``patient`` groups recordings of one subject (defaults to the id)."""

    id: str
    path: str
    label: str = ""
    patient: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.patient:
            self.patient = self.id


def _unique_ids(items: list[VideoItem]) -> list[VideoItem]:
    seen: dict[str, int] = {}
    for it in items:
        n = seen.get(it.id, 0)
        seen[it.id] = n + 1
        if n:
            it.id = f"{it.id}__{n}"
    return items


def _read_manifest_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(f"not a readable CSV manifest ({e})", path) from e
    if "file" not in header:
        raise ManifestError(f"manifest has no 'file' column; found {header}", path)
    return rows


def items_from_manifest(
    manifest: str | os.PathLike,
    root: str | os.PathLike | None = None,
    label_column: str = "label",
    patient_column: str = "patient",
) -> tuple[list[VideoItem], list[tuple[str, str]]]:
    """Items of a CSV manifest (column ``file``, optional ``label``, ``patient``, ...).

    Files resolve under ``root`` (default: the manifest's folder; when none of them is
    there but ``<root>/videos`` holds them, that folder, as in ``../shared/data/lus``).
    Rows with missing or escaping files are returned as ``(file, reason)`` problems.
    """
    manifest = Path(manifest)
    rows = _read_manifest_rows(manifest)
    base = Path(root) if root is not None else manifest.parent
    if root is None and rows and (base / "videos").is_dir():
        here = sum((base / r.get("file", "")).exists() for r in rows if r.get("file"))
        there = sum((base / "videos" / r.get("file", "")).exists() for r in rows if r.get("file"))
        if there > here:
            base = base / "videos"
    items, problems = [], []
    for i, r in enumerate(rows, start=2):
        rel = r.get("file", "")
        if not rel:
            problems.append((f"{manifest}:{i}", "empty 'file'"))
            continue
        try:
            p = resolve_under(base, rel)
        except ValueError as e:
            problems.append((rel, str(e)))
            continue
        if not p.exists():
            problems.append((str(base / rel), "file not found"))
            continue
        items.append(
            VideoItem(
                id=Path(rel).stem,
                path=str(p),
                label=r.get(label_column, ""),
                patient=r.get(patient_column, ""),
                fields=dict(r),
            )
        )
    return _unique_ids(items), problems


def items_from_folder(root: str | os.PathLike) -> tuple[list[VideoItem], int]:
    """Media files and frame folders under ``root`` (recursively). A video in a sub-folder
    gets the sub-folder's relative path as its label (``root/normal/a.mp4`` -> ``normal``).
    Returns the items and the number of ignored entries (hidden / non-media files)."""
    root = Path(root)
    items: list[VideoItem] = []
    ignored = 0

    def walk(d: Path) -> None:
        nonlocal ignored
        media, n_ign = list_media(d)
        media_set = set(media)
        for p in media:
            label = "" if d == root else str(d.relative_to(root))
            items.append(VideoItem(id=p.stem if p.is_file() else p.name, path=str(p), label=label))
        for sub in sorted(d.iterdir()):
            if sub.is_dir() and sub not in media_set and not sub.name.startswith("."):
                n_ign -= 1  # list_media counted the sub-folder as ignored: it is walked instead
                walk(sub)
        ignored += max(n_ign, 0)

    walk(root)
    return _unique_ids(items), ignored


def collect_items(
    root: str | os.PathLike,
    manifest: str | None = "manifest.csv",
    label_column: str = "label",
    patient_column: str = "patient",
) -> tuple[list[VideoItem], list[tuple[str, str]]]:
    """Items of a collection: ``root`` is a manifest CSV, a folder holding ``manifest``, or a
    folder of videos / frame folders (walked recursively). Returns ``(items, problems)``."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return items_from_manifest(root, None, label_column, patient_column)
    if not root.is_dir():
        raise ManifestError("no such folder or manifest", root)
    if manifest and (root / manifest).is_file():
        return items_from_manifest(root / manifest, None, label_column, patient_column)
    items, ignored = items_from_folder(root)
    if ignored:
        log.info("%s: ignored %d hidden or non-media entries", root, ignored)
    return items, []


def items_from_datamodule(dm: Any, splits: Sequence[str] = ("train", "val", "test")) -> list[VideoItem]:
    """Items of a seqnrl data module with file-backed records (``all_records()`` or
    ``build_records()``, e.g. :class:`data_modules.lus.LUSDataModule`). The label is the
    record's label name when it has one (``extra['label_name']``), else its 0/1 label."""
    if hasattr(dm, "all_records"):
        records = list(dm.all_records())
    elif hasattr(dm, "build_records"):
        built = dm.build_records()
        records = [r for s in splits for r in built.get(s, [])]
    else:
        raise SeqNRLError(f"{type(dm).__name__} has no all_records()/build_records(): not a file-backed data module")
    items = []
    for r in records:
        name = (getattr(r, "extra", None) or {}).get("label_name", "")
        lab = name or ("" if r.label < 0 else str(int(r.label)))
        items.append(VideoItem(id=str(r.video_id), path=str(r.source), label=lab, patient=str(r.patient or "")))
    return _unique_ids(items)


# ---------------------------------------------------------------------------------------
# frame encoders
# ---------------------------------------------------------------------------------------
class FrameEncoder:
    """Turns decoded frames ``(T, C, H, W)`` uint8 into per-frame features ``(T, D)``.

    ``encode`` may return an intermediate representation that :meth:`fit` (on a reference
    collection) and :meth:`transform` finish; encoders without a fitted stage pass it on."""

    kind: str = "encoder"
    description: str = ""
    fps: float = 10.0
    size: tuple[int, int] | None = (64, 64)  # None: every video at its native size
    grayscale: bool = True

    @property
    def fitted(self) -> bool:
        return True

    def encode(self, frames: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def fit(self, raws: Sequence[np.ndarray]) -> None:
        return None

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "fps": self.fps,
                "size": list(self.size) if self.size else None, "grayscale": self.grayscale}


class NormativeFrameEncoder(FrameEncoder):
    """Per-frame ``embed_frames`` of a seqnrl normative model, in windows of its ``clip_len``
    (the last window is padded by repeating the last frame; padding is dropped)."""

    kind = "normative"

    def __init__(self, model: Any, fps: float | None = None, batch_windows: int = 8, device: str = "cpu",
                 checkpoint: str = ""):
        if not callable(getattr(model, "embed_frames", None)):
            raise SeqNRLError(f"{type(model).__name__} has no embed_frames(): cannot embed videos")
        spec = InputSpec.of(model)
        self.model = model.eval().to(device)
        self.device = device
        self.fps = float(spec.fps or fps or FrameEncoder.fps)  # native-rate models: the collection's rate
        self.size = spec.image_size  # the model's input size; None: it was trained at native sizes
        self.grayscale = spec.grayscale
        self.clip_len = spec.clip_len
        self.batch_windows = int(batch_windows)
        self.checkpoint = checkpoint
        self.description = (
            f"normative encoder {type(model).__name__} ({checkpoint or 'in memory'}): embed_frames at "
            f"{self.fps:g} fps, {f'{self.size[0]}x{self.size[1]}' if self.size else 'native size'} "
            f"{'grey' if self.grayscale else 'RGB'}, "
            f"windows of {self.clip_len} frames"
        )

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> np.ndarray:
        x = frames.float().div(255.0)  # (T, C, H, W)
        t = x.shape[0]
        n_win = max(1, math.ceil(t / self.clip_len))
        pad = n_win * self.clip_len - t
        if pad:
            x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
        wins = x.view(n_win, self.clip_len, *x.shape[1:]).permute(0, 2, 1, 3, 4)  # (N, C, L, H, W)
        out = []
        for a in range(0, n_win, self.batch_windows):
            emb = self.model.embed_frames(wins[a : a + self.batch_windows].to(self.device))
            out.append(emb.reshape(-1, emb.shape[-1]).float().cpu())
        return torch.cat(out)[:t].numpy().astype(np.float32)


class FallbackFrameEncoder(FrameEncoder):
    """FALLBACK (no checkpoint): grey ``size`` x ``size`` pixels per frame, projected on the
    first ``dims`` principal components of a reference collection's frames."""

    kind = "fallback"

    def __init__(self, fps: float = 5.0, size: int = 32, dims: int = 32, max_fit_frames: int = 20000, seed: int = 0):
        self.fps = float(fps)
        self.size = (int(size), int(size))
        self.grayscale = True
        self.dims = int(dims)
        self.max_fit_frames = int(max_fit_frames)
        self.seed = int(seed)
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None
        self.description = (
            f"FALLBACK (no checkpoint): grey {size}x{size} frames at {self.fps:g} fps, PCA ({dims} dims) "
            "fitted on the reference collection's frames -- pixel statistics, not a learned "
            "normative representation"
        )

    @property
    def fitted(self) -> bool:
        return self.components is not None

    def encode(self, frames: torch.Tensor) -> np.ndarray:
        return frames.float().div(255.0).mean(1).reshape(frames.shape[0], -1).numpy().astype(np.float32)

    def fit(self, raws: Sequence[np.ndarray]) -> None:
        x = np.concatenate([r for r in raws if len(r)])
        if len(x) > self.max_fit_frames:
            x = x[np.random.default_rng(self.seed).choice(len(x), self.max_fit_frames, replace=False)]
        self.mean = x.mean(0)
        k = max(1, min(self.dims, len(x) - 1, x.shape[1]))
        _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        comp = vt[:k]
        # a deterministic sign per component: largest-magnitude loading positive
        signs = np.sign(comp[np.arange(k), np.abs(comp).argmax(1)])
        self.components = (comp * signs[:, None]).astype(np.float32)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.components is None:
            raise SeqNRLError("fallback PCA not fitted: call fit() on a reference collection first")
        return ((raw - self.mean) @ self.components.T).astype(np.float32)

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["dims"] = int(self.components.shape[0]) if self.components is not None else self.dims
        return d


def load_encoder(ckpt: str | os.PathLike | None, fallback_fps: float = 5.0, device: str = "cpu") -> FrameEncoder:
    """A :class:`NormativeFrameEncoder` from a checkpoint (at the checkpoint's own fps, or
    ``fallback_fps`` when it records none), or the fallback when ``ckpt`` is None."""
    if ckpt is None:
        return FallbackFrameEncoder(fps=fallback_fps)
    from seqnrl.models.loading import load_model

    return NormativeFrameEncoder(load_model(ckpt), fps=fallback_fps, device=device, checkpoint=str(ckpt))


# ---------------------------------------------------------------------------------------
# decoding and per-video descriptors
# ---------------------------------------------------------------------------------------
def decode_frames(path: str | os.PathLike, encoder: FrameEncoder, max_frames: int = 96) -> tuple[torch.Tensor, np.ndarray, float]:
    """Frames ``(T, C, H, W)`` uint8 at the encoder's rate, size and colour mode, at most
    ``max_frames`` spread over the whole video (the rate is lowered for long videos);
    their timestamps and the rate used."""
    info = probe_video(path)
    fps = encoder.fps
    if info.duration > 0 and info.duration * fps > max_frames:
        fps = max_frames / info.duration
    clip = read_video(path, fps=fps, size=encoder.size, grayscale=encoder.grayscale)
    frames = clip.frames.permute(1, 0, 2, 3)  # (T, C, H, W)
    ts = clip.timestamps.numpy()
    if len(frames) > max_frames:
        keep = np.linspace(0, len(frames) - 1, max_frames).round().astype(np.int64)
        frames, ts = frames[keep], ts[keep]
    return frames.contiguous(), ts, fps


def prepare_array(video: torch.Tensor, encoder: FrameEncoder) -> torch.Tensor:
    """An in-memory video ``(C, T, H, W)`` (float in [0, 1] or uint8) as the encoder's
    frames ``(T, C, H, W)`` uint8 (resized, grey or RGB)."""
    v = torch.as_tensor(video)
    if v.dtype == torch.uint8:
        v = v.float() / 255.0
    v = v.float().permute(1, 0, 2, 3)  # (T, C, H, W)
    if encoder.grayscale and v.shape[1] == 3:
        v = (0.299 * v[:, 0:1] + 0.587 * v[:, 1:2] + 0.114 * v[:, 2:3])
    elif not encoder.grayscale and v.shape[1] == 1:
        v = v.expand(-1, 3, -1, -1)
    if encoder.size is not None and tuple(v.shape[-2:]) != encoder.size:
        v = F.interpolate(v, size=encoder.size, mode="bilinear", align_corners=False, antialias=True)
    return (v.clamp(0, 1) * 255).round().to(torch.uint8)


def _periodicity(speed: np.ndarray, fps: float) -> tuple[float, float]:
    """Strength (autocorrelation, 0..1) and period (s) of the strongest peak of the speed
    signal's autocorrelation between 0.25 s and min(3 s, half the video)."""
    n = len(speed)
    lo = max(1, int(math.ceil(0.25 * fps)))
    hi = min(int(3.0 * fps), n // 2)
    if n < 6 or hi <= lo:
        return 0.0, 0.0
    x = speed - speed.mean()
    var = float((x * x).sum())
    if var <= 1e-12:
        return 0.0, 0.0
    ac = np.array([float((x[:-lag] * x[lag:]).sum()) / var for lag in range(lo, hi + 1)])
    j = int(ac.argmax())
    return float(max(ac[j], 0.0)), float((lo + j) / fps)


def motion_descriptor(feats: np.ndarray, fps: float) -> np.ndarray:
    """Frame-to-frame change statistics of per-frame features ``(T, D)``:
    ``[mean |d_t| per dim * fps (D), log1p speed mean/std/q10/q90, period strength, period s]``."""
    f = np.asarray(feats, dtype=np.float64)
    d = f.shape[1]
    if len(f) < 2:
        return np.zeros(d + N_MOTION_SCALARS, dtype=np.float32)
    diff = np.diff(f, axis=0)
    per_dim = np.abs(diff).mean(0) * fps
    speed = np.linalg.norm(diff, axis=1) * fps
    ls = np.log1p(speed)
    strength, period = _periodicity(speed, fps)
    scal = [ls.mean(), ls.std(), np.quantile(ls, 0.1), np.quantile(ls, 0.9), strength, period]
    return np.concatenate([per_dim, scal]).astype(np.float32)


def video_descriptor(feats: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(appearance (D,), motion (D + 6,))`` of one video's per-frame features."""
    f = np.asarray(feats, dtype=np.float32)
    return f.mean(0), motion_descriptor(f, fps)


def clip_descriptors(feats: np.ndarray, fps: float, n_clips: int, min_len: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """Descriptors of ``n_clips`` contiguous, equally long windows of a video (fewer when
    the video has fewer than ``n_clips * min_len`` frames; at least one)."""
    t = len(feats)
    n = max(1, min(int(n_clips), t // max(min_len, 1)))
    edges = np.linspace(0, t, n + 1).round().astype(np.int64)
    return [video_descriptor(feats[a:b], fps) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@dataclass
class VideoFeatures:
    """One embedded video: per-frame features and the key frame (medoid frame)."""

    item: VideoItem
    feats: np.ndarray  # (T, D) per-frame features
    times: np.ndarray  # (T,) seconds
    fps: float
    key_index: int
    thumb: np.ndarray  # (H, W) or (H, W, 3) uint8 key frame at analysis resolution
    appearance: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    motion: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @property
    def key_time(self) -> float:
        return float(self.times[self.key_index]) if len(self.times) else 0.0


class DescriptorScaler:
    """Column z-scores fitted on a reference collection; appearance and motion blocks are
    scaled so that their shares of the total variance are ``1 - motion_weight`` and
    ``motion_weight``."""

    def __init__(self, motion_weight: float = 0.3):
        if not 0.0 <= motion_weight <= 1.0:
            raise ValueError(f"motion_weight must be in [0, 1], got {motion_weight}")
        self.motion_weight = float(motion_weight)

    def fit(self, appearance: np.ndarray, motion: np.ndarray) -> DescriptorScaler:
        a, m = np.atleast_2d(appearance), np.atleast_2d(motion)
        self.mu_a, self.sd_a = a.mean(0), a.std(0)
        self.mu_m, self.sd_m = m.mean(0), m.std(0)
        for sd in (self.sd_a, self.sd_m):
            floor = max(1e-6, 1e-3 * float(sd.max())) if sd.size else 1e-6
            sd[sd < floor] = np.inf  # constant columns carry no information: zero them
        return self

    def transform(self, appearance: np.ndarray, motion: np.ndarray) -> np.ndarray:
        a = (np.atleast_2d(appearance) - self.mu_a) / self.sd_a
        m = (np.atleast_2d(motion) - self.mu_m) / self.sd_m
        wa = math.sqrt((1.0 - self.motion_weight) / max(a.shape[1], 1))
        wm = math.sqrt(self.motion_weight / max(m.shape[1], 1))
        return np.concatenate([a * wa, m * wm], axis=1).astype(np.float32)


@dataclass
class CollectionEmbedding:
    """Embedded collection. ``X`` ``(N, D)`` is the similarity space (scaled descriptors)."""

    videos: list[VideoFeatures]
    X: np.ndarray
    info: dict[str, Any]
    failed: list[tuple[str, str]]
    scaler: DescriptorScaler | None = None

    @property
    def items(self) -> list[VideoItem]:
        return [v.item for v in self.videos]

    @property
    def ids(self) -> list[str]:
        return [v.item.id for v in self.videos]

    @property
    def labels(self) -> list[str]:
        return [v.item.label for v in self.videos]

    @property
    def patients(self) -> list[str]:
        return [v.item.patient for v in self.videos]

    def __len__(self) -> int:
        return len(self.videos)


def _key_frame(feats: np.ndarray) -> int:
    """Frame whose feature is closest to the video's mean feature (its medoid frame)."""
    return int(np.linalg.norm(feats - feats.mean(0), axis=1).argmin()) if len(feats) else 0


def _thumb(frame: torch.Tensor) -> np.ndarray:
    x = frame.numpy()  # (C, H, W)
    return x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))


def encode_videos(
    sources: Iterable[tuple[VideoItem, Callable[[], tuple[torch.Tensor, np.ndarray, float]]]],
    encoder: FrameEncoder,
    progress: bool = True,
    total: int | None = None,
    desc: str = "embedding",
) -> tuple[list[tuple[VideoItem, np.ndarray, np.ndarray, float, np.ndarray]], list[tuple[str, str]]]:
    """Decode and encode every source: ``[(item, raw features, times, fps, frames of key
    candidates)]`` and the failures ``[(path, reason)]``. A failing video is reported and
    skipped, the others go on."""
    done, failed = [], []
    for item, load in tqdm(sources, total=total, desc=desc, disable=not progress, unit="video"):
        try:
            frames, ts, fps = load()
            if len(frames) == 0:
                raise SeqNRLError("no frames decoded", item.path)
            raw = encoder.encode(frames)
        except (SeqNRLError, OSError, RuntimeError, ValueError) as e:
            failed.append((item.path, str(e)))
            log.warning("skipping %s: %s", item.path, e)
            continue
        done.append((item, raw, ts, fps, frames))
    return done, failed


def finish_embedding(
    encoded: list[tuple[VideoItem, np.ndarray, np.ndarray, float, torch.Tensor]],
    encoder: FrameEncoder,
    motion_weight: float = 0.3,
    scaler: DescriptorScaler | None = None,
    failed: list[tuple[str, str]] | None = None,
) -> CollectionEmbedding:
    """Fit the encoder's collection stage if needed, pool descriptors and scale them
    (fitting the scaler on this collection unless one is given)."""
    if not encoder.fitted:
        encoder.fit([e[1] for e in encoded])
    videos = []
    for item, raw, ts, fps, frames in encoded:
        f = encoder.transform(raw)
        k = _key_frame(f)
        app, mot = video_descriptor(f, fps)
        videos.append(VideoFeatures(item, f, ts, fps, k, _thumb(frames[k]), app, mot))
    if not videos:
        raise SeqNRLError("no video could be embedded")
    app = np.stack([v.appearance for v in videos])
    mot = np.stack([v.motion for v in videos])
    if scaler is None:
        scaler = DescriptorScaler(motion_weight).fit(app, mot)
    x = scaler.transform(app, mot)
    info = encoder.info() | {
        "motion_weight": scaler.motion_weight,
        "appearance_dims": int(app.shape[1]),
        "motion_dims": int(mot.shape[1]),
        "motion_scalars": list(MOTION_SCALARS),
        "space": "z-scored descriptors (appearance mean | motion statistics), blocks weighted by variance share",
    }
    return CollectionEmbedding(videos, x, info, list(failed or []), scaler)


def embed_collection(
    items: Sequence[VideoItem],
    encoder: FrameEncoder | None = None,
    *,
    max_frames: int = 96,
    motion_weight: float = 0.3,
    scaler: DescriptorScaler | None = None,
    progress: bool = True,
) -> CollectionEmbedding:
    """Embed video files (see the module doc); unreadable ones are in ``failed``."""
    encoder = encoder or FallbackFrameEncoder()
    sources = ((it, (lambda it=it: decode_frames(it.path, encoder, max_frames))) for it in items)
    encoded, failed = encode_videos(sources, encoder, progress, total=len(items))
    if not encoded:
        raise SeqNRLError(f"none of the {len(items)} videos could be decoded: " + "; ".join(f"{p}: {r}" for p, r in failed[:5]))
    return finish_embedding(encoded, encoder, motion_weight, scaler, failed)


def embed_arrays(
    videos: Sequence[torch.Tensor],
    fps: float | Sequence[float],
    items: Sequence[VideoItem] | None = None,
    encoder: FrameEncoder | None = None,
    *,
    motion_weight: float = 0.3,
    scaler: DescriptorScaler | None = None,
    progress: bool = False,
) -> CollectionEmbedding:
    """Embed in-memory videos ``(C, T, H, W)`` (e.g. :func:`seqnrl.data.synthetic_echo.make_echo`
    clips) recorded at ``fps``. The encoder's rate is not applied (no resampling)."""
    encoder = encoder or FallbackFrameEncoder()
    fpss = [float(fps)] * len(videos) if np.isscalar(fps) else [float(f) for f in fps]
    items = list(items) if items is not None else [VideoItem(id=f"video{i:04d}", path=f"memory://{i}") for i in range(len(videos))]

    def loader(v: torch.Tensor, f: float):
        frames = prepare_array(v, encoder)
        return frames, np.arange(len(frames)) / f, f

    sources = ((it, (lambda v=v, f=f: loader(v, f))) for it, v, f in zip(items, videos, fpss))
    encoded, failed = encode_videos(sources, encoder, progress, total=len(videos))
    return finish_embedding(encoded, encoder, motion_weight, scaler, failed)

