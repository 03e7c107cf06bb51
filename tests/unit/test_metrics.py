import numpy as np
import pytest

from seqnrl.metrics.anomaly import auroc, average_precision, eer, frame_metrics, rank_auroc


def test_auroc_matches_rank_computation_on_large_raw_scores():
    # raw scores around 40 +- 3 would saturate a sigmoid; the rank transform must avoid that
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    s = 40 + 3 * rng.normal(size=2000) + 1.5 * y
    a = auroc(s, y)
    assert a == pytest.approx(rank_auroc(s, y), abs=1e-6)
    assert a > 0.6


def test_perfect_and_inverted_and_undefined():
    y = np.array([0, 0, 1, 1])
    assert auroc([1, 2, 3, 4], y) == 1.0
    assert auroc([4, 3, 2, 1], y) == 0.0
    assert np.isnan(auroc([1, 2], [0, 0]))
    assert average_precision([1, 2, 3, 4], y) == pytest.approx(1.0)


def test_eer_hand_case():
    # negatives 0..9, positives 5..14 shifted: EER where fpr == fnr
    s = np.r_[np.arange(10), np.arange(5, 15)]
    y = np.r_[np.zeros(10), np.ones(10)]
    e = eer(s, y)
    assert 0.2 <= e <= 0.3


def test_micro_vs_macro_differ_when_videos_have_offsets():
    # within each video anomalies score higher, but video 2 is globally shifted up
    s = {"a": np.array([0, 0, 1, 1.0]), "b": np.array([5, 5, 6, 6.0])}
    y = {"a": np.array([0, 0, 1, 1]), "b": np.array([0, 0, 1, 1])}
    m = frame_metrics(s, y)
    assert m["frame_auroc_macro"] == 1.0
    assert m["frame_auroc_micro"] < 1.0
    assert m["frame_auroc_micro_pervideo_norm"] == 1.0


def test_video_auroc():
    s = {"a": np.zeros(3), "b": np.ones(3)}
    y = {"a": np.zeros(3), "b": np.ones(3)}
    m = frame_metrics(s, y, video_labels={"a": 0, "b": 1}, video_scores={"a": 0.1, "b": 0.9})
    assert m["video_auroc"] == 1.0
