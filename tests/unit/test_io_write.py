"""write_video: exact lossless round trips, lossy defaults, atomic output."""

from __future__ import annotations

import av
import pytest
import torch

from seqnrl.errors import SeqNRLError
from seqnrl.io import read_video, write_video
from seqnrl.io import write as write_mod


def _random_video(c: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (c, t, h, w), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("t", "h", "w", "fps"), [(10, 16, 16, 30.0), (30, 32, 48, 25.0), (12, 15, 17, 24.0)]
)
def test_lossless_round_trip_is_pixel_exact_with_exact_timestamps(tmp_path, t, h, w, fps):
    video = _random_video(3, t, h, w)
    path = write_video(tmp_path / "v.mp4", video, fps, lossless=True)
    clip = read_video(path)
    assert clip.frames.dtype == torch.uint8
    assert clip.frames.shape == (3, t, h, w)
    assert torch.equal(clip.frames, video)
    assert torch.equal(clip.timestamps, torch.arange(t, dtype=torch.float64) / fps)
    assert clip.fps == fps


def test_lossless_uses_libx264rgb_in_mp4(tmp_path):
    path = write_video(tmp_path / "v.mp4", _random_video(3, 4, 16, 16), 30, lossless=True)
    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.name, ctx.pix_fmt) == ("h264", "gbrp")  # libx264rgb writes 4:4:4 RGB


def test_lossless_fallback_ffv1_is_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(write_mod, "_LOSSLESS_CODECS", [("ffv1", "bgr0", {})])
    video = _random_video(3, 8, 15, 17, seed=3)
    path = write_video(tmp_path / "v.mkv", video, 25, lossless=True)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "ffv1"
    clip = read_video(path)
    assert torch.equal(clip.frames, video)
    assert torch.equal(clip.timestamps, torch.arange(8, dtype=torch.float64) / 25)


def test_float_and_grey_input(tmp_path):
    grey = _random_video(1, 6, 16, 24, seed=1)
    path = write_video(tmp_path / "g.mp4", grey.float() / 255, 10, lossless=True)
    clip = read_video(path)
    assert torch.equal(clip.frames, grey.expand(3, -1, -1, -1))  # grey-replicated RGB
    assert torch.equal(read_video(path, grayscale=True).frames, grey)


def test_default_h264_pads_odd_sizes_and_is_close(tmp_path):
    # smooth content so that 4:2:0 chroma and crf 18 change little
    y = torch.linspace(0, 1, 15)[:, None].expand(15, 17)
    x = torch.linspace(0, 1, 17)[None, :].expand(15, 17)
    frame = torch.stack([y, x, (x + y) / 2])  # (3, 15, 17)
    video = frame[:, None].expand(3, 5, 15, 17).contiguous()
    path = write_video(tmp_path / "lossy.mp4", video, 30, crf=18)
    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.name, ctx.pix_fmt) == ("h264", "yuv420p")
    clip = read_video(path, dtype=torch.float32)
    assert clip.frames.shape == (3, 5, 16, 18)  # padded to even
    err = (clip.frames[:, :, :15, :17] - video).abs().mean().item()
    assert err < 0.03
    # the padding repeats the last row and column
    assert (clip.frames[:, :, 15] - clip.frames[:, :, 14]).abs().mean().item() < 0.03
    assert (clip.frames[:, :, :, 17] - clip.frames[:, :, :, 16]).abs().mean().item() < 0.03


def test_overwrite_false_keeps_existing_file(tmp_path):
    target = tmp_path / "v.mp4"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        write_video(target, _random_video(3, 2, 16, 16), 30, overwrite=False)
    assert target.read_bytes() == b"keep me"
    write_video(target, _random_video(3, 2, 16, 16), 30, overwrite=True)
    assert read_video(target).n_frames == 2


def test_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(SeqNRLError, match="bad.nosuchformat"):
        write_video(tmp_path / "bad.nosuchformat", _random_video(3, 2, 16, 16), 30)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "frames",
    [
        torch.zeros(2, 3, 8, 8, dtype=torch.uint8),  # 2 channels
        torch.zeros(3, 8, 8, dtype=torch.uint8),  # no time axis
        torch.zeros(3, 0, 8, 8, dtype=torch.uint8),  # no frames
        torch.zeros(3, 2, 8, 8, dtype=torch.int32),  # not uint8/float
    ],
)
def test_invalid_frames_are_rejected(tmp_path, frames):
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.mp4", frames, 30)
    assert list(tmp_path.iterdir()) == []


def test_write_video_stream_holds_one_frame_at_a_time_and_round_trips(tmp_path):
    import numpy as np

    from seqnrl.io.write import write_video_stream

    video = _random_video(3, 12, 32, 48, seed=3)
    frames_out = []

    def frames():
        for i in range(video.shape[1]):
            img = video[:, i].permute(1, 2, 0).numpy()
            frames_out.append(i)
            yield img

    n = write_video_stream(tmp_path / "s.mp4", frames(), 10.0, (32, 48), crf=0)
    assert n == 12 and frames_out == list(range(12))
    clip = read_video(tmp_path / "s.mp4")
    assert clip.frames.shape == (3, 12, 32, 48)
    assert torch.equal(clip.timestamps, torch.arange(12, dtype=torch.float64) / 10.0)
    # yuv420p at crf 0 keeps luma (up to the limited-range conversion); chroma is subsampled
    from seqnrl.io.video import luma

    grey = read_video(tmp_path / "s.mp4", grayscale=True).frames[0].float()
    want = torch.from_numpy(luma(video.numpy(), axis=0)).float()
    assert (grey - want).abs().mean().item() < 2.0

    def bad():
        yield np.zeros((32, 48, 3), np.uint8)
        yield np.zeros((30, 48, 3), np.uint8)  # wrong size mid-stream

    with pytest.raises(SeqNRLError, match="frame 1"):
        write_video_stream(tmp_path / "bad.mp4", bad(), 10.0, (32, 48))
    assert not (tmp_path / "bad.mp4").exists()  # nothing half-written
    with pytest.raises(ValueError, match="even"):
        write_video_stream(tmp_path / "odd.mp4", iter([]), 10.0, (31, 48))
