"""Re-identification privacy filter: copies are flagged, new recordings pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqnrl.metrics.reid import fit_reid, pair_batch

D = 24


def _recordings(rng, n, clips, prefix, spread=0.35):
    centres = rng.normal(size=(n, D))
    x = np.concatenate([c + spread * rng.normal(size=(clips, D)) for c in centres])
    rec = np.repeat([f"{prefix}{i}" for i in range(n)], clips)
    return x.astype(np.float32), rec


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_tr, r_tr = _recordings(rng, 30, 4, "train")
    x_ho, _ = _recordings(rng, 20, 3, "held")
    filt = fit_reid(x_tr, r_tr, hidden=64, out_dim=32, steps=200, batch_pairs=96, seed=0)
    cal = filt.calibrate(x_ho, target_fpr=0.05)
    return filt, cal, x_tr, r_tr, rng


def test_pairs_are_balanced_and_correct():
    rng = np.random.default_rng(0)
    rec = np.array(["a", "a", "b", "c", "c", "c"])
    a, b, y = pair_batch(rec, 40, rng)
    assert y.sum() == 20
    assert (rec[a[y == 1]] == rec[b[y == 1]]).all()
    assert (rec[a[y == 0]] != rec[b[y == 0]]).all()
    # a recording with several clips pairs different clips
    multi = (y == 1) & (rec[a] != "b")
    assert (a[multi] != b[multi]).all()


def test_flags_copies_and_passes_new_clips(trained):
    filt, cal, x_tr, r_tr, rng = trained
    assert cal["n_calibration"] == 60 and cal["unit"] == "clip"
    exact = x_tr[[0, 5, 9, 14]]  # recordings train0, train1, train2, train3
    perturbed = x_tr[[40, 61, 82, 103]] + 0.05 * rng.normal(size=(4, D)).astype(np.float32)
    new, _ = _recordings(rng, 20, 1, "new")
    audit = filt.audit(np.concatenate([exact, perturbed, new]))
    assert audit.flags[:8].all(), audit.scores[:8]
    assert audit.flags[8:].sum() <= 3, audit.scores[8:]
    assert audit.best_recording[:4] == ["train0", "train1", "train2", "train3"]
    assert set(audit.best_recording[4:8]) == {"train10", "train15", "train20", "train25"}
    # fraction of training recordings re-identified: the 8 copied ones (+ any false alarm)
    assert 8 / 30 <= audit.fraction_reidentified <= 11 / 30
    assert set(audit.kept) >= set(range(8, 28)) - set(np.flatnonzero(audit.flags))
    assert not set(audit.kept) & set(range(8))
    d = audit.to_dict()
    assert d["n_flagged"] == int(audit.flags.sum()) and 0 < d["threshold_probability"] <= 1


def test_group_calibration_uses_the_maximum_per_group(trained):
    filt, *_ = trained
    rng = np.random.default_rng(7)
    x_ho, r_ho = _recordings(rng, 20, 3, "g")
    clip_thr = dict(filt.calibrate(x_ho, target_fpr=0.1))["threshold_logit"]
    cal = filt.calibrate(x_ho, target_fpr=0.1, groups=r_ho)
    assert cal["n_calibration"] == 20 and cal["threshold_logit"] >= clip_thr
    s, _ = filt.recording_scores(x_ho)
    per_group = np.array([s[r_ho == g].max() for g in np.unique(r_ho)])
    assert (per_group > cal["threshold_logit"]).mean() <= 0.1


def test_pair_head_separates_held_out_recordings(trained):
    filt, *_ = trained
    rng = np.random.default_rng(5)
    x_ho, r_ho = _recordings(rng, 15, 3, "h")
    assert filt.pair_accuracy(x_ho, r_ho, n_pairs=600)["pair_auroc"] > 0.9


def test_uncalibrated_filter_refuses_and_bad_input():
    rng = np.random.default_rng(0)
    x, r = _recordings(rng, 3, 2, "r")
    filt = fit_reid(x, r, hidden=16, out_dim=8, steps=5)
    with pytest.raises(ValueError, match="threshold"):
        filt.audit(x[:1])
    with pytest.raises(ValueError, match="two recordings"):
        fit_reid(x[:2], ["a", "a"], steps=1)


def test_audit_script_end_to_end(tmp_path):
    """Tiny videos: two copied training videos are flagged, new ones kept."""
    import json

    from seqnrl.io import write_video
    from tests.conftest import run_script

    gen = torch.Generator().manual_seed(0)

    def video():
        base = torch.rand(1, 1, 32, 32, generator=gen)
        drift = torch.linspace(0, 0.3, 12).view(1, 12, 1, 1) * torch.rand(1, 1, 32, 32, generator=gen)
        return (0.6 * base + drift + 0.02 * torch.rand(1, 12, 32, 32, generator=gen)).clamp(0, 1)

    folders = {k: tmp_path / k for k in ("train", "heldout", "generated")}
    for d in folders.values():
        d.mkdir()
    train = [video() for _ in range(8)]
    for i, v in enumerate(train):
        write_video(folders["train"] / f"t{i}.mp4", v, fps=10, lossless=True)
    for i in range(5):
        write_video(folders["heldout"] / f"h{i}.mp4", video(), fps=10, lossless=True)
    for i in range(2):
        write_video(folders["generated"] / f"copy{i}.mp4", train[i], fps=10, lossless=True)
    for i in range(3):
        write_video(folders["generated"] / f"new{i}.mp4", video(), fps=10, lossless=True)
    out = tmp_path / "audit"
    rc = run_script("audit_generated.py", "--generated", folders["generated"], "--train", folders["train"],
                    "--heldout", folders["heldout"], "--out", out, "--reid-steps", "150", "--clips-per-video", "2",
                    "--fps", "10", "--target-fpr", "0.2", "--no-progress").returncode
    assert rc == 0
    res = json.loads((out / "audit.json").read_text())
    assert res["fallback_features"] and res["n"] == {"train": 8, "generated": 5, "heldout": 5}
    assert {"generated", "heldout", "adjusted"} <= set(res["irs"])
    assert res["near_copies"]["near_copies"] >= 2
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in __import__("csv").DictReader((out / "generated_audit.csv").open())}
    assert rows["copy0.mp4"]["reid_flag"] == "1" and rows["copy0.mp4"]["reid_match"] == "t0"
    assert rows["copy1.mp4"]["reid_flag"] == "1" and rows["copy1.mp4"]["reid_match"] == "t1"
    assert rows["copy0.mp4"]["kept"] == "0"
    for name in ("audit.md", "irs.png", "nn_similarity.png", "reid.png", "embedding.png", "kept_generated.csv"):
        assert (out / name).is_file()
