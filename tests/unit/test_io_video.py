"""Containers and frame folders: exact decoding, time-based resampling, resizing, streaming."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

from seqnrl.errors import VideoReadError
from seqnrl.io import (
    iter_frames,
    list_frame_files,
    probe_video,
    read_video,
    stream_windows,
    write_video,
)
from seqnrl.io import video as video_mod


def _random_video(t: int, h: int = 16, w: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, t, h, w), generator=g, dtype=torch.uint8)


@pytest.fixture
def make_video(tmp_path):
    """Write a lossless video of distinct random frames; return (path, frames)."""

    def make(t: int, fps: float, h: int = 16, w: int = 24, name: str = "v.mp4"):
        frames = _random_video(t, h, w)
        return write_video(tmp_path / name, frames, fps, lossless=True), frames

    return make


def _source_indices(out: torch.Tensor, src: torch.Tensor) -> list[int]:
    """For each output frame (C, T, H, W), the index of the identical source frame."""
    hits = []
    for k in range(out.shape[1]):
        same = (src == out[:, k : k + 1]).flatten(2).all(-1).all(0)
        assert same.sum() == 1, f"output frame {k} matches {int(same.sum())} source frames"
        hits.append(int(same.nonzero()))
    return hits


def _expected_pick(k: int, fps_out: int, fps_src: int, n_src: int) -> int:
    """Latest source frame i with i/fps_src <= k/fps_out + 1/(2 fps_src), exactly."""
    limit = Fraction(k, fps_out) + Fraction(1, 2 * fps_src)
    return min(n_src - 1, math.floor(limit * fps_src))


# --------------------------------------------------------------------------- containers


def test_probe_container(make_video):
    path, _ = make_video(20, 25.0, h=16, w=32)
    info = probe_video(path)
    assert (info.kind, info.n_frames, info.fps, info.height, info.width, info.channels) == (
        "container",
        20,
        25.0,
        16,
        32,
        3,
    )
    assert info.duration == pytest.approx(20 / 25)
    assert info.path == str(path)


def test_read_and_iter_agree_exactly(make_video):
    path, frames = make_video(12, 30.0)
    clip = read_video(path)
    assert torch.equal(clip.frames, frames)
    assert clip.n_frames == 12 and clip.source == str(path)
    streamed = list(iter_frames(path))
    assert [t for t, _ in streamed] == clip.timestamps.tolist()
    assert torch.equal(torch.stack([f for _, f in streamed], dim=1), frames)
    assert all(f.shape == (3, 16, 24) and f.dtype == torch.uint8 for _, f in streamed)


def test_timestamps_are_rebased_to_the_first_frame(tmp_path):
    path = tmp_path / "offset.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 8, 8, "bgr0"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((8, 8, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i + 7  # the stream starts at 0.28 s
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with av.open(str(path)) as c:
        assert next(c.decode(video=0)).time == pytest.approx(0.28)
    clip = read_video(path)
    assert clip.timestamps.tolist() == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16], abs=1e-12)
    assert clip.frames[0, :, 0, 0].tolist() == [0, 40, 80, 120, 160]


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt"),
    [
        ("v.avi", "mpeg4", "yuv420p"),
        ("v.mov", "libx264", "yuv420p"),
        ("v.mkv", "libx264", "yuv420p"),
        ("v.mpeg", "mpeg2video", "yuv420p"),
        ("v.gif", "gif", "rgb8"),
    ],
)
def test_other_containers(tmp_path, name, codec, pix_fmt):
    path = tmp_path / name
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width = s.height = 32
        s.pix_fmt = pix_fmt
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(
                np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24"
            )
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    info = probe_video(path)
    assert (info.n_frames, info.fps, info.duration) == (12, 25.0, pytest.approx(0.48))
    clip = read_video(path)
    assert clip.frames.shape == (3, 12, 32, 32)
    assert torch.equal(clip.timestamps, torch.arange(12, dtype=torch.float64) / 25)
    means = clip.frames.float().mean(dim=(0, 2, 3))
    assert (means - 20 * torch.arange(12)).abs().max() < 25  # lossy (gif: 8-bit palette)


def test_float_dtype_scales_to_unit_range(make_video):
    path, frames = make_video(4, 30.0)
    clip = read_video(path, dtype=torch.float32)
    assert clip.frames.dtype == torch.float32
    assert torch.equal(clip.frames, frames.float() / 255)


@pytest.mark.parametrize(
    ("fps_src", "n_src", "fps_out"), [(30, 30, 15), (25, 25, 30), (30, 31, 12)]
)
def test_time_based_resampling(make_video, fps_src, n_src, fps_out):
    path, frames = make_video(n_src, float(fps_src))
    clip = read_video(path, fps=fps_out)
    n_out = math.floor(Fraction(n_src, fps_src) * fps_out)  # duration = n_src / fps_src
    assert clip.n_frames == n_out
    assert clip.fps == fps_out
    assert torch.equal(clip.timestamps, torch.arange(n_out, dtype=torch.float64) / fps_out)
    expected = [_expected_pick(k, fps_out, fps_src, n_src) for k in range(n_out)]
    assert _source_indices(clip.frames, frames) == expected


def test_30_to_15_keeps_every_other_frame(make_video):
    path, frames = make_video(30, 30.0)
    clip = read_video(path, fps=15)
    assert _source_indices(clip.frames, frames) == list(range(0, 30, 2))


def test_25_to_30_duplicates_by_timestamp_not_index(make_video):
    path, frames = make_video(25, 25.0)
    picks = _source_indices(read_video(path, fps=30).frames, frames)
    assert len(picks) == 30 and sorted(set(picks)) == list(range(25))
    # t = 3/30 = 0.1 s lies between source frames 2 (0.08) and 3 (0.12): 3 is within half a frame
    assert picks[:8] == [0, 1, 2, 3, 3, 4, 5, 6]


def test_start_end_without_resampling(make_video):
    path, frames = make_video(20, 20.0)
    clip = read_video(path, start=0.25, end=0.6)
    assert clip.timestamps.tolist() == [i / 20 for i in range(5, 12)]  # stream-relative times
    assert torch.equal(clip.frames, frames[:, 5:12])


def test_start_end_with_resampling(make_video):
    path, frames = make_video(20, 20.0)
    clip = read_video(path, fps=10, start=0.3, end=0.75)
    assert clip.timestamps.tolist() == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])
    assert _source_indices(clip.frames, frames) == [6, 8, 10, 12, 14]


def test_start_past_the_end_raises(make_video):
    path, _ = make_video(5, 10.0)
    with pytest.raises(VideoReadError, match="no frames"):
        read_video(path, start=10.0)


def test_size_int_is_square_and_area_downsampling_is_exact(tmp_path):
    small = torch.randint(0, 256, (3, 4, 8, 12), dtype=torch.uint8)
    big = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 2x2 constant blocks
    path = write_video(tmp_path / "b.mp4", big, 10, lossless=True)
    assert torch.equal(read_video(path, size=(8, 12)).frames, small)
    sq = read_video(path, size=8).frames
    assert sq.shape == (3, 4, 8, 8)
    ref = F.interpolate(big.transpose(0, 1).float(), size=(8, 8), mode="area")
    assert torch.equal(sq, ref.round().to(torch.uint8).transpose(0, 1))


def test_upsampling_size(make_video):
    path, _ = make_video(3, 10.0, h=16, w=24)
    clip = read_video(path, size=(40, 30))
    assert clip.frames.shape == (3, 3, 40, 30) and clip.frames.dtype == torch.uint8


def test_grayscale_is_itu601_luma_as_pil(make_video):
    path, frames = make_video(3, 10.0)
    grey = read_video(path, grayscale=True).frames
    assert grey.shape == (1, 3, 16, 24)
    for t in range(3):
        rgb = frames[:, t].permute(1, 2, 0).numpy()
        pil = np.asarray(PIL.Image.fromarray(rgb).convert("L"))
        assert np.abs(grey[0, t].numpy().astype(int) - pil).max() <= 1
    r, g, b = frames.int()
    assert torch.equal(grey[0], ((299 * r + 587 * g + 114 * b + 500) // 1000).to(torch.uint8))


# --------------------------------------------------------------------------- windows


def _check_windows(windows, frames: torch.Tensor, w: int, s: int) -> None:
    n = frames.shape[1]
    covered = torch.zeros(n, dtype=torch.bool)
    for i, win in enumerate(windows):
        assert win.start_index == i * s
        assert win.frames.shape == (3, w, *frames.shape[2:])
        assert win.timestamps.shape == (w,)
        real = frames[:, win.start_index : win.start_index + win.n_valid]
        assert torch.equal(win.frames[:, : win.n_valid], real)
        pad = win.frames[:, win.n_valid :]
        assert torch.equal(pad, real[:, -1:].expand_as(pad))
        assert (win.timestamps[win.n_valid :] == win.timestamps[win.n_valid - 1]).all()
        covered[win.start_index : win.start_index + win.n_valid] = True
    assert covered.all()


def test_stream_windows_cover_every_frame_and_pad_the_last(make_video):
    path, frames = make_video(23, 25.0)
    windows = list(stream_windows(path, 8, 4))
    assert [w.start_index for w in windows] == [0, 4, 8, 12, 16]
    assert [w.n_valid for w in windows] == [8, 8, 8, 8, 7]
    _check_windows(windows, frames, 8, 4)
    assert torch.equal(windows[1].timestamps, torch.arange(4, 12, dtype=torch.float64) / 25)


def test_stream_windows_exact_fit_has_no_padded_window(make_video):
    path, frames = make_video(20, 25.0)
    windows = list(stream_windows(path, 8, 4))
    assert [w.start_index for w in windows] == [0, 4, 8, 12]
    assert all(w.n_valid == 8 for w in windows)
    _check_windows(windows, frames, 8, 4)


def test_stream_windows_in_seconds_and_without_padding(make_video):
    path, frames = make_video(23, 25.0)
    windows = list(stream_windows(path, 0.4, 0.2, unit="seconds"))  # 10 frames, stride 5
    assert [(w.start_index, w.n_valid) for w in windows] == [(0, 10), (5, 10), (10, 10), (15, 8)]
    _check_windows(windows, frames, 10, 5)
    unpadded = list(stream_windows(path, 10, 5, pad_last=False))
    assert [w.start_index for w in unpadded] == [0, 5, 10]


def test_stream_windows_short_video_and_wide_stride(make_video):
    path, frames = make_video(5, 25.0)
    (only,) = stream_windows(path, 8, 8)
    assert (only.start_index, only.n_valid) == (0, 5)
    path, frames = make_video(20, 25.0, name="w.mp4")
    windows = list(stream_windows(path, 4, 6))  # gaps between windows by request
    assert [(w.start_index, w.n_valid) for w in windows] == [(0, 4), (6, 4), (12, 4), (18, 2)]
    for win in windows:
        assert torch.equal(
            win.frames[:, : win.n_valid], frames[:, win.start_index :][:, : win.n_valid]
        )


def test_stream_windows_resampled_and_resized(make_video):
    path, _ = make_video(30, 30.0)
    windows = list(stream_windows(path, 4, 4, fps=15, size=8, grayscale=True))
    assert sum(w.n_valid for w in windows) == 15
    assert all(w.frames.shape == (1, 4, 8, 8) for w in windows)
    assert windows[1].timestamps.tolist() == [k / 15 for k in range(4, 8)]


@pytest.mark.parametrize(
    ("window", "stride", "unit"),
    [(0, 1, "frames"), (4, 0, "frames"), (4, 2, "hours"), (2.5, 1, "frames")],
)
def test_stream_windows_bad_arguments(make_video, window, stride, unit):
    path, _ = make_video(4, 10.0)
    with pytest.raises(ValueError):
        list(stream_windows(path, window, stride, unit=unit))


class _CountingContainer:
    """Wraps a PyAV input container and counts the frames its decoder hands out."""

    decoded = 0

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._inner.close()

    def decode(self, *args, **kwargs):
        for frame in self._inner.decode(*args, **kwargs):
            _CountingContainer.decoded += 1
            yield frame


def test_windows_arrive_before_the_video_is_decoded(make_video, monkeypatch):
    path, frames = make_video(120, 25.0, h=16, w=16)
    real_open = av.open
    monkeypatch.setattr(
        video_mod.av, "open", lambda *a, **k: _CountingContainer(real_open(*a, **k))
    )
    _CountingContainer.decoded = 0
    gen = stream_windows(path, 8, 4)
    first = next(gen)
    assert torch.equal(first.frames, frames[:, :8])
    assert _CountingContainer.decoded <= 8 + 4  # not the 120 frames of the whole video
    second = next(gen)
    assert second.start_index == 4 and _CountingContainer.decoded <= 12 + 4
    assert sum(1 for _ in gen) == 27  # windows at 8, 12, ..., 112
    assert _CountingContainer.decoded == 120
    _CountingContainer.decoded = 0
    it = iter_frames(path)
    next(it)
    assert _CountingContainer.decoded <= 2


# --------------------------------------------------------------------------- frame folders


def _write_folder(folder, frames: torch.Tensor, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(names, frames.unbind(1)):
        PIL.Image.fromarray(frame.permute(1, 2, 0).numpy()).save(folder / name)


def test_frame_folder_natural_sort_and_ignored_files(tmp_path):
    frames = _random_video(12, 10, 14)
    names = [f"frame{i}.png" for i in range(12)]  # frame10 sorts after frame9
    folder = tmp_path / "clip"
    _write_folder(folder, frames, names)
    PIL.Image.fromarray(np.zeros((10, 14, 3), np.uint8)).save(folder / ".hidden.png")
    (folder / "notes.txt").write_text("not a frame")
    (folder / "sub").mkdir()
    PIL.Image.fromarray(np.zeros((10, 14, 3), np.uint8)).save(folder / "sub" / "frame99.png")
    assert [p.name for p in list_frame_files(folder)] == names
    info = probe_video(folder)
    assert (info.kind, info.n_frames, info.fps, info.height, info.width) == (
        "folder",
        12,
        25.0,
        10,
        14,
    )
    clip = read_video(folder)
    assert torch.equal(clip.frames, frames)
    assert clip.fps == 25.0
    assert torch.equal(clip.timestamps, torch.arange(12, dtype=torch.float64) / 25)


def test_frame_folder_fps_and_resampling(tmp_path):
    frames = _random_video(10, 8, 8, seed=5)
    _write_folder(tmp_path / "f", frames, [f"{i:03d}.png" for i in range(10)])
    clip = read_video(tmp_path / "f", folder_fps=10.0, fps=5)
    assert clip.fps == 5 and clip.n_frames == 5
    assert _source_indices(clip.frames, frames) == [0, 2, 4, 6, 8]


def test_frame_folder_of_grey_images(tmp_path):
    grey = _random_video(4, 8, 8, seed=2)[:1]
    folder = tmp_path / "grey"
    folder.mkdir()
    for i in range(4):
        PIL.Image.fromarray(grey[0, i].numpy(), mode="L").save(folder / f"{i}.png")
    assert probe_video(folder).channels == 1
    assert torch.equal(read_video(folder).frames, grey.expand(3, -1, -1, -1))
    assert torch.equal(read_video(folder, grayscale=True).frames, grey)


def test_frame_folder_streams_one_image_at_a_time(tmp_path, monkeypatch):
    frames = _random_video(40, 8, 8, seed=4)
    _write_folder(tmp_path / "f", frames, [f"{i}.png" for i in range(40)])
    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(
        PIL.Image, "open", lambda fp, *a, **k: opened.append(fp) or real_open(fp, *a, **k)
    )
    gen = stream_windows(tmp_path / "f", 6, 3)
    first = next(gen)
    assert torch.equal(first.frames, frames[:, :6])
    assert len(opened) <= 1 + 6  # probe of the first image + the window


def test_luma_on_any_axis_and_resize_frames_match_the_reader():
    import numpy as np

    from seqnrl.io.video import luma, resize_frames

    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, size=(2, 9, 11, 3), dtype=np.uint8)
    chw = np.ascontiguousarray(np.moveaxis(hwc, -1, 1))
    assert np.array_equal(luma(hwc), luma(chw, axis=1))
    x = torch.from_numpy(chw)
    small = resize_frames(x, (4, 5))
    assert small.dtype == torch.uint8 and small.shape == (2, 3, 4, 5)
    # uint8 and float inputs on the 0..255 scale give the same pixels
    assert torch.equal(small, resize_frames(x.float(), (4, 5)))
    assert torch.equal(resize_frames(x, (9, 11)), x)  # same size: unchanged
    big = resize_frames(x, (18, 22))
    assert big.shape == (2, 3, 18, 22)


def test_huge_frames_are_shrunk_in_the_decoder_to_nearly_the_same_pixels(tmp_path):
    """A frame >= PRESHRINK_FACTOR times the requested size is shrunk in FFmpeg first (cost
    bounded by the output size); the result stays within one grey level of converting the
    full-size frame and area-averaging it, and smaller frames are converted as before."""
    import numpy as np

    from seqnrl.io import video as V
    from seqnrl.io.write import write_video

    s = 8 * 64
    yy, xx = np.mgrid[0:s, 0:s]
    fr = np.stack([((np.sin(xx / 40 + t) + np.cos(yy / 30)) * 60 + 128).clip(0, 255).astype(np.uint8)
                   for t in range(3)])
    path = write_video(tmp_path / "big.mp4", torch.from_numpy(fr)[None], 10.0, lossless=True)
    calls = []
    real = V._preshrink

    def spy(frame, out_hw):
        out = real(frame, out_hw)
        calls.append((frame.width, out.width))
        return out

    V._preshrink = spy
    try:
        small = V.read_video(path, size=64, grayscale=True).frames
        calls_small = list(calls)
        calls.clear()
        mid = V.read_video(path, size=128, grayscale=True).frames  # only 4x: converted as before
    finally:
        V._preshrink = real
    assert calls_small and all(o == 128 for _, o in calls_small), calls_small
    assert calls and all(o == s for _, o in calls), calls
    full = V.read_video(path, grayscale=True).frames
    ref = V.resize_frames(full.permute(1, 0, 2, 3), (64, 64)).permute(1, 0, 2, 3)
    assert small.shape == ref.shape and int((small.int() - ref.int()).abs().max()) <= 1
    assert torch.equal(mid, V.resize_frames(full.permute(1, 0, 2, 3), (128, 128)).permute(1, 0, 2, 3))


def test_stream_windows_can_align_the_last_window_like_evaluation(make_video):
    from seqnrl.data.sampling import eval_window_starts

    path, frames = make_video(23, 25.0)
    windows = list(stream_windows(path, 8, 4, align_last=True))
    assert [w.start_index for w in windows] == eval_window_starts(23, 8, 4) == [0, 4, 8, 12, 15]
    assert all(w.n_valid == 8 for w in windows)
    for w in windows:  # real frames only, the last one overlapping the one before
        assert torch.equal(w.frames, frames[:, w.start_index : w.start_index + 8])
    exact = list(stream_windows(make_video(20, 25.0, name="e.mp4")[0], 8, 4, align_last=True))
    assert [w.start_index for w in exact] == eval_window_starts(20, 8, 4)
    (short,) = stream_windows(make_video(5, 25.0, name="s.mp4")[0], 8, 8, align_last=True)
    assert (short.start_index, short.n_valid) == (0, 5)
