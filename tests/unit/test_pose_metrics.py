"""The mmpose metric wrapper against a hand-checked case, the linear probe, and the import guard."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from seqnrl.metrics import pose as pm

needs_mmpose = pytest.mark.skipif(
    not pm.mmpose_available(),
    reason="mmpose (optional 'pose' extra: make install-pose) is not installed; "
    "the wrapper calls mmpose.evaluation.functional",
)

# two frames, three joints. Frame 0: bbox 10 x 5 -> norm 10; frame 1: bbox 4 x 20 -> norm 20.
GT = np.array([[[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]], [[0.0, 0.0], [0.0, 20.0], [4.0, 0.0]]])
# errors: frame 0: 0, 0.4 (0.04 of the box), 0.8 (0.08); frame 1: 3 (0.15), 1.5 (0.075), 0
PRED = GT + np.array([[[0.0, 0.0], [0.4, 0.0], [0.0, 0.8]], [[3.0, 0.0], [0.0, -1.5], [0.0, 0.0]]])


def test_bbox_size():
    np.testing.assert_allclose(pm.bbox_size(GT), [10.0, 20.0])


@needs_mmpose
def test_pck_and_epe_hand_checked():
    # mmpose averages per-joint accuracies: @0.05 -> joints (1/2, 1/2, 1/2); @0.1 -> (1/2, 1, 1)
    r05 = pm.pck(PRED, GT, 0.05)
    np.testing.assert_allclose(r05["per_joint"], [0.5, 0.5, 0.5])
    assert r05["mean"] == pytest.approx(0.5) and r05["count"] == 3
    assert pm.pck(PRED, GT, 0.1)["mean"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert pm.epe(PRED, GT) == pytest.approx((0.4 + 0.8 + 3.0 + 1.5) / 6)
    m = pm.pose_metrics(PRED, GT, pixels=2.0)
    assert m["pck@0.05"] == pytest.approx(0.5) and m["pck@0.1"] == pytest.approx(5 / 6)
    assert m["mpjpe_bbox"] == pytest.approx((0.04 + 0.08 + 0.15 + 0.075) / 6)
    assert m["mpjpe_px"] == pytest.approx(2 * m["mpjpe"])
    # masking the worst joint (frame 1, joint 0) leaves joint 0 correct in its one visible frame
    mask = np.ones((2, 3), bool)
    mask[1, 0] = False
    assert pm.pck(PRED, GT, 0.05, mask)["mean"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    # a missing (NaN) prediction counts as wrong, a NaN truth is ignored
    p2 = PRED.copy()
    p2[0, 0] = np.nan
    assert pm.pck(p2, GT, 0.1)["per_joint"][0] == pytest.approx(0.0)
    g2 = GT.copy()
    g2[1, 0] = np.nan
    assert pm.pck(PRED, g2, 0.05)["per_joint"][0] == pytest.approx(1.0)


@needs_mmpose
def test_linear_probe_recovers_a_linear_relation():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(200, 4, 2))
    w = rng.normal(size=(8, 6))
    y = (x.reshape(200, -1) @ w + 0.3).reshape(200, 3, 2)
    m = pm.linear_probe(x[:100], y[:100], x[100:], y[100:])
    assert m["pck@0.05"] == pytest.approx(1.0) and m["mpjpe"] < 1e-4
    # and constant keypoints (an untrained model) predict the mean pose only
    m0 = pm.linear_probe(np.zeros_like(x[:100]), y[:100], np.zeros_like(x[100:]), y[100:])
    assert m0["mpjpe"] > 100 * m["mpjpe"]


def test_fit_linear_map_without_mmpose():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(50, 3, 2))
    y = x[:, ::-1] * 2 + 1
    w = pm.fit_linear_map(x, y)
    np.testing.assert_allclose(pm.apply_linear_map(x, w), y, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2 frames"):
        pm.fit_linear_map(np.full((3, 3, 2), np.nan), y[:3])


def test_core_imports_without_mmpose(monkeypatch):
    """With mmpose unimportable, the wrapper and the pose model still import; metrics say how to install."""
    for name in [m for m in sys.modules if m == "mmpose" or m.startswith("mmpose.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mmpose", None)  # import mmpose -> ImportError
    mod = importlib.reload(pm)
    try:
        assert not mod.mmpose_available()
        with pytest.raises(ImportError, match="install-pose"):
            mod.pck(PRED, GT, 0.1)
        importlib.reload(importlib.import_module("seqnrl.models.pose.module"))
    finally:
        monkeypatch.undo()
        importlib.reload(pm)
