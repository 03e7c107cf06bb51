"""Real recordings from ../shared/data: every LUS clip decodes, Ped2 frame folders load."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import pytest
import torch

from seqnrl.io import iter_frames, probe_video, read_video, stream_windows

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LUS = DATA / "lus"
PED2 = DATA / "ped2"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (expected ../shared/data beside the repo)")
    return path


def _lus_rows() -> list[dict[str, str]]:
    manifest = LUS / "manifest.csv"
    if not manifest.exists():
        return []
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


_ROWS = _lus_rows()


@pytest.mark.parametrize(
    "row",
    _ROWS or [pytest.param(None, marks=pytest.mark.skip(reason=f"no LUS manifest at {LUS}"))],
    ids=[r["file"] for r in _ROWS] or ["absent"],
)
def test_every_lus_clip_decodes(row):
    path = _need(LUS / "videos" / row["file"])
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        container_fps = float(stream.average_rate)
        size = (stream.codec_context.height, stream.codec_context.width)
    info = probe_video(path)
    assert info.kind == "container"
    assert info.fps == container_fps  # the container's own rate, not the manifest's
    assert (info.height, info.width) == size
    n, last = 0, -1.0
    for t, frame in iter_frames(path):
        if n == 0:
            assert t == 0.0 and frame.shape == (3, *size) and frame.dtype == torch.uint8
        assert t > last
        n, last = n + 1, t
    assert n == info.n_frames
    assert n > 50
    assert last + 1 / info.fps == pytest.approx(info.duration, abs=1e-6)
    # the manifest's rate (from the data set's metadata) is the container's rounded
    assert abs(float(row["fps"]) - container_fps) < 0.5


def test_lus_clip_resampled_and_windowed():
    rows = [r for r in _ROWS if r["file"].endswith(".mpeg")]
    if not rows:
        pytest.skip(f"no LUS .mpeg clips at {LUS}")
    path = _need(LUS / "videos" / rows[0]["file"])
    info = probe_video(path)
    clip = read_video(path, fps=10, size=64, grayscale=True, end=4.0)
    assert clip.frames.shape == (1, 40, 64, 64)
    assert clip.timestamps[-1].item() == pytest.approx(3.9)
    windows = list(stream_windows(path, 16, 8, fps=10, size=32))
    n_out = int(info.duration * 10 + 1e-6)
    assert sum(w.n_valid for w in windows) - 8 * (len(windows) - 1) == n_out


def test_ped2_training_clip_is_a_frame_folder():
    folder = _need(PED2 / "training" / "01")
    jpgs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")
    info = probe_video(folder)
    assert info.kind == "folder"
    assert info.n_frames == len(jpgs) > 0
    assert (info.height, info.width) == (240, 360)
    clip = read_video(folder, grayscale=True, size=(60, 90))
    assert clip.frames.shape == (1, len(jpgs), 60, 90)
    assert clip.fps == 25.0
    assert torch.equal(clip.timestamps, torch.arange(len(jpgs), dtype=torch.float64) / 25)


def test_ped2_test_clip_01_loads_180_frames():
    folder = _need(PED2 / "testing" / "01")
    clip = read_video(folder, grayscale=True, size=(24, 36))
    assert clip.frames.shape == (1, 180, 24, 36)
    assert clip.frames.dtype == torch.uint8 and int(clip.frames.max()) > int(clip.frames.min())
