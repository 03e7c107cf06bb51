"""One path from benchmark to user (motion styles): ``seqnrl fit --config
configs/motion_styles.yaml`` writes the checkpoint, and ``scripts/score_bvh.py`` scores a
folder of BVH files from it alone with the scores the model gives in memory; a file it
cannot read is reported and the batch goes on; existing outputs are kept.

Runs on a tiny take folder made here (a 7-joint walker, normal and stooped styles).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.bvh_factory import HEADING, JOINTS, write_dataset
from tests.integration.test_ped2_path import _run


@pytest.mark.slow
def test_score_bvh_reproduces_the_model_and_survives_bad_files(tmp_path, repo_root):
    from data_modules.motion_styles import load_bvh_positions
    from seqnrl.models.loading import load_model

    root = write_dataset(tmp_path / "styles", takes=6)
    cli = [sys.executable, "-m", "seqnrl.cli"]
    names = "[" + ",".join(JOINTS) + "]"
    _run([*cli, "fit", "--config", str(repo_root / "configs" / "motion_styles.yaml"), f"--data.init_args.root={root}",
          "--data.init_args.val_takes=[6]", "--data.init_args.clip_len=32", "--data.init_args.clips_per_sequence=4",
          f"--model.init_args.n_joints={len(JOINTS)}", "--model.init_args.root_joint=0",
          f"--model.init_args.heading_joints=[{HEADING[0]},{HEADING[1]}]", f"--model.init_args.joint_names={names}",
          "--model.init_args.ignore_joints=[]", "--model.init_args.width=16", "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false"],
         tmp_path, repo_root)  # fmt: skip
    ckpt = tmp_path / "runs" / "motion_styles" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    model = load_model(ckpt).eval()
    assert bool(model.standardised) and model.calibrator.fitted  # both travel in the checkpoint

    takes = root / "bvh"
    (takes / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n")
    out = tmp_path / "scores"
    cmd = [sys.executable, str(repo_root / "scripts" / "score_bvh.py"), str(takes), "--ckpt", str(ckpt), "--out", str(out)]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]  # one input failed, the rest were scored
    assert "broken.bvh" in res.stderr
    summary = json.loads((out / "scores_summary.json").read_text())
    assert summary["counts"] == {"scored": 12, "kept": 0, "failed": 1}
    scored = [r for r in summary["inputs"] if r["status"] == "scored"]
    assert all(r["top_joints"][0]["joint"] in JOINTS for r in scored)
    failed = [r for r in summary["inputs"] if r["status"] == "failed"]
    assert failed[0]["source"].endswith("broken.bvh")

    for take in ("walk_normal_003", "walk_elderly_002"):
        with open(out / f"{take}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        pos, _, _ = load_bvh_positions(takes / f"{take}.bvh", 30.0)
        with torch.no_grad():
            mem = model.surprise(torch.as_tensor(pos)[None]).mean(-1)[0].numpy()
        got = np.array([float(r["score"]) for r in rows])
        np.testing.assert_allclose(got, mem, rtol=1e-5, atol=1e-6)
        thr = float(model.calibrator.threshold)
        assert [int(r["above_threshold"]) for r in rows] == [int(v > thr) for v in got]

    # a second run keeps what the first wrote and adds to the run summary
    first = (out / "walk_normal_003.csv").read_text()
    (takes / "broken.bvh").unlink()
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "scores_summary.json").read_text())
    assert summary["counts"] == {"scored": 0, "kept": 12, "failed": 0}
    assert len(summary["runs"]) == 2
    assert (out / "walk_normal_003.csv").read_text() == first
