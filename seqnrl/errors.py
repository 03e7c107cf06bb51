"""One exception family for seqnrl. Every message names the file (when there is one) and the cause."""

from __future__ import annotations

from os import PathLike


class SeqNRLError(Exception):
    """Base class of every error seqnrl raises on purpose."""

    def __init__(self, message: str, path: str | PathLike | None = None):
        self.path = None if path is None else str(path)
        self.cause = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class VideoReadError(SeqNRLError):
    """A video, frame folder or DICOM cine cannot be decoded."""


class DicomError(VideoReadError):
    """A DICOM file is not a decodable multi-frame cine."""


class MotionReadError(SeqNRLError):
    """A BVH (or other motion) file cannot be parsed."""


class ManifestError(SeqNRLError):
    """A manifest is missing columns, points outside the data root or at missing files."""


class KeypointError(SeqNRLError):
    """Keypoint sequences that cannot be used (e.g. entirely NaN)."""


class CheckpointError(SeqNRLError):
    """A checkpoint that is not a seqnrl checkpoint of the expected kind, or is damaged."""


class ConfigError(SeqNRLError):
    """Invalid configuration values."""
