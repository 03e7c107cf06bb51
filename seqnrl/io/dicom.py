"""Multi-frame DICOM cines (e.g. ultrasound) read frame by frame with pydicom."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, get_decoder, iter_pixels, pixel_array

from seqnrl.errors import DicomError

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a ``.dcm``/``.dicom`` name or a file with the ``DICM`` preamble marker."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


class DicomCine:
    """A multi-frame DICOM as a frame source.

    Frame timing from FrameTime (ms), else CineRate, else FrameTimeVector, else
    RecommendedDisplayFrameRate, else ``default_fps`` (with a warning). YBR colour is
    converted to RGB by pydicom, PALETTE COLOR through its lookup table, MONOCHROME1 is
    inverted, and samples wider than 8 bits are mapped from their BitsStored range to 0..255.
    """

    kind = "dicom"

    def __init__(self, path: str | os.PathLike, default_fps: float = 25.0):
        self.path = str(path)
        try:
            ds = pydicom.dcmread(self.path, defer_size="64 KB")
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as e:
            raise DicomError(f"not a readable DICOM file: {e}", path) from e
        if "PixelData" not in ds:
            raise DicomError("DICOM file has no pixel data", path)
        try:
            n = int(ds.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError) as e:
            raise DicomError(f"unreadable NumberOfFrames: {e}", path) from e
        if n <= 1:
            raise DicomError(f"not a multi-frame cine (NumberOfFrames={n})", path)
        _check_decoder(ds, self.path)
        self._ds = ds
        self.n_frames = n
        try:
            self.height, self.width = int(ds.Rows), int(ds.Columns)
            samples = int(ds.get("SamplesPerPixel", 1))
        except (AttributeError, TypeError, ValueError) as e:
            raise DicomError(f"incomplete image header: {e}", path) from e
        self.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        self.channels = 3 if samples == 3 or self.photometric == "PALETTE COLOR" else 1
        self.timestamps, self.fps = _frame_times(ds, n, default_fps, self.path)
        self.duration = float(self.timestamps[-1]) + 1.0 / self.fps

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """Yield ``(timestamp, (H, W, C) uint8)`` decoding one frame at a time."""
        i = 0
        try:
            for arr in self._decoded():
                if i >= self.n_frames:
                    break
                yield float(self.timestamps[i]), self._to_uint8(arr)
                i += 1
        except (RuntimeError, ValueError, NotImplementedError, OSError, KeyError, TypeError) as e:
            raise DicomError(f"cannot decode frame {i}: {e}", self.path) from e
        if i == 0:
            raise DicomError("no frames could be decoded", self.path)

    def _decoded(self) -> Iterator[np.ndarray]:
        tsyntax = (
            self._ds.file_meta.get("TransferSyntaxUID") if hasattr(self._ds, "file_meta") else None
        )
        if self.photometric == "YBR_FULL_422" and (tsyntax is None or not tsyntax.is_compressed):
            # pydicom 3.0's frame iterator mis-sizes frames after the first for uncompressed
            # YBR_FULL_422; pixel_array(path, index=i) reads one frame correctly.
            for i in range(self.n_frames):
                yield pixel_array(self.path, index=i)
        else:
            yield from iter_pixels(self.path)

    def _to_uint8(self, arr: np.ndarray) -> np.ndarray:
        ds = self._ds
        if self.photometric == "PALETTE COLOR":
            rgb = apply_color_lut(arr, ds)
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            return _scale_bits(rgb, 8 if bits <= 8 else 16, signed=False)
        bits = int(ds.get("BitsStored", arr.itemsize * 8))
        out = _scale_bits(arr, bits, signed=int(ds.get("PixelRepresentation", 0)) == 1)
        if out.ndim == 2:
            out = out[:, :, None]
            if self.photometric == "MONOCHROME1":
                out = 255 - out
        return out


def _scale_bits(arr: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Map integer samples of ``bits`` bits (two's complement if ``signed``) onto uint8."""
    if bits == 8 and arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.int64)
    if signed:
        a = a + (1 << (bits - 1))
    top = (1 << bits) - 1
    a = np.clip(a, 0, top)
    return ((a * 255 + top // 2) // top).astype(np.uint8)


def _check_decoder(ds: Dataset, path: str) -> None:
    """Raise a DicomError naming the transfer syntax and what to install when it cannot decode."""
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax is None:
        return  # pydicom guesses implicit/explicit VR little endian
    name = f"{tsyntax.name} ({tsyntax})"
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as e:
        raise DicomError(f"transfer syntax {name} is not supported by pydicom", path) from e
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a pixel data plugin"
        raise DicomError(
            f"no decoder installed for transfer syntax {name}; install one of: {needs} "
            "(pip packages: pylibjpeg with pylibjpeg-libjpeg / pylibjpeg-openjpeg / "
            "pylibjpeg-rle, pillow, python-gdcm, pyjpegls)",
            path,
        )


def _frame_times(ds: Dataset, n: int, default_fps: float, path: str) -> tuple[np.ndarray, float]:
    """Per-frame timestamps (s, from 0) and the frame rate of a cine."""
    frame_time = _positive(ds.get("FrameTime"))
    if frame_time is not None:
        fps = _snap(1000.0 / frame_time)
        return np.arange(n, dtype=np.float64) / fps, fps
    cine_rate = _positive(ds.get("CineRate"))
    if cine_rate is not None:
        return np.arange(n, dtype=np.float64) / cine_rate, cine_rate
    vector = ds.get("FrameTimeVector")
    if vector is not None:
        values = np.asarray([float(v) for v in np.atleast_1d(vector)], dtype=np.float64)
        if len(values) == n and n > 1 and (values[1:] > 0).all():
            ts = np.cumsum(values) / 1000.0
            ts -= ts[0]
            return ts, float((n - 1) / ts[-1])
    rate = _positive(ds.get("RecommendedDisplayFrameRate"))
    if rate is not None:
        return np.arange(n, dtype=np.float64) / rate, rate
    warnings.warn(
        f"{path}: DICOM cine carries no frame timing; assuming {default_fps} fps", stacklevel=3
    )
    return np.arange(n, dtype=np.float64) / default_fps, float(default_fps)


def _positive(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def _snap(fps: float) -> float:
    """Round a rate derived from a DS millisecond string (33.333 -> 30.0003) to the integer."""
    r = round(fps)
    return float(r) if r > 0 and abs(fps - r) <= 1e-4 * fps else fps
