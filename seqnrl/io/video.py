"""Read videos (PyAV containers, frame folders, DICOM cines) as tensors, whole or streamed.

Every reader goes through one pipeline: a *source* yields ``(timestamp, (H, W, C) uint8)``
frames with timestamps rebased to 0; an optional time-based resampler picks, for output
frame ``k`` at ``t_k = start + k / fps``, the latest source frame with timestamp
``<= t_k + 0.5 / native_fps``; then colour (RGB or ITU-R 601 luma) and size are applied per
frame. Nothing but :func:`read_video` holds more than a window of frames.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from seqnrl.errors import VideoReadError
from seqnrl.io.dicom import DicomCine, is_dicom
from seqnrl.io.frames import FrameFolder

Size = int | tuple[int, int] | None

_EPS = 1e-9
# Errors PyAV/FFmpeg raise on bad input; av's own classes all derive from av.FFmpegError.
_AV_ERRORS = (av.FFmpegError, OSError, ValueError, RuntimeError, EOFError, LookupError)
# Demuxers that open still images or text as a "video": a file of this kind is not a video.
_NOT_VIDEO_FORMATS = frozenset({"image2", "image2pipe", "tty", "bin", "idf", "adp"})


@dataclass
class VideoClip:
    """Decoded frames with their presentation times."""

    frames: torch.Tensor  # (C, T, H, W) uint8, or float32 in [0, 1]
    timestamps: torch.Tensor  # (T,) float64 seconds from the stream start
    fps: float
    source: str

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[1])


@dataclass
class VideoInfo:
    """What a video is, without decoding it (``n_frames`` may come from container metadata)."""

    path: str
    kind: str  # "container" | "folder" | "dicom"
    n_frames: int
    fps: float
    duration: float
    height: int
    width: int
    channels: int


@dataclass
class Window:
    """A fixed-length run of frames; the last ``T - n_valid`` repeat the last real frame."""

    frames: torch.Tensor  # (C, T, H, W) uint8
    start_index: int
    timestamps: torch.Tensor  # (T,) float64, padding repeats the last timestamp
    n_valid: int


class FrameSource(Protocol):
    """What the pipeline needs of a container, a frame folder or a DICOM cine."""

    path: str
    kind: str
    fps: float
    n_frames: int
    duration: float
    height: int
    width: int
    channels: int

    def frames(self) -> Iterator[tuple[float, np.ndarray]]: ...


class ContainerVideo:
    """The first video stream of a container file, decoded with PyAV."""

    kind = "container"

    def __init__(self, path: str | os.PathLike, default_fps: float = 25.0):
        self.path = str(path)
        with _open_container(self.path) as container:
            fmt = container.format.name
            if fmt in _NOT_VIDEO_FORMATS or fmt.endswith("_pipe"):
                raise VideoReadError(f"not a video (FFmpeg reads it as {fmt!r})", path)
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                raise VideoReadError(f"no video stream (streams: {', '.join(kinds)})", path)
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if ctx is None:
                raise VideoReadError("no decoder in this FFmpeg build for the video codec", path)
            self.codec = ctx.name
            self.width, self.height = int(ctx.width), int(ctx.height)
            if self.width <= 0 or self.height <= 0:
                raise VideoReadError("video stream has no frame size (header only?)", path)
            self.channels = 1 if (ctx.pix_fmt or "").startswith("gray") else 3
            rate = _positive_rate(stream.average_rate) or _positive_rate(stream.guessed_rate)
            n_frames = self._indexed = int(stream.frames or 0)
            span = None
            if n_frames <= 0 or rate is None or not stream.duration:
                n_frames, span = _demux_count(container, stream, self.path)
                if n_frames == 0:
                    raise VideoReadError("no decodable frames: the video stream is empty", path)
            if rate is None:
                rate = (n_frames - 1) / span if span and n_frames > 1 else default_fps
            self.fps = float(rate)
            self.n_frames = n_frames
            if span is not None:
                self.duration = span + 1.0 / self.fps
            else:
                self.duration = float(stream.duration * stream.time_base)

    def frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """Decode frame by frame; yield ``(timestamp rebased to 0, decoded frame)``. Frames stay
        in the decoder's pixel format: :func:`_convert` turns only the frames that the
        timeline keeps into RGB (resampling to a lower rate drops the rest unconverted)."""
        n = 0
        first_pts: int | None = None
        t = 0.0
        with _open_container(self.path) as container:
            stream = container.streams.video[0]
            # FFmpeg's own frame/slice threads: decoding runs beside the Python consumer
            # (bit-identical output; a large share of the cost of every pipeline)
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    if frame.pts is not None and frame.time_base is not None:
                        if first_pts is None:
                            first_pts = frame.pts
                        # exact rational rebasing: (pts - first) * time_base, then to float
                        t = float((frame.pts - first_pts) * frame.time_base)
                    elif n:  # no pts: continue the grid from the previous frame
                        t += 1.0 / self.fps
                    yield t, frame
                    n += 1
            except _AV_ERRORS as e:
                raise VideoReadError(f"decoding failed after {n} frames: {e}", self.path) from e
        if n == 0:
            raise VideoReadError(f"no decodable frames in the {self.codec} video stream", self.path)
        if n < self._indexed:
            raise VideoReadError(
                f"decoded {n} of the {self._indexed} frames the container indexes (truncated?)",
                self.path,
            )


def _open_container(path: str) -> av.container.InputContainer:
    try:
        return av.open(path)
    except _AV_ERRORS as e:
        raise VideoReadError(f"cannot open as a video container: {e}", path) from e


def _positive_rate(rate: Fraction | None) -> Fraction | None:
    return rate if rate is not None and rate > 0 else None


def _demux_count(container, stream, path: str) -> tuple[int, float | None]:
    """Count video packets (no decoding) and the span of their presentation times."""
    n = 0
    lo = hi = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            n += 1
            if packet.pts is not None:
                lo = packet.pts if lo is None else min(lo, packet.pts)
                hi = packet.pts if hi is None else max(hi, packet.pts)
    except _AV_ERRORS as e:
        raise VideoReadError(f"cannot read packets: {e}", path) from e
    span = float((hi - lo) * stream.time_base) if lo is not None and hi is not None else None
    return n, span


def open_source(path: str | os.PathLike, folder_fps: float = 25.0) -> FrameSource:
    """Pick the reader for ``path``: folder -> frames, DICOM -> cine, else a container."""
    p = Path(path)
    if not p.exists():
        raise VideoReadError("no such file or folder", path)
    if p.is_dir():
        return FrameFolder(p, fps=folder_fps)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise VideoReadError(f"cannot stat: {e}", path) from e
    if size == 0:
        raise VideoReadError("empty file (0 bytes)", path)
    if is_dicom(p):
        return DicomCine(p, default_fps=folder_fps)
    return ContainerVideo(p, default_fps=folder_fps)


def probe_video(path: str | os.PathLike, *, folder_fps: float = 25.0) -> VideoInfo:
    """Frame count, rate, duration and size of a video without decoding its frames."""
    src = open_source(path, folder_fps)
    return VideoInfo(
        path=str(path),
        kind=src.kind,
        n_frames=src.n_frames,
        fps=src.fps,
        duration=src.duration,
        height=src.height,
        width=src.width,
        channels=src.channels,
    )


def read_video(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    size: Size = None,
    grayscale: bool = False,
    start: float | None = None,
    end: float | None = None,
    dtype: torch.dtype = torch.uint8,
    folder_fps: float = 25.0,
) -> VideoClip:
    """Decode a whole video (or ``[start, end)`` seconds of it) into a :class:`VideoClip`.

    ``size`` is ``(H, W)`` or an int for a square; ``fps`` resamples by timestamp;
    ``dtype=torch.float32`` scales to [0, 1].
    """
    if dtype not in (torch.uint8, torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be uint8 or a float type, got {dtype}")
    src = open_source(path, folder_fps)
    ts, frames = [], []
    for t, frame in _pipeline(src, fps=fps, size=size, grayscale=grayscale, start=start, end=end):
        ts.append(t)
        frames.append(frame)
    video = rearrange(torch.stack(frames), "t c h w -> c t h w")
    if dtype != torch.uint8:
        video = video.to(dtype) / 255.0
    return VideoClip(
        frames=video,
        timestamps=torch.tensor(ts, dtype=torch.float64),
        fps=float(fps) if fps is not None else src.fps,
        source=str(path),
    )


def iter_frames(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    size: Size = None,
    grayscale: bool = False,
    start: float | None = None,
    end: float | None = None,
    folder_fps: float = 25.0,
) -> Iterator[tuple[float, torch.Tensor]]:
    """Stream ``(timestamp, (C, H, W) uint8)`` frames, decoding as they are consumed."""
    src = open_source(path, folder_fps)
    yield from _pipeline(src, fps=fps, size=size, grayscale=grayscale, start=start, end=end)


def stream_windows(
    path: str | os.PathLike,
    window: float | int,
    stride: float | int,
    *,
    unit: str = "frames",
    fps: float | None = None,
    size: Size = None,
    grayscale: bool = False,
    pad_last: bool = True,
    folder_fps: float = 25.0,
    align_last: bool = False,
) -> Iterator[Window]:
    """Stream windows of ``window`` frames starting every ``stride`` frames (or seconds).

    At most ``2 * window`` frames are held. With ``stride <= window`` every frame is covered;
    frames after the last full window go into one final window padded with the last frame
    (``pad_last=True``) or are dropped. ``align_last=True``: that final window is instead the
    last ``window`` frames of the video (it starts at ``n - window`` and overlaps the one
    before), the layout of :func:`seqnrl.data.sampling.eval_window_starts` that training and
    evaluation use, so a model whose frame scores depend on the whole window scores the same
    frames together; a video shorter than ``window`` still gets one padded window.
    """
    src = open_source(path, folder_fps)
    rate = float(fps) if fps is not None else src.fps
    w, s = _n_frames(window, unit, rate, "window"), _n_frames(stride, unit, rate, "stride")
    buf: deque[tuple[float, torch.Tensor]] = deque()
    tail: deque[tuple[float, torch.Tensor]] = deque(maxlen=w)  # the last w frames
    next_start = 0  # index of the first frame of the next window
    covered = 0  # frames [0, covered) are inside an emitted window
    n = 0
    for t, frame in _pipeline(src, fps=fps, size=size, grayscale=grayscale):
        if n >= next_start:
            buf.append((t, frame))
        if align_last:
            tail.append((t, frame))
        n += 1
        if len(buf) == w:
            yield _make_window(buf, next_start, w)
            covered = next_start + w
            for _ in range(min(s, w)):
                buf.popleft()
            next_start += s
    if align_last and n > covered and n >= w:
        yield _make_window(tail, n - w, w)
    elif (pad_last or align_last) and buf and n > covered:
        yield _make_window(buf, next_start, w)


def _n_frames(value: float | int, unit: str, rate: float, what: str) -> int:
    if unit == "frames":
        if int(value) != value:
            raise ValueError(f"{what} in frames must be a whole number, got {value}")
        n = int(value)
    elif unit == "seconds":
        n = round(value * rate)
    else:
        raise ValueError(f"unit must be 'frames' or 'seconds', got {unit!r}")
    if n < 1:
        raise ValueError(f"{what} must cover at least one frame, got {value} {unit}")
    return n


def _make_window(buf: deque[tuple[float, torch.Tensor]], start: int, length: int) -> Window:
    items = list(buf)[:length]
    n_valid = len(items)
    items += [items[-1]] * (length - n_valid)
    return Window(
        frames=rearrange(torch.stack([f for _, f in items]), "t c h w -> c t h w"),
        start_index=start,
        timestamps=torch.tensor([t for t, _ in items], dtype=torch.float64),
        n_valid=n_valid,
    )


def _pipeline(
    src: FrameSource,
    *,
    fps: float | None,
    size: Size,
    grayscale: bool,
    start: float | None = None,
    end: float | None = None,
) -> Iterator[tuple[float, torch.Tensor]]:
    """Timeline selection, then per-frame colour and size; raises when nothing is left."""
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    t0 = max(0.0, float(start)) if start is not None else 0.0
    t1 = float(end) if end is not None else math.inf
    if t1 <= t0:
        raise ValueError(f"end ({end}) must be after start ({start})")
    out_hw = _out_size(size)
    timeline = (
        _select(src.frames(), t0, t1)
        if fps is None
        else _resample(src.frames(), float(fps), src.fps, t0, t1)
    )
    last_id, last = None, None
    for t, frame_id, frame in timeline:
        if frame_id != last_id:  # resampling repeats frames: convert each source frame once
            last_id, last = frame_id, _convert(frame, grayscale, out_hw)
        yield t, last
    if last is None:
        raise VideoReadError(f"no frames between {t0:g} s and {t1:g} s", src.path)


def _select(
    frames: Iterator[tuple[float, np.ndarray]], t0: float, t1: float
) -> Iterator[tuple[float, int, np.ndarray]]:
    """Source frames with ``t0 <= t < t1`` at their own timestamps."""
    for i, (t, frame) in enumerate(frames):
        if t < t0 - _EPS:
            continue
        if t >= t1 - _EPS:
            break
        yield t, i, frame


def _resample(
    frames: Iterator[tuple[float, np.ndarray]], fps: float, native_fps: float, t0: float, t1: float
) -> Iterator[tuple[float, int, np.ndarray]]:
    """Output frame k at ``t0 + k / fps`` is the latest source frame at or before it (with
    half a source frame of tolerance); ``floor(span * fps)`` frames where span runs from
    ``t0`` to ``min(t1, last_ts + 1 / native_fps)``, and at least one when the source has a
    frame in the interval (a clip shorter than one output interval, e.g. a single frame read
    at a lower rate, still gives its frame instead of nothing)."""
    tol = 0.5 / native_fps
    k = 0
    prev: tuple[int, np.ndarray] | None = None
    last_t = 0.0
    for i, (t, frame) in enumerate(frames):
        while prev is not None:
            tk = t0 + k / fps
            if tk >= t1 - _EPS or t <= tk + tol + _EPS:
                break
            yield tk, prev[0], prev[1]
            k += 1
        prev, last_t = (i, frame), t
        if t >= t1 + tol:
            break
    if prev is None:
        return
    span = min(t1, last_t + 1.0 / native_fps) - t0
    n = math.floor(span * fps + 1e-6)
    if last_t >= t0 - tol:  # the source has a frame in the interval: at least that one
        n = max(n, 1)
    while k < n:
        yield t0 + k / fps, prev[0], prev[1]
        k += 1


def _out_size(size: Size) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    return h, w


#: A decoded frame at least this many times larger than the requested size (in both
#: dimensions) is first shrunk inside FFmpeg (swscale, area averaging) to twice the requested
#: size, then area-averaged as usual: the cost of a frame then depends on the output size,
#: not on the native resolution (a 4000x4000 clip no longer converts 48 MB of RGB per frame).
#: Frames below the factor (every ultrasound clip up to 8x the model's input) are converted
#: exactly as before.
PRESHRINK_FACTOR = 8
#: Frames above this many pixels are pre-shrunk whenever the output is at most half their
#: size (e.g. sector detection at 640 px of a 4000x4000 clip): their full-size RGB and luma
#: arrays alone would take hundreds of MB.
HUGE_FRAME_PIXELS = 2048 * 2048


def _preshrink(frame: av.VideoFrame, out_hw: tuple[int, int] | None) -> av.VideoFrame:
    if out_hw is None:
        return frame
    h, w = frame.height, frame.width
    far = h >= PRESHRINK_FACTOR * out_hw[0] and w >= PRESHRINK_FACTOR * out_hw[1]
    huge = h * w > HUGE_FRAME_PIXELS and h >= 2 * out_hw[0] and w >= 2 * out_hw[1]
    if not (far or huge):
        return frame
    return frame.reformat(width=2 * out_hw[1], height=2 * out_hw[0], interpolation="AREA")


def _convert(frame: np.ndarray | av.VideoFrame, grayscale: bool, out_hw: tuple[int, int] | None) -> torch.Tensor:
    """``(H, W, C)`` uint8 (or a decoded PyAV frame) -> ``(C, H, W)`` uint8, C = 1 (luma) if
    grayscale else 3; a decoded frame far larger than ``out_hw`` is shrunk in FFmpeg first
    (:data:`PRESHRINK_FACTOR`)."""
    if isinstance(frame, av.VideoFrame):
        frame = _preshrink(frame, out_hw).to_ndarray(format="rgb24")
    if grayscale and frame.shape[-1] == 3:
        frame = luma(frame)[..., None]
    if not (frame.flags.writeable and frame.flags.c_contiguous):
        frame = np.array(frame, order="C")  # torch wants writable memory
    x = rearrange(torch.from_numpy(frame), "h w c -> c h w")
    if not grayscale and x.shape[0] == 1:
        x = repeat(x, "1 h w -> c h w", c=3)
    if out_hw is not None and tuple(x.shape[-2:]) != out_hw:
        x = resize_frames(x[None], out_hw)[0]
    return x.contiguous()


def luma(rgb: np.ndarray, axis: int = -1) -> np.ndarray:
    """ITU-R 601 luma ``(299 R + 587 G + 114 B) / 1000`` rounded, as PIL's ``convert("L")``.

    ``rgb``: uint8 with the 3 colour planes on ``axis`` (``(H, W, 3)`` by default, or e.g.
    ``(N, 3, H, W)`` with ``axis=1``) -> uint8 without that axis. Numpy integer arithmetic
    (single-threaded, so it stays fast on a busy machine, unlike small torch integer ops).
    Every seqnrl reader and the summariser convert colour with this one function.
    """
    f = np.moveaxis(np.asarray(rgb), axis, -1).astype(np.uint32)
    return ((299 * f[..., 0] + 587 * f[..., 1] + 114 * f[..., 2] + 500) // 1000).astype(np.uint8)


def resize_frames(x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 (or float on the 0..255 scale) -> uint8 ``(N, C, h, w)``: area
    averaging when shrinking both sides, antialiased bilinear otherwise, rounded. Every
    seqnrl reader and the summariser resize with this one function."""
    h, w = x.shape[-2:]
    out_hw = (int(out_hw[0]), int(out_hw[1]))
    if (h, w) == out_hw:
        return (
            x.round().clamp(0, 255).to(torch.uint8) if x.is_floating_point() else x.to(torch.uint8)
        )
    xf = x.float()
    if out_hw[0] <= h and out_hw[1] <= w:
        y = F.interpolate(xf, size=out_hw, mode="area")
    else:
        y = F.interpolate(xf, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)
