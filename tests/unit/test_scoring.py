import numpy as np
import pytest
import torch

from seqnrl.data.sampling import eval_window_starts, window_indices
from seqnrl.scoring.aggregate import FrameScoreAccumulator, smooth_scores, video_score
from seqnrl.scoring.calibration import ScoreCalibrator


def test_overlapping_windows_average_to_per_frame_truth():
    n, w, s = 23, 8, 3
    truth = torch.linspace(0, 1, n) ** 2
    acc = FrameScoreAccumulator()
    for st in eval_window_starts(n, w, s):
        idx, valid = window_indices(st, w, n)
        fi = torch.where(valid, idx, -1)[None]
        acc.add(["v"], fi, truth[idx][None], n_frames=torch.tensor([n]))
    res = acc.results()["v"]
    assert res.n_frames == n
    np.testing.assert_allclose(res.scores, truth.numpy(), atol=1e-6)
    assert (res.counts >= 1).all() and res.counts.max() >= 2


def test_padding_frames_ignored_and_labels_kept():
    acc = FrameScoreAccumulator()
    fi = torch.tensor([[0, 1, 2, -1]])
    acc.add(["a"], fi, torch.tensor([[1.0, 2.0, 3.0, 100.0]]), labels=torch.tensor([[0, 1, 1, 1]]))
    r = acc.results()["a"]
    assert r.scores.tolist() == [1.0, 2.0, 3.0]
    assert r.labels.tolist() == [0, 1, 1]


def test_merge_state_equals_single_accumulator():
    a, b, both = FrameScoreAccumulator(), FrameScoreAccumulator(), FrameScoreAccumulator()
    x = torch.tensor([[0, 1, 2]]), torch.tensor([[1.0, 2.0, 3.0]])
    y = torch.tensor([[2, 3, 4]]), torch.tensor([[5.0, 6.0, 7.0]])
    a.add(["v"], *x)
    b.add(["v"], *y)
    both.add(["v"], *x)
    both.add(["v"], *y)
    a.merge_state(b.state())
    np.testing.assert_allclose(a.results()["v"].scores, both.results()["v"].scores)
    assert a.results()["v"].scores[2] == pytest.approx(4.0)


def test_nan_contributions_are_skipped_per_signal():
    """A window that could not compute a signal (NaN) does not poison the frames it covers:
    each frame averages its finite contributions; NaN only where there are none."""
    nan = float("nan")
    acc, other = FrameScoreAccumulator(), FrameScoreAccumulator()
    acc.add(["v"], torch.tensor([[0, 1, 2]]), torch.tensor([[1.0, nan, 3.0]]),
            extra={"e": torch.tensor([[nan, nan, nan]])})  # fmt: skip
    acc.add(["v"], torch.tensor([[1, 2, 3]]), torch.tensor([[4.0, 5.0, nan]]),
            extra={"e": torch.tensor([[2.0, float("inf"), 6.0]])})  # fmt: skip
    r = acc.results()["v"]
    np.testing.assert_allclose(r.scores[:3], [1.0, 4.0, 4.0])
    assert np.isnan(r.scores[3])
    assert r.counts.tolist() == [1, 2, 2, 1]  # windows covering each frame
    assert np.isnan(r.extra["e"][0]) and np.isnan(r.extra["e"][2])
    np.testing.assert_allclose(r.extra["e"][[1, 3]], [2.0, 6.0])
    # merging per-process states keeps the per-signal counts
    other.add(["v"], torch.tensor([[2]]), torch.tensor([[7.0]]), extra={"e": torch.tensor([[nan]])})
    acc.merge_state(other.state())
    r = acc.results()["v"]
    assert r.scores[2] == pytest.approx((3.0 + 5.0 + 7.0) / 3) and np.isnan(r.extra["e"][2])


def test_calibrator_cdf_pvalue_threshold_and_state_dict(tmp_path):
    rng = np.random.default_rng(0)
    normal = rng.normal(40, 3, size=5000)
    cal = ScoreCalibrator(target_fpr=0.05)
    cal.fit(normal)
    raw = torch.tensor([30.0, 40.0, 46.0, 60.0])
    c = cal.calibrated(raw)
    assert c[0] < 0.01 and abs(float(c[1]) - 0.5) < 0.03 and c[3] == 1.0
    assert torch.all(c[1:] >= c[:-1])
    # 5% of normal scores exceed the threshold
    assert abs((normal > float(cal.threshold)).mean() - 0.05) < 0.01
    assert float(cal.z(torch.tensor([43.0]))) == pytest.approx(1.0, abs=0.05)
    p = cal.p_value(raw)
    assert 0 < float(p.min()) and float(p.max()) <= 1
    path = tmp_path / "cal.pt"
    torch.save(cal.state_dict(), path)
    cal2 = ScoreCalibrator()
    cal2.load_state_dict(torch.load(path, weights_only=True))
    assert cal2.fitted
    torch.testing.assert_close(cal2.calibrated(raw), c)


def test_unfitted_calibrator_refuses():
    with pytest.raises(RuntimeError):
        ScoreCalibrator().calibrated(torch.tensor([1.0]))


def test_smoothing_and_video_score():
    s = np.zeros(50)
    s[25] = 10
    sm = smooth_scores(s, 2.0)
    assert sm.max() < 10 and sm[25] == sm.max() and sm.sum() == pytest.approx(10, rel=1e-6)
    assert video_score(np.arange(10.0), 0.2) == pytest.approx(8.5)


def test_atomic_outputs_are_ordinary_files(tmp_path):
    import os
    import stat

    from seqnrl.io.atomic import write_text

    old = os.umask(0o022)
    try:
        p = write_text(tmp_path / "x.txt", "hi")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".x.*"))


def test_joint_angle_window_baseline(tmp_path):
    from seqnrl.io.bvh import joint_angles, read_bvh
    from seqnrl.scoring.baselines import JointAngleWindowBaseline
    from tests.bvh_factory import write_take

    motion = read_bvh(write_take(tmp_path / "w.bvh", n_frames=60))
    assert joint_angles(motion).shape == (60, 6 * 3)  # root's rotation left out
    assert joint_angles(motion, drop_root=False).shape == (60, 7 * 3)

    rng = np.random.default_rng(0)
    normal = [np.cumsum(rng.normal(0, 1, (80, 4)), axis=0) for _ in range(3)]
    base = JointAngleWindowBaseline(window=10, k=1).fit(normal)
    assert base.score(normal[0]).shape == (71,)
    assert float(np.abs(base.score(normal[0])).max()) < 1e-9  # its own windows are in the bank
    fast = np.cumsum(rng.normal(0, 5, (80, 4)), axis=0)  # five times larger changes
    assert base.score(fast).min() > base.score(np.cumsum(rng.normal(0, 1, (80, 4)), axis=0)).max()
    # a change across the +-180 degree seam is a small change, not a jump of 358 degrees
    lin = 170.0 + 2.0 * np.arange(20)[:, None]
    wrapped = (lin + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(base.features(wrapped), base.features(lin))
    with pytest.raises(ValueError, match="too few"):
        JointAngleWindowBaseline(window=50, k=5).fit([normal[0][:52]])
