"""Synthetic walking skeletons, injected anomalies, keypoint checks and skeleton rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqnrl.data.keypoints import check_keypoints, keypoint_mask
from seqnrl.data.render import limb_values, project_3d, render_skeleton
from seqnrl.data.synthetic_motion import (
    ANOMALIES,
    JOINT_NAMES,
    PARENTS,
    J,
    inject_freeze,
    make_motion,
)
from seqnrl.errors import ConfigError, KeypointError
from seqnrl.io.bvh import bone_lengths

FPS = 30.0


def _spectrum(x: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    x = x - x.mean(0)
    win = np.hanning(len(x))
    p = np.abs(np.fft.rfft(x * win[:, None] if x.ndim > 1 else x * win, axis=0)) ** 2
    if p.ndim > 1:
        p = p.sum(1)
    return np.fft.rfftfreq(len(x), 1 / fps), p


def test_skeleton_constants():
    assert 15 <= len(JOINT_NAMES) <= 17 and len(PARENTS) == len(JOINT_NAMES)
    assert PARENTS[0] == -1 and all(0 <= p < i for i, p in enumerate(PARENTS) if i > 0)
    for n in ("pelvis", "head", "l_wrist", "r_wrist", "l_ankle", "r_ankle", "l_knee", "r_elbow"):
        assert n in JOINT_NAMES


@pytest.mark.parametrize("dim", [2, 3])
def test_shapes_types_and_labels(dim):
    m = make_motion(0, n_frames=64, fps=FPS, dim=dim)
    assert (
        m["keypoints"].shape == (64, len(JOINT_NAMES), dim) and m["keypoints"].dtype == np.float32
    )
    assert m["frame_label"].shape == (64,) and m["frame_label"].dtype == np.int64
    assert (m["frame_label"] == 0).all() and m["anomaly"] is None and m["anomaly_span"] is None
    assert (
        m["parents"] == list(PARENTS) and m["joint_names"] == list(JOINT_NAMES) and m["fps"] == FPS
    )
    assert np.isfinite(m["keypoints"]).all()
    if dim == 2:
        assert 0.0 < m["keypoints"].min() and m["keypoints"].max() < 1.0


def test_determinism_and_seed_dependence():
    a = make_motion(5, n_frames=50, dim=3, anomaly="tremor")
    b = make_motion(5, n_frames=50, dim=3, anomaly="tremor")
    c = make_motion(6, n_frames=50, dim=3, anomaly="tremor")
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
    np.testing.assert_array_equal(a["frame_label"], b["frame_label"])
    assert np.abs(a["keypoints"] - c["keypoints"]).mean() > 1e-2


def test_normal_gait_is_plausible():
    m = make_motion(1, n_frames=256, fps=FPS, dim=3)
    kp = m["keypoints"].astype(np.float64)
    h = m["height"]
    assert 1.5 <= h <= 1.95
    # bones keep their length up to the small noise (a few mm)
    bl = bone_lengths(kp, PARENTS)[:, 1:]
    assert bl.std(0).max() < 0.006 * h and (bl.std(0) / bl.mean(0)).max() < 0.1
    # the lower ankle is on the ground (ankle height ~4 % of body height)
    low = kp[:, [J["l_ankle"], J["r_ankle"]], 1].min(1)
    assert np.abs(low - 0.039 * h).max() < 0.02 * h
    assert kp[:, J["head"], 1].min() > 0.8 * h
    # the legs move with the gait frequency (0.8-1.05 Hz), in anti-phase
    f, p = _spectrum(kp[:, J["l_ankle"], 2], FPS)
    assert 0.6 < f[p.argmax()] < 1.25
    corr = np.corrcoef(kp[:, J["l_ankle"], 2], kp[:, J["r_ankle"], 2])[0, 1]
    assert corr < -0.5


def test_tremor_frequency_and_labels():
    span = (64, 192)
    base = make_motion(11, n_frames=256, fps=FPS, dim=3)
    m = make_motion(11, n_frames=256, fps=FPS, dim=3, anomaly="tremor", anomaly_span=span)
    lab = np.zeros(256, dtype=np.int64)
    lab[64:192] = 1
    np.testing.assert_array_equal(m["frame_label"], lab)
    info = m["anomaly_info"]
    assert 6.0 <= info["freq"] <= 10.0
    out = np.r_[0:64, 192:256]
    np.testing.assert_array_equal(m["keypoints"][out], base["keypoints"][out])
    wrist = J[f"{info['side']}_wrist"]
    diff = (m["keypoints"] - base["keypoints"])[64:192, wrist]
    f, p = _spectrum(diff, FPS)
    assert abs(f[p.argmax()] - info["freq"]) < 0.3
    # without a reference: high-frequency power of the wrist is much larger in the span
    vel = np.diff(m["keypoints"][:, wrist], axis=0)
    f_in, p_in = _spectrum(vel[64:191], FPS)
    f_out, p_out = _spectrum(np.r_[vel[:63], vel[192:]], FPS)
    hi_in = p_in[(f_in >= 6) & (f_in <= 10)].sum() / p_in.sum()
    hi_out = p_out[(f_out >= 6) & (f_out <= 10)].sum() / p_out.sum()
    assert hi_in > 0.25 and hi_in > 3 * hi_out
    # other limbs unaffected
    other = J["l_ankle"]
    np.testing.assert_array_equal(m["keypoints"][:, other], base["keypoints"][:, other])


def test_freeze_has_zero_velocity_in_span_only():
    span = (30, 70)
    base = make_motion(3, n_frames=128, dim=2)
    m = make_motion(3, n_frames=128, dim=2, anomaly="freeze", anomaly_span=span)
    kp = m["keypoints"]
    vel = np.abs(np.diff(kp, axis=0)).max(axis=(1, 2))
    assert (vel[30:69] == 0).all()
    assert (vel[:29] > 0).all() and (vel[70:] > 0).all()
    np.testing.assert_array_equal(kp[:30], base["keypoints"][:30])
    # walking resumes where it stopped: delayed copy of the normal motion
    np.testing.assert_array_equal(kp[70:], base["keypoints"][30:88])
    assert (
        m["frame_label"][30:70].all()
        and not m["frame_label"][:30].any()
        and not m["frame_label"][70:].any()
    )


def test_limp_is_asymmetric_in_span():
    span = (120, 300)
    m = make_motion(4, n_frames=300, fps=FPS, dim=3, anomaly="limp", anomaly_span=span)
    base = make_motion(4, n_frames=300, fps=FPS, dim=3)
    side = m["anomaly_info"]["side"]
    other = "r" if side == "l" else "l"
    kp = m["keypoints"]
    np.testing.assert_array_equal(kp[:120], base["keypoints"][:120])

    def stride(seg: np.ndarray, s: str) -> float:
        z = seg[:, J[f"{s}_ankle"], 2] - seg[:, J["pelvis"], 2]
        return float(np.ptp(z))

    before, inside = kp[:120], kp[150:300]  # skip the 0.3 s ramp
    assert 0.8 < stride(before, side) / stride(before, other) < 1.25
    assert stride(inside, side) / stride(inside, other) < 0.8
    assert m["frame_label"][120:].all() and not m["frame_label"][:120].any()


@pytest.mark.parametrize("kind", ANOMALIES)
def test_default_span_is_contiguous_block(kind):
    m = make_motion(9, n_frames=100, dim=2, anomaly=kind)
    lab = m["frame_label"]
    s, e = m["anomaly_span"]
    assert lab[s:e].all() and lab.sum() == e - s and 20 <= e - s <= 40
    assert m["anomaly"] == kind


def test_invalid_arguments():
    with pytest.raises(ConfigError):
        make_motion(0, anomaly="dance")
    with pytest.raises(ConfigError):
        make_motion(0, n_frames=20, anomaly="freeze", anomaly_span=(10, 30))
    with pytest.raises(ConfigError):
        make_motion(0, dim=4)


def test_inject_freeze_without_resume():
    x = np.arange(10, dtype=float)[:, None, None]
    y = inject_freeze(x, (3, 6), resume=False)
    np.testing.assert_array_equal(y[:, 0, 0], [0, 1, 2, 3, 3, 3, 6, 7, 8, 9])


def test_keypoint_mask_and_all_nan_error():
    kp = np.zeros((4, 3, 2), dtype=np.float32)
    kp[1, 2, 0] = np.nan
    mask = keypoint_mask(kp)
    assert mask.shape == (4, 3) and mask.sum() == 11 and not mask[1, 2]
    tmask = keypoint_mask(torch.from_numpy(kp))
    assert isinstance(tmask, torch.Tensor) and tmask.sum() == 11
    assert check_keypoints(kp, "seq-1").sum() == 11
    with pytest.raises(KeypointError, match="seq-7") as ei:
        check_keypoints(np.full((5, 3, 2), np.nan), "seq-7")
    assert "missing" in str(ei.value)
    with pytest.raises(KeypointError):
        check_keypoints(np.zeros((5, 3)), "bad-shape")


# -- rendering ------------------------------------------------------------------------------


def test_render_shapes_and_determinism():
    # speed is a benchmark's business (scripts/bench), not a test's: no wall-clock assertion
    kp = make_motion(0, n_frames=100, dim=2)["keypoints"]
    v = render_skeleton(kp, PARENTS, size=(64, 64), background="noise", seed=1)
    assert v.shape == (1, 100, 64, 64) and v.dtype == torch.uint8
    assert torch.equal(v, render_skeleton(kp, PARENTS, size=(64, 64), background="noise", seed=1))
    assert not torch.equal(
        v, render_skeleton(kp, PARENTS, size=(64, 64), background="noise", seed=2)
    )
    v3 = render_skeleton(kp[:5], PARENTS, size=(32, 48), channels=3, background="plain")
    assert v3.shape == (3, 5, 32, 48)


def test_render_draws_limbs_where_the_keypoints_are():
    kp = make_motion(2, n_frames=10, dim=2)["keypoints"]
    v = render_skeleton(kp, PARENTS, size=(64, 64), background="plain", thickness=3).float() / 255
    bg = round(0.08 * 255) / 255
    px = np.clip(np.round(kp * 64 - 0.5).astype(int), 0, 63)  # (T, K, 2)
    t_idx = np.arange(10)[:, None].repeat(len(PARENTS), 1)
    on_joint = v[0][t_idx, px[..., 1], px[..., 0]]
    assert (on_joint > bg + 0.15).float().mean() > 0.95
    # most of the frame is background, and the figure is not a blob
    fg = (v[0] - bg).abs() > 0.05
    assert 0.02 < fg.float().mean() < 0.3
    # empty background when every keypoint is missing
    nan = np.full_like(kp, np.nan)
    assert (
        render_skeleton(nan, PARENTS, size=(16, 16), background="plain") == round(0.08 * 255)
    ).all()


def test_render_single_bone_exact_and_distinct_limb_values():
    kp = np.array([[[4.0, 8.0], [12.0, 8.0]]], dtype=np.float32)  # pixel units
    v = render_skeleton(
        kp, [-1, 0], size=(16, 16), thickness=3, background="plain", normalised=False
    )[0, 0]
    val = round(float(limb_values(1)[0, 0]) * 255)
    assert abs(int(v[8, 8]) - val) <= 1  # centre of the line: full limb value
    assert int(v[0, 0]) == round(0.08 * 255) and int(v[8, 15]) == round(0.08 * 255)
    vals = limb_values(len(PARENTS) - 1)[:, 0]
    assert len(set(np.round(vals.numpy(), 3))) == len(vals)  # every bone its own grey
    bg = torch.full((16, 16), 0.5)
    v2 = render_skeleton(kp, [-1, 0], size=(16, 16), thickness=3, background=bg, normalised=False)
    assert int(v2[0, 0, 0, 0]) == round(0.5 * 255)


def test_project_3d_fits_frame_and_views_differ():
    pos = make_motion(0, n_frames=40, dim=3)["keypoints"]
    for view in ("front", "side"):
        p = project_3d(pos, view=view, size=(64, 64), margin=0.1)
        assert p.shape == (40, len(PARENTS), 2)
        assert p.min() >= 6.4 - 0.5 - 1e-3 and p.max() <= 64 - 6.4 - 0.5 + 1e-3
        # image y grows downwards: the head is above the ankles
        assert (p[:, J["head"], 1] < p[:, J["l_ankle"], 1]).all()
    front = project_3d(pos, view="front", size=(64, 64))
    side = project_3d(pos, view="side", size=(64, 64))
    # walking moves the ankles forward/back: large horizontal range in the side view only
    rng_side = np.ptp(side[:, J["l_ankle"], 0])
    rng_front = np.ptp(front[:, J["l_ankle"], 0])
    assert rng_side > 2 * rng_front
    n = project_3d(pos, view="side", normalised=True)
    assert 0 <= n.min() and n.max() <= 1
