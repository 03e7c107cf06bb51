"""Tiny hand-written BVH takes for the motion-prior tests (a 7-joint walker, y up, 30 fps).

Joints (end sites dropped): 0 Hips, 1 Spine, 2 Head, 3 UpperLeg_L, 4 LowerLeg_L,
5 UpperLeg_R, 6 LowerLeg_R. A ``normal`` take swings the legs in anti-phase at ``freq`` Hz
with amplitude ``amp`` degrees while walking forward at ``speed`` units/s in the direction
``yaw`` (degrees); ``lean`` bends the spine forward (degrees).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

JOINTS = ["Hips", "Spine", "Head", "UpperLeg_L", "LowerLeg_L", "UpperLeg_R", "LowerLeg_R"]
HEADING = (3, 5)

_HIERARCHY = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT Head
    {
      OFFSET 0 10 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 5 0
      }
    }
  }
  JOINT UpperLeg_L
  {
    OFFSET 3 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT LowerLeg_L
    {
      OFFSET 0 -10 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 -10 0
      }
    }
  }
  JOINT UpperLeg_R
  {
    OFFSET -3 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT LowerLeg_R
    {
      OFFSET 0 -10 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 -10 0
      }
    }
  }
}
MOTION
"""


def write_take(path: Path, n_frames: int = 90, freq: float = 1.0, amp: float = 30.0, speed: float = 20.0,
               lean: float = 0.0, yaw: float = 0.0, phase: float = 0.0, fps: float = 30.0) -> Path:
    t = np.arange(n_frames) / fps
    swing = amp * np.sin(2 * np.pi * freq * t + phase)
    knee = 0.5 * amp * np.clip(np.sin(2 * np.pi * freq * t + phase + 1.0), 0, None)
    knee_r = 0.5 * amp * np.clip(np.sin(2 * np.pi * freq * t + phase + 1.0 + np.pi), 0, None)
    yr = np.deg2rad(yaw)
    x, z = speed * t * np.sin(yr), speed * t * np.cos(yr)
    y = 20.0 + 0.5 * np.cos(4 * np.pi * freq * t + phase)
    rows = []
    for i in range(n_frames):
        rows.append([x[i], y[i], z[i], 0.0, 0.0, yaw,  # root: position, Z X Y rotation
                     0.0, lean, 0.0, 0.0, 0.0, 0.0,  # spine, head
                     0.0, swing[i], 0.0, 0.0, knee[i], 0.0,  # left leg
                     0.0, -swing[i], 0.0, 0.0, knee_r[i], 0.0])  # right leg
    body = f"Frames: {n_frames}\nFrame Time: {1.0 / fps:.8f}\n" + "\n".join(" ".join(f"{v:.5f}" for v in r) for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_HIERARCHY + body + "\n")
    return path


STYLES = {
    "normal": dict(freq=1.0, amp=30.0, speed=20.0, lean=0.0),
    "elderly": dict(freq=0.6, amp=12.0, speed=8.0, lean=25.0),
}


def write_dataset(root: Path, takes: int = 6, n_frames: int = 90) -> Path:
    """``root/manifest.csv`` and takes 1..``takes`` of one activity in both styles."""
    lines = ["file,content,style,take,label"]
    for style, kw in STYLES.items():
        for k in range(1, takes + 1):
            name = f"bvh/walk_{style}_{k:03d}.bvh"
            write_take(root / name, n_frames=n_frames, phase=0.7 * k, yaw=37.0 * k, **kw)
            lines.append(f"{name},walk,{style},{k:03d},{style}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root
