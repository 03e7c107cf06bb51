"""Write ``(C, T, H, W)`` tensors as video files (H.264 by default, lossless on request)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from einops import rearrange, repeat

from seqnrl.errors import SeqNRLError
from seqnrl.io.atomic import atomic_path

# Lossless codecs in order of preference: (codec, pixel format, options). libx264rgb at crf 0
# is exact for RGB and plays in .mp4; ffv1 (bgr0) is exact too but wants .mkv/.avi/.mov.
_LOSSLESS_CODECS: list[tuple[str, str, dict[str, str]]] = [
    ("libx264rgb", "rgb24", {"crf": "0"}),
    ("ffv1", "bgr0", {}),
]


def write_video(
    path: str | os.PathLike,
    frames: torch.Tensor,
    fps: float,
    *,
    lossless: bool = False,
    crf: int = 23,
    overwrite: bool = True,
) -> Path:
    """Encode ``frames`` (C, T, H, W), uint8 or float in [0, 1], C = 1 or 3, at ``fps``.

    Default: libx264 yuv420p at ``crf``; odd heights/widths are padded to even by repeating
    the last row/column. ``lossless=True``: libx264rgb crf 0 (ffv1 if this FFmpeg build lacks
    it), pixel-exact, no padding. Grey frames are written as grey RGB. Frame ``i`` gets the
    presentation time ``i / fps``. The file appears atomically; ``overwrite=False`` raises
    :class:`FileExistsError` when ``path`` exists.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    video = _to_uint8_thwc(frames)
    if lossless:
        codec, pix_fmt, options = _lossless_codec()
    else:
        codec, pix_fmt, options = "libx264", "yuv420p", {"crf": str(int(crf))}
        pad_h, pad_w = video.shape[1] % 2, video.shape[2] % 2
        if pad_h or pad_w:
            video = np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(10_000)
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        try:
            with av.open(str(tmp), mode="w") as container:
                stream = container.add_stream(codec, rate=rate)
                stream.width, stream.height = video.shape[2], video.shape[1]
                stream.pix_fmt = pix_fmt
                stream.options = options
                for i, image in enumerate(video):
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts = i
                    container.mux(stream.encode(frame))
                container.mux(stream.encode(None))
        except (av.FFmpegError, OSError, ValueError) as e:
            raise SeqNRLError(f"cannot write video with {codec}: {e}", path) from e
    return path


def write_video_stream(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    hw: tuple[int, int],
    *,
    crf: int = 23,
    preset: str = "ultrafast",
    overwrite: bool = True,
) -> int:
    """Encode ``(h, w, 3)`` uint8 frames one at a time (libx264, yuv420p, ``hw`` even)
    without holding them: for summaries of recordings of any length. The file appears
    atomically (nothing at ``path`` when encoding fails part-way). Returns the number of
    frames written."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    h, w = int(hw[0]), int(hw[1])
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise ValueError(f"yuv420p needs even positive sides, got {h}x{w}")
    n = 0
    with atomic_path(Path(path), overwrite=overwrite) as tmp:
        try:
            with av.open(str(tmp), mode="w") as container:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(10_000))
                stream.height, stream.width = h, w
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(int(crf)), "preset": preset}
                for image in frames:
                    if image.shape != (h, w, 3) or image.dtype != np.uint8:
                        raise ValueError(f"frame {n}: expected ({h}, {w}, 3) uint8, got {image.shape} {image.dtype}")
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                    frame.pts = n
                    container.mux(stream.encode(frame))
                    n += 1
                container.mux(stream.encode(None))
        except (av.FFmpegError, OSError, ValueError) as e:
            raise SeqNRLError(f"cannot write video: {e}", path) from e
    return n


def _lossless_codec() -> tuple[str, str, dict[str, str]]:
    for codec, pix_fmt, options in _LOSSLESS_CODECS:
        if codec in av.codecs_available:
            return codec, pix_fmt, dict(options)
    names = ", ".join(c for c, _, _ in _LOSSLESS_CODECS)
    raise SeqNRLError(f"this FFmpeg build has none of the lossless encoders {names}")


def _to_uint8_thwc(frames: torch.Tensor) -> np.ndarray:
    """(C, T, H, W) uint8/float -> contiguous (T, H, W, 3) uint8 numpy."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        raise ValueError("frames must be a (C, T, H, W) tensor")
    c, t = frames.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"frames must have 1 or 3 channels, got {c}")
    if t == 0:
        raise ValueError("frames holds no frames (T = 0)")
    x = frames.detach().cpu()
    if x.is_floating_point():
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 or float in [0, 1], got {x.dtype}")
    if c == 1:
        x = repeat(x, "1 t h w -> c t h w", c=3)
    return np.ascontiguousarray(rearrange(x, "c t h w -> t h w c").numpy())
