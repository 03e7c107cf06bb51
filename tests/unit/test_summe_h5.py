"""SumMe/TVSum HDF5 layout: exact round trip, conversion from a recording, the summariser's
view and the published evaluation protocol."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from seqnrl.io.summe_h5 import (
    SummeFormatError,
    SummeVideo,
    evaluate_step_scores,
    from_recording,
    read_summe_h5,
    step_scores_to_frames,
    summary_from_step_scores,
    to_summariser_items,
    write_summe_h5,
)


def _published_like(path, rng):
    """A file written the way the published DSN scripts write theirs (h5py directly)."""
    with h5py.File(path, "w") as f:
        for v, n_frames in ((1, 301), (2, 452)):
            picks = np.arange(0, n_frames, 15)
            g = f.create_group(f"video_{v}")
            g.create_dataset("features", data=rng.normal(size=(len(picks), 1024)).astype(np.float32))
            g.create_dataset("picks", data=picks.astype(np.int64))
            g.create_dataset("n_frames", data=n_frames)
            g.create_dataset("n_steps", data=len(picks))
            cuts = np.r_[0, np.sort(rng.choice(np.arange(20, n_frames - 20), 6, replace=False)), n_frames]
            cps = np.stack([cuts[:-1], cuts[1:] - 1], 1)
            g.create_dataset("change_points", data=cps.astype(np.int64))
            g.create_dataset("n_frame_per_seg", data=(cuts[1:] - cuts[:-1]).astype(np.int64))
            us = (rng.random((5, n_frames)) < 0.15).astype(np.float32)
            g.create_dataset("user_summary", data=us)
            g.create_dataset("gtscore", data=rng.random(len(picks)).astype(np.float32))
            g.create_dataset("gtsummary", data=(rng.random(len(picks)) < 0.2).astype(np.float32))
            g.create_dataset("video_name", data=f"Clip {v}".encode())
            g.create_dataset("custom_extra", data=np.arange(3, dtype=np.int16))


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_round_trip_is_exact(tmp_path):
    src = tmp_path / "published.h5"
    _published_like(src, np.random.default_rng(0))
    videos = read_summe_h5(src, validate="raise")
    assert list(videos) == ["video_1", "video_2"]
    v = videos["video_1"]
    assert v.features.shape == (21, 1024) and v.features.dtype == np.float32
    assert v.n_frames == 301 and v.video_name == "Clip 1" and v.n_steps == 21
    assert v.extra["custom_extra"].dtype == np.int16
    out = write_summe_h5(tmp_path / "copy.h5", videos)
    a, b = _datasets(src), _datasets(out)
    assert set(a) == set(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if k.endswith("video_name"):
            assert (x.item().decode() if isinstance(x.item(), bytes) else x.item()) == (
                y.item().decode() if isinstance(y.item(), bytes) else y.item())
            continue
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), k
    again = read_summe_h5(out)
    for name in videos:
        for field in ("features", "picks", "change_points", "n_frame_per_seg", "user_summary", "gtscore", "gtsummary"):
            assert np.array_equal(getattr(videos[name], field), getattr(again[name], field))


def test_summariser_reads_the_layout(tmp_path):
    from seqnrl.models.summariser import SummaryFeatureDataset

    src = tmp_path / "published.h5"
    _published_like(src, np.random.default_rng(1))
    ds = SummaryFeatureDataset(src)  # the summariser's own h5 reader
    items = to_summariser_items(read_summe_h5(src))
    ds2 = SummaryFeatureDataset(items)
    assert len(ds) == len(ds2) == 2
    for x, y in zip(ds.items, ds2.items):
        assert np.array_equal(x["features"].numpy(), y["features"].numpy())
        assert x["user_summary"].shape == y["user_summary"].shape
        assert float(y["relevance"].min()) == 0.0 and float(y["relevance"].max()) == 1.0


def test_evaluation_protocol(tmp_path):
    src = tmp_path / "published.h5"
    _published_like(src, np.random.default_rng(2))
    v = read_summe_h5(src)["video_2"]
    frames = step_scores_to_frames(np.arange(v.n_steps, dtype=float), v.picks, v.n_frames)
    assert frames[0] == 0 and frames[15] == 1 and frames[-1] == v.n_steps - 1
    mask = summary_from_step_scores(np.arange(v.n_steps, dtype=float), v)
    assert mask.sum() <= 0.15 * v.n_frames and mask[-1] == 1  # late shots score highest
    # a user's summary made of a whole shot is recovered exactly from its own step scores
    # (shot boundaries on the 15-frame pick grid, so no step straddles two shots)
    cuts = np.array([0, 90, 210, 300, v.n_frames])
    v.change_points = np.stack([cuts[:-1], cuts[1:] - 1], 1)
    v.n_frame_per_seg = cuts[1:] - cuts[:-1]
    cps = v.change_points
    ref = np.zeros(v.n_frames)
    ref[cps[1, 0] : cps[1, 1] + 1] = 1
    v.user_summary = np.stack([ref, np.zeros(v.n_frames)]).astype(np.float32)
    v.user_summary[1, :5] = 1
    res = evaluate_step_scores(ref[v.picks], v, mode="max", budget=(cps[1, 1] - cps[1, 0] + 1.5) / v.n_frames)
    assert res["f_score"] == pytest.approx(1.0)
    assert evaluate_step_scores(ref[v.picks], v, mode="avg")["f_score"] < 1.0


def test_from_recording_and_validation(tmp_path):
    rng = np.random.default_rng(3)
    fps_native, n_frames = 30.0, 300
    times = np.arange(0, 10, 0.1)  # analysis at 10 fps
    feats = rng.normal(size=(len(times), 32)).astype(np.float32)
    shots = np.array([[0, 25], [25, 70], [70, 100]])
    v = from_recording(feats, times, fps_native, n_frames, shots, gtscore=rng.random(len(times)),
                       video_name="rec", feature_dim=1024, step=5)
    assert v.features.shape == (20, 1024) and np.array_equal(v.features[:, :32], feats[::5])
    assert np.array_equal(v.picks, np.arange(0, 300, 15))
    assert v.change_points.tolist() == [[0, 74], [75, 209], [210, 299]]
    assert v.n_frame_per_seg.tolist() == [75, 135, 90]
    path = write_summe_h5(tmp_path / "rec.h5", {"video_1": v})
    back = read_summe_h5(path, validate="raise")["video_1"]
    assert np.array_equal(back.features, v.features) and back.video_name == "rec"
    bad = SummeVideo(v.features, v.picks, n_frames, v.change_points[:2], v.n_frame_per_seg[:2])
    with pytest.raises(SummeFormatError, match="tile"):
        write_summe_h5(tmp_path / "bad.h5", {"video_1": bad})
    assert not (tmp_path / "bad.h5").exists()
