"""SyntheticMotionDataModule and MocapDataModule: the batch contract, windows, labels, seeds, workers."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from data_modules.mocap import MocapDataModule
from data_modules.synthetic_motion import SyntheticMotionDataModule
from seqnrl.data.motion_windows import MotionClipDataset, MotionSequence, RandomClipSampler
from seqnrl.data.synthetic_motion import PARENTS, make_motion
from seqnrl.errors import ConfigError, KeypointError, ManifestError, SeqNRLError

MOCAP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mocap"
TINY = dict(n_train=4, n_val=4, n_test=2, n_frames=40, clip_len=16, batch_size=4)


def _equal_batches(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        if isinstance(a[k], torch.Tensor):
            if not torch.equal(torch.nan_to_num(a[k], nan=-7.0), torch.nan_to_num(b[k], nan=-7.0)):
                return False
        elif a[k] != b[k]:
            return False
    return True


def _frames_seen(loader) -> dict[str, dict[int, list[int]]]:
    """video_id -> frame index -> frame labels seen in the windows."""
    seen: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for b in loader:
        for i, vid in enumerate(b["video_id"]):
            for fi, fl in zip(b["frame_index"][i].tolist(), b["frame_label"][i].tolist()):
                if fi >= 0:
                    seen[vid][fi].append(fl)
    return seen


# -- synthetic --------------------------------------------------------------------------------


def test_synthetic_train_batch_contract():
    dm = SyntheticMotionDataModule(**TINY)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert (
        b["keypoints"].shape == (4, 16, len(PARENTS), 2) and b["keypoints"].dtype == torch.float32
    )
    assert b["frame_label"].shape == (4, 16) and (b["frame_label"] == 0).all()
    assert (b["label"] == 0).all() and (b["n_frames"] == 40).all() and (b["fps"] == 30.0).all()
    assert "video" not in b and len(b["video_id"]) == 4
    # frame_index is a contiguous run starting at start_frame
    assert torch.equal(b["frame_index"], b["start_frame"][:, None] + torch.arange(16))
    assert len(dm.train_dataloader()) == 1


def test_synthetic_eval_windows_cover_every_frame_with_true_labels():
    dm = SyntheticMotionDataModule(
        **TINY, val_anomaly_fraction=0.5, anomaly_types=("tremor", "freeze")
    )
    dm.setup("validate")
    seen = _frames_seen(dm.val_dataloader())
    assert len(seen) == 4
    n_abn = 0
    for i, seq in enumerate(dm.dataset("val").sequences):
        assert set(seen[seq.video_id]) == set(range(40))  # every frame scored
        expected = seq.frame_label.tolist()
        for fi, labels in seen[seq.video_id].items():
            assert set(labels) == {expected[fi]}
        # labels are where make_motion injected the anomaly
        anomaly = None if seq.label == 0 else seq.video_id.rsplit("-", 1)[-1]
        m = make_motion(dm.sequence_seed("val", i), n_frames=40, anomaly=anomaly)
        np.testing.assert_array_equal(seq.frame_label.numpy(), m["frame_label"])
        np.testing.assert_array_equal(seq.keypoints.numpy(), m["keypoints"])
        n_abn += seq.label
        assert (seq.frame_label.sum() > 0) == (seq.label == 1)
    assert n_abn == 2
    # overlapping windows with the default stride clip_len // 2: starts 0, 8, 16, 24
    assert len(dm.dataset("val")) == 4 * 4
    assert {s.video_id for s in dm.dataset("test").sequences}.isdisjoint(seen)


def test_synthetic_predict_is_test_and_render():
    dm = SyntheticMotionDataModule(**TINY, render=True, image_size=24, dim=3)
    dm.setup("predict")
    pb = next(iter(dm.predict_dataloader()))
    tb = next(iter(dm.test_dataloader()))
    assert _equal_batches(pb, tb)
    assert pb["video"].shape == (4, 1, 16, 24, 24) and pb["video"].dtype == torch.float32
    assert 0.0 <= pb["video"].min() and pb["video"].max() <= 1.0
    assert pb["keypoints"].shape[-1] == 3
    # the figure moves: consecutive frames differ
    assert (pb["video"][:, :, 1:] - pb["video"][:, :, :-1]).abs().mean() > 1e-3


def test_synthetic_seeded_determinism_and_epochs():
    first = [
        next(iter(SyntheticMotionDataModule(**TINY, seed=3).train_dataloader())) for _ in range(2)
    ]
    assert _equal_batches(first[0], first[1])
    other = next(iter(SyntheticMotionDataModule(**TINY, seed=4).train_dataloader()))
    assert not torch.equal(first[0]["keypoints"], other["keypoints"])
    loader = SyntheticMotionDataModule(**TINY, seed=3).train_dataloader()
    loader.sampler.set_epoch(0)
    e0 = next(iter(loader))
    loader.sampler.set_epoch(1)
    e1 = next(iter(loader))
    assert _equal_batches(e0, first[0]) and not _equal_batches(e0, e1)


def test_synthetic_workers_give_the_same_batches():
    kw = dict(TINY, render=True, image_size=16)
    a = SyntheticMotionDataModule(**kw, num_workers=0)
    b = SyntheticMotionDataModule(**kw, num_workers=2)
    ta, tb = list(a.train_dataloader()), list(b.train_dataloader())
    assert len(ta) == len(tb) and all(_equal_batches(x, y) for x, y in zip(ta, tb))
    assert _equal_batches(next(iter(a.val_dataloader())), next(iter(b.val_dataloader())))


def test_synthetic_config_errors():
    with pytest.raises(ConfigError):
        SyntheticMotionDataModule(anomaly_types=("dance",))
    with pytest.raises(ConfigError):
        SyntheticMotionDataModule(dim=4)
    with pytest.raises(ConfigError):
        SyntheticMotionDataModule(val_anomaly_fraction=1.5)


def test_short_sequences_are_padded_and_marked():
    seq = MotionSequence("s", torch.zeros(10, 3, 2), torch.zeros(10, dtype=torch.long), fps=30.0)
    ds = MotionClipDataset([seq], clip_len=16, mode="eval")
    s = ds[0]
    assert s["keypoints"].shape == (16, 3, 2)
    assert (s["frame_index"][10:] == -1).all() and (s["frame_label"][10:] == -1).all()
    assert torch.equal(s["frame_index"][:10], torch.arange(10))
    with pytest.raises(KeypointError, match="all-nan"):
        MotionSequence("all-nan", torch.full((5, 3, 2), float("nan")), torch.zeros(5), fps=30.0)
    keys = list(RandomClipSampler([40, 20], clip_len=16, clips_per_sequence=3, seed=1))
    assert len(keys) == 6 and sorted(k[0] for k in keys) == [0, 0, 0, 1, 1, 1]
    assert all(0 <= s <= (40 if i == 0 else 20) - 16 for i, s in keys)


# -- mocap ------------------------------------------------------------------------------------


def _write_bvh(path: Path, n_frames: int = 160, phase: float = 0.0) -> None:
    """A small 5-joint BVH (root, spine, head end, leg, foot, foot end) at 120 fps."""
    head = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Spine
  {
    OFFSET 0 5 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 4 0
    }
  }
  JOINT Leg
  {
    OFFSET 1 -1 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT Foot
    {
      OFFSET 0 -8 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      End Site
      {
        OFFSET 0 0 2
      }
    }
  }
}
MOTION
"""
    t = np.arange(n_frames) / 120.0
    rows = []
    for ti in t:
        a = 30 * np.sin(2 * np.pi * 1.0 * ti + phase)
        rows.append(
            [
                2 * ti,
                9.0,
                10 * ti,
                0,
                0,
                0,
                0,
                0,
                5 * np.sin(2 * np.pi * ti),
                0,
                0,
                a,
                0,
                0,
                max(0.0, a),
            ]
        )
    body = "\n".join(" ".join(f"{v:.5f}" for v in r) for r in rows)
    path.write_text(head + f"Frames: {n_frames}\nFrame Time: {1 / 120:.7f}\n" + body + "\n")


@pytest.fixture
def tiny_mocap(tmp_path) -> Path:
    root = tmp_path / "mocap"
    root.mkdir()
    for i in range(3):
        _write_bvh(root / f"take_{i}.bvh", n_frames=160 + 40 * i, phase=i)
    return root


def test_mocap_tiny_files(tiny_mocap):
    dm = MocapDataModule(root=str(tiny_mocap), clip_len=16, batch_size=4, clips_per_sequence=2)
    dm.setup()
    assert dm.joint_names == ["Hips", "Spine", "Leg", "Foot"] and dm.parents == [-1, 0, 0, 2]
    tr = dm.dataset("train")
    assert [s.video_id for s in tr.sequences] == ["take_0", "take_1"]
    # 160 frames at 120 fps -> floor(159 / 4) + 1 = 40 frames at 30 fps
    assert tr.lengths == [40, 50]
    b = next(iter(dm.train_dataloader()))
    assert b["keypoints"].shape == (4, 16, 4, 3) and (b["fps"] == 30.0).all()
    assert (b["frame_label"] == 0).all() and (b["label"] == 0).all()
    # normalised: root-relative, divided by the rest height (head end 9 above the root,
    # foot end 9 below -> 18 units)
    assert torch.allclose(b["keypoints"][:, :, 0], torch.zeros(4, 16, 3))
    spine = b["keypoints"][:, :, 1]
    assert torch.allclose(spine.norm(dim=-1), torch.full((4, 16), 5 / 18), atol=1e-5)

    val = dm.dataset("val")
    assert [s.video_id for s in val.sequences] == ["take_2", "take_2-freeze", "take_2-tremor"]
    normal, freeze, tremor = val.sequences
    assert normal.frame_label.sum() == 0 and normal.label == 0
    for s in (freeze, tremor):
        lab = s.frame_label
        span = lab.nonzero().flatten()
        assert s.label == 1 and len(span) >= 10 and (span.diff() == 1).all()
    fs = freeze.frame_label.nonzero().flatten()
    vel = (freeze.keypoints[1:] - freeze.keypoints[:-1]).abs().amax(dim=(1, 2))
    assert (vel[fs[0] : fs[-1]] == 0).all() and (vel[: fs[0] - 1] > 0).all()
    ts = tremor.frame_label == 1
    moved = (tremor.keypoints - normal.keypoints).abs().amax(dim=-1)  # (T, K)
    assert (moved[~ts] < 1e-6).all() and moved[ts].max() > 0.01
    assert torch.equal(freeze.keypoints[: fs[0]], normal.keypoints[: fs[0]])
    seen = _frames_seen(dm.val_dataloader())
    assert all(set(seen[v]) == set(range(60)) for v in ("take_2", "take_2-freeze", "take_2-tremor"))
    # test spans differ from validation spans
    test_freeze = dm.dataset("test").sequences[1]
    assert not torch.equal(test_freeze.frame_label, freeze.frame_label)


def test_mocap_deterministic_with_workers_and_2d_render(tiny_mocap):
    kw = dict(
        root=str(tiny_mocap), clip_len=16, batch_size=4, seed=5, dim=2, render=True, image_size=16
    )
    a = next(iter(MocapDataModule(**kw).train_dataloader()))
    b = next(iter(MocapDataModule(**kw, num_workers=2).train_dataloader()))
    assert _equal_batches(a, b)
    assert a["keypoints"].shape == (4, 16, 4, 2) and a["video"].shape == (4, 1, 16, 16, 16)
    assert 0 <= a["keypoints"].min() and a["keypoints"].max() <= 1
    c = next(iter(MocapDataModule(**dict(kw, seed=6)).train_dataloader()))
    assert not torch.equal(a["keypoints"], c["keypoints"])


def test_mocap_errors(tmp_path, tiny_mocap):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(ManifestError, match="mocap data folder not found") as ei:
        MocapDataModule(root=str(missing)).setup()
    assert str(missing) in str(ei.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match="no .bvh files"):
        MocapDataModule(root=str(empty)).setup()
    with pytest.raises(ManifestError, match="nope.bvh"):
        MocapDataModule(root=str(tiny_mocap), val_files=["nope.bvh"]).setup()
    with pytest.raises(SeqNRLError):
        MocapDataModule(root=str(tiny_mocap), val_files=["take_0", "take_1", "take_2"]).setup()
    (tiny_mocap / "broken.bvh").write_text("HIERARCHY\n")
    from seqnrl.errors import MotionReadError

    with pytest.raises(MotionReadError, match="broken.bvh"):
        MocapDataModule(root=str(tiny_mocap), val_files=["take_2"]).setup()


def test_mocap_real_cmu_files():
    if not MOCAP.exists() or not list(MOCAP.glob("*.bvh")):
        pytest.skip(f"real CMU BVH files not found at {MOCAP} (expected ../shared/data/mocap)")
    dm = MocapDataModule(root=str(MOCAP), clip_len=32, batch_size=4)
    dm.setup("fit")
    assert len(dm.joint_names) == 31
    assert dm.dataset("train").lengths == [249, 312]
    assert [s.n_frames for s in dm.dataset("val").sequences] == [276, 276, 276]
    b = next(iter(dm.train_dataloader()))
    assert b["keypoints"].shape == (4, 32, 31, 3)
    kp = b["keypoints"]
    assert kp.abs().max() < 1.5  # normalised by the skeleton's height
    head = dm.joint_names.index("Head")
    assert (kp[..., head, 1] > 0.2).float().mean() > 0.5  # head mostly above the hips
