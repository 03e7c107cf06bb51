"""Frame folders: a directory of image files read as one video, in natural file-name order."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from seqnrl.errors import VideoReadError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key under which ``frame2.png`` comes before ``frame10.png``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower())
        for part in _DIGITS.split(name)
        if part
    )


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of ``folder`` in natural order; hidden files, sub-folders and others ignored."""
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError as e:
        raise VideoReadError(f"cannot list frame folder: {e}", folder) from e
    files = [
        p
        for p in entries
        if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def load_image(path: Path) -> np.ndarray:
    """One image as ``(H, W, C)`` uint8 with C = 1 (grey) or 3 (RGB); 16-bit scaled to 8."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "1", "LA", "I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
                if mode in ("1", "LA"):
                    im = im.convert("L")
                arr = np.asarray(im)
                if arr.dtype != np.uint8:
                    arr = _scale_to_uint8(arr)
                return arr[:, :, None]
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise VideoReadError(f"cannot read frame image: {e}", path) from e


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    top = 65535 if arr.max(initial=0) > 255 else 255
    a = np.clip(arr.astype(np.int64), 0, top)
    return ((a * 255 + top // 2) // top).astype(np.uint8)


class FrameFolder:
    """A folder of images as a frame source; timestamps are ``index / fps``."""

    kind = "folder"

    def __init__(self, path: str | os.PathLike, fps: float = 25.0):
        if fps <= 0:
            raise ValueError(f"folder_fps must be positive, got {fps}")
        self.path = str(path)
        self.files = list_frame_files(path)
        if not self.files:
            suffixes = "/".join(sorted(IMAGE_SUFFIXES))
            raise VideoReadError(f"frame folder holds no image files ({suffixes})", path)
        first = self._load(self.files[0])
        self.height, self.width, self.channels = first.shape
        self.fps = float(fps)
        self.n_frames = len(self.files)
        self.duration = self.n_frames / self.fps

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """Yield ``(timestamp, (H, W, C) uint8)`` one image at a time."""
        for i, file in enumerate(self.files):
            arr = self._load(file)
            if arr.shape[:2] != (self.height, self.width):
                raise VideoReadError(
                    f"frame {file.name} is {arr.shape[0]}x{arr.shape[1]}, "
                    f"the folder's first frame is {self.height}x{self.width}",
                    self.path,
                )
            yield i / self.fps, arr

    def _load(self, file: Path) -> np.ndarray:
        try:
            return load_image(file)
        except VideoReadError as e:  # report the folder as the video, the image in the cause
            raise VideoReadError(f"frame {file.name}: {e.cause}", self.path) from e
