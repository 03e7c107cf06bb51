"""Per-frame motion features of the kinematic prior, from joint positions alone.

For keypoints ``(B, T, K, 3)`` (any units; the model standardises every feature on normal
training data) with a root joint (the pelvis) and a vertical axis:

* the position of every other joint relative to the root (joints in ``ignore`` left out:
  a BVH's fixed world-origin joint would tell where in the room the person is, not how
  they move),
* the velocity of every other joint (frame-to-frame displacement),
* the root's horizontal velocity and its height,
* with ``heading`` (a left and a right hip joint): everything horizontal is expressed in the
  body's own frame (forward / sideways, from the hip line), and the turning rate is added —
  so a take is the same motion whichever way the person faces.

The first frame's velocities repeat the second frame's (no look-ahead beyond one frame of a
window that starts the sequence).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def facing_angle(x: torch.Tensor, left: int, right: int, up: int) -> torch.Tensor:
    """``(B, T)`` facing angle from the hip line (right -> left) on the ground plane."""
    h = [a for a in range(3) if a != up]
    d = x[:, :, left] - x[:, :, right]
    return torch.atan2(d[..., h[1]], d[..., h[0]])


def to_facing_frame(v: torch.Tensor, yaw: torch.Tensor, up: int) -> torch.Tensor:
    """Rotate the horizontal components of ``v`` ``(B, T, ..., 3)`` by ``-yaw`` ``(B, T)``."""
    h = [a for a in range(3) if a != up]
    c, s = torch.cos(yaw), torch.sin(yaw)
    while c.ndim < v.ndim - 1:
        c, s = c.unsqueeze(-1), s.unsqueeze(-1)
    a, b = v[..., h[0]], v[..., h[1]]
    out = v.clone()
    out[..., h[0]] = c * a + s * b
    out[..., h[1]] = -s * a + c * b
    return out


def _diff(x: torch.Tensor) -> torch.Tensor:
    """Frame-to-frame difference along dim 1, the first frame repeating the second's."""
    d = x[:, 1:] - x[:, :-1]
    if d.shape[1] == 0:
        return torch.zeros_like(x)
    return torch.cat([d[:, :1], d], dim=1)


def n_features(n_joints: int, heading: bool, n_ignored: int = 0) -> int:
    """Length of :func:`motion_features`' last dimension."""
    return 6 * (n_joints - 1 - n_ignored) + 3 + int(heading)


def feature_joints(n_joints: int, root: int, ignore: Sequence[int] = ()) -> list[int]:
    """The joints whose relative position and velocity are features, in feature order."""
    return [j for j in range(n_joints) if j != root and j not in set(ignore)]


def motion_features(
    kp: torch.Tensor,
    root: int = 0,
    up: int = 1,
    heading: tuple[int, int] | None = None,
    ignore: Sequence[int] = (),
) -> torch.Tensor:
    """``(B, T, F)`` features of keypoints ``(B, T, K, 3)`` (see the module docstring);
    joints in ``ignore`` (e.g. a BVH's fixed world-origin joint) are left out."""
    if kp.ndim != 4 or kp.shape[-1] != 3:
        raise ValueError(f"motion features need 3-D keypoints (B, T, K, 3), got {tuple(kp.shape)}")
    k = kp.shape[2]
    others = feature_joints(k, root, ignore)
    r = kp[:, :, root]  # (B, T, 3)
    rel = kp[:, :, others] - r[:, :, None]
    vel = _diff(kp[:, :, others])
    rvel = _diff(r)
    extra = []
    if heading is not None:
        yaw = facing_angle(kp, heading[0], heading[1], up)
        rel, vel, rvel = to_facing_frame(rel, yaw, up), to_facing_frame(vel, yaw, up), to_facing_frame(rvel, yaw, up)
        turn = _diff(yaw[..., None])
        extra.append(torch.remainder(turn + torch.pi, 2 * torch.pi) - torch.pi)
    h = [a for a in range(3) if a != up]
    parts = [rel.flatten(2), vel.flatten(2), rvel[..., h], r[..., up : up + 1], *extra]
    return torch.cat(parts, dim=-1)
