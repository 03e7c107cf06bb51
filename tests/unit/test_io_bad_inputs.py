"""Every kind of broken input gives a VideoReadError naming the file, never a hang or crash."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import PIL.Image
import pytest
import torch

from seqnrl.errors import VideoReadError
from seqnrl.intake.bad_inputs import unknown_codec as unknown_codec_avi
from seqnrl.io import iter_frames, probe_video, read_video, stream_windows, write_video

pytestmark = pytest.mark.timeout(30)


def _good_mp4(path: Path, n: int = 12, faststart: bool = False) -> Path:
    """A small H.264 mp4; with ``faststart`` the index (moov) precedes the frame data."""
    frames = torch.randint(0, 256, (3, n, 32, 32), dtype=torch.uint8)
    if not faststart:
        return write_video(path, frames, 25, lossless=True)
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as c:
        s = c.add_stream("libx264rgb", rate=25)
        s.width = s.height = 32
        s.pix_fmt, s.options = "rgb24", {"crf": "0"}
        for i, image in enumerate(frames.permute(1, 2, 3, 0).numpy()):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def missing(d: Path) -> Path:
    return d / "does_not_exist.mp4"


def zero_bytes(d: Path) -> Path:
    (d / "zero.mp4").touch()
    return d / "zero.mp4"


def truncated_mp4(d: Path) -> Path:
    data = _good_mp4(d / "full.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return d / "truncated.mp4"


def truncated_faststart_mp4(d: Path) -> Path:
    data = _good_mp4(d / "full.mp4", faststart=True).read_bytes()
    (d / "truncated_fs.mp4").write_bytes(data[: len(data) // 2])
    return d / "truncated_fs.mp4"


def truncated_at_packet_boundary(d: Path) -> Path:
    """Cut exactly after the 6th of 12 frames: every remaining packet decodes cleanly."""
    full = _good_mp4(d / "full.mp4", faststart=True)
    with av.open(str(full)) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    pos, size = packets[5]
    (d / "cut_clean.mp4").write_bytes(full.read_bytes()[: pos + size])
    return d / "cut_clean.mp4"


def header_only(d: Path) -> Path:
    data = _good_mp4(d / "full.mp4", faststart=True).read_bytes()
    (d / "header_only.mp4").write_bytes(data[:48])
    return d / "header_only.mp4"


def text_as_mp4(d: Path) -> Path:
    (d / "notes.mp4").write_text("this is not a video\n" * 50)
    return d / "notes.mp4"


def text_file(d: Path) -> Path:
    (d / "notes.txt").write_text("FFmpeg would show this as an ANSI-art video\n" * 50)
    return d / "notes.txt"


def random_bytes_avi(d: Path) -> Path:
    (d / "noise.avi").write_bytes(np.random.default_rng(0).bytes(4096))
    return d / "noise.avi"


def png_as_mp4(d: Path) -> Path:
    PIL.Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "image.png")
    (d / "image.png").rename(d / "image.mp4")
    return d / "image.mp4"


def wav_as_mp4(d: Path) -> Path:
    with wave.open(str(d / "sound.mp4"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    return d / "sound.mp4"


def audio_only_m4a(d: Path) -> Path:
    path = d / "audio_only.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=8000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 8000, i * 1024
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def no_frames_avi(d: Path) -> Path:
    """An AVI with a video stream that holds no frames at all."""
    path = d / "no_frames.avi"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        c.start_encoding()
    return path


def keyframe_lost_mkv(d: Path) -> Path:
    """An mkv holding only the P-frames of an H.264 stream: packets, but no decodable frame."""
    flat = torch.full((3, 12, 32, 32), 90, dtype=torch.uint8)
    flat[:, :, :4, :4] = torch.arange(12, dtype=torch.uint8)[None, :, None, None]
    src = write_video(d / "flat.mp4", flat, 25, lossless=True)
    path = d / "keyframe_lost.mkv"
    with av.open(str(src)) as inp, av.open(str(path), "w") as out:
        stream_in = inp.streams.video[0]
        stream_out = out.add_stream_from_template(stream_in)
        for packet in inp.demux(stream_in):
            if packet.dts is None or packet.is_keyframe:
                continue
            packet.stream = stream_out
            out.mux(packet)
    return path


def empty_folder(d: Path) -> Path:
    (d / "empty_frames").mkdir()
    (d / "empty_frames" / "readme.txt").write_text("no images")
    (d / "empty_frames" / ".hidden.png").write_bytes(b"")
    return d / "empty_frames"


def corrupt_frame_in_folder(d: Path) -> Path:
    folder = d / "corrupt_frames"
    folder.mkdir()
    for i in range(3):
        PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{i}.png")
    (folder / "3.png").write_bytes(b"\x89PNG not really")
    return folder


def mixed_sizes_folder(d: Path) -> Path:
    folder = d / "mixed_frames"
    folder.mkdir()
    PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "0.png")
    PIL.Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(folder / "1.png")
    return folder


BAD_INPUTS: list[Callable[[Path], Path]] = [
    missing,
    zero_bytes,
    truncated_mp4,
    truncated_faststart_mp4,
    truncated_at_packet_boundary,
    header_only,
    text_as_mp4,
    text_file,
    random_bytes_avi,
    png_as_mp4,
    wav_as_mp4,
    audio_only_m4a,
    no_frames_avi,
    keyframe_lost_mkv,
    unknown_codec_avi,
    empty_folder,
    corrupt_frame_in_folder,
    mixed_sizes_folder,
]


@pytest.mark.parametrize("make", BAD_INPUTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "read",
    [
        read_video,
        lambda p: list(iter_frames(p)),
        lambda p: list(stream_windows(p, 4, 2)),
        lambda p: read_video(p, fps=10, size=8),
    ],
    ids=["read_video", "iter_frames", "stream_windows", "read_resampled"],
)
def test_bad_input_raises_video_read_error_naming_the_file(tmp_path, make, read):
    path = make(tmp_path)
    with pytest.raises(VideoReadError) as err:
        read(path)
    assert path.name in str(err.value)
    assert err.value.path == str(path)


@pytest.mark.parametrize(
    "make",
    [
        missing,
        zero_bytes,
        truncated_mp4,
        header_only,
        text_as_mp4,
        png_as_mp4,
        audio_only_m4a,
        unknown_codec_avi,
        empty_folder,
    ],
    ids=lambda f: f.__name__,
)
def test_probe_rejects_what_cannot_be_opened(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(VideoReadError, match=path.name):
        probe_video(path)


def test_messages_say_what_is_wrong(tmp_path):
    cases = {
        missing: "no such file",
        zero_bytes: "empty file",
        audio_only_m4a: "no video stream",
        png_as_mp4: "not a video",
        no_frames_avi: "no decodable frames",
        keyframe_lost_mkv: "no decodable frames",
        unknown_codec_avi: "no decoder",
        empty_folder: "no image files",
        mixed_sizes_folder: "1.png",
        truncated_at_packet_boundary: "decoded 6 of the 12 frames",
    }
    for make, words in cases.items():
        sub = tmp_path / make.__name__
        sub.mkdir()
        with pytest.raises(VideoReadError, match=words):
            read_video(make(sub))
