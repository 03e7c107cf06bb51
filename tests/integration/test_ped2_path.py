"""One path from benchmark to user (Ped2): ``seqnrl fit --config configs/ped2.yaml`` writes the
checkpoint, and ``seqnrl score`` on the test folders reproduces, frame for frame, the scores
of the Lightning test loop and of the window scorer the benchmark uses.

Runs on a tiny Ped2-layout folder made here (moving squares), at 48x72, one epoch.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqnrl.data.input_spec import InputSpec
from tests.unit.test_flow_prior import moving_blob


def make_ped2_layout(root: Path) -> Path:
    """training/01-03 (a square at 1 px/frame), testing/01 (at 6 px/frame from frame 12,
    labelled), testing/02 (normal), test_labels.csv."""
    rows = []

    def write(folder: Path, frames) -> None:
        folder.mkdir(parents=True)
        for t, f in enumerate(frames[0].numpy()):
            Image.fromarray((f * 255).round().astype(np.uint8)).save(folder / f"{t:03d}.png")

    for i in range(3):
        write(root / "training" / f"{i + 1:02d}", moving_blob(20, 1.0, seed=i))
    normal, fast = moving_blob(20, 1.0, seed=7), moving_blob(20, 6.0, seed=7)
    mixed = normal.clone()
    mixed[:, 12:] = fast[:, 12:]
    write(root / "testing" / "01", mixed)
    write(root / "testing" / "02", normal)
    rows += [("01", t, int(t >= 12)) for t in range(20)] + [("02", t, 0) for t in range(20)]
    with open(root / "test_labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip", "frame", "anomalous"])
        w.writerows(rows)
    return root


def _run(cmd: list[str], cwd: Path, repo: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{cmd[2:4]} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


@pytest.mark.slow
def test_seqnrl_score_reproduces_the_benchmark_scores(tmp_path, repo_root):
    import pytorch_lightning as pl

    from data_modules.ped2 import Ped2DataModule
    from seqnrl.models.loading import load_model
    from seqnrl.scoring.aggregate import smooth_scores
    from seqnrl.scoring.windows import score_video_tensor

    root = make_ped2_layout(tmp_path / "ped2")
    size = ["--data.init_args.image_size=[48,72]", "--model.init_args.image_size=[48,72]"]
    cli = [sys.executable, "-m", "seqnrl.cli"]
    _run([*cli, "fit", "--config", str(repo_root / "configs" / "ped2.yaml"), f"--data.init_args.root={root}",
          *size, "--data.init_args.n_val_clips=1", "--data.init_args.samples_per_video=2",
          "--model.init_args.width=8", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"],
         tmp_path, repo_root)  # fmt: skip
    ckpt = tmp_path / "runs" / "ped2" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (tmp_path / "runs" / "ped2" / "checkpoints" / "epoch00.ckpt").is_file()
    _run([*cli, "score", str(root / "testing"), "--ckpt", str(ckpt), "--out", "scored", "--no-progress"],
         tmp_path, repo_root)  # fmt: skip

    model = load_model(ckpt).eval()
    assert model.calibrator.fitted
    # post-fit score selection ran inside `seqnrl fit` and its choice is the model's
    sel = model.post_fit
    assert sel is not None and len(sel["rows"]) == 6 and sel["n_pseudo_anomalous_frames"] > 0
    assert {k: model.hparams[k] for k in ("std_floor", "topk")} == sel["chosen"]
    best = max(r["val_pseudo_auroc"] for r in sel["rows"])
    assert next(r for r in sel["rows"] if {k: r[k] for k in sel["chosen"]} == sel["chosen"])["val_pseudo_auroc"] == best
    spec = InputSpec.of(model)  # the windows the checkpoint was trained and is scored with
    dm = Ped2DataModule(root=str(root), image_size=(48, 72), n_val_clips=1, clip_len=spec.clip_len, stride=spec.stride)
    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False).test(
        model, datamodule=dm, verbose=False
    )
    ds = dm.dataset("test")
    sigma = float(model.hparams.smooth_sigma)
    for i, rec in enumerate(ds.records):
        name = rec.video_id.removeprefix("test_")
        with open(tmp_path / "scored" / f"{name}.csv", newline="") as f:
            cli_scores = np.array([float(r["raw"]) for r in csv.DictReader(f)])
        loop = model.last_results[rec.video_id].scores
        lib = smooth_scores(score_video_tensor(model, ds._load(i).frames, dm.clip_len, dm.stride)["score"], sigma)
        assert cli_scores.shape == loop.shape == lib.shape == (20,)
        np.testing.assert_allclose(cli_scores, loop, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(lib, loop, rtol=1e-5, atol=1e-5)
        record = json.loads((tmp_path / "scored" / f"{name}.json").read_text())
        # training fed the model unmasked frames, so scoring does too (no automatic sector mask)
        assert record["preprocessing"]["sector_mask"] == "none"
    # the fast square is what the model flags, one global scale
    s = model.last_results["test_01"].scores
    assert s[13:].mean() > s[:11].mean()
