"""Decoding and writing of videos, frame folders and DICOM cines; atomic file output."""

from seqnrl.io.atomic import atomic_path, write_json, write_text
from seqnrl.io.frames import list_frame_files
from seqnrl.io.video import (
    VideoClip,
    VideoInfo,
    Window,
    iter_frames,
    probe_video,
    read_video,
    stream_windows,
)
from seqnrl.io.write import write_video

__all__ = [
    "VideoClip",
    "VideoInfo",
    "Window",
    "atomic_path",
    "iter_frames",
    "list_frame_files",
    "probe_video",
    "read_video",
    "stream_windows",
    "write_json",
    "write_text",
    "write_video",
]
