"""Affine template warping: points, Gaussian parts and images under 2D affine transforms.

Coordinates are normalised image coordinates in ``[-1, 1]`` (``x`` right, ``y`` down) with
``align_corners=False`` pixel centres: pixel column ``j`` of ``W`` is at ``(2j + 1) / W - 1``,
as in :func:`torch.nn.functional.affine_grid`. An affine ``A`` is a ``(..., 2, 3)`` tensor
``[L | t]`` mapping a template point ``p`` to ``L p + t``.

A Gaussian part with mean ``mu`` and covariance ``S`` in the template becomes, under ``A``,
the Gaussian with mean ``L mu + t`` and covariance ``L S L^T``: warping the blob analytically
(:func:`warp_gaussians` + :func:`render_gaussians`) equals resampling its image
(:func:`warp_image`) up to interpolation error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity(*batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Identity affines ``(*batch, 2, 3)``."""
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device, dtype=dtype)
    return eye.expand(*batch, 2, 3).clone()


def to_homogeneous(a: torch.Tensor) -> torch.Tensor:
    """``(..., 2, 3)`` -> ``(..., 3, 3)``."""
    last = torch.zeros(*a.shape[:-2], 1, 3, device=a.device, dtype=a.dtype)
    last[..., 0, 2] = 1.0
    return torch.cat([a, last], dim=-2)


def compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a o b`` (apply ``b`` first), broadcasting over leading dimensions."""
    la, ta = a[..., :2], a[..., 2:]
    lb, tb = b[..., :2], b[..., 2:]
    return torch.cat([la @ lb, la @ tb + ta], dim=-1)


def invert(a: torch.Tensor) -> torch.Tensor:
    """Inverse affine ``(..., 2, 3)``."""
    linv = torch.linalg.inv(a[..., :2])
    return torch.cat([linv, -linv @ a[..., 2:]], dim=-1)


def apply_points(a: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Transform points ``(..., N, 2)`` by affines ``(..., 2, 3)`` (broadcast)."""
    return points @ a[..., :2].transpose(-1, -2) + a[..., 2].unsqueeze(-2)


def warp_gaussians(a: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means ``(..., 2)`` and covariances ``(..., 2, 2)`` of Gaussians under affines ``(..., 2, 3)``."""
    lin = a[..., :2]
    m = (lin @ mean.unsqueeze(-1)).squeeze(-1) + a[..., 2]
    return m, lin @ cov @ lin.transpose(-1, -2)


def pixel_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(H, W, 2)`` normalised ``(x, y)`` of the pixel centres."""
    ys = (2 * torch.arange(h, device=device, dtype=dtype) + 1) / h - 1
    xs = (2 * torch.arange(w, device=device, dtype=dtype) + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def render_gaussians(
    mean: torch.Tensor, cov: torch.Tensor, size: tuple[int, int], eps: float = 1e-6
) -> torch.Tensor:
    """Unnormalised Gaussian blobs (peak 1) ``(..., H, W)`` for means ``(..., 2)`` and
    covariances ``(..., 2, 2)``; ``eps`` is added to the covariance diagonal."""
    h, w = size
    grid = pixel_grid(h, w, device=mean.device, dtype=mean.dtype)  # (H, W, 2)
    c = cov + eps * torch.eye(2, device=cov.device, dtype=cov.dtype)
    a, b, d = c[..., 0, 0], c[..., 0, 1], c[..., 1, 1]
    det = (a * d - b * b).clamp_min(1e-12)
    ia, ib, id_ = d / det, -b / det, a / det  # inverse covariance
    dx = grid[..., 0] - mean[..., 0, None, None]
    dy = grid[..., 1] - mean[..., 1, None, None]
    q = ia[..., None, None] * dx * dx + 2 * ib[..., None, None] * dx * dy + id_[..., None, None] * dy * dy
    return torch.exp(-0.5 * q)


def warp_image(image: torch.Tensor, a: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample ``image`` ``(B, C, H, W)`` so that its content moves by affines ``a``
    ``(B, 2, 3)``: ``out(A p) = image(p)``; outside the image is zero."""
    theta = invert(a)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode=mode, padding_mode="zeros", align_corners=False)


def to_unit(points: torch.Tensor) -> torch.Tensor:
    """Normalised ``[-1, 1]`` -> keypoint convention ``[0, 1]`` (same pixel centres)."""
    return (points + 1) * 0.5


def from_unit(points: torch.Tensor) -> torch.Tensor:
    """Keypoint convention ``[0, 1]`` -> normalised ``[-1, 1]``."""
    return points * 2 - 1
