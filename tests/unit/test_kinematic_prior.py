"""Kinematic prior: body-frame features, causality, standardisation, missing joints, training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seqnrl.errors import ConfigError, KeypointError
from seqnrl.models.kinematic_prior.features import motion_features, n_features
from seqnrl.models.kinematic_prior.module import KinematicPriorModel
from tests.bvh_factory import HEADING, JOINTS, STYLES, write_take


def _positions(tmp_path, name="t.bvh", **kw) -> torch.Tensor:
    from data_modules.motion_styles import load_bvh_positions

    pos, names, _ = load_bvh_positions(write_take(tmp_path / name, **kw), 30.0)
    assert names == JOINTS
    return torch.as_tensor(pos)


def _model(**kw) -> KinematicPriorModel:
    torch.manual_seed(0)
    args = dict(n_joints=len(JOINTS), root_joint=0, heading_joints=list(HEADING), width=16, dilations=[1, 2, 4])
    return KinematicPriorModel(**{**args, **kw})


def _rotate_y(kp: torch.Tensor, deg: float, shift=(0.0, 0.0)) -> torch.Tensor:
    a = math.radians(deg)
    r = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=kp.dtype)
    return kp @ r.T + torch.tensor([shift[0], 0.0, shift[1]], dtype=kp.dtype)


def test_features_do_not_depend_on_facing_direction_or_place(tmp_path):
    kp = _positions(tmp_path)[None]
    moved = _rotate_y(kp, 123.0, shift=(5.0, -2.0))
    f0 = motion_features(kp, root=0, heading=HEADING)
    f1 = motion_features(moved, root=0, heading=HEADING)
    assert f0.shape == (1, kp.shape[1], n_features(len(JOINTS), True))
    torch.testing.assert_close(f1, f0, atol=1e-4, rtol=1e-4)
    # without the body frame the same motion turned round gives other features
    w0, w1 = motion_features(kp, root=0), motion_features(moved, root=0)
    assert (w1 - w0).abs().max() > 0.1


def test_ignored_joints_do_not_reach_the_features(tmp_path):
    kp = _positions(tmp_path)[None]
    f = motion_features(kp, root=0, heading=HEADING, ignore=[2])
    assert f.shape[-1] == n_features(len(JOINTS), True, n_ignored=1)
    moved = kp.clone()
    moved[:, :, 2] = torch.randn_like(moved[:, :, 2]) * 10  # the head joint anywhere at all
    torch.testing.assert_close(motion_features(moved, root=0, heading=HEADING, ignore=[2]), f)
    with pytest.raises(ConfigError, match="ignore_joints"):
        _model(ignore_joints=[0])  # the root cannot be ignored


def test_score_is_causal(tmp_path):
    model = _model().eval()
    kp = _positions(tmp_path)[None]
    model.fit_standardisation([kp[0]])
    changed = kp.clone()
    changed[:, 60:] += torch.randn_like(changed[:, 60:]) * 0.05
    with torch.no_grad():
        a, b = model.surprise(kp).mean(-1), model.surprise(changed).mean(-1)
    torch.testing.assert_close(a[:, :60], b[:, :60])  # the past does not see the future
    assert (a[:, 60:] - b[:, 60:]).abs().max() > 1e-3


def test_standardisation_is_fitted_on_normal_sequences(tmp_path):
    model = _model()
    seqs = [_positions(tmp_path, f"{i}.bvh", phase=i) for i in range(3)]
    assert not bool(model.standardised)
    model.fit_standardisation(seqs)
    raw = torch.cat([model.features(s[None])[0] for s in seqs])
    z = model.standardise(raw)
    assert bool(model.standardised)
    assert z.mean(0).abs().max() < 1e-3
    moving = raw.std(0) > 2e-3  # features that vary in this planar toy walk (std clamp: 1e-3)
    assert moving.sum() >= 6
    torch.testing.assert_close(z.std(0)[moving], torch.ones(int(moving.sum())), atol=1e-3, rtol=0)


def test_missing_joints_are_carried_forward_and_empty_joints_rejected(tmp_path):
    model = _model().eval()
    kp = _positions(tmp_path)[None]
    model.fit_standardisation([kp[0]])
    holed = kp.clone()
    holed[0, 10:14, 4] = float("nan")
    with torch.no_grad():
        s = model.surprise(holed)
    assert torch.isfinite(s).all()
    holed[0, :, 4] = float("nan")
    with pytest.raises(KeypointError, match="every frame"):
        model.surprise(holed, "take_x")
    with pytest.raises(KeypointError, match=r"\(B, T, 7, 3\)"):
        model.surprise(kp[..., :2])


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="root_joint"):
        _model(root_joint=9)
    with pytest.raises(ConfigError, match="heading_joints"):
        _model(heading_joints=[3])
    with pytest.raises(ConfigError, match="joint_names"):
        _model(joint_names=["a", "b"])


def test_training_on_normal_gait_makes_a_stooped_slow_gait_surprising(tmp_path):
    """A few hundred steps on normal takes: the elderly-style take (slow, small steps,
    leaning) must score above every held-out normal take; untrained it does not have to."""
    normal = [_positions(tmp_path, f"n{i}.bvh", phase=0.5 * i, yaw=40.0 * i, **STYLES["normal"]) for i in range(5)]
    held = [_positions(tmp_path, f"h{i}.bvh", phase=0.3 + i, yaw=-25.0 * i, **STYLES["normal"]) for i in range(2)]
    odd = _positions(tmp_path, "e.bvh", yaw=10.0, **STYLES["elderly"])
    model = _model()
    model.fit_standardisation(normal)

    def separation() -> float:
        with torch.no_grad():
            held_max = max(float(model.surprise(h[None]).mean()) for h in held)
            return float(model.surprise(odd[None]).mean()) / held_max

    model.eval()
    before = separation()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        starts = torch.randint(0, 90 - 32, (8,), generator=g)
        which = torch.randint(0, len(normal), (8,), generator=g)
        kp = torch.stack([normal[w][s : s + 32] for w, s in zip(which.tolist(), starts.tolist())])
        batch = {"keypoints": kp, "frame_index": torch.arange(32).expand(8, 32), "video_id": ["n"] * 8}
        loss = model.losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after = separation()
    print(f"surprise of the stooped take / worst held-out normal take: untrained {before:.2f}, trained {after:.2f}")
    assert np.isfinite(loss.item())
    assert after > 3.0 and after > 2 * before


def test_mirror_augmentation_reflects_left_and_right(tmp_path):
    with pytest.raises(ConfigError, match="left/right pairs"):
        _model(mirror=True)
    model = _model(mirror=True, joint_names=JOINTS)
    kp = _positions(tmp_path)[None].repeat(2, 1, 1, 1)
    which = torch.tensor([True, False])
    m = model.mirrored(kp, which)
    torch.testing.assert_close(m[1], kp[1])  # not chosen: unchanged
    left, right = JOINTS.index("UpperLeg_L"), JOINTS.index("UpperLeg_R")
    torch.testing.assert_close(m[0, :, left, 0], -kp[0, :, right, 0])  # x negated, sides swapped
    torch.testing.assert_close(m[0, :, left, 1:], kp[0, :, right, 1:])
    torch.testing.assert_close(model.mirrored(m, which), kp)  # an involution


def test_joint_shares_add_up_to_the_score(tmp_path):
    model = _model(ignore_joints=[2]).eval()
    kp = _positions(tmp_path)[None]
    model.fit_standardisation([kp[0]])
    with torch.no_grad():
        z2 = model.surprise(kp)
        shares = model.joint_surprise(z2)
    assert shares.shape == (1, kp.shape[1], len(JOINTS))
    torch.testing.assert_close(shares.sum(-1), z2.mean(-1))
    assert float(shares[..., 2].abs().max()) == 0.0  # an ignored joint carries nothing
    np.testing.assert_allclose(model.score_sequence(kp[0].numpy()), z2.mean(-1)[0].numpy(), rtol=1e-6)


def test_descriptors_name_what_differs(tmp_path):
    from seqnrl.models.kinematic_prior.descriptors import DESCRIPTORS, take_descriptors

    # the toy walker has no neck, hands or ankles: those descriptors are NaN, the rest measured
    d = take_descriptors(_positions(tmp_path).numpy(), 30.0, JOINTS, 0, HEADING)
    assert set(d) == set(DESCRIPTORS)
    assert np.isnan(d["trunk flexion"]) and np.isnan(d["arm swing"]) and np.isnan(d["knee range"])
    assert d["speed"] > 0 and d["tempo"] > 0

    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "motion_styles" / "bvh"
    if not shared.is_dir():
        pytest.skip(f"motion_styles data not found at {shared} (expected ../shared/data/motion_styles)")
    import yaml

    from data_modules.motion_styles import load_bvh_positions

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/model/kinematic_prior.yaml").read_text())["init_args"]
    out = {}
    for style in ("normal", "elderly"):
        pos, names, _ = load_bvh_positions(shared / f"dataset-2_walk_{style}_003.bvh", 30.0)
        out[style] = take_descriptors(pos, 30.0, names, cfg["root_joint"], tuple(cfg["heading_joints"]))
    n, e = out["normal"], out["elderly"]
    assert 90 < n["tempo"] < 130 and 0.5 < n["stride"] < 1.2  # a normal walk, in body heights
    assert e["speed"] < 0.8 * n["speed"] and e["stride"] < 0.8 * n["stride"]
    assert e["trunk flexion"] > n["trunk flexion"] + 3 and e["arm swing"] < n["arm swing"]


def test_pace_term_flags_a_pose_held_mid_stride(tmp_path):
    """Trained on normal gait, the pace head expects a mid-stride pose to move: the same
    pose held still (a freeze) gets a pace term far above the normal frames'; without a pace
    weight the model has no pace head and the score is the surprise alone."""
    from seqnrl.data.synthetic_motion import inject_freeze

    assert _model().pace_head is None
    with pytest.raises(ConfigError, match="pace_weight"):
        _model(pace_weight=-1.0)
    normal = [_positions(tmp_path, f"n{i}.bvh", phase=0.5 * i, yaw=40.0 * i, **STYLES["normal"]) for i in range(5)]
    model = _model(pace_weight=1.0)
    model.fit_standardisation(normal)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        starts = torch.randint(0, 90 - 32, (8,), generator=g)
        which = torch.randint(0, len(normal), (8,), generator=g)
        kp = torch.stack([normal[w][s : s + 32] for w, s in zip(which.tolist(), starts.tolist())])
        terms = model.losses({"keypoints": kp, "frame_index": torch.arange(32).expand(8, 32), "video_id": ["n"] * 8})
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    assert "pace_nll" in terms
    model.eval()
    held = _positions(tmp_path, "h.bvh", phase=1.3, yaw=-70.0, **STYLES["normal"])
    frozen = torch.as_tensor(inject_freeze(held.numpy(), (40, 70), resume=True))
    with torch.no_grad():
        pace, _ = model.pace_terms(frozen[None])
        total = model.frame_scores(frozen[None])
        surprise = model.surprise(frozen[None]).mean(-1)
    assert float(pace[0, 45:70].median()) > 10 * float(pace[0, 5:38].median())
    torch.testing.assert_close(total, surprise + pace)
