"""Load a seqnrl model from its checkpoint alone (no training config needed).

Checkpoints are read with ``torch.load(weights_only=True)``. The model class comes from the
``seqnrl`` metadata every :class:`~seqnrl.models.base.NormativeModule` writes, and must live
in the ``seqnrl`` package (a checkpoint cannot make us import arbitrary code).
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from seqnrl.errors import CheckpointError


def _load_failure(e: BaseException) -> str:
    """What went wrong, in seqnrl's words (never PyTorch's advice to disable safe loading)."""
    msg = str(e)
    if isinstance(e, pickle.UnpicklingError) and "Unsupported operand" in msg:
        return "not a PyTorch checkpoint (the file is neither a checkpoint archive nor a pickle)"
    if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in msg:
        found = re.search(r"(?:GLOBAL|Unsupported class) ([\w.]+)", msg)
        what = f" ({found.group(1)})" if found else ""
        return (f"the file holds Python objects beyond tensors and plain data{what}; seqnrl loads checkpoints "
                "safely (weights_only) and will not run code from a file: re-save the checkpoint with seqnrl")
    if isinstance(e, EOFError) or "central directory" in msg or "truncated" in msg.lower() or "unexpected end" in msg.lower():
        return "the checkpoint is truncated or damaged (its archive ends early): copy it again or use another"
    if isinstance(e, (zipfile.BadZipFile, pickle.UnpicklingError)) or "invalid load key" in msg or "PytorchStreamReader" in msg:
        return "not a PyTorch checkpoint (the file is neither a checkpoint archive nor a pickle)"
    if isinstance(e, (PermissionError, IsADirectoryError)):
        return f"cannot read the file ({e.strerror or type(e).__name__})"
    if isinstance(e, OSError):  # torch's archive reader on a cut-off file (EINVAL)
        return "the checkpoint is truncated or damaged (its archive cannot be read): copy it again or use another"
    return f"not a loadable PyTorch checkpoint ({type(e).__name__})"


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(_load_failure(e), path) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError("not a Lightning checkpoint (no state_dict)", path)
    return ckpt


def model_class(ckpt: dict[str, Any], path: str | os.PathLike = "") -> type:
    info = ckpt.get("seqnrl")
    if not isinstance(info, dict) or "model_class" not in info:
        raise CheckpointError("not a seqnrl checkpoint (no 'seqnrl' metadata): train it with seqnrl", path)
    name = str(info["model_class"])
    if not name.startswith("seqnrl."):
        raise CheckpointError(f"refusing model class {name!r} from outside the seqnrl package", path)
    mod, _, cls = name.rpartition(".")
    try:
        return getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"model class {name!r} not found in this seqnrl version", path) from e


def load_model(path: str | os.PathLike, expected: type | None = None) -> Any:
    """Rebuild the model of a checkpoint with its hyper-parameters, weights and calibration."""
    ckpt = read_checkpoint(path)
    cls = model_class(ckpt, path)
    if expected is not None and not issubclass(cls, expected):
        raise CheckpointError(f"checkpoint holds a {cls.__name__}, expected a {expected.__name__}", path)
    hp = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    try:
        model = cls(**hp)
    except TypeError as e:
        raise CheckpointError(f"hyper-parameters do not fit {cls.__name__} ({e})", path) from e
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"weights do not match {cls.__name__} ({str(e)[:300]})", path) from e
    model.on_load_checkpoint(ckpt)
    return model.eval()
