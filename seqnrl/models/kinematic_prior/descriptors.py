"""Interpretable whole-movement descriptors of a 3-D take, shown beside the kinematic prior.

What a clinician reads off a gait or a gesture, measured in the body's own frame from joint
positions ``(T, K, 3)`` (any units; speeds per second):

* ``tempo``: steps per minute (:func:`seqnrl.models.motion.descriptors.cadence` on the legs),
* ``speed``: horizontal speed of the pelvis,
* ``stride``: distance travelled per gait cycle (speed / stride frequency),
* ``trunk flexion``: forward lean of the pelvis-to-neck line from vertical (degrees),
* ``arm swing``: forward-backward range of the hands relative to the pelvis,
* ``knee range``: range of knee flexion (degrees, mean of both knees).

Nothing here is learned; the benchmark compares each style with the normal takes of the
same activity to say *which* of these the elderly and exhausted takes differ in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from seqnrl.models.kinematic_prior.features import facing_angle, to_facing_frame
from seqnrl.models.motion.descriptors import cadence

DESCRIPTORS = ("tempo", "speed", "stride", "trunk flexion", "arm swing", "knee range")


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    c = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def take_descriptors(
    kp: np.ndarray, fps: float, joint_names: Sequence[str], root: int, heading: tuple[int, int], up: int = 1
) -> dict[str, float]:
    """The descriptors of the module docstring for one take. They need joints named like
    ``Neck``, ``Hand_L/R`` (or ``*Wrist*``) and, per side, hip, knee and ankle joints
    (``UpperLeg``/``Hip``, ``LowerLeg``/``Knee``, ``Foot``/``Ankle``); a descriptor whose
    joints are missing is NaN."""
    names = list(joint_names)
    x = torch.as_tensor(np.asarray(kp, dtype=np.float64))[None]
    yaw = facing_angle(x, heading[0], heading[1], up)
    rel = to_facing_frame(x - x[:, :, root : root + 1], yaw, up)[0].numpy()  # body frame, pelvis at 0
    h = [a for a in range(3) if a != up]
    fwd = h[1]  # the body frame's forward axis: perpendicular to the hip line on the ground

    def find(*keys: str, side: str = "") -> int | None:
        for i, n in enumerate(names):
            low = n.lower()
            if any(k in low for k in keys) and (not side or n.endswith(f"_{side}") or low.startswith(side.lower())):
                return i
        return None

    pelvis = np.asarray(kp)[:, root]
    vel = np.diff(pelvis[:, h], axis=0) * fps
    speed = float(np.linalg.norm(vel, axis=1).mean()) if len(vel) else 0.0
    cad = cadence(np.asarray(kp), fps, names)
    stride_hz = float(cad.get("stride_hz") or 0.0)
    vertical = np.zeros(3)
    vertical[up] = 1.0
    neck = find("neck")
    lean = _angle(rel[:, neck], vertical[None]) if neck is not None else np.array([np.nan])
    hands = [find("hand", "wrist", side=s) for s in ("L", "R")]
    swing = float(np.mean([np.ptp(rel[:, j, fwd]) for j in hands])) if None not in hands else float("nan")
    knees = []
    for s in ("L", "R"):
        hip, knee, ankle = find("upperleg", "hip", side=s), find("lowerleg", "knee", side=s), find("foot", "ankle", side=s)
        if None in (hip, knee, ankle):
            knees.append(np.nan)
            continue
        knees.append(np.ptp(_angle(rel[:, knee] - rel[:, hip], rel[:, ankle] - rel[:, knee])))
    return {
        "tempo": float(cad.get("steps_per_min") or 0.0),
        "speed": speed,
        "stride": speed / stride_hz if stride_hz > 0 else 0.0,
        "trunk flexion": float(np.mean(lean)),
        "arm swing": swing,
        "knee range": float(np.mean(knees)),
    }
