"""Synthetic walking stick figures in 2D and 3D, with labelled motion anomalies.

A 16-joint skeleton (:data:`JOINT_NAMES`, :data:`PARENTS`) walks in place (as on a
treadmill) with a parametric gait: per-sequence random body height (1.50-1.95 m) and
segment proportions, gait-cycle frequency (0.8-1.05 Hz, i.e. ~96-126 steps/min), hip,
knee, arm and elbow amplitudes, trunk lean, lateral sway, a slow cadence drift and small
Gaussian noise. The stance foot touches the ground (pelvis height follows the legs).

3D keypoints are in metres: ``x`` lateral (subject's left positive), ``y`` up (ground at
0), ``z`` forward. 2D keypoints are an orthographic oblique view (random camera yaw
25-65 degrees to either side) in *normalised image coordinates* ``[0, 1]``, ``x`` right,
``y`` down, ready for :func:`seqnrl.data.render.render_skeleton`.

Anomalies (frames of ``anomaly_span`` are labelled 1):

- ``tremor``: 6-10 Hz sinusoidal jitter (2-3.5 % of body height) of one arm's elbow and wrist.
- ``freeze``: the pose is held exactly constant, after which walking resumes where it stopped.
- ``limp``: one leg's stride is shortened (smaller hip/knee excursion) and its stance
  lengthened (phase warp), with the trunk leaning towards it.

The same ``seed`` gives the same normal motion with or without an anomaly: frames before
the span are identical (and after it too, for ``tremor`` and ``limp``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqnrl.errors import ConfigError

JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "spine",
    "neck",
    "head",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_hip",
    "r_knee",
    "r_ankle",
)
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 2, 4, 5, 2, 7, 8, 0, 10, 11, 0, 13, 14)
N_JOINTS = len(JOINT_NAMES)
J = {n: i for i, n in enumerate(JOINT_NAMES)}
ANOMALIES: tuple[str, ...] = ("tremor", "freeze", "limp")

# scale of the 2D view: normalised image units per metre, and the height put at the centre
_VIEW_SCALE = 0.42
_VIEW_CENTRE_Y = 0.95


def _draw_params(rng: np.random.Generator) -> dict[str, float]:
    u = rng.uniform
    h = u(1.50, 1.95)
    p = {
        "height": h,
        "thigh": 0.245 * h * u(0.95, 1.05),
        "shank": 0.246 * h * u(0.95, 1.05),
        "ankle_h": 0.039 * h,
        "hip_w": 0.055 * h * u(0.9, 1.1),
        "trunk": 0.288 * h * u(0.95, 1.05),
        "head": 0.11 * h * u(0.9, 1.1),
        "shoulder_w": 0.125 * h * u(0.9, 1.1),
        "upper_arm": 0.186 * h * u(0.95, 1.05),
        "forearm": 0.146 * h * u(0.95, 1.05),
        "freq": u(0.8, 1.05),  # gait cycles per second
        "phase0": u(0.0, 2 * np.pi),
        "drift_a": u(0.0, 0.3),
        "drift_f": u(0.05, 0.2),
        "drift_p": u(0.0, 2 * np.pi),
        "hip_amp": np.deg2rad(u(18.0, 28.0)),
        "hip_off": np.deg2rad(u(2.0, 7.0)),
        "knee_amp": np.deg2rad(u(45.0, 62.0)),
        "knee_base": np.deg2rad(u(3.0, 10.0)),
        "arm_amp": np.deg2rad(u(10.0, 25.0)),
        "elbow_base": np.deg2rad(u(10.0, 25.0)),
        "elbow_amp": np.deg2rad(u(5.0, 20.0)),
        "lean": np.deg2rad(u(0.0, 6.0)),
        "sway": 0.015 * h * u(0.6, 1.4),
        "arm_abd": 0.02 * h * u(0.5, 1.5),
        "noise": 0.002 * h * u(0.75, 1.5),
        "yaw": np.deg2rad(u(25.0, 65.0)) * rng.choice([-1.0, 1.0]),
        "dx": u(-0.03, 0.03),
        "dy": u(-0.03, 0.03),
    }
    return p


def _ramp(t: np.ndarray, start: float, stop: float, rise: float) -> np.ndarray:
    """1 inside ``[start, stop)`` with raised-cosine edges of ``rise`` seconds inside it."""
    rise = max(min(rise, 0.5 * (stop - start)), 1e-9)
    up = np.clip((t - start) / rise, 0.0, 1.0)
    down = np.clip((stop - t) / rise, 0.0, 1.0)
    w = np.minimum(up, down)
    w = 0.5 - 0.5 * np.cos(np.pi * w)
    return np.where((t >= start) & (t < stop), w, 0.0)


def _pose(tau: np.ndarray, p: dict[str, float], limp: dict[str, Any] | None = None) -> np.ndarray:
    """Joint positions ``(T, 16, 3)`` at times ``tau`` (seconds)."""
    t = np.asarray(tau, dtype=np.float64)
    n = t.shape[0]
    phi = (
        2 * np.pi * p["freq"] * t
        + p["phase0"]
        + p["drift_a"] * np.sin(2 * np.pi * p["drift_f"] * t + p["drift_p"])
    )
    w_limp = np.zeros(n) if limp is None else limp["w"]
    out = np.zeros((n, N_JOINTS, 3))

    # legs: angles in the sagittal (y, z) plane, positive = forward
    leg_vec = {}
    for side, sgn, ph_off in (("l", 1.0, 0.0), ("r", -1.0, np.pi)):
        ph = phi + ph_off
        hip_scale = np.ones(n)
        knee_scale = np.ones(n)
        if limp is not None and limp["side"] == side:
            ph = ph + limp["beta"] * w_limp * np.sin(ph)  # slower in stance: longer stance
            hip_scale = 1.0 - limp["hip_cut"] * w_limp
            knee_scale = 1.0 - limp["knee_cut"] * w_limp
        th_hip = p["hip_off"] + hip_scale * p["hip_amp"] * np.sin(ph)
        th_knee = (
            p["knee_base"] + knee_scale * p["knee_amp"] * np.maximum(0.0, np.cos(ph - 0.3)) ** 2
        )
        th_shank = th_hip - th_knee
        thigh = p["thigh"] * np.stack([np.zeros(n), -np.cos(th_hip), np.sin(th_hip)], -1)
        shank = p["shank"] * np.stack([np.zeros(n), -np.cos(th_shank), np.sin(th_shank)], -1)
        leg_vec[side] = (sgn, thigh, shank)

    # pelvis height: the lower foot stands on the ground
    leg_drop = np.maximum(
        -(leg_vec["l"][1][:, 1] + leg_vec["l"][2][:, 1]),
        -(leg_vec["r"][1][:, 1] + leg_vec["r"][2][:, 1]),
    )
    pelvis = np.stack([p["sway"] * np.sin(phi), leg_drop + p["ankle_h"], np.zeros(n)], -1)
    out[:, J["pelvis"]] = pelvis
    for side, (sgn, thigh, shank) in leg_vec.items():
        hip = pelvis + np.array([sgn * p["hip_w"], 0.0, 0.0])
        out[:, J[f"{side}_hip"]] = hip
        out[:, J[f"{side}_knee"]] = hip + thigh
        out[:, J[f"{side}_ankle"]] = hip + thigh + shank

    # trunk: forward lean, lateral lean towards a limping side
    lat = 0.2 * p["sway"] / p["trunk"] * np.sin(phi)
    if limp is not None:
        lat = lat + (1.0 if limp["side"] == "l" else -1.0) * limp["lean"] * w_limp
    trunk_dir = np.stack(
        [np.sin(lat), np.cos(p["lean"]) * np.cos(lat), np.full(n, np.sin(p["lean"]))], -1
    )
    trunk_dir /= np.linalg.norm(trunk_dir, axis=-1, keepdims=True)
    out[:, J["spine"]] = pelvis + 0.5 * p["trunk"] * trunk_dir
    neck = pelvis + p["trunk"] * trunk_dir
    out[:, J["neck"]] = neck
    out[:, J["head"]] = neck + p["head"] * trunk_dir

    # arms swing opposite to the leg of the same side
    for side, sgn, ph_off in (("l", 1.0, np.pi), ("r", -1.0, 0.0)):
        ph = phi + ph_off
        th_arm = p["arm_amp"] * np.sin(ph)
        th_fore = th_arm + p["elbow_base"] + p["elbow_amp"] * (0.5 + 0.5 * np.sin(ph))
        sh = neck + np.array([sgn * p["shoulder_w"], -0.02 * p["height"], 0.0])
        upper = p["upper_arm"] * np.stack([np.zeros(n), -np.cos(th_arm), np.sin(th_arm)], -1)
        upper[:, 0] = sgn * p["arm_abd"]
        fore = p["forearm"] * np.stack([np.zeros(n), -np.cos(th_fore), np.sin(th_fore)], -1)
        out[:, J[f"{side}_shoulder"]] = sh
        out[:, J[f"{side}_elbow"]] = sh + upper
        out[:, J[f"{side}_wrist"]] = sh + upper + fore
    return out


def project_oblique(positions: np.ndarray, p: dict[str, float]) -> np.ndarray:
    """The 2D view used for ``dim=2``: ``(T, K, 3)`` metres -> ``(T, K, 2)`` in [0, 1]."""
    c, s = np.cos(p["yaw"]), np.sin(p["yaw"])
    u = c * positions[..., 0] + s * positions[..., 2]
    x = 0.5 + p["dx"] + _VIEW_SCALE * u
    y = 0.5 + p["dy"] - _VIEW_SCALE * (positions[..., 1] - _VIEW_CENTRE_Y)
    return np.stack([x, y], -1)


def random_span(
    rng: np.random.Generator, n_frames: int, min_frac: float = 0.2, max_frac: float = 0.4
) -> tuple[int, int]:
    """A random ``[start, stop)`` span covering ``min_frac``-``max_frac`` of the sequence,
    starting after the first 10 % of frames where there is room."""
    lo = max(1, int(round(min_frac * n_frames)))
    hi = max(lo, int(round(max_frac * n_frames)))
    length = int(rng.integers(lo, hi + 1))
    length = min(length, n_frames)
    first = min(int(0.1 * n_frames), n_frames - length)
    start = int(rng.integers(first, n_frames - length + 1))
    return start, start + length


def tremor_offsets(
    n_frames: int,
    fps: float,
    span: tuple[int, int],
    freq: float,
    amplitude: float,
    direction: np.ndarray,
    phase: float = 0.0,
    rise_s: float = 0.1,
) -> np.ndarray:
    """``(T, D)`` sinusoidal displacement at ``freq`` Hz inside ``span`` (zero elsewhere)."""
    t = np.arange(n_frames) / fps
    env = _ramp(t, span[0] / fps, span[1] / fps, rise_s)
    d = np.asarray(direction, dtype=np.float64)
    d = d / (np.linalg.norm(d) + 1e-12)
    return (amplitude * env * np.sin(2 * np.pi * freq * t + phase))[:, None] * d[None, :]


def inject_tremor(
    keypoints: np.ndarray,
    span: tuple[int, int],
    joints: Sequence[int],
    weights: Sequence[float],
    fps: float,
    freq: float,
    amplitude: float,
    direction: np.ndarray,
    phase: float = 0.0,
) -> np.ndarray:
    """Copy of ``keypoints`` ``(T, K, D)`` with a tremor added to ``joints`` inside ``span``."""
    out = np.array(keypoints, dtype=np.float64, copy=True)
    off = tremor_offsets(out.shape[0], fps, span, freq, amplitude, direction, phase)
    for j, w in zip(joints, weights):
        out[:, j] += w * off
    return out.astype(np.asarray(keypoints).dtype, copy=False)


def inject_freeze(keypoints: np.ndarray, span: tuple[int, int], resume: bool = True) -> np.ndarray:
    """Hold the pose of frame ``span[0]`` through the span.

    With ``resume`` the motion after the span continues from where it stopped (the rest of
    the sequence is delayed by the span length and its end is cut); otherwise the frames
    after the span are unchanged (a jump back to the ongoing motion).
    """
    kp = np.asarray(keypoints)
    s, e = span
    n = kp.shape[0]
    if resume:
        src = np.arange(n)
        src = np.where(src < s, src, np.where(src < e, s, src - (e - s)))
    else:
        src = np.arange(n)
        src[s:e] = s
    return kp[src].copy()


def inject_speed(keypoints: np.ndarray, span: tuple[int, int], factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The motion played ``factor`` times faster inside ``span`` and at normal speed around it,
    without a jump: frame ``t`` shows source time ``t`` before the span, ``s + factor (t - s)``
    inside it, and continues at normal speed from where the span ended. Positions are linearly
    interpolated between source frames; the sequence ends where the source does (it gets
    shorter). Returns the keypoints and per-frame labels (1 inside the span)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    n = kp.shape[0]
    s, e = span
    t = np.arange(n, dtype=np.float64)
    src = np.where(t < s, t, np.where(t < e, s + factor * (t - s), s + factor * (e - s) + (t - e)))
    keep = src <= n - 1
    src = src[keep]
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (src - lo)[:, None, None]
    out = (1 - w) * kp[lo] + w * kp[hi]
    lab = ((t >= s) & (t < e))[keep].astype(np.int64)
    return out.astype(np.asarray(keypoints).dtype, copy=False), lab


def inject_stiff_knee(
    keypoints: np.ndarray,
    span: tuple[int, int],
    hip: int,
    knee: int,
    below: Sequence[int],
    keep: float,
    fps: float,
    rise_s: float = 0.15,
) -> np.ndarray:
    """A limp: inside ``span`` one knee bends only ``keep`` times as much as it did (a stiff,
    guarded leg). The joints ``below`` the knee (ankle, toes) rotate rigidly about the knee in
    the plane of thigh and shank, so bone lengths are kept; raised-cosine onset and offset."""
    kp = np.array(keypoints, dtype=np.float64, copy=True)
    t = np.arange(kp.shape[0]) / fps
    env = _ramp(t, span[0] / fps, span[1] / fps, rise_s)
    for i in np.nonzero(env > 0)[0]:
        thigh = kp[i, knee] - kp[i, hip]
        shank = kp[i, below[0]] - kp[i, knee]
        axis = np.cross(thigh, shank)
        norm = np.linalg.norm(axis)
        if norm < 1e-12:
            continue
        axis /= norm
        cosang = np.dot(thigh, shank) / (np.linalg.norm(thigh) * np.linalg.norm(shank) + 1e-12)
        flexion = float(np.arccos(np.clip(cosang, -1.0, 1.0)))
        angle = -env[i] * (1.0 - keep) * flexion  # straighten towards the thigh's direction
        c, s_ = np.cos(angle), np.sin(angle)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + s_ * k + (1 - c) * (k @ k)
        for j in below:
            kp[i, j] = kp[i, knee] + rot @ (kp[i, j] - kp[i, knee])
    return kp.astype(np.asarray(keypoints).dtype, copy=False)


def make_motion(
    seed: int,
    n_frames: int = 128,
    fps: float = 30.0,
    dim: int = 2,
    anomaly: str | None = None,
    anomaly_span: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Generate one walking sequence.

    Returns a dict with ``keypoints`` ``(T, K, dim)`` float32, ``frame_label`` ``(T,)``
    int64 (1 inside the anomaly span), ``parents``, ``joint_names``, ``fps``, ``anomaly``,
    ``anomaly_span`` (``(start, stop)`` or ``None``), ``anomaly_info`` (parameters of the
    injected anomaly), ``keypoints_3d`` ``(T, K, 3)`` metres and ``keypoints_2d``
    ``(T, K, 2)`` normalised image coordinates (both views of the same motion), ``height``.
    """
    if dim not in (2, 3):
        raise ConfigError(f"dim must be 2 or 3, got {dim}")
    if anomaly is not None and anomaly not in ANOMALIES:
        raise ConfigError(f"unknown anomaly {anomaly!r}; expected one of {ANOMALIES} or None")
    n_frames = int(n_frames)
    if n_frames < 2:
        raise ConfigError(f"n_frames must be >= 2, got {n_frames}")
    if fps <= 0:
        raise ConfigError(f"fps must be positive, got {fps}")

    rng = np.random.default_rng(seed)
    p = _draw_params(rng)
    noise = rng.normal(0.0, p["noise"], size=(n_frames, N_JOINTS, 3))
    t = np.arange(n_frames) / fps

    label = np.zeros(n_frames, dtype=np.int64)
    info: dict[str, Any] = {}
    span: tuple[int, int] | None = None
    limp = None
    if anomaly is not None:
        arng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xA11])
        if anomaly_span is None:
            span = random_span(arng, n_frames)
        else:
            span = (int(anomaly_span[0]), int(anomaly_span[1]))
            if not 0 <= span[0] < span[1] <= n_frames:
                raise ConfigError(f"anomaly_span {anomaly_span} outside [0, {n_frames}]")
        label[span[0] : span[1]] = 1
        info["span"] = span
        if anomaly == "limp":
            side = str(arng.choice(["l", "r"]))
            limp = {
                "side": side,
                "beta": arng.uniform(0.35, 0.5),
                "hip_cut": arng.uniform(0.5, 0.65),
                "knee_cut": arng.uniform(0.5, 0.7),
                "lean": np.deg2rad(arng.uniform(4.0, 8.0)),
                "w": _ramp(t, span[0] / fps, span[1] / fps, 0.3),
            }
            info.update({k: v for k, v in limp.items() if k != "w"})

    pos = _pose(t, p, limp) + noise
    if anomaly == "freeze":
        pos = inject_freeze(pos, span, resume=True)
    elif anomaly == "tremor":
        side = str(arng.choice(["l", "r"]))
        freq = float(min(arng.uniform(6.0, 10.0), 0.4 * fps))
        amp = arng.uniform(0.02, 0.035) * p["height"]
        direction = arng.normal(size=3) + np.array([0.0, 1.5, 0.0])
        phase = arng.uniform(0, 2 * np.pi)
        joints = [J[f"{side}_elbow"], J[f"{side}_wrist"]]
        pos = inject_tremor(pos, span, joints, [0.4, 1.0], fps, freq, amp, direction, phase)
        info.update(
            {"side": side, "freq": freq, "amplitude": amp, "joints": joints, "direction": direction}
        )

    kp2 = project_oblique(pos, p)
    kp = pos if dim == 3 else kp2
    return {
        "keypoints": kp.astype(np.float32),
        "frame_label": label,
        "parents": list(PARENTS),
        "joint_names": list(JOINT_NAMES),
        "fps": float(fps),
        "anomaly": anomaly,
        "anomaly_span": span,
        "anomaly_info": info,
        "keypoints_3d": pos.astype(np.float32),
        "keypoints_2d": kp2.astype(np.float32),
        "height": float(p["height"]),
        "seed": seed,
    }
