"""A tiny fake EchoNet-Dynamic folder, for tests and demos (the real set is credentialed).

Layout and columns follow the public release::

    root/
      Videos/<FileName>.avi      3-channel grey AVI (MJPEG), FrameHeight x FrameWidth, FPS
      FileList.csv               FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split
      VolumeTracings.csv         FileName,X1,Y1,X2,Y2,Frame

``FileList.csv``'s ``FileName`` has no extension; ``VolumeTracings.csv``'s has ``.avi``.
Each video has two traced frames (one ED, one ES of the same beat), 21 rows each: first the
LV long axis (apex to base), then 20 chords perpendicular to it whose end points lie on the
left and right endocardial border (method of disks), in pixel coordinates of the frame.
Videos are :func:`seqnrl.data.synthetic_echo.make_echo` clips; every third has a reduced EF
so that EF spans the clinical range.
"""

from __future__ import annotations

import csv
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from seqnrl.data.synthetic_echo import EchoSample, make_echo, to_uint8
from seqnrl.errors import ConfigError

FILELIST_COLUMNS = (
    "FileName",
    "EF",
    "ESV",
    "EDV",
    "FrameHeight",
    "FrameWidth",
    "FPS",
    "NumberOfFrames",
    "Split",
)
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
N_CHORDS = 20


def _write_avi(path: Path, sample: EchoSample, fps: float) -> None:
    frames = to_uint8(sample.video[0]).numpy()  # (T, H, W)
    _, h, w = frames.shape
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuvj444p"  # full range, no chroma subsampling: greys survive
        stream.codec_context.qmin, stream.codec_context.qmax = 1, 3
        for g in frames:
            rgb = np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _tracing_rows(name: str, sample: EchoSample, frame: int) -> list[list]:
    """Long axis + ``N_CHORDS`` disk chords of the LV ellipse drawn in ``frame``."""
    cx, cy, a, b = (float(z) for z in sample.lv_ellipse[frame])
    rows = [[name, cx, cy - a, cx, cy + a, frame]]
    for i in range(N_CHORDS):
        yy = cy - a + 2.0 * a * (i + 1) / (N_CHORDS + 1)
        half = b * math.sqrt(max(0.0, 1.0 - ((yy - cy) / a) ** 2))
        rows.append([name, cx - half, yy, cx + half, yy, frame])
    return rows


def _one_beat(s: EchoSample) -> tuple[int, int] | None:
    """(ED, ES) of one beat: the first ED followed by an ES in the clip."""
    for ed in s.ed_frames:
        later = [f for f in s.es_frames if f > ed]
        if later:
            return ed, later[0]
    return None


def _splits(n: int) -> list[str]:
    n_eval = max(1, round(0.15 * n)) if n >= 3 else 0
    n_train = n - 2 * n_eval
    return ["TRAIN"] * n_train + ["VAL"] * n_eval + ["TEST"] * n_eval


def write_echonet_lookalike(
    root: str | Path,
    n_videos: int = 6,
    n_frames: int = 48,
    size: int = 112,
    seed: int = 0,
    fps: float = 50.0,
) -> Path:
    """Write a small EchoNet-Dynamic-shaped folder at ``root`` and return its path.

    Each clip must contain an ED followed by an ES (about 0.4 s); a clip that misses them
    is redrawn with the next sub-seed. Deterministic in ``seed``.
    """
    if n_videos < 1:
        raise ConfigError(f"n_videos must be >= 1, got {n_videos}")
    root = Path(root)
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 3])
    splits = _splits(n_videos)
    filelist, tracings = [], []
    for i in range(n_videos):
        name = f"0X{int(rng.integers(0, 2**63)):016X}"
        anomaly = "reduced_ef" if i % 3 == 2 else None
        pair = None
        for attempt in range(50):  # a clip shorter than a beat may miss its ED: redraw
            s = make_echo(
                (int(seed) * 1000 + i) * 64 + attempt,
                n_frames=n_frames,
                size=size,
                fps=fps,
                anomaly=anomaly,
            )
            pair = _one_beat(s)
            if pair is not None:
                break
        if pair is None:
            raise ConfigError(
                f"{n_frames} frames at {fps} fps hold no ED and ES; use a longer clip"
            )
        ed, es = pair
        edv, esv = float(s.volume[ed]), float(s.volume[es])
        _write_avi(root / "Videos" / f"{name}.avi", s, fps)
        filelist.append(
            [
                name,
                round(100.0 * (edv - esv) / edv, 4),
                round(esv, 4),
                round(edv, 4),
                size,
                size,
                fps if fps != int(fps) else int(fps),
                n_frames,
                splits[i],
            ]
        )
        for frame in (ed, es):
            tracings += _tracing_rows(f"{name}.avi", s, frame)
    with open(root / "FileList.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FILELIST_COLUMNS)
        w.writerows(filelist)
    with open(root / "VolumeTracings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRACING_COLUMNS)
        w.writerows([r[:1] + [round(v, 4) for v in r[1:5]] + r[5:] for r in tracings])
    return root
