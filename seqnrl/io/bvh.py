"""BVH motion files: parsing, forward kinematics, time-based resampling.

A BVH file has a ``HIERARCHY`` section (a tree of ``ROOT`` / ``JOINT`` / ``End Site``
blocks with an ``OFFSET`` and ``CHANNELS`` each) and a ``MOTION`` section (``Frames:``,
``Frame Time:`` and one line of channel values per frame).

Conventions used here:

- End sites become joints named ``'<parent>_End'`` with no channels, so a skeleton drawn
  from :func:`forward_kinematics` includes the tips of the head, hands and feet.
- Rotation channels of a joint are *intrinsic* Euler rotations, in degrees, applied in the
  order the channels are listed (``Zrotation Yrotation Xrotation`` gives
  ``R = Rz @ Ry @ Rx``). Each joint uses its own channel order.
- Position channels (usually only on the root) *replace* the offset along their axis.
- Units are those of the file (CMU files: 1 unit = 1/0.45 inch ~ 5.64 cm; Y is up).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqnrl.errors import MotionReadError

_ROT = {"Xrotation": 0, "Yrotation": 1, "Zrotation": 2}
_POS = {"Xposition": 0, "Yposition": 1, "Zposition": 2}
_VALID_CHANNELS = set(_ROT) | set(_POS)


@dataclass
class Motion:
    """A parsed BVH file.

    ``values`` is ``(T, n_channels)`` with the channels of all joints concatenated in
    hierarchy order (the order of ``joint_names``); ``offsets`` is ``(J, 3)``.
    """

    joint_names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[list[str]]
    values: np.ndarray
    frame_time: float
    path: str = ""
    is_end_site: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.is_end_site:
            self.is_end_site = [
                (not ch) and name.endswith("_End")
                for name, ch in zip(self.joint_names, self.channels)
            ]

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    def channel_slices(self) -> list[slice]:
        """Columns of ``values`` that belong to each joint."""
        out, c = [], 0
        for ch in self.channels:
            out.append(slice(c, c + len(ch)))
            c += len(ch)
        return out

    def skeleton(self, include_end_sites: bool = True) -> tuple[list[str], list[int]]:
        """Joint names and parent indices of the joints :func:`forward_kinematics` returns."""
        keep = self.joint_indices(include_end_sites)
        remap = {j: i for i, j in enumerate(keep)}
        names = [self.joint_names[j] for j in keep]
        parents = [remap.get(self.parents[j], -1) if self.parents[j] >= 0 else -1 for j in keep]
        return names, parents

    def joint_indices(self, include_end_sites: bool = True) -> list[int]:
        return [j for j in range(self.n_joints) if include_end_sites or not self.is_end_site[j]]


def _fail(path: str | os.PathLike, cause: str) -> MotionReadError:
    return MotionReadError(cause, path=path)


def read_bvh(path: str | os.PathLike) -> Motion:
    """Parse a BVH file. Raises :class:`MotionReadError` naming the file and the cause."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "file not found")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise _fail(path, f"cannot read file ({e})") from e
    if not text.strip():
        raise _fail(path, "empty file")
    lines = text.splitlines()

    # locate sections
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or lines[i].strip().upper() != "HIERARCHY":
        raise _fail(path, "no HIERARCHY section at the start of the file")
    motion_line = next(
        (k for k in range(i + 1, len(lines)) if lines[k].strip().upper() == "MOTION"), None
    )
    if motion_line is None:
        raise _fail(path, "no MOTION section")

    names, parents, offsets, channels = _parse_hierarchy(path, lines, i + 1, motion_line)
    n_channels = sum(len(c) for c in channels)
    values, frame_time = _parse_motion(path, lines, motion_line + 1, n_channels)
    return Motion(
        joint_names=names,
        parents=parents,
        offsets=np.asarray(offsets, dtype=np.float64).reshape(-1, 3),
        channels=channels,
        values=values,
        frame_time=frame_time,
        path=str(path),
        is_end_site=[n.endswith("_End") and not c for n, c in zip(names, channels)],
    )


def _parse_hierarchy(
    path: Path, lines: list[str], start: int, stop: int
) -> tuple[list[str], list[int], list[list[float]], list[list[str]]]:
    tokens: list[tuple[int, list[str]]] = [
        (k + 1, lines[k].split()) for k in range(start, stop) if lines[k].strip()
    ]
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    stack: list[int] = []  # joint index of each open brace
    pending: int | None = None  # joint declared, waiting for its "{"
    for lineno, tok in tokens:
        key = tok[0].upper()
        if key in ("ROOT", "JOINT") or (key == "END" and len(tok) > 1 and tok[1].upper() == "SITE"):
            if pending is not None:
                raise _fail(path, f"line {lineno}: expected '{{' after joint {names[pending]!r}")
            if key == "ROOT" and (stack or names):
                if stack:
                    raise _fail(path, f"line {lineno}: ROOT inside another joint")
                raise _fail(path, f"line {lineno}: more than one ROOT is not supported")
            if key != "ROOT" and not stack:
                raise _fail(path, f"line {lineno}: {tok[0]} outside of a ROOT block")
            opens = tok[-1] == "{"
            if opens:
                tok = tok[:-1]
            if key == "END":
                name = f"{names[stack[-1]]}_End"
            else:
                if len(tok) < 2:
                    raise _fail(path, f"line {lineno}: {tok[0]} without a name")
                name = " ".join(tok[1:])
            names.append(name)
            parents.append(stack[-1] if stack else -1)
            offsets.append([0.0, 0.0, 0.0])
            channels.append([])
            pending = len(names) - 1
            if opens:
                stack.append(pending)
                pending = None
        elif key == "{":
            if pending is None:
                raise _fail(path, f"line {lineno}: '{{' without a joint")
            stack.append(pending)
            pending = None
        elif key == "}":
            if not stack:
                raise _fail(path, f"line {lineno}: unbalanced '}}'")
            stack.pop()
        elif key == "OFFSET":
            if not stack:
                raise _fail(path, f"line {lineno}: OFFSET outside of a joint")
            try:
                off = [float(v) for v in tok[1:4]]
            except ValueError as e:
                raise _fail(path, f"line {lineno}: non-numeric OFFSET ({' '.join(tok[1:])})") from e
            if len(off) != 3 or len(tok) != 4:
                raise _fail(path, f"line {lineno}: OFFSET needs 3 values, got {len(tok) - 1}")
            offsets[stack[-1]] = off
        elif key == "CHANNELS":
            if not stack:
                raise _fail(path, f"line {lineno}: CHANNELS outside of a joint")
            try:
                n = int(tok[1])
            except (IndexError, ValueError) as e:
                raise _fail(path, f"line {lineno}: CHANNELS without a count") from e
            ch = tok[2:]
            if len(ch) != n:
                raise _fail(
                    path, f"line {lineno}: CHANNELS declares {n} channels but lists {len(ch)}"
                )
            bad = [c for c in ch if c not in _VALID_CHANNELS]
            if bad:
                raise _fail(path, f"line {lineno}: unknown channel(s) {bad}")
            if names[stack[-1]].endswith("_End") and ch:
                raise _fail(path, f"line {lineno}: End Site with channels")
            channels[stack[-1]] = ch
        else:
            raise _fail(path, f"line {lineno}: unexpected token {tok[0]!r} in HIERARCHY")
    if pending is not None or stack:
        raise _fail(path, "HIERARCHY ends with unclosed '{' (truncated hierarchy?)")
    if not names:
        raise _fail(path, "HIERARCHY has no ROOT joint")
    return names, parents, offsets, channels


def _parse_motion(
    path: Path, lines: list[str], start: int, n_channels: int
) -> tuple[np.ndarray, float]:
    k = start
    header: dict[str, str] = {}
    while k < len(lines) and len(header) < 2:
        s = lines[k].strip()
        k += 1
        if not s:
            continue
        if ":" not in s:
            raise _fail(
                path, f"line {k}: expected 'Frames:' / 'Frame Time:' header, got {s[:40]!r}"
            )
        key, val = s.split(":", 1)
        header[key.strip().lower()] = val.strip()
    if "frames" not in header:
        raise _fail(path, "MOTION section without 'Frames:'")
    if "frame time" not in header:
        raise _fail(path, "MOTION section without 'Frame Time:'")
    try:
        n_frames = int(header["frames"])
    except ValueError as e:
        raise _fail(path, f"non-numeric frame count {header['frames']!r}") from e
    try:
        frame_time = float(header["frame time"])
    except ValueError as e:
        raise _fail(path, f"non-numeric frame time {header['frame time']!r}") from e
    if n_frames < 0:
        raise _fail(path, f"negative frame count {n_frames}")
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise _fail(path, f"frame time must be positive, got {frame_time}")

    rows: list[list[str]] = []
    row_lines: list[int] = []
    for j in range(k, len(lines)):
        tok = lines[j].split()
        if not tok:
            continue
        if len(tok) != n_channels:
            raise _fail(
                path,
                f"line {j + 1} (frame {len(rows)}): {len(tok)} values, expected {n_channels} "
                "(missing or extra channel values)",
            )
        rows.append(tok)
        row_lines.append(j + 1)
    if len(rows) < n_frames:
        raise _fail(
            path, f"truncated motion data: header declares {n_frames} frames, found {len(rows)}"
        )
    if len(rows) > n_frames:
        raise _fail(
            path, f"frame count mismatch: header declares {n_frames} frames, found {len(rows)}"
        )
    try:
        values = np.asarray(rows, dtype=np.float64).reshape(n_frames, n_channels)
    except ValueError:
        for r, ln in zip(rows, row_lines):
            for v in r:
                try:
                    float(v)
                except ValueError:
                    raise _fail(path, f"line {ln}: non-numeric value {v!r}") from None
        raise  # pragma: no cover
    if not np.all(np.isfinite(values)):
        bad = int(np.argwhere(~np.isfinite(values))[0, 0])
        raise _fail(path, f"line {row_lines[bad]}: non-finite value (nan/inf)")
    return values, frame_time


def _axis_rotation(axis: int, angle_rad: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(T, 3, 3)`` about a coordinate axis."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    one, zero = np.ones_like(c), np.zeros_like(c)
    if axis == 0:
        m = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == 1:
        m = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        m = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return np.stack([np.stack(r, axis=-1) for r in m], axis=-2)


def local_transforms(motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint local rotations ``(T, J, 3, 3)`` and translations ``(T, J, 3)``."""
    t, nj = motion.n_frames, motion.n_joints
    rot = np.broadcast_to(np.eye(3), (t, nj, 3, 3)).copy()
    trans = np.broadcast_to(motion.offsets.astype(np.float64), (t, nj, 3)).copy()
    for j, (ch, sl) in enumerate(zip(motion.channels, motion.channel_slices())):
        vals = motion.values[:, sl]
        r = None
        for c, name in enumerate(ch):
            if name in _POS:
                trans[:, j, _POS[name]] = vals[:, c]
            else:
                m = _axis_rotation(_ROT[name], np.deg2rad(vals[:, c]))
                r = m if r is None else r @ m  # intrinsic: post-multiply in listed order
        if r is not None:
            rot[:, j] = r
    return rot, trans


def joint_angles(motion: Motion, drop_root: bool = True) -> np.ndarray:
    """``(T, C)`` the rotation channels (degrees, as written) of every joint, in hierarchy
    order; ``drop_root`` leaves out the first joint's (the root's global orientation)."""
    cols = [
        sl.start + k
        for j, sl in enumerate(motion.channel_slices())
        if not (drop_root and j == 0)
        for k, name in enumerate(motion.channels[j])
        if name.lower().endswith("rotation")
    ]
    return motion.values[:, cols].astype(np.float64)


def forward_kinematics(motion: Motion, include_end_sites: bool = True) -> np.ndarray:
    """Global joint positions ``(T, J, 3)`` in file units (vectorised over frames).

    With ``include_end_sites=False`` the end-site joints are dropped; use
    :meth:`Motion.skeleton` for the matching names and parents.
    """
    rot, trans = local_transforms(motion)
    t, nj = motion.n_frames, motion.n_joints
    g_rot = np.empty((t, nj, 3, 3))
    g_pos = np.empty((t, nj, 3))
    for j, p in enumerate(motion.parents):
        if p < 0:
            g_rot[:, j] = rot[:, j]
            g_pos[:, j] = trans[:, j]
        else:
            if p >= j:
                raise MotionReadError("parent listed after its child", path=motion.path or None)
            g_rot[:, j] = g_rot[:, p] @ rot[:, j]
            g_pos[:, j] = g_pos[:, p] + np.einsum("tij,tj->ti", g_rot[:, p], trans[:, j])
    if not include_end_sites:
        g_pos = g_pos[:, motion.joint_indices(False)]
    return g_pos


def rest_pose(motion: Motion, include_end_sites: bool = True) -> np.ndarray:
    """Joint positions ``(J, 3)`` with every channel at zero (the offsets' T-/rest pose)."""
    zero = Motion(
        motion.joint_names,
        motion.parents,
        motion.offsets,
        motion.channels,
        np.zeros((1, motion.values.shape[1])),
        motion.frame_time,
        motion.path,
        motion.is_end_site,
    )
    return forward_kinematics(zero, include_end_sites)[0]


def resample_motion(positions: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linearly interpolate ``(T, ...)`` frames sampled at ``src_fps`` onto ``dst_fps``.

    Output frame ``i`` is at time ``i / dst_fps``; frames run while inside the source's
    duration ``(T - 1) / src_fps``, so ``T' = floor((T - 1) * dst / src) + 1``.
    """
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"fps must be positive, got {src_fps} -> {dst_fps}")
    positions = np.asarray(positions)
    t = positions.shape[0]
    if t == 0:
        return positions.copy()
    n_out = int(np.floor((t - 1) * dst_fps / src_fps + 1e-9)) + 1
    x = np.arange(n_out) * (src_fps / dst_fps)
    i0 = np.clip(np.floor(x + 1e-9).astype(np.int64), 0, t - 1)
    i1 = np.minimum(i0 + 1, t - 1)
    w = np.clip(x - i0, 0.0, 1.0).reshape((-1,) + (1,) * (positions.ndim - 1))
    out = positions[i0] * (1.0 - w) + positions[i1] * w
    return out.astype(positions.dtype, copy=False) if positions.dtype.kind == "f" else out


def bone_lengths(positions: np.ndarray, parents: list[int] | np.ndarray) -> np.ndarray:
    """Length of the bone from each joint to its parent, ``(..., J)``; 0 for roots."""
    positions = np.asarray(positions)
    par = np.asarray(parents, dtype=np.int64)
    src = np.where(par < 0, np.arange(len(par)), par)
    return np.linalg.norm(positions - positions[..., src, :], axis=-1)


def body_height(motion: Motion, positions: np.ndarray) -> float:
    """Vertical extent of the skeleton's rest pose (y up); for files whose rest pose is flat
    (every joint with position channels, as in the Bandai Namco takes: the offsets are zero),
    the median vertical extent of the joints over ``positions`` ``(T, K, 3)``, the take's
    forward-kinematics frames."""
    height = float(np.ptp(rest_pose(motion, include_end_sites=True)[:, 1]))
    if height > 1e-6:
        return height
    height = float(np.median(np.ptp(positions[..., 1], axis=1)))
    if not height > 1e-6:
        raise _fail(motion.path, "the skeleton has no vertical extent; cannot scale it to body heights")
    return height
