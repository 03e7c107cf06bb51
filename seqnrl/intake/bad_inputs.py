"""The bad-input corpus: one file (or folder) per kind of broken or awkward input.

Written by ``python scripts/make_bad_inputs.py OUT_DIR [--table]`` (the table is
``docs/bad_inputs.md``'s).

Every kind records how seqnrl reads it (``reader``: ``video`` = probe/read/score,
``bvh``, ``keypoints``, ``manifest``), what it must do (``expect``: ``error``, ``warn`` =
processed with a warning, ``ok``), the exception class and a fragment of the message.
``tests/integration/test_bad_input_corpus.py`` generates the corpus into a temporary folder
and checks each entry, then scores the whole corpus plus one good video in one batch.
Everything is generated (deterministic, < 1 MB); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

INDEX = "corpus.json"


@dataclass
class Kind:
    """One corpus entry. ``file`` is relative to the corpus folder (``file_hex``: its bytes,
    for names that are not valid UTF-8)."""

    kind: str
    file: str
    reader: str
    expect: str  # error | warn | ok
    error_class: str | None
    message: str  # fragment of the error / warning message
    behaviour: str  # what seqnrl does, for the docs table
    file_hex: str = ""


# ---------------------------------------------------------------------------------------
# small writers
# ---------------------------------------------------------------------------------------
def _frames(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``(n, size, size, 3)`` uint8: noise plus a moving bar (so codecs have work to do)."""
    rng = np.random.default_rng(seed)
    f = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        f[i, :, (2 * i) % size] = 255
    return f


def _mp4(path: Path, n: int = 24, faststart: bool = False, size: int = 32) -> Path:
    opts = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "18"}
        for i, image in enumerate(_frames(n, size)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def _dicom_dataset(n_frames: int | None, rows: int = 16, cols: int = 16):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["seqnrl-bad-inputs", str(n_frames)])
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = rows, cols
    if n_frames is not None:
        ds.NumberOfFrames = n_frames
        ds.FrameTime = 40
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    return ds


_BVH_HEAD = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Spine
  {
    OFFSET 0 5 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 5 0
    }
  }
}
"""


# ---------------------------------------------------------------------------------------
# the kinds
# ---------------------------------------------------------------------------------------
def zero_byte(d: Path) -> Path:
    (d / "zero_byte.mp4").touch()
    return d / "zero_byte.mp4"


def truncated_mp4(d: Path) -> Path:
    """Index (moov) first, then the frame data cut in the middle of the stream."""
    full = _mp4(d / "_full.mp4", faststart=True)
    data = full.read_bytes()
    full.unlink()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return d / "truncated.mp4"


def header_only(d: Path) -> Path:
    full = _mp4(d / "_full.mp4", faststart=True)
    data = full.read_bytes()
    full.unlink()
    (d / "header_only.mp4").write_bytes(data[:48])  # the ftyp box and a few bytes
    return d / "header_only.mp4"


def audio_only(d: Path) -> Path:
    path = d / "audio_only.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=8000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def image_renamed(d: Path) -> Path:
    Image.fromarray(_frames(1)[0]).save(d / "_image.png")
    os.replace(d / "_image.png", d / "image_renamed.mp4")
    return d / "image_renamed.mp4"


def unknown_codec(d: Path) -> Path:
    """An AVI whose codec FourCC (``QZQZ``) no FFmpeg decoder knows."""
    tmp = d / "_plain.avi"
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    data = tmp.read_bytes()
    tmp.unlink()
    assert b"FMP4" in data
    (d / "unknown_codec.avi").write_bytes(data.replace(b"FMP4", b"QZQZ"))
    return d / "unknown_codec.avi"


def one_frame(d: Path) -> Path:
    return _mp4(d / "one_frame.mp4", n=1)


VFR_TIMES_MS = (0, 40, 80, 200, 240, 280, 500, 540, 580, 620)


def vfr(d: Path) -> Path:
    """Lossless mkv with irregular presentation times :data:`VFR_TIMES_MS`; frame ``i`` has
    every pixel at ``20 * i`` so the frame picked for any time can be checked."""
    path = d / "vfr.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=25)
        s.width = s.height = 16
        s.pix_fmt = "rgb24"
        s.options = {"crf": "0", "bf": "0"}
        s.codec_context.time_base = Fraction(1, 1000)
        s.time_base = Fraction(1, 1000)
        for i, t in enumerate(VFR_TIMES_MS):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def frames_16bit(d: Path) -> Path:
    folder = d / "frames_16bit"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(10):
        Image.fromarray(rng.integers(0, 65536, (16, 16), dtype=np.uint16)).save(folder / f"f{i:03d}.png")
    return folder


def frames_rgba(d: Path) -> Path:
    folder = d / "frames_rgba"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), mode="RGBA").save(folder / f"f{i:03d}.png")
    return folder


def colour_doppler(d: Path) -> Path:
    """Grey B-mode-like frames with a red/blue colour-Doppler box (a quarter of the frame),
    lossless: colour a grey model never saw."""
    import torch

    from seqnrl.io.write import write_video

    rng = np.random.default_rng(3)
    grey = rng.integers(0, 200, (12, 32, 32), dtype=np.uint8)
    rgb = np.repeat(grey[None], 3, axis=0)  # (3, T, H, W)
    rgb[0, :, 8:24, 8:24], rgb[1, :, 8:24, 8:24], rgb[2, :, 8:24, 8:24] = 230, 20, 40
    rgb[2, :, 16:24, 8:24], rgb[0, :, 16:24, 8:24] = 230, 30
    return write_video(d / "colour_doppler.mp4", torch.from_numpy(rgb), fps=10, lossless=True)


def dicom_single_frame(d: Path) -> Path:
    ds = _dicom_dataset(None)
    ds.PixelData = bytes(16 * 16)
    ds.save_as(d / "single_frame.dcm", enforce_file_format=True)
    return d / "single_frame.dcm"


def dicom_compressed(d: Path) -> Path:
    """A cine whose pixel data is an H.264 stream (MPEG-4 AVC transfer syntax): common for
    ultrasound video, and pydicom has no decoder for it."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG4HP41

    h264 = _mp4(d / "_h264.mp4", n=8, size=16)
    with av.open(str(h264)) as c:
        stream_bytes = b"".join(bytes(p) for p in c.demux(video=0) if p.size)
    h264.unlink()
    ds = _dicom_dataset(8)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.PixelData = encapsulate([stream_bytes])
    ds["PixelData"].VR = "OB"
    ds.save_as(d / "h264_cine.dcm", enforce_file_format=True)
    return d / "h264_cine.dcm"


def bvh_missing_channel(d: Path) -> Path:
    text = _BVH_HEAD.replace("CHANNELS 3 Zrotation Yrotation Xrotation", "CHANNELS 3 Zrotation Xrotation")
    text += "MOTION\nFrames: 2\nFrame Time: 0.0083333\n" + "0 0 0 0 0 0 0 0 0\n" * 2
    (d / "missing_channel.bvh").write_text(text)
    return d / "missing_channel.bvh"


def bvh_missing_value(d: Path) -> Path:
    text = _BVH_HEAD + "MOTION\nFrames: 2\nFrame Time: 0.0083333\n0 0 0 0 0 0 0 0 0\n0 0 0 0 0 0 0 0\n"
    (d / "missing_value.bvh").write_text(text)
    return d / "missing_value.bvh"


def keypoints_all_nan(d: Path) -> Path:
    np.save(d / "keypoints_all_nan.npy", np.full((8, 5, 2), np.nan, np.float32))
    return d / "keypoints_all_nan.npy"


def keypoints_partial_nan(d: Path) -> Path:
    kp = np.random.default_rng(3).normal(size=(8, 5, 2)).astype(np.float32)
    kp[2, 1] = np.nan
    kp[5, :, 0] = np.nan
    np.save(d / "keypoints_partial_nan.npy", kp)
    return d / "keypoints_partial_nan.npy"


def manifest_dotdot(d: Path) -> Path:
    root = d / "manifest_dotdot"
    root.mkdir()
    (root / "manifest.csv").write_text("file,label\n../zero_byte.mp4,normal\n")
    return root / "manifest.csv"


def manifest_missing_columns(d: Path) -> Path:
    root = d / "manifest_columns"
    root.mkdir()
    (root / "manifest.csv").write_text("path,label\nclip.mp4,normal\n")
    return root / "manifest.csv"


NON_UTF8_NAME = b"clip_\xff\xfe_latin1_\xe9.mp4"


def non_utf8_name(d: Path) -> Path:
    path = Path(os.fsdecode(os.fsencode(d) + b"/" + NON_UTF8_NAME))
    tmp = _mp4(d / "_non_utf8.mp4", n=12)
    os.replace(tmp, path)
    return path


# (maker, reader, expect, error class, message fragment, what seqnrl does)
KINDS: list[tuple[Callable[[Path], Path], str, str, str | None, str, str]] = [
    (zero_byte, "video", "error", "VideoReadError", "empty file (0 bytes)",
     "refused before decoding"),
    (truncated_mp4, "video", "error", "VideoReadError", "decoding failed after|truncated?",
     "decodes what is there, then refuses: the index lists more frames than could be decoded"),
    (header_only, "video", "error", "VideoReadError", "no video stream|cannot open",
     "FFmpeg finds no stream in the few header bytes; refused"),
    (audio_only, "video", "error", "VideoReadError", "no video stream (streams: audio)",
     "refused, listing the streams found"),
    (image_renamed, "video", "error", "VideoReadError", "not a video",
     "FFmpeg opens it as a still image; refused"),
    (unknown_codec, "video", "error", "VideoReadError", "no decoder",
     "refused: this FFmpeg build has no decoder for the codec"),
    (one_frame, "video", "warn", None, "fewer than the model's clip_len",
     "scored: the window is padded by repeating the last frame; one row, a warning"),
    (vfr, "video", "ok", None, "",
     "read by timestamps and resampled to a regular grid (the checkpoint's fps, else the "
     "container's); frame k at t = k / fps is the latest frame at or before t"),
    (frames_16bit, "video", "warn", None, "scaled to 8 bits",
     "converted: 16-bit samples mapped to 0..255, with a warning"),
    (frames_rgba, "video", "warn", None, "alpha channel is dropped",
     "converted to RGB (alpha dropped), with a warning"),
    (colour_doppler, "video", "warn", None, "input is in colour",
     "scored by a grey model, with a warning: the colour box becomes grey levels it never saw"),
    (dicom_single_frame, "video", "error", "DicomError", "not a multi-frame cine",
     "refused: a still image is not a recording"),
    (dicom_compressed, "video", "error", "DicomError", "is not supported by pydicom",
     "refused, naming the transfer syntax (and, for JPEG-LS/2000, the packages that decode it)"),
    (bvh_missing_channel, "bvh", "error", "MotionReadError", "declares 3 channels but lists 2",
     "refused with the line number"),
    (bvh_missing_value, "bvh", "error", "MotionReadError", "missing or extra channel values",
     "refused with the line and frame number"),
    (keypoints_all_nan, "keypoints", "error", "KeypointError", "every keypoint is missing",
     "refused"),
    (keypoints_partial_nan, "keypoints", "ok", None, "",
     "used; missing keypoints are masked out (check_keypoints returns the validity mask)"),
    (manifest_dotdot, "manifest", "error", "ManifestError", "escapes the data root",
     "refused, listing every offending row (strict) or skipping them with a warning"),
    (manifest_missing_columns, "manifest", "error", "ManifestError", "missing required column(s)",
     "refused, naming the missing and the found columns"),
    (non_utf8_name, "video", "ok", None, "",
     "read normally (names are bytes on Linux); printed with \\xNN escapes, outputs named "
     "from the sanitised stem"),
]


def make_corpus(out_dir: str | os.PathLike) -> list[Kind]:
    """Write every kind into ``out_dir`` (created; must be empty of earlier corpus files)
    and ``out_dir/corpus.json``; returns the entries."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    entries = []
    for make, reader, expect, cls, msg, behaviour in KINDS:
        path = make(d)
        rel = os.fsencode(path.relative_to(d))
        entries.append(
            Kind(
                kind=make.__name__,
                file=rel.decode("utf-8", "backslashreplace"),
                reader=reader,
                expect=expect,
                error_class=cls,
                message=msg,
                behaviour=behaviour,
                file_hex=rel.hex(),
            )
        )
    (d / INDEX).write_text(json.dumps([asdict(e) for e in entries], indent=2) + "\n")
    return entries


def load_corpus(out_dir: str | os.PathLike) -> list[tuple[Kind, Path]]:
    """Entries of a written corpus with their paths."""
    d = Path(out_dir)
    items = [Kind(**e) for e in json.loads((d / INDEX).read_text())]
    return [(k, Path(os.fsdecode(os.fsencode(d) + b"/" + bytes.fromhex(k.file_hex)))) for k in items]


def markdown_table(entries: list[Kind], messages: dict[str, str] | None = None) -> str:
    """The docs/bad_inputs.md table; ``messages`` (kind -> example message) when measured."""
    lines = [
        "| kind | file | what seqnrl does | error class | example message |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        msg = (messages or {}).get(e.kind, e.message)
        cls = e.error_class or ("(warning)" if e.expect == "warn" else "(none)")
        lines.append(f"| {e.kind} | `{e.file}` | {e.behaviour} | {cls} | {msg.replace('|', '/')} |")
    return "\n".join(lines)
