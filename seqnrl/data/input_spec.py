"""What a model's input looks like, declared once.

An :class:`InputSpec` is the contract between a data module, the model trained on it and
every tool that feeds the model later (``seqnrl score``, the summariser, the dataset
summary, normative evaluation, generation, the benchmarks). The data module owns it
(``VideoDataModule.input_spec``), LightningCLI links it into the model
(``link_arguments("data.input_spec", "model.init_args.input_spec")``), the model saves it in
its checkpoint and :meth:`InputSpec.of` reads it back.

Invariant: a consumer never has its own default for any of these fields. It asks
``InputSpec.of(model)``; the only defaults are the ones in this class, and a spec is
normalised on construction (``image_size`` is ``(H, W)`` or ``None``, ``stride`` is resolved
to ``clip_len // 2`` and never exceeds ``clip_len``), so two equal specs compare equal.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

from seqnrl.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

SECTOR_MODES = ("none", "auto")
NORMALISATIONS = ("unit",)  # frames as float in [0, 1]
MODALITIES = ("video", "keypoints")


def _size(v: Any) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return int(v), int(v)
    h, w = v
    return int(h), int(w)


@dataclass(frozen=True)
class InputSpec:
    """The model's input.

    Attributes:
        clip_len: frames per window.
        stride: frames between evaluation windows (``None`` -> ``clip_len // 2``).
        fps: frame rate every recording is resampled to (``None``: the native rate).
        image_size: frame size ``(H, W)`` (an int means square); ``None`` keeps the native size.
        channels: 1 (grey) or 3 (RGB); 0 for keypoint sequences.
        sector_mask: masking applied before the model: ``"none"``, ``"auto"`` (detected
            ultrasound sector) or a mask image path.
        normalisation: how pixel values reach the model; ``"unit"`` = float in [0, 1].
        modality: ``"video"`` or ``"keypoints"``.
    """

    clip_len: int = 16
    stride: int | None = None
    fps: float | None = None
    image_size: tuple[int, int] | None = None
    channels: int = 1
    sector_mask: str = "none"
    normalisation: str = "unit"
    modality: str = "video"

    def __post_init__(self) -> None:
        clip_len = int(self.clip_len)
        if clip_len < 1:
            raise ConfigError(f"InputSpec: clip_len must be >= 1, got {self.clip_len}")
        stride = int(self.stride) if self.stride else max(1, clip_len // 2)
        if stride < 1:
            raise ConfigError(f"InputSpec: stride must be >= 1, got {self.stride}")
        fps = float(self.fps) if self.fps else None
        if fps is not None and fps <= 0:
            raise ConfigError(f"InputSpec: fps must be > 0, got {self.fps}")
        size = _size(self.image_size)
        if size is not None and min(size) < 1:
            raise ConfigError(f"InputSpec: image_size must be positive, got {self.image_size}")
        if int(self.channels) not in (0, 1, 3):
            raise ConfigError(f"InputSpec: channels must be 1 or 3 (0 for keypoints), got {self.channels}")
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError(f"InputSpec: normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        if self.modality not in MODALITIES:
            raise ConfigError(f"InputSpec: modality must be one of {MODALITIES}, got {self.modality!r}")
        object.__setattr__(self, "clip_len", clip_len)
        object.__setattr__(self, "stride", min(stride, clip_len))
        object.__setattr__(self, "fps", fps)
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "channels", int(self.channels))
        object.__setattr__(self, "sector_mask", str(self.sector_mask or "none"))

    @property
    def grayscale(self) -> bool:
        return self.channels == 1

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain types only (the checkpoint loads with ``weights_only=True``)."""
        d = asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "input spec") -> InputSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown input-spec field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_legacy(cls, data_spec: dict[str, Any] | None, hparams: dict[str, Any] | None = None) -> InputSpec:
        """Convert the untyped ``data_spec`` of a format-1 checkpoint (with its
        hyper-parameters for what it lacks) into a spec; documented in ``docs/architecture.md``."""
        spec, hp = dict(data_spec or {}), dict(hparams or {})

        def pick(*keys: str) -> Any:
            for d in (spec, hp):
                for k in keys:
                    if d.get(k) is not None:
                        return d[k]
            return None

        clip_len = pick("clip_len")
        if clip_len is None:
            raise CheckpointError("checkpoint has no clip_len in its data_spec or hyper-parameters")
        grey = spec.get("grayscale")
        if grey is None:
            ch = pick("channels", "in_channels")
            grey = True if ch is None else int(ch) == 1
        joints = pick("n_joints", "joints")
        return cls(
            clip_len=int(clip_len),
            stride=spec.get("stride"),
            fps=spec.get("fps"),
            image_size=pick("image_size"),
            channels=0 if joints is not None and pick("image_size") is None else (1 if grey else 3),
            # format 1 scored a checkpoint that recorded no mask with the automatic one
            sector_mask=str(pick("sector_mask") or "auto"),
        )

    @classmethod
    def of(cls, model: Any) -> InputSpec:
        """The spec a trained model was fitted with (the one constructor consumers use)."""
        spec = getattr(model, "input_spec", None)
        if isinstance(spec, InputSpec):
            return spec
        raise CheckpointError(
            f"{type(model).__name__} carries no input spec: it was neither fitted with a data module "
            "nor given input_spec=InputSpec(...)"
        )

    def check_model(self, hparams: dict[str, Any], owner: str) -> None:
        """Raise when a model's own hyper-parameters disagree with this spec (the data and
        model configs once declared ``clip_len``/``image_size`` twice and nothing checked)."""
        problems = []
        if self.modality == "video":
            size = hparams.get("image_size")
            if size is not None and self.image_size is not None and _size(size) != self.image_size:
                problems.append(f"image_size {list(_size(size))} vs the data's {list(self.image_size)}")
            ch = hparams.get("in_channels", hparams.get("channels"))
            if ch is not None and self.channels and int(ch) != self.channels:
                problems.append(f"channels {ch} vs the data's {self.channels}")
        n = hparams.get("clip_len")
        if n is not None and self.modality == "video" and int(n) != self.clip_len:
            problems.append(f"clip_len {n} vs the data's {self.clip_len}")
        if problems:
            raise ConfigError(f"{owner}: model and data disagree on the input: " + "; ".join(problems))
