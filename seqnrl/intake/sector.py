"""Sector / field-of-view masking of ultrasound recordings.

An ultrasound screen recording holds the image (a fan for convex and phased-array probes,
a rectangle for linear ones) surrounded by things that are not anatomy: burnt-in text
(patient, date, depth, gain), logos, measurement overlays, an ECG trace. The image is the
part that *changes over time* (speckle, breathing, lung sliding, the heart); the
surroundings are static, or change only in small, separate places (a clock, a sweeping ECG).

:func:`detect_sector` finds the imaging area from a sample of frames:

1. per-pixel temporal standard deviation of the grey frames, box-filtered over ~1 % of the
   image side so that speckle holes close;
2. thresholded at ``clip(rel_threshold * p90(std), min_threshold, max_threshold)`` grey
   levels (relative, so bright and dim recordings behave alike; floored, so codec noise
   in a black surround never counts as motion);
3. morphological closing (speckle holes), then opening (removes thin lines and the bridges
   between the image and nearby overlays: ECG traces, cursors, text edges), holes filled
   (:mod:`scipy.ndimage`);
4. the largest connected component, then its convex hull filled (sector fans and linear
   images are convex), which also restores dark, nearly static far-field regions.

The result is checked before it is used: a mask covering less than ``min_area`` of the
frame, or a surround that is not mostly dark (a camera scene with a static background, not
an ultrasound screen), is rejected and nothing is masked (:attr:`SectorMask.reason` says
why). Everything outside the mask is set to 0 by :func:`apply_mask` before a model sees it.

Masks are cached per recording (resolved path + size + modification time + settings) in
memory, and can be written as / read from PNG files (white = imaging area, black = blank),
which is also how a user provides a mask of their own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, PngImagePlugin
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from seqnrl.errors import ConfigError, SeqNRLError

log = logging.getLogger(__name__)

MASK_MODES = ("auto", "none")
_PNG_KEY = "seqnrl-sector-key"


@dataclass
class SectorParams:
    """Settings of :func:`detect_sector` (all recorded in the cache key).

    Attributes:
        sample_frames: at most this many frames are used, evenly spaced over the first
            ``sample_seconds`` of the recording.
        sample_seconds: how far into the recording frames are sampled (a live scan only has
            its beginning; the sector of a recording rarely changes).
        rel_threshold: motion threshold as a fraction of the 90th percentile of the std map.
        min_threshold, max_threshold: bounds of the motion threshold (grey levels, 0..255).
        smooth: box filter of the std map, as a fraction of the shorter image side.
        open_frac: radius of the closing (the opening uses twice it), as a fraction of the
            shorter image side.
        min_area: a mask smaller than this fraction of the frame is rejected.
        dark_level: grey level at or under which a surround pixel counts as dark.
        min_dark_fraction: the surround must be at least this dark (fraction of its pixels
            whose mean is ``<= dark_level``), else the recording is not an ultrasound screen.
        full_area: a mask covering at least this fraction of the frame means "the whole
            frame is image": nothing is masked.
    """

    sample_frames: int = 48
    sample_seconds: float = 8.0
    rel_threshold: float = 0.05
    min_threshold: float = 0.5
    max_threshold: float = 1.5
    smooth: float = 0.01
    open_frac: float = 0.01
    min_area: float = 0.05
    dark_level: float = 30.0
    min_dark_fraction: float = 0.5
    full_area: float = 0.995

    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(vars(self).items()))


@dataclass
class SectorMask:
    """A field-of-view mask and how it was obtained.

    ``mask`` is ``(H, W)`` bool at the recording's native frame size (True = imaging area)
    or ``None`` when nothing is masked; ``method`` is ``"auto"``, ``"file"`` or ``"none"``.
    """

    mask: np.ndarray | None
    method: str
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.mask is not None

    @property
    def area_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask is not None else 1.0

    def describe(self) -> dict[str, Any]:
        """JSON-able description (no pixels)."""
        d: dict[str, Any] = {"method": self.method, "active": self.active}
        if self.mask is not None:
            d["area_fraction"] = round(self.area_fraction, 4)
            d["size_hw"] = list(self.mask.shape)
        if self.reason:
            d["reason"] = self.reason
        d.update(self.info)
        return d


# ---------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------
def _grey(frames: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` or ``(N, H, W, C)`` -> ``(N, H, W)`` float32 grey levels 0..255."""
    a = np.asarray(frames)
    if a.ndim == 4:
        if a.shape[-1] == 1:
            a = a[..., 0]
        else:
            a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if a.ndim != 3:
        raise ValueError(f"frames must be (N, H, W) or (N, H, W, C), got shape {np.shape(frames)}")
    a = a.astype(np.float32)
    if np.issubdtype(np.asarray(frames).dtype, np.floating) and a.max(initial=0) <= 1.0:
        a = a * 255.0
    return a


def _disk(radius: int) -> np.ndarray:
    r = max(1, int(radius))
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def convex_hull_mask(region: np.ndarray) -> np.ndarray:
    """The filled convex hull of the True pixels of ``region`` (``(H, W)`` bool)."""
    h, w = region.shape
    ys, xs = np.nonzero(region)
    if len(ys) < 3:
        return region.copy()
    # hull of the boundary pixels' centres; the region itself is added back below
    edge = region & ~ndimage.binary_erosion(region)
    ey, ex = np.nonzero(edge)
    pts = np.stack([ex, ey], 1).astype(np.float64)
    try:
        hull = ConvexHull(pts)
    except QhullError:  # all pixels on a line
        return region.copy()
    poly = [(float(x), float(y)) for x, y in pts[hull.vertices]]
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).polygon(poly, fill=1)
    return np.asarray(im, dtype=bool) | region


def detect_sector(frames: np.ndarray, params: SectorParams | None = None) -> SectorMask:
    """Find the imaging area of ``frames`` (``(N, H, W[, C])``, uint8 or float in [0, 1]).

    Returns a :class:`SectorMask`; its ``mask`` is ``None`` (nothing masked) when fewer than
    two frames are given, nothing moves, the moving area is too small, the surround is not
    dark, or the imaging area fills the frame.
    """
    p = params or SectorParams()
    a = _grey(frames)
    n, h, w = a.shape
    info: dict[str, Any] = {"n_frames_used": int(n)}
    if n < 2:
        return SectorMask(None, "auto", f"cannot detect a sector from {n} frame(s)", info)
    std = a.std(axis=0)
    side = min(h, w)
    k = max(3, int(round(p.smooth * side)) | 1)
    std_s = ndimage.uniform_filter(std, size=k, mode="nearest")
    p90 = float(np.percentile(std_s, 90))
    thr = float(np.clip(p.rel_threshold * p90, p.min_threshold, p.max_threshold))
    info["threshold"] = round(thr, 3)
    moving = std_s > thr
    if not moving.any():
        return SectorMask(None, "auto", "no pixel changes over the sampled frames", info)
    r = max(1, int(round(p.open_frac * side)))
    # edge padding: an image that touches the frame border must not lose a rim there
    pad = 2 * r + 1
    clean = np.pad(moving, pad, mode="edge")
    clean = ndimage.binary_closing(clean, structure=_disk(r))  # speckle holes
    clean = ndimage.binary_opening(clean, structure=_disk(2 * r))  # thin lines, bridges
    clean = ndimage.binary_fill_holes(clean[pad:-pad, pad:-pad])
    labels, n_lab = ndimage.label(clean)
    if n_lab == 0:
        return SectorMask(None, "auto", "the moving area is only thin lines or specks", info)
    sizes = ndimage.sum_labels(clean, labels, index=np.arange(1, n_lab + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    info["components"] = int(n_lab)
    mask = convex_hull_mask(largest)
    area = float(mask.mean())
    info["area_fraction"] = round(area, 4)
    if area < p.min_area:
        return SectorMask(None, "auto", f"moving area covers only {area:.1%} of the frame", info)
    if area >= p.full_area:
        return SectorMask(None, "auto", "the imaging area fills the whole frame", info)
    surround = ~mask
    dark = float((a.mean(axis=0)[surround] <= p.dark_level).mean())
    info["surround_dark_fraction"] = round(dark, 4)
    if dark < p.min_dark_fraction:
        return SectorMask(
            None,
            "auto",
            f"the static surround is not dark ({dark:.0%} dark pixels): not an ultrasound screen",
            info,
        )
    return SectorMask(mask, "auto", "", info)


# ---------------------------------------------------------------------------------------
# applying a mask
# ---------------------------------------------------------------------------------------
def resize_mask(mask: np.ndarray | torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Conservatively resize a bool mask to ``hw``: an output pixel is kept only if every
    source pixel it overlaps is inside (so nothing of an overlay bleeds into the border)."""
    m = torch.as_tensor(
        np.asarray(mask, dtype=bool) if not isinstance(mask, torch.Tensor) else mask
    )
    m = m.bool()
    if tuple(m.shape) == tuple(hw):
        return m
    outside = (~m).float()[None, None]
    return F.adaptive_max_pool2d(outside, tuple(int(v) for v in hw))[0, 0] < 0.5


def apply_mask(frames: torch.Tensor, mask: np.ndarray | torch.Tensor | None) -> torch.Tensor:
    """Blank (set to 0) everything outside ``mask`` in ``frames`` ``(C, T, H, W)`` (or
    ``(B, C, T, H, W)``). ``mask`` is ``(H, W)`` bool; another size is resized with
    :func:`resize_mask`. ``None`` returns ``frames`` unchanged. A data-module transform."""
    if mask is None:
        return frames
    if frames.ndim not in (4, 5):
        raise ValueError(
            f"frames must be (C, T, H, W) or (B, C, T, H, W), got {tuple(frames.shape)}"
        )
    m = resize_mask(mask, tuple(frames.shape[-2:])).to(frames.device)
    return frames * m.to(frames.dtype)


# ---------------------------------------------------------------------------------------
# mask files and the per-recording cache
# ---------------------------------------------------------------------------------------
def save_mask_png(path: str | os.PathLike, mask: np.ndarray, key: str = "") -> Path:
    """Write ``mask`` as an 8-bit PNG (255 = imaging area); ``key`` goes in a text chunk."""
    from seqnrl.io.atomic import atomic_path

    info = PngImagePlugin.PngInfo()
    if key:
        info.add_text(_PNG_KEY, key)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).save(
            tmp, format="PNG", pnginfo=info
        )
    return Path(path)


def load_mask_png(path: str | os.PathLike, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask image (any mode; pixels > 127 after grey conversion are the imaging area).

    With ``hw`` (the recording's frame size) a mask of another size is resized (nearest) if
    its aspect ratio matches within 2 %, else :class:`ConfigError` is raised.
    """
    try:
        with Image.open(path) as im:
            im.load()
            grey = im.convert("L")
    except (OSError, ValueError, SyntaxError) as e:
        raise ConfigError(f"cannot read mask image: {e}", path) from e
    if hw is not None and (grey.height, grey.width) != tuple(hw):
        h, w = hw
        if abs(grey.width / grey.height - w / h) > 0.02 * (w / h):
            raise ConfigError(
                f"mask is {grey.width}x{grey.height} (WxH) but the video is {w}x{h}: "
                "aspect ratios differ",
                path,
            )
        log.warning("%s: mask resized from %dx%d to %dx%d", path, grey.width, grey.height, w, h)
        grey = grey.resize((w, h), Image.Resampling.NEAREST)
    mask = np.asarray(grey) > 127
    if not mask.any():
        raise ConfigError("mask image is entirely black (nothing would be kept)", path)
    return mask


def png_key(path: str | os.PathLike) -> str | None:
    """The cache key stored in a mask PNG written by :func:`save_mask_png` (None if none)."""
    try:
        with Image.open(path) as im:
            return im.text.get(_PNG_KEY) if hasattr(im, "text") else None
    except (OSError, ValueError, SyntaxError):
        return None


def recording_key(path: str | os.PathLike, params: SectorParams | None = None) -> str:
    """Identity of a recording's content for caching: a hash of the resolved path, size,
    modification time and the detection settings (the path itself is not stored)."""
    p = Path(path)
    try:
        st = p.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "?"
    text = f"{os.fsencode(p.resolve()).hex()}|{stamp}|{(params or SectorParams()).key()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SectorCache:
    """In-memory LRU of masks by :func:`recording_key`."""

    def __init__(self, max_items: int = 256):
        self.max_items = max_items
        self._items: OrderedDict[str, SectorMask] = OrderedDict()

    def get(self, key: str) -> SectorMask | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, value: SectorMask) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


CACHE = SectorCache()


#: Sector detection runs on frames whose longest side is at most this (larger recordings are
#: area-averaged down first, the mask is scaled back up): its cost is bounded whatever the
#: native resolution (a 4000x4000 clip took minutes at full size). Every ultrasound clip in
#: ../shared/data is smaller, so their masks are unchanged.
DETECT_MAX_SIDE = 640


def detection_size(height: int, width: int, max_side: int = DETECT_MAX_SIDE) -> tuple[int, int] | None:
    """``(h, w)`` to detect at, aspect kept, or None when the native size is small enough."""
    if max(height, width) <= max_side:
        return None
    f = max_side / max(height, width)
    return max(1, round(height * f)), max(1, round(width * f))


def sample_frames(
    path: str | os.PathLike, params: SectorParams | None = None, folder_fps: float = 25.0, info=None
) -> np.ndarray:
    """Grey frames ``(N, H, W)`` uint8, evenly spaced over the first ``sample_seconds`` of the
    recording (decoding stops there), at the native size or, for recordings larger than
    :data:`DETECT_MAX_SIDE`, at :func:`detection_size`. ``info``: the recording's
    :func:`~seqnrl.io.video.probe_video` result when the caller has it."""
    from seqnrl.io.video import iter_frames, probe_video

    p = params or SectorParams()
    info = info or probe_video(path, folder_fps=folder_fps)
    n_span = max(1, min(info.n_frames, int(round(p.sample_seconds * info.fps))))
    step = max(1, n_span // max(1, p.sample_frames))
    size = detection_size(info.height, info.width)
    out = []
    for i, (_, frame) in enumerate(iter_frames(path, grayscale=True, size=size, folder_fps=folder_fps)):
        if i >= n_span or len(out) >= p.sample_frames:
            break
        if i % step == 0:
            out.append(frame[0].numpy())
    if not out:
        raise SeqNRLError("no frames to detect the sector from", path)
    return np.stack(out)


def sector_mask_for(
    path: str | os.PathLike,
    mode: str = "auto",
    *,
    params: SectorParams | None = None,
    png: str | os.PathLike | None = None,
    folder_fps: float = 25.0,
    cache: SectorCache | None = CACHE,
) -> SectorMask:
    """The mask of one recording.

    ``mode``: ``"none"`` (no masking), ``"auto"`` (detect; cached in memory and, with
    ``png``, in that file, reused while the recording is unchanged) or the path of a mask
    image. The returned mask has the recording's native frame size.
    """
    mode = str(mode)
    if mode == "none":
        return SectorMask(None, "none", "masking switched off")
    if mode != "auto":
        from seqnrl.io.video import probe_video

        info = probe_video(path, folder_fps=folder_fps)
        mask = load_mask_png(mode, (info.height, info.width))
        return SectorMask(mask, "file", "", {"file": Path(mode).name})
    params = params or SectorParams()
    key = recording_key(path, params)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    if png is not None and Path(png).is_file() and png_key(png) == key:
        res = SectorMask(load_mask_png(png), "auto", "", {"cached_png": True})
    else:
        from seqnrl.io.video import probe_video

        info = probe_video(path, folder_fps=folder_fps)
        res = detect_sector(sample_frames(path, params, folder_fps, info), params)
        if res.mask is not None and res.mask.shape != (info.height, info.width):  # detected at a bounded size
            res = dataclasses.replace(res, mask=_upscale_mask(res.mask, (info.height, info.width)))
        if png is not None and res.mask is not None:
            save_mask_png(png, res.mask, key)
    if cache is not None:
        cache.put(key, res)
    return res


def _upscale_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``hw`` (native frame size)."""
    rows = np.minimum((np.arange(hw[0]) + 0.5) * mask.shape[0] / hw[0], mask.shape[0] - 1).astype(np.int64)
    cols = np.minimum((np.arange(hw[1]) + 0.5) * mask.shape[1] / hw[1], mask.shape[1] - 1).astype(np.int64)
    return mask[rows[:, None], cols[None, :]]


def resolve_mode(flag: str | None, spec_mode: str | None) -> tuple[str, str]:
    """Which masking to use, and where the choice came from: the ``--mask`` flag, else the
    ``sector_mask`` of the checkpoint's input spec (what the model was trained on)."""
    if flag:
        return _check_mode(flag), "--mask"
    if spec_mode:
        return _check_mode(str(spec_mode)), "checkpoint input spec"
    return "none", "default"


def _check_mode(mode: str) -> str:
    if mode in MASK_MODES:
        return mode
    if not Path(mode).is_file():
        raise ConfigError(f"--mask must be 'auto', 'none' or an existing image file, got {mode!r}")
    return mode
