"""Perturbations for the CMU benchmark (speed, stiff knee) and the mapped CMU data module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqnrl.data.synthetic_motion import inject_speed, inject_stiff_knee

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _walk(n=120):
    t = np.arange(n)[:, None]
    hip = np.c_[0.01 * t, np.full_like(t, 0.5, dtype=float), np.zeros_like(t, dtype=float)]
    ang = 0.6 + 0.4 * np.sin(2 * np.pi * t[:, 0] / 30)  # knee flexion (rad)
    knee = hip + np.array([0.0, -0.25, 0.0])
    ankle = knee + 0.25 * np.c_[np.sin(ang), -np.cos(ang), np.zeros(n)]
    toe = ankle + np.array([0.05, 0.0, 0.0])
    return np.stack([hip, knee, ankle, toe], 1)


def test_speed_plays_the_span_faster_without_a_jump():
    kp = _walk()
    out, lab = inject_speed(kp, (40, 70), 2.0)
    assert len(out) == len(lab) < len(kp)  # it consumes more source than it shows
    np.testing.assert_array_equal(out[:40], kp[:40])
    assert lab[40:70].all() and not lab[:40].any() and not lab[70:].any()
    step = np.linalg.norm(np.diff(out[:, 0], axis=0), axis=-1)
    assert step[45:65].mean() == pytest.approx(2 * step[:35].mean(), rel=1e-6)
    assert step.max() <= 2 * step[:35].max() + 1e-9  # continuous: no jump at either edge


def test_stiff_knee_straightens_the_knee_and_keeps_bones():
    kp = _walk()
    out = inject_stiff_knee(kp, (30, 90), hip=0, knee=1, below=[2, 3], keep=0.3, fps=30.0)

    def flexion(x):
        th, sh = x[:, 1] - x[:, 0], x[:, 2] - x[:, 1]
        return np.arccos((th * sh).sum(-1) / (np.linalg.norm(th, axis=-1) * np.linalg.norm(sh, axis=-1)))

    np.testing.assert_allclose(out[:30], kp[:30])
    np.testing.assert_allclose(out[90:], kp[90:])
    mid = slice(40, 80)  # the full effect, past the onset ramp
    np.testing.assert_allclose(flexion(out[mid]), 0.3 * flexion(kp[mid]), rtol=1e-6)
    for a, b in ((1, 2), (2, 3)):
        np.testing.assert_allclose(np.linalg.norm(out[:, a] - out[:, b], axis=-1), np.linalg.norm(kp[:, a] - kp[:, b], axis=-1))


def test_cmu_files_map_onto_the_styles_skeleton():
    if not (SHARED / "mocap").is_dir() or not (SHARED / "motion_styles" / "manifest.csv").is_file():
        pytest.skip(f"CMU or motion_styles data not found under {SHARED} (expected ../shared/data)")
    import yaml

    from data_modules.mocap_kinematic import PERTURBATIONS, PerturbedMocapDataModule

    repo = Path(__file__).resolve().parents[2]
    args = yaml.safe_load((repo / "configs" / "mocap_kinematic.yaml").read_text())["data"]["init_args"]
    args.update(root=str(SHARED / "mocap"), styles_root=str(SHARED / "motion_styles"))
    dm = PerturbedMocapDataModule(**args)
    test = {s.video_id: s for s in dm.dataset("test").sequences}
    assert sorted(test) == sorted(["cmu_131_03"] + [f"cmu_131_03-{k}" for k in PERTURBATIONS])
    for k in PERTURBATIONS:
        lab = test[f"cmu_131_03-{k}"].frame_label
        assert 0 < int(lab.sum()) < len(lab)
    train = dm.dataset("train").sequences
    assert sum(s.video_id.startswith("styles-") for s in train) == 30 and len(train) == 32
    val_spans = {s.video_id: s.frame_label.nonzero()[0, 0].item() for s in dm.dataset("val").sequences if "-" in s.video_id and not s.video_id.startswith("styles")}
    assert any(val_spans[v] != test[v].frame_label.nonzero()[0, 0].item() for v in val_spans)  # other spans
    kp = test["cmu_131_03"].keypoints
    assert kp.shape[1:] == (21, 3) and 0.4 < float(kp[:, 0, 1].mean()) < 0.9  # pelvis height in body heights
