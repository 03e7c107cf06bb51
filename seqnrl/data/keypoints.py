"""Keypoint sequence helpers: validity masks and checks for unusable sequences."""

from __future__ import annotations

import numpy as np
import torch

from seqnrl.errors import KeypointError


def keypoint_mask(kp: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``(T, K)`` bool: True where a keypoint ``(T, K, D)`` has all coordinates finite.

    Returns the same array type as the input (numpy in, numpy out; torch in, torch out).
    """
    if kp.ndim < 2:
        raise ValueError(f"keypoints must be (..., K, D), got shape {tuple(kp.shape)}")
    if isinstance(kp, torch.Tensor):
        return torch.isfinite(kp).all(dim=-1)
    return np.isfinite(np.asarray(kp)).all(axis=-1)


def check_keypoints(kp: np.ndarray | torch.Tensor, source: str = "") -> np.ndarray | torch.Tensor:
    """Validate a ``(T, K, D)`` keypoint sequence and return its :func:`keypoint_mask`.

    Raises :class:`KeypointError` naming ``source`` (file path or sequence id) when the
    shape is wrong, the sequence is empty, or every keypoint is missing (NaN/inf).
    """
    src = source or None
    if kp.ndim != 3 or kp.shape[-1] not in (2, 3):
        raise KeypointError(f"keypoints must be (T, K, 2|3), got shape {tuple(kp.shape)}", src)
    if kp.shape[0] == 0 or kp.shape[1] == 0:
        raise KeypointError(f"empty keypoint sequence, shape {tuple(kp.shape)}", src)
    mask = keypoint_mask(kp)
    if not bool(mask.any()):
        raise KeypointError(f"every keypoint is missing (NaN/inf) in all {kp.shape[0]} frames", src)
    return mask
