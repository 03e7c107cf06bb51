"""Motion-styles data module: splits by take, keypoints in body heights, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data_modules.motion_styles import MotionStylesDataModule
from seqnrl.errors import ConfigError, ManifestError
from tests.bvh_factory import JOINTS, write_dataset

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "motion_styles"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("styles"), takes=6)


def test_splits_are_by_take(tiny):
    dm = MotionStylesDataModule(root=str(tiny), val_takes=[6], clip_len=16, batch_size=4)
    dm.setup(None)
    ids = {s: [q.video_id for q in dm.dataset(s).sequences] for s in ("train", "val", "test")}
    assert ids["train"] == ["walk_normal_002", "walk_normal_004"]
    assert ids["val"] == ["walk_normal_006"]
    assert sorted(ids["test"]) == sorted([f"walk_normal_00{k}" for k in (1, 3, 5)] + [f"walk_elderly_00{k}" for k in range(1, 7)])
    test = dm.dataset("test")
    assert len(test) == len(test.sequences)  # one causal window per take (eval_len 512 > 90 frames)
    labels = {q.video_id: (q.label, int(q.frame_label.max())) for q in test.sequences}
    assert labels["walk_elderly_003"] == (1, 1) and labels["walk_normal_003"] == (0, 0)
    assert dm.joint_names == JOINTS


def test_keypoints_are_in_body_heights_and_keep_the_travel(tiny):
    dm = MotionStylesDataModule(root=str(tiny), val_takes=[6], clip_len=16, batch_size=4)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    kp = b["keypoints"]
    assert kp.shape == (4, 16, len(JOINTS), 3)
    assert float(kp[..., 1].max()) < 1.5  # rest height 1 (hips at 20 of 45 units)
    travel = (kp[:, -1, 0] - kp[:, 0, 0]).norm(dim=-1)
    assert bool((travel > 0.1).all())  # not root-relative: the walker moves forward


def test_bad_folders_and_settings_are_named(tiny, tmp_path):
    with pytest.raises(ConfigError, match="even"):
        MotionStylesDataModule(root=str(tiny), val_takes=[3])
    with pytest.raises(ManifestError, match="manifest.csv"):
        MotionStylesDataModule(root=str(tmp_path)).setup("fit")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.csv").write_text("file,content,style\nx.bvh,walk,normal\n")
    with pytest.raises(ManifestError, match="take"):
        MotionStylesDataModule(root=str(bad)).setup("fit")
    (bad / "manifest.csv").write_text("file,content,style,take\nmissing.bvh,walk,normal,002\n")
    with pytest.raises(ManifestError, match="missing.bvh"):
        MotionStylesDataModule(root=str(bad)).setup("fit")
    with pytest.raises(ConfigError, match="swim"):
        MotionStylesDataModule(root=str(tiny), contents=["swim"]).setup("fit")


def test_real_takes_match_the_config():
    """The shipped config's joint names and facing joints are those of the real skeleton."""
    if not (SHARED / "manifest.csv").is_file():
        pytest.skip(f"motion_styles data not found at {SHARED} (expected ../shared/data/motion_styles)")
    import yaml

    repo = Path(__file__).resolve().parents[2]
    model_cfg = yaml.safe_load((repo / "configs" / "model" / "kinematic_prior.yaml").read_text())["init_args"]
    dm = MotionStylesDataModule(root=str(SHARED), contents=["walk"])
    dm.setup("fit")
    assert dm.joint_names == model_cfg["joint_names"]
    assert len(dm.joint_names) == model_cfg["n_joints"]
    left, right = (dm.joint_names[j] for j in model_cfg["heading_joints"])
    assert left.endswith("_L") and right.endswith("_R") and "Leg" in left
    assert dm.joint_names[model_cfg["root_joint"]] == "Hips"
    assert [len(dm.dataset(s).sequences) for s in ("train", "val")] == [6, 2]
    kp = dm.dataset("train").sequences[0].keypoints
    assert torch.isfinite(kp).all() and float(kp[:, :, 1].max()) < 1.2
    for j in model_cfg["ignore_joints"]:  # left out because it never moves (a world origin)
        assert float((kp[:, j] - kp[:1, j]).abs().max()) == 0.0
    assert float((kp[:, model_cfg["root_joint"]] - kp[:1, model_cfg["root_joint"]]).abs().max()) > 1.0
