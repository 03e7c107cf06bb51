"""Motion normative model: masking of missing keypoints, causality, descriptors, and a short
seeded training after which an injected freeze scores higher than normal walking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqnrl.data.synthetic_motion import JOINT_NAMES, PARENTS, make_motion
from seqnrl.errors import KeypointError
from seqnrl.metrics.anomaly import rank_auroc
from seqnrl.models.motion import MotionTransformerModel, MotionTransformerNet
from seqnrl.models.motion import descriptors as D
from seqnrl.nn.joint_attention import MaskedAttention

torch.set_num_threads(1)


def _batch(kp: torch.Tensor, ids=None) -> dict:
    n = kp.shape[0]
    return {"keypoints": kp, "video_id": ids or [f"v{i}" for i in range(n)], "fps": torch.full((n,), 30.0)}


def test_missing_keypoints_are_masked_and_outputs_finite():
    torch.manual_seed(0)
    m = MotionTransformerModel(n_joints=16, dim=32, depth=1, bank_size=32, joint_names=JOINT_NAMES)
    kp = torch.rand(3, 16, 16, 2)
    kp[0, 4] = float("nan")  # a whole frame missing
    kp[1, :, 3] = float("nan")  # a joint missing throughout
    kp[2, ::3, 5:9] = float("nan")
    terms = m.losses(_batch(kp))
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    m._remember(kp)
    m.fit_normal()
    out = m.score_frames(_batch(kp))
    assert out["score"].shape == (3, 16)
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    # a frame with no keypoint scores 0 (typical); a missing joint contributes nothing
    assert float(out["score"][0, 4]) == 0.0
    assert float(out["contrib_head"][1].abs().max()) == 0.0
    # contributions add up to the score
    contrib = torch.stack([out[f"contrib_{n}"] for n in JOINT_NAMES], -1).sum(-1)
    torch.testing.assert_close(contrib[1:], out["score"][1:])
    # the bank, reference and frame statistics travel in the state dict (checkpoint)
    m2 = MotionTransformerModel(n_joints=16, dim=32, depth=1, bank_size=32, joint_names=JOINT_NAMES)
    m2.load_state_dict(m.state_dict())
    torch.testing.assert_close(m2.score_frames(_batch(kp))["score"], out["score"])


def test_all_nan_sequence_raises_keypoint_error():
    m = MotionTransformerModel(n_joints=16, dim=32, depth=1)
    kp = torch.rand(2, 8, 16, 2)
    kp[1] = float("nan")
    with pytest.raises(KeypointError, match="clip-7.*every keypoint is missing"):
        m.score_frames(_batch(kp, ["ok", "clip-7"]))
    with pytest.raises(KeypointError, match="every keypoint is missing"):
        m.losses(_batch(kp, ["ok", "clip-7"]))
    with pytest.raises(KeypointError, match=r"\(B, T, 16, 2\)"):
        m.score_frames(_batch(torch.rand(1, 8, 15, 2)))


def test_attention_ignores_missing_tokens_and_is_causal():
    torch.manual_seed(0)
    net = MotionTransformerNet(n_joints=5, dim=16, depth=2, heads=2).eval()
    x = torch.randn(1, 6, 5, 2)
    valid = torch.ones(1, 6, 5, dtype=torch.bool)
    valid[0, 2, 1] = False
    hide = torch.zeros_like(valid)
    out = net(x, valid, hide)["tokens"]
    x2 = x.clone()
    x2[0, 2, 1] += 100.0  # the value of a missing joint must not matter
    torch.testing.assert_close(net(x2, valid, hide)["tokens"], out)
    x3 = x.clone()
    x3[0, 4:] += 1.0  # the future must not change the past
    out3 = net(x3, valid, hide)["tokens"]
    torch.testing.assert_close(out3[:, :4], out[:, :4])
    assert not torch.allclose(out3[:, 4:], out[:, 4:])
    # a query whose keys are all masked still gets a finite output
    att = MaskedAttention(8, 2)
    y = att(torch.randn(2, 4, 8), key_mask=torch.zeros(2, 4, dtype=torch.bool))
    assert torch.isfinite(y).all()


def test_cadence_and_descriptors():
    fps, f = 30.0, 0.9
    t = np.arange(300) / fps
    kp = np.zeros((300, 16, 2))
    kp[:, JOINT_NAMES.index("l_ankle"), 0] = np.sin(2 * np.pi * f * t)
    kp[:, JOINT_NAMES.index("r_ankle"), 0] = -np.sin(2 * np.pi * f * t)
    c = D.cadence(kp, fps, JOINT_NAMES)
    assert c["steps_per_min"] == pytest.approx(2 * 60 * f, rel=0.01)
    assert c["joints"] == ["l_ankle", "r_ankle"]
    walk = make_motion(3, n_frames=256, fps=fps)
    d = D.motion_descriptors(walk["keypoints"], fps, JOINT_NAMES, PARENTS)
    assert 90 <= d["cadence"]["steps_per_min"] <= 135  # the generator's 96-126 steps/min (+ drift)
    assert d["variability_per_joint"]["l_wrist"] > 0 and np.isfinite(d["asymmetry"])
    assert D.limb_end_pairs(["Hips", "LeftFoot", "RightFoot", "LeftHand", "RightHand"]) == [(1, 2), (3, 4)]
    # per-video share of the score: the joint carrying it in the worst frames comes first
    extra = {f"contrib_{n}": np.full(20, 0.1) for n in JOINT_NAMES}
    extra["contrib_l_wrist"] = np.r_[np.zeros(18), 5.0, 5.0]
    share = D.contribution_summary(extra, JOINT_NAMES, scores=np.r_[np.zeros(18), 9.0, 9.0])
    assert next(iter(share)) == "l_wrist" and sum(share.values()) == pytest.approx(1.0)


def _windows(n: int, clip: int, stride: int) -> list[int]:
    return list(range(0, n - clip + 1, stride))


def test_short_training_scores_freeze_above_normal():
    torch.manual_seed(0)
    clip, n_train = 24, 8
    train = torch.stack([torch.from_numpy(make_motion(100 + i, n_frames=96)["keypoints"]) for i in range(n_train)])
    m = MotionTransformerModel(n_joints=16, dim=32, depth=2, heads=4, bank_size=256, stat_clips=32, lr=3e-3, joint_names=JOINT_NAMES)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    m.train()
    first = last = None
    for _ in range(50):
        seq = torch.randint(n_train, (8,), generator=g)
        start = torch.randint(96 - clip + 1, (8,), generator=g)
        kp = torch.stack([train[s, a : a + clip] for s, a in zip(seq.tolist(), start.tolist())])
        loss = m.losses(_batch(kp))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
        last = float(loss.detach())
    assert last < 0.7 * first
    m.fit_normal()
    test = make_motion(7, n_frames=96, anomaly="freeze", anomaly_span=(40, 72))
    kp = torch.from_numpy(test["keypoints"])
    starts = _windows(96, clip, clip // 2)
    out = m.score_frames(_batch(torch.stack([kp[s : s + clip] for s in starts])))
    score, count = np.zeros(96), np.zeros(96)
    for i, s in enumerate(starts):
        score[s : s + clip] += out["score"][i].numpy()
        count[s : s + clip] += 1
    score /= count
    auc = rank_auroc(score, test["frame_label"])
    assert auc > 0.85, f"freeze frame AUROC {auc:.3f}"


def test_mirror_pairs_by_name():
    assert [(JOINT_NAMES[a], JOINT_NAMES[b]) for a, b in D.mirror_pairs(JOINT_NAMES)][:2] == [
        ("l_shoulder", "r_shoulder"),
        ("l_elbow", "r_elbow"),
    ]
    assert len(D.mirror_pairs(JOINT_NAMES)) == 6
    cmu = ["Hips", "LHipJoint", "LeftKnee", "RHipJoint", "RightKnee", "lhand", "rhand", "LThumb", "RThumb"]
    assert D.mirror_pairs(cmu) == [(1, 3), (2, 4), (7, 8)]
    assert D.mirror_pairs(["nose", "left_knee", "right_knee", "knee_l", "knee_r"]) == [(1, 2), (3, 4)]
    assert D.mirror_pairs([f"j{i:02d}" for i in range(5)]) == []


def _swing(amp_l: float, amp_r: float, t: int = 64) -> torch.Tensor:
    """(1, T, 10, 2): a left and a right joint swinging in anti-phase among 8 still joints."""
    ph = torch.arange(t) / 30.0 * 2 * np.pi
    kp = torch.zeros(1, t, 10, 2)
    kp[0, :, 2:, 0] = torch.linspace(-1, 1, 8)  # still joints, spread out
    kp[0, :, 0, 0] = -0.3 + amp_l * torch.sin(ph)
    kp[0, :, 1, 0] = 0.3 - amp_r * torch.sin(ph)
    return kp


def test_limb_asymmetry_channel():
    valid = torch.ones(1, 64, 10, dtype=torch.bool)
    pairs = [(0, 1)]
    a, m = D.limb_asymmetry_torch(_swing(0.2, 0.2), valid, pairs, sigma=8.0)
    assert a.shape == (1, 64, 1) and bool(m.all())
    assert float(a[0, 16:48].abs().max()) < 0.02  # anti-phase swings of equal amplitude: 0
    a2, _ = D.limb_asymmetry_torch(_swing(0.2, 0.1), valid, pairs, sigma=8.0)
    # 0.5 log of the variance ratio; around the centroid (which moves by (0.2 - 0.1) / 10) the
    # amplitudes are 0.19 and 0.11; eps (5 % of the mean amplitude) pulls it a little to 0
    assert float(a2[0, 16:48].mean()) == pytest.approx(np.log(0.19 / 0.11), abs=0.05)
    a3, _ = D.limb_asymmetry_torch(7.0 * _swing(0.2, 0.1) + 3.0, valid, pairs, sigma=8.0)
    torch.testing.assert_close(a3, a2, atol=1e-4, rtol=1e-4)  # scale and offset free
    still = _swing(0.0, 0.0)
    a4, _ = D.limb_asymmetry_torch(still, valid, pairs)
    assert float(a4.abs().max()) < 1e-3  # no motion: no asymmetry, not a ratio of rounding errors
    valid[0, 5, 1] = False  # a missing joint masks its pair in that frame only
    _, m5 = D.limb_asymmetry_torch(_swing(0.2, 0.1), valid, pairs)
    assert not bool(m5[0, 5, 0]) and bool(m5[0, 6, 0])


def test_asymmetry_channel_scores_limp_and_is_optional():
    torch.manual_seed(0)
    clip = 32
    normal = [torch.from_numpy(make_motion(200 + i, n_frames=96)["keypoints"]) for i in range(8)]
    g = torch.Generator().manual_seed(0)
    clips = torch.stack([normal[int(torch.randint(8, (1,), generator=g))][s : s + clip] for s in torch.randint(0, 64, (48,), generator=g).tolist()])
    m = MotionTransformerModel(n_joints=16, dim=16, depth=1, bank_size=64, joint_names=JOINT_NAMES, asymmetry_margin=0.0)
    m.eval()
    m.fit_normal(clips)
    assert bool(m.asym_fitted) and m.uses_asymmetry
    test = make_motion(9, n_frames=128, anomaly="limp", anomaly_span=(48, 96))
    kp = torch.from_numpy(test["keypoints"])
    starts = _windows(128, clip, clip // 2)
    out = m.score_frames(_batch(torch.stack([kp[s : s + clip] for s in starts])))
    z, count = np.zeros(128), np.zeros(128)
    for i, s in enumerate(starts):
        z[s : s + clip] += out["z_asym"][i].numpy()
        count[s : s + clip] += 1
    auc = rank_auroc(z / count, test["frame_label"])
    assert auc > 0.85, f"limp frame AUROC of z_asym {auc:.3f}"
    contrib = torch.stack([out[f"contrib_{n}"] for n in JOINT_NAMES], -1).sum(-1)
    torch.testing.assert_close(contrib, out["score"])  # the channel's share is in the contributions
    off = MotionTransformerModel(n_joints=16, dim=16, depth=1, bank_size=64, joint_names=JOINT_NAMES, asymmetry_weight=0.0)
    off.load_state_dict(m.state_dict())
    off.eval()
    batch = _batch(torch.stack([kp[s : s + clip] for s in starts]))
    out_off = off.score_frames(batch)
    assert "z_asym" not in out_off
    torch.testing.assert_close(out_off["score"], out["score"] - out["asym_term"])  # the channel only adds its term
    # a checkpoint from before the channel loads, with the channel off (not fitted)
    old = {k: v for k, v in m.state_dict().items() if not k.startswith("asym_")}
    m2 = MotionTransformerModel(n_joints=16, dim=16, depth=1, bank_size=64, joint_names=JOINT_NAMES)
    m2.load_state_dict(old)
    assert not m2.uses_asymmetry and "z_asym" not in m2.score_frames(_batch(kp[None, :clip]))
