"""BVH parsing, forward kinematics and resampling: real CMU files and hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from seqnrl.errors import MotionReadError, SeqNRLError
from seqnrl.io.bvh import (
    Motion,
    bone_lengths,
    forward_kinematics,
    read_bvh,
    resample_motion,
    rest_pose,
)

MOCAP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mocap"
CMU = {"cmu_131_01.bvh": 994, "cmu_131_02.bvh": 1247, "cmu_131_03.bvh": 1102}


def _cmu(name: str) -> Path:
    p = MOCAP / name
    if not p.exists():
        pytest.skip(
            f"real CMU BVH file not found at {p} (expected ../shared/data/mocap beside the checkout)"
        )
    return p


@pytest.fixture(scope="module")
def cmu_motions():
    out = {}
    for name in CMU:
        p = _cmu(name)
        m = read_bvh(p)
        out[name] = (m, forward_kinematics(m))
    return out


@pytest.mark.parametrize("name", list(CMU))
def test_real_cmu_file_shapes_and_rate(cmu_motions, name):
    m, pos = cmu_motions[name]
    assert m.n_frames == CMU[name]
    assert m.fps == pytest.approx(120.0, rel=1e-4)
    assert m.n_joints == 38  # 31 joints + 7 end sites
    assert sum(m.is_end_site) == 7
    assert m.values.shape == (CMU[name], 96)
    assert pos.shape == (CMU[name], 38, 3)
    assert np.isfinite(pos).all()
    names, parents = m.skeleton(include_end_sites=False)
    assert len(names) == 31 and "Head_End" not in names and names[0] == "Hips"
    assert forward_kinematics(m, include_end_sites=False).shape == (CMU[name], 31, 3)
    assert all(p < i for i, p in enumerate(parents))
    assert "Head_End" in m.joint_names and "LeftToe_End" in m.joint_names


@pytest.mark.parametrize("name", list(CMU))
def test_real_cmu_bone_lengths_constant_and_equal_to_offsets(cmu_motions, name):
    m, pos = cmu_motions[name]
    bl = bone_lengths(pos, m.parents)  # (T, J)
    off = np.linalg.norm(m.offsets, axis=1)
    nz = off > 1e-6
    rel_std = bl[:, nz].std(0) / bl[:, nz].mean(0)
    assert rel_std.max() < 1e-4
    np.testing.assert_allclose(bl, np.broadcast_to(off, bl.shape), atol=1e-6)


@pytest.mark.parametrize("name", list(CMU))
def test_real_cmu_feet_near_ground(cmu_motions, name):
    m, pos = cmu_motions[name]
    feet = [j for j, n in enumerate(m.joint_names) if "Toe" in n or "Ankle" in n]
    y = pos[..., 1]  # Y is up in CMU files
    lowest = y.argmin(axis=1)
    assert np.isin(lowest, feet).mean() > 0.95  # the lowest joint is (nearly) always a foot
    assert -2.0 < y.min() < 2.0  # ground plane at y ~ 0 (units: ~5.6 cm)
    assert np.quantile(y[:, feet].min(1), 0.9) < 2.0
    head = m.joint_names.index("Head")
    assert np.median(y[:, head]) > 15.0  # well above the feet
    assert np.ptp(rest_pose(m)[:, 1]) == pytest.approx(24.27, abs=0.05)


TINY = """HIERARCHY
ROOT root
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT a
  {
    OFFSET 0 2 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    End Site
    {
      OFFSET 1 0 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.1
1 2 3 90 0 0 0 0 0
0 0 0 0 0 0 90 0 90
0 0 0 0 90 0 0 0 0
"""


def _write(tmp_path: Path, text: str, name: str = "m.bvh", newline: str = "\n") -> Path:
    p = tmp_path / name
    p.write_bytes(text.replace("\n", newline).encode())
    return p


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_tiny_bvh_hand_computed_positions(tmp_path, newline):
    m = read_bvh(_write(tmp_path, TINY, newline=newline))
    assert m.joint_names == ["root", "a", "a_End"]
    assert m.parents == [-1, 0, 1]
    assert m.channels[1] == ["Xrotation", "Yrotation", "Zrotation"] and m.channels[2] == []
    assert m.fps == pytest.approx(10.0) and m.n_frames == 3
    pos = forward_kinematics(m)
    expected = np.array(
        [
            # root at (1,2,3), Rz(90): (0,2,0) -> (-2,0,0); (1,0,0) -> (0,1,0)
            [[1, 2, 3], [-1, 2, 3], [-1, 3, 3]],
            # a: intrinsic X(90) then Z(90): Rx @ Rz @ (1,0,0) = Rx @ (0,1,0) = (0,0,1)
            [[0, 0, 0], [0, 2, 0], [0, 2, 1]],
            # root Ry(90): (0,2,0) unchanged; (1,0,0) -> (0,0,-1)
            [[0, 0, 0], [0, 2, 0], [0, 2, -1]],
        ],
        dtype=float,
    )
    np.testing.assert_allclose(pos, expected, atol=1e-9)
    np.testing.assert_allclose(
        forward_kinematics(m, include_end_sites=False), expected[:, :2], atol=1e-9
    )


def test_euler_order_matches_intrinsic_scipy(tmp_path):
    rng = np.random.default_rng(0)
    angles = rng.uniform(-170, 170, size=(5, 3))
    order = ["Zrotation", "Xrotation", "Yrotation"]
    text = (
        "HIERARCHY\nROOT r\n{\nOFFSET 0 0 0\nCHANNELS 3 " + " ".join(order) + "\n"
        "End Site\n{\nOFFSET 0.3 -1.2 0.7\n}\n}\nMOTION\nFrames: 5\nFrame Time: 0.01\n"
        + "\n".join(" ".join(f"{v:.6f}" for v in row) for row in angles)
        + "\n"
    )
    pos = forward_kinematics(read_bvh(_write(tmp_path, text)))
    expected = Rotation.from_euler("ZXY", angles, degrees=True).apply([0.3, -1.2, 0.7])
    np.testing.assert_allclose(pos[:, 1], expected, atol=1e-5)
    # extrinsic (lower-case) order would give a different answer: the test can fail
    wrong = Rotation.from_euler("zxy", angles, degrees=True).apply([0.3, -1.2, 0.7])
    assert np.abs(wrong - expected).max() > 1e-2


def test_resample_motion_linear_in_time():
    t = np.arange(121) / 120.0
    pos = np.stack([t, 2 * t, -t], -1)[:, None, :].repeat(2, axis=1)  # (121, 2, 3)
    out = resample_motion(pos, 120.0, 30.0)
    assert out.shape == (31, 2, 3)
    np.testing.assert_allclose(out[:, 0, 0], np.arange(31) / 30.0, atol=1e-12)
    up = resample_motion(pos[:5], 120.0, 240.0)
    assert up.shape == (9, 2, 3)
    np.testing.assert_allclose(up[:, 0, 1], 2 * np.arange(9) / 240.0, atol=1e-12)
    np.testing.assert_array_equal(resample_motion(pos, 50.0, 50.0), pos)
    odd = resample_motion(pos[:10], 120.0, 50.0)  # 9 source intervals = 0.075 s -> 4 frames
    assert odd.shape[0] == 4
    np.testing.assert_allclose(odd[:, 0, 0], np.arange(4) / 50.0, atol=1e-12)
    with pytest.raises(ValueError):
        resample_motion(pos, 0.0, 30.0)


def test_bone_lengths_simple():
    pos = np.array([[[0, 0, 0], [3, 4, 0], [3, 4, 2]]], dtype=float)
    np.testing.assert_allclose(bone_lengths(pos, [-1, 0, 1]), [[0, 5, 2]])


def test_motion_dataclass_properties():
    m = Motion(
        ["r", "r_End"], [-1, 0], np.zeros((2, 3)), [["Xrotation"], []], np.zeros((4, 1)), 0.5
    )
    assert m.fps == 2.0 and m.n_frames == 4 and m.is_end_site == [False, True]


_GOOD_HEAD = TINY.split("MOTION")[0]
_BAD = {
    "empty": ("", "empty"),
    "blank": ("  \n\n \n", "empty"),
    "no_hierarchy": ("ROOT a\n{\n}\nMOTION\nFrames: 0\nFrame Time: 0.1\n", "HIERARCHY"),
    "no_motion": (_GOOD_HEAD, "MOTION"),
    "truncated": (
        _GOOD_HEAD + "MOTION\nFrames: 3\nFrame Time: 0.1\n1 2 3 90 0 0 0 0 0\n",
        "truncated",
    ),
    "too_many_frames": (
        _GOOD_HEAD + "MOTION\nFrames: 1\nFrame Time: 0.1\n" + "0 0 0 0 0 0 0 0 0\n" * 2,
        "mismatch",
    ),
    "missing_channel": (
        _GOOD_HEAD + "MOTION\nFrames: 2\nFrame Time: 0.1\n0 0 0 0 0 0 0 0 0\n0 0 0 0 0 0 0 0\n",
        "8 values, expected 9",
    ),
    "non_numeric": (
        _GOOD_HEAD + "MOTION\nFrames: 2\nFrame Time: 0.1\n0 0 0 0 0 0 0 0 0\n0 0 x 0 0 0 0 0 0\n",
        "non-numeric value 'x'",
    ),
    "bad_frame_count": (_GOOD_HEAD + "MOTION\nFrames: many\nFrame Time: 0.1\n", "frame count"),
    "bad_frame_time": (_GOOD_HEAD + "MOTION\nFrames: 0\nFrame Time: 0\n", "frame time"),
    "unclosed_brace": (
        "HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 1 Xrotation\nMOTION\nFrames: 0\nFrame Time: 0.1\n",
        "unclosed",
    ),
    "bad_offset": (
        "HIERARCHY\nROOT a\n{\nOFFSET 0 zero 0\n}\nMOTION\nFrames: 0\nFrame Time: 0.1\n",
        "OFFSET",
    ),
    "bad_channel": (
        "HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 1 Wrotation\n}\nMOTION\nFrames: 0\nFrame Time: 0.1\n",
        "unknown channel",
    ),
}


@pytest.mark.parametrize("kind", list(_BAD))
def test_bad_files_raise_motion_read_error_naming_file(tmp_path, kind):
    text, cause = _BAD[kind]
    p = _write(tmp_path, text, name=f"{kind}.bvh")
    with pytest.raises(MotionReadError) as ei:
        read_bvh(p)
    msg = str(ei.value)
    assert str(p) in msg and ei.value.path == str(p)
    assert cause.lower() in msg.lower(), msg
    assert isinstance(ei.value, SeqNRLError)


def test_missing_file_raises(tmp_path):
    p = tmp_path / "nope.bvh"
    with pytest.raises(MotionReadError, match="not found") as ei:
        read_bvh(p)
    assert str(p) in str(ei.value)


def test_valid_zero_frame_file(tmp_path):
    m = read_bvh(_write(tmp_path, _GOOD_HEAD + "MOTION\nFrames: 0\nFrame Time: 0.1\n"))
    assert m.n_frames == 0 and forward_kinematics(m).shape == (0, 3, 3)
