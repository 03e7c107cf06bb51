"""seqnrl: normative representation learning on sequences."""

from seqnrl.errors import (
    CheckpointError,
    ConfigError,
    DicomError,
    KeypointError,
    ManifestError,
    MotionReadError,
    SeqNRLError,
    VideoReadError,
)

__version__ = "0.1.0"

__all__ = [
    "SeqNRLError",
    "VideoReadError",
    "DicomError",
    "MotionReadError",
    "ManifestError",
    "KeypointError",
    "CheckpointError",
    "ConfigError",
    "__version__",
]
