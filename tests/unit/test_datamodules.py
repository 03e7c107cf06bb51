"""Video data modules: splits, labels, windows and loaders (tiny generated data or ../shared/data)."""

import csv

import numpy as np
import pytest
import torch

from data_modules.folder import FolderVideoDataModule
from data_modules.synthetic import SyntheticEchoDataModule
from seqnrl import batch as B
from seqnrl.errors import ManifestError
from tests.conftest import shared_data


def _tiny_echo(**kw):
    args = dict(n_train=4, n_val=4, n_test=4, n_frames=20, clip_len=8, image_size=32, batch_size=4, samples_per_video=2)
    args.update(kw)
    return SyntheticEchoDataModule(**args)


def test_synthetic_echo_batches_follow_contract():
    dm = _tiny_echo()
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b[B.VIDEO].shape == (4, 1, 8, 32, 32)
    assert b[B.VIDEO].dtype == torch.float32 and 0 <= float(b[B.VIDEO].min()) <= float(b[B.VIDEO].max()) <= 1
    assert (b[B.LABEL] == 0).all(), "training must use normal videos only"
    assert torch.isfinite(b[B.EF]).all()
    assert b[B.PIXEL_MASK].shape == (4, 1, 8, 32, 32)


def test_synthetic_echo_ef_range_spreads_normal_ef_and_is_checked():
    wide = _tiny_echo(n_train=8, ef_range=(20, 80)).records()["train"]
    efs = np.array([r.ef for r in wide])
    assert efs.min() >= 20 and efs.max() <= 80 and efs.max() - efs.min() > 20
    assert (efs < 50).any(), "a wide range reaches reduced EF"
    # the requested EF is what the video's volume curve shows (over >= 1 beat)
    for r in _tiny_echo(n_train=3, n_frames=64, ef_range=(20, 80)).records()["train"]:
        v = np.asarray(r.extra["volume"], dtype=float)
        assert abs(100 * (v.max() - v.min()) / v.max() - r.ef) < 5.0
    default = np.array([r.ef for r in _tiny_echo(n_train=8).records()["train"]])
    assert default.min() >= 55 and default.max() <= 70
    same = np.array([r.ef for r in _tiny_echo(n_train=8, ef_range=(20, 80)).records()["train"]])
    assert np.array_equal(efs, same), "seeded"
    from seqnrl.errors import ConfigError

    with pytest.raises(ConfigError, match="ef_range"):
        _tiny_echo(ef_range=(60, 40))


def test_synthetic_echo_eval_windows_cover_every_frame_and_have_anomalies():
    dm = _tiny_echo(stride=3)
    dm.setup("validate")
    seen: dict[str, set] = {}
    labels = []
    for b in dm.val_dataloader():
        for vid, fi in zip(b[B.VIDEO_ID], b[B.FRAME_INDEX]):
            seen.setdefault(vid, set()).update(int(i) for i in fi if i >= 0)
        labels.append(b[B.FRAME_LABEL])
    assert len(seen) == 4 and all(s == set(range(20)) for s in seen.values())
    lab = torch.cat(labels)
    assert (lab == 1).any() and (lab == 0).any()


def test_synthetic_echo_deterministic_and_seed_dependent():
    a = _tiny_echo(seed=3).records()["train"][0].frames
    b = _tiny_echo(seed=3).records()["train"][0].frames
    c = _tiny_echo(seed=4).records()["train"][0].frames
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_workers_give_same_batches_as_seeded_run():
    import pytorch_lightning as pl

    def first_batch(workers):
        pl.seed_everything(7, workers=True)
        dm = _tiny_echo(num_workers=workers)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))[B.VIDEO]

    a, b = first_batch(2), first_batch(2)
    assert torch.equal(a, b)


def _write_tiny_video(path, n=12, value=None, seed=0):
    from seqnrl.io.write import write_video

    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 255, (3, n, 32, 32), generator=g, dtype=torch.uint8)
    if value is not None:
        frames[:] = value
    write_video(path, frames, fps=10)


def test_folder_layout_ignores_hidden_and_readme_and_trains(tmp_path):
    for split, cls, n in (("train", "normal", 3), ("test", "normal", 1), ("test", "abnormal", 1)):
        d = tmp_path / split / cls
        d.mkdir(parents=True)
        for i in range(n):
            _write_tiny_video(d / f"{cls}{i}.mp4", seed=i)
        (d / ".DS_Store").write_bytes(b"junk")
        (d / "README.txt").write_text("not a video")
    dm = FolderVideoDataModule(str(tmp_path), clip_len=4, image_size=16, batch_size=2)
    recs = dm.records()
    assert len(recs["train"]) == 2 and len(recs["val"]) == 1 and len(recs["test"]) == 2
    assert {r.label for r in recs["test"]} == {0, 1}
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b[B.VIDEO].shape[1:] == (1, 4, 16, 16)


def test_folder_manifest_split_by_patient(tmp_path):
    rows = []
    for p in range(5):
        for k in range(2):
            name = f"p{p}_{k}.mp4"
            _write_tiny_video(tmp_path / name, seed=p * 10 + k)
            rows.append({"file": name, "label": "covid" if p == 4 else "normal", "patient": f"p{p}"})
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "label", "patient"])
        w.writeheader()
        w.writerows(rows)
    dm = FolderVideoDataModule(str(tmp_path), clip_len=4, image_size=16)
    recs = dm.records()
    where = {}
    for split, rs in recs.items():
        if split == "predict":
            continue
        for r in rs:
            where.setdefault(r.patient, set()).add(split)
    assert all(len(s) == 1 for s in where.values()), "a patient must not span splits"
    assert all(r.label == 0 for r in recs["train"])


def test_folder_without_manifest_or_layout_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="folder layout"):
        FolderVideoDataModule(str(tmp_path)).records()


def test_lus_leave_patient_out_split():
    from data_modules.lus import LUSDataModule

    root = shared_data("lus")
    dm = LUSDataModule(root=str(root), test_patients=["pat3"], val_patients=["pat2"])
    recs = dm.records()
    assert all(r.label == 0 for r in recs["train"])
    assert not {r.patient for r in recs["train"]} & {"pat2", "pat3"}
    assert sum(r.patient == "pat3" for r in recs["test"]) == 6
    assert sum(r.label == 1 for r in recs["test"]) == 6  # all pathological clips are test clips
    dm2 = LUSDataModule(root=str(root), seed=1)
    r2 = dm2.records()
    pats = [{r.patient for r in r2[s]} for s in ("train", "val", "test")]
    assert not (pats[0] & pats[1]) and not (pats[0] & pats[2]) and not (pats[1] & pats[2])


def test_ped2_labels_align_with_frames():
    from data_modules.ped2 import Ped2DataModule

    root = shared_data("ped2")
    dm = Ped2DataModule(root=str(root), image_size=(24, 36), clip_len=8)
    recs = dm.records()
    assert len(recs["train"]) == 14 and len(recs["val"]) == 2
    test = recs["test"]
    assert [r.video_id for r in test] == [f"test_{i:02d}" for i in range(1, 7)]
    ds = dm.dataset("test")
    for i, r in enumerate(test):
        n = ds.n_frames(i)
        assert n == len(r.frame_labels)
    assert all(int(r.frame_labels.sum()) > 0 for r in test)


def test_echonet_layout_lookalike(tmp_path):
    from data_modules.echonet import EchoNetDynamicDataModule
    from seqnrl.data.echonet_lookalike import write_echonet_lookalike

    root = write_echonet_lookalike(tmp_path / "echonet", n_videos=4, n_frames=24, size=32, seed=0)
    dm = EchoNetDynamicDataModule(str(root), clip_len=8, image_size=32, batch_size=2, train_on_all=True)
    recs = dm.records()
    allr = recs["train"] + recs["val"] + recs["test"]
    assert len(allr) == 4
    assert all(np.isfinite(r.ef) for r in allr)
    assert all(r.extra["ed_es_frames"] is not None for r in allr)
    r = allr[0]
    ed, es = r.extra["ed_es_frames"]
    assert float(r.ed_es[ed]) == pytest.approx(1.0) and float(r.ed_es[es]) == pytest.approx(-1.0)
    split = next(s for s in ("train", "val", "test") if recs[s])
    b = next(iter(dm._loader(split, shuffle=False)))
    assert b[B.VIDEO].shape[1:] == (1, 8, 32, 32)


def test_echonet_missing_filelist_columns(tmp_path):
    from data_modules.echonet import EchoNetDynamicDataModule

    (tmp_path / "Videos").mkdir()
    (tmp_path / "FileList.csv").write_text("FileName,Split\nx,TRAIN\n")
    with pytest.raises(ManifestError, match="EF"):
        EchoNetDynamicDataModule(str(tmp_path)).records()
