"""Synthetic echo generator and the EchoNet-Dynamic look-alike folder."""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest
import torch

from seqnrl.batch import collate
from seqnrl.data.echonet_lookalike import (
    FILELIST_COLUMNS,
    TRACING_COLUMNS,
    write_echonet_lookalike,
)
from seqnrl.data.synthetic_echo import (
    ANOMALIES,
    VOLUME_COEF,
    cavity_area,
    estimate_ef,
    make_echo,
    make_echo_dataset,
    sector_mask,
    to_uint8,
)
from seqnrl.errors import ConfigError

SPAN = (12, 30)


@pytest.fixture(scope="module")
def normal():
    return make_echo(11, n_frames=48, size=48)


@pytest.fixture(scope="module")
def abnormal():
    return {a: make_echo(11, n_frames=48, size=48, anomaly=a, anomaly_span=SPAN) for a in ANOMALIES}


def test_shapes_types_and_range(normal):
    e = normal
    assert e.video.shape == (1, 48, 48, 48) and e.video.dtype == torch.float32
    assert 0.0 <= float(e.video.min()) and float(e.video.max()) <= 1.0
    assert float(e.video.std()) > 0.05  # not blank
    assert e.volume.shape == (48,) and e.volume.dtype == torch.float32
    assert e.frame_label.shape == (48,) and e.frame_label.dtype == torch.int64
    assert int(e.frame_label.sum()) == 0 and e.anomaly is None
    assert e.pixel_mask.shape == (1, 48, 48, 48) and float(e.pixel_mask.sum()) == 0
    assert e.ed_es_signal.shape == (48,) and e.fps == 30.0
    assert to_uint8(e.video).dtype == torch.uint8


def test_deterministic_in_seed():
    a, b = make_echo(5, n_frames=24, size=32), make_echo(5, n_frames=24, size=32)
    c = make_echo(6, n_frames=24, size=32)
    assert torch.equal(a.video, b.video) and torch.equal(a.volume, b.volume)
    assert a.ed_frames == b.ed_frames and a.es_frames == b.es_frames and a.ef == b.ef
    assert not torch.equal(a.video, c.video)
    assert a.ef != c.ef


@pytest.mark.parametrize("seed,ef", [(0, None), (1, 62.0), (2, 57.5), (3, None)])
def test_ef_matches_volume_curve(seed, ef):
    e = make_echo(seed, n_frames=64, size=32, ef=ef)
    v = e.volume.double()
    curve_ef = float(100 * (v.max() - v.min()) / v.max())
    assert abs(curve_ef - e.ef) < 1e-3
    if ef is not None:
        assert abs(e.ef - ef) < 1e-3
    else:
        assert 55.0 <= e.ef <= 70.0
    assert 60 < float(v.max()) < 200  # mL-like EDV


@pytest.mark.parametrize("seed,hr", [(0, None), (4, 60.0), (7, 95.0), (9, 120.0)])
def test_ed_es_frames_are_volume_extrema_per_beat(seed, hr):
    e = make_echo(seed, n_frames=64, size=32, heart_rate_bpm=hr)
    v = e.volume.numpy()
    assert e.ed_frames and e.es_frames
    events = sorted([(f, "ed") for f in e.ed_frames] + [(f, "es") for f in e.es_frames])
    kinds = [k for _, k in events]
    assert all(k1 != k2 for k1, k2 in zip(kinds, kinds[1:])), "ED and ES must alternate"
    frames = [f for f, _ in events]
    for i, (f, kind) in enumerate(events):
        lo = frames[i - 1] if i > 0 else 0
        hi = frames[i + 1] if i + 1 < len(frames) else len(v) - 1
        window = v[lo : hi + 1]
        if kind == "ed":
            assert v[f] == window.max()
        else:
            assert v[f] == window.min()
    # every beat reaches the full EDV / ESV (isovolumic plateaus are sampled)
    assert np.allclose(v[e.ed_frames], v.max()) and np.allclose(v[e.es_frames], v.min())


def test_ed_es_signal(normal):
    s = normal.ed_es_signal.numpy()
    assert np.all(s[normal.ed_frames] == 1.0) and np.all(s[normal.es_frames] == -1.0)
    assert s.min() >= -1.0 and s.max() <= 1.0
    ed, es = normal.ed_frames[0], min(f for f in normal.es_frames if f > normal.ed_frames[0])
    assert np.all(np.diff(s[ed : es + 1]) < 0)  # falls from ED to ES
    assert np.corrcoef(s, normal.volume.numpy())[0, 1] > 0.7  # follows the volume


def test_sector_is_black_outside(normal):
    outside = ~sector_mask(48)
    assert outside.any() and (~outside).float().mean() > 0.5
    assert float(normal.video[0][:, outside].abs().max()) == 0.0
    assert float(normal.video[0][:, ~outside].mean()) > 0.05


def test_cavity_is_dark_and_wall_bright(normal):
    e = normal
    cx, cy, a, b = (float(z) for z in e.lv_ellipse[e.ed_frames[0]])
    f = e.video[0, e.ed_frames[0]]
    cavity = float(f[int(cy) - 2 : int(cy) + 3, int(cx) - 2 : int(cx) + 3].mean())
    wall = float(
        f[int(cy) - 2 : int(cy) + 3, int(round(cx + b)) + 1 : int(round(cx + b)) + 3].mean()
    )
    assert cavity < 0.12 and wall > 3 * cavity


@pytest.mark.parametrize("anomaly", [a for a in ANOMALIES if a != "reduced_ef"])
def test_span_anomalies_labels_masks_and_pixels(normal, abnormal, anomaly):
    e = abnormal[anomaly]
    lab = torch.zeros(48, dtype=torch.long)
    lab[SPAN[0] : SPAN[1]] = 1
    assert torch.equal(e.frame_label, lab) and e.anomaly == anomaly
    assert e.anomaly_span == SPAN
    per_frame = e.pixel_mask[0].sum(dim=(1, 2))
    assert float(per_frame[lab == 0].sum()) == 0.0
    assert set(torch.unique(e.pixel_mask).tolist()) <= {0.0, 1.0}
    # outside the span the clip is the normal clip, bit for bit; inside it differs
    out = lab == 0
    assert torch.equal(e.video[:, out], normal.video[:, out])
    changed = (e.video[0] - normal.video[0]).abs().flatten(1).amax(1) > 0.02
    assert not changed[out].any()
    need = 1.0 if anomaly in ("dropout", "akinesia") else 0.6
    assert float(changed[lab == 1].float().mean()) >= need
    assert float((per_frame[lab == 1] > 0).float().mean()) >= need
    # where the mask says "changed", the image did change
    m = e.pixel_mask[0].bool()
    assert float((e.video[0] - normal.video[0]).abs()[m].mean()) > 0.03


@pytest.mark.parametrize("anomaly", ["dyssynchrony", "akinesia", "arrhythmia"])
def test_motion_anomalies_change_the_volume_only_in_the_span(normal, abnormal, anomaly):
    e, lab = abnormal[anomaly], abnormal[anomaly].frame_label.bool()
    assert torch.equal(e.volume[~lab], normal.volume[~lab])
    assert float((e.volume[lab] - normal.volume[lab]).abs().max()) > 1.0  # mL


@pytest.mark.parametrize("anomaly", ["dyssynchrony", "akinesia"])
def test_segmental_volume_matches_the_drawn_cavity(anomaly):
    """The volume change a segment causes is the change of the cavity seen in the frames."""
    n = make_echo(1, n_frames=40, size=64, speckle=0.0)
    a = make_echo(1, n_frames=40, size=64, speckle=0.0, anomaly=anomaly, anomaly_span=(10, 28))
    true = (a.volume / VOLUME_COEF) ** (2 / 3) - (n.volume / VOLUME_COEF) ** (2 / 3)
    seen = cavity_area(a.video) - cavity_area(n.video)
    ratio = float(seen[10:28].abs().sum() / true[10:28].abs().sum())
    assert 0.75 < ratio < 1.3 and float(true[10:28].abs().mean()) > 0.3  # cm^2


def test_dropout_keeps_the_volume_and_darkens_a_wedge(normal, abnormal):
    e = abnormal["dropout"]
    assert torch.equal(e.volume, normal.volume)
    m = e.pixel_mask[0].bool()
    assert bool((e.video[0][m] <= normal.video[0][m]).all())
    assert float(e.video[0][m].mean()) < 0.5 * float(normal.video[0][m].mean())


def test_cycle_timing_fast_ejection_slow_filling():
    e = make_echo(2, n_frames=90, size=32, fps=50.0, heart_rate_bpm=60.0)
    ed = e.ed_frames[0]
    es = min(f for f in e.es_frames if f > ed)
    nxt = min(f for f in e.ed_frames if f > es)
    systole, diastole = es - ed, nxt - es
    assert nxt - ed in (49, 50, 51)  # 60 bpm at 50 fps
    assert 0.25 <= systole / 50 <= 0.4 and diastole > 1.4 * systole
    v = e.volume.numpy()
    # ejection is faster than refilling: 95 % of the stroke volume leaves sooner than it returns
    sv = v.max() - v.min()
    t_eject = np.argmax(v[ed:] < v.min() + 0.05 * sv)
    t_fill = np.argmax(v[es:] > v.max() - 0.05 * sv)
    assert t_eject < t_fill


def test_reduced_ef_whole_clip(normal, abnormal):
    e = abnormal["reduced_ef"]
    assert int(e.frame_label.sum()) == 48 and e.anomaly_span == (0, 48)
    assert 20.0 <= e.ef <= 40.0
    v = e.volume.double()
    assert abs(float(100 * (v.max() - v.min()) / v.max()) - e.ef) < 1e-3
    assert float(v.max()) > float(normal.volume.max())  # dilated
    assert bool((e.pixel_mask[0].sum(dim=(1, 2)) > 0).all())
    assert make_echo(11, n_frames=48, size=48, anomaly="reduced_ef", ef=30.0).ef == pytest.approx(
        30.0, abs=1e-3
    )


def test_arrhythmia_adds_a_beat():
    n = make_echo(21, n_frames=96, size=32, heart_rate_bpm=70)
    a = make_echo(
        21, n_frames=96, size=32, heart_rate_bpm=70, anomaly="arrhythmia", anomaly_span=(20, 60)
    )
    assert len(a.ed_frames) == len(n.ed_frames) + 1
    assert len(a.es_frames) == len(n.es_frames) + 1


def test_default_span_is_contiguous_quarter_to_half():
    for seed in range(6):
        e = make_echo(seed, n_frames=40, size=32, anomaly=ANOMALIES[1 + seed % 4])
        idx = torch.nonzero(e.frame_label).flatten()
        assert 10 <= len(idx) <= 20
        assert int(idx[-1] - idx[0]) + 1 == len(idx)
        assert e.anomaly_span == (int(idx[0]), int(idx[-1]) + 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ef_measured_from_frames(seed):
    e = make_echo(seed, n_frames=64, size=64)
    assert abs(estimate_ef(e.video) - e.ef) < 5.0
    # areas track the true cavity area (volume = VOLUME_COEF * area ** 1.5)
    true_area = (e.volume / VOLUME_COEF) ** (2 / 3)
    area = cavity_area(e.video)
    assert float(((area - true_area).abs() / true_area).max()) < 0.15
    assert np.corrcoef(area.numpy(), true_area.numpy())[0, 1] > 0.97


def test_ef_measured_from_frames_reduced():
    e = make_echo(3, n_frames=64, size=64, anomaly="reduced_ef")
    assert abs(estimate_ef(e.video) - e.ef) < 6.0


def test_invalid_arguments():
    with pytest.raises(ConfigError):
        make_echo(0, anomaly="tachycardia")
    with pytest.raises(ConfigError):
        make_echo(0, n_frames=20, anomaly="dropout", anomaly_span=(5, 25))
    with pytest.raises(ConfigError):
        make_echo(0, n_frames=20, anomaly="dropout", anomaly_span=(5, 5))


def test_dataset_and_batch_contract():
    kw = dict(n_frames=16, size=32)
    ds = make_echo_dataset(3, 10, anomaly_fraction=0.5, **kw)
    ds2 = make_echo_dataset(3, 10, anomaly_fraction=0.5, **kw)
    assert len(ds) == 10
    kinds = [e.anomaly for e in ds]
    assert sum(k is not None for k in kinds) == 5
    assert kinds == [e.anomaly for e in ds2]
    assert all(torch.equal(a.video, b.video) for a, b in zip(ds, ds2))
    assert len({k for k in kinds if k}) == 5  # the five types all appear
    assert all(e.anomaly is None for e in make_echo_dataset(3, 4, **kw))
    batch = collate([e.to_sample(f"v{i}") for i, e in enumerate(ds[:3])])
    assert batch["video"].shape == (3, 1, 16, 32, 32)
    assert batch["pixel_mask"].shape == (3, 1, 16, 32, 32)
    assert batch["label"].tolist() == [int(e.anomaly is not None) for e in ds[:3]]


def test_echonet_lookalike(tmp_path):
    root = write_echonet_lookalike(tmp_path / "echonet", n_videos=4, n_frames=40, size=48, seed=1)
    with open(root / "FileList.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == FILELIST_COLUMNS
        rows = list(reader)
    assert FILELIST_COLUMNS == (
        "FileName",
        "EF",
        "ESV",
        "EDV",
        "FrameHeight",
        "FrameWidth",
        "FPS",
        "NumberOfFrames",
        "Split",
    )
    assert len(rows) == 4
    assert {r["Split"] for r in rows} <= {"TRAIN", "VAL", "TEST"}
    assert {r["Split"] for r in rows} == {"TRAIN", "VAL", "TEST"}
    with open(root / "VolumeTracings.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert (
            tuple(reader.fieldnames)
            == TRACING_COLUMNS
            == ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
        )
        tracings = list(reader)
    efs = []
    for r in rows:
        assert not r["FileName"].endswith(".avi") and r["FileName"].startswith("0X")
        path = root / "Videos" / f"{r['FileName']}.avi"
        with av.open(str(path)) as c:
            frames = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
        assert len(frames) == int(r["NumberOfFrames"]) == 40
        assert frames[0].shape == (int(r["FrameHeight"]), int(r["FrameWidth"]), 3) == (48, 48, 3)
        assert float(r["FPS"]) == 50.0
        assert np.array_equal(frames[3][..., 0], frames[3][..., 2])  # grey in 3 channels
        edv, esv, ef = float(r["EDV"]), float(r["ESV"]), float(r["EF"])
        assert ef == pytest.approx(100 * (edv - esv) / edv, abs=1e-2)
        efs.append(ef)
        mine = [t for t in tracings if t["FileName"] == r["FileName"] + ".avi"]
        traced = sorted({int(t["Frame"]) for t in mine})
        assert len(traced) == 2 and len(mine) == 42 and all(0 <= f < 40 for f in traced)
        chord = {
            fr: sum(abs(float(t["X2"]) - float(t["X1"])) for t in mine if int(t["Frame"]) == fr)
            for fr in traced
        }
        # the ED frame (larger chords) is darker in the middle of the LV than outside it
        ed_frame = max(chord, key=chord.get)
        first = next(t for t in mine if int(t["Frame"]) == ed_frame)
        x, y1, y2 = float(first["X1"]), float(first["Y1"]), float(first["Y2"])
        mid = frames[ed_frame][int((y1 + y2) / 2), int(x), 0]
        assert mid < 40 and y2 - y1 > 10
    assert min(efs) < 45 < max(efs)  # reduced-EF videos are included
