"""One path from benchmark to user (lung ultrasound): ``seqnrl fit --config configs/lus.yaml``
writes the checkpoint, and ``seqnrl score`` on the clips reproduces, frame for frame, the
scores of the Lightning test loop the leave-patient-out benchmark reads.

Runs on a tiny LUS-layout folder made here (synthetic fans with A-lines; the pathological
clips have B-lines), one epoch, a small network.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from seqnrl.data.input_spec import InputSpec
from tests.integration.test_ped2_path import _run
from tests.unit.test_depth_prior import lung


def make_lus_layout(root: Path) -> Path:
    """videos/*.mp4 + manifest.csv: patients p1, p2 (two normal clips each), p3 (calibration,
    one normal clip) and two pathological clips."""
    from seqnrl.io.write import write_video

    (root / "videos").mkdir(parents=True)
    rows = []
    clips = [("p1", 0, False), ("p1", 1, False), ("p2", 2, False), ("p2", 3, False), ("p3", 4, False),
             ("b1", 5, True), ("b2", 6, True)]  # fmt: skip
    for patient, seed, b_line in clips:
        name = f"{patient}_{seed}.mp4"
        write_video(
            root / "videos" / name, lung(12, seed=seed, b_line=b_line), fps=10.0, lossless=True
        )
        rows.append((name, "covid" if b_line else "normal", patient, "convex"))
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "patient", "probe"])
        w.writerows(rows)
    return root


@pytest.mark.slow
def test_seqnrl_score_reproduces_the_lus_benchmark_scores(tmp_path, repo_root):
    import pytorch_lightning as pl

    from data_modules.lus import LUSDataModule
    from seqnrl.models.loading import load_model

    root = make_lus_layout(tmp_path / "lus")
    cli = [sys.executable, "-m", "seqnrl.cli"]
    _run([*cli, "fit", "--config", str(repo_root / "configs" / "lus.yaml"), f"--data.init_args.root={root}",
          "--data.init_args.val_patients=[p3]", "--data.init_args.image_size=96", "--data.init_args.samples_per_video=2",
          "--model.init_args.view_size=32", "--model.init_args.width=8", "--trainer.max_epochs=1",
          "--trainer.enable_progress_bar=false"], tmp_path, repo_root)  # fmt: skip
    ckpt = tmp_path / "runs" / "lus" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    videos = sorted((root / "videos").glob("b*.mp4"))
    _run(
        [*cli, "score", *map(str, videos), "--ckpt", str(ckpt), "--out", "scored", "--no-progress"],
        tmp_path,
        repo_root,
    )

    model = load_model(ckpt).eval()
    assert model.calibrator.fitted
    spec = InputSpec.of(model)
    assert spec.sector_mask == "none"  # the model cuts its own view; scoring must not mask first
    dm = LUSDataModule(
        root=str(root),
        val_patients=["p3"],
        image_size=96,
        clip_len=spec.clip_len,
        stride=spec.stride,
    )
    pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    ).test(model, datamodule=dm, verbose=False)
    for v in videos:
        with open(tmp_path / "scored" / f"{v.stem}.csv", newline="") as f:
            cli_scores = np.array([float(r["raw"]) for r in csv.DictReader(f)])
        loop = model.last_results[v.stem].scores
        assert cli_scores.shape == loop.shape == (12,)
        np.testing.assert_allclose(cli_scores, loop, rtol=1e-4, atol=1e-4)
        record = json.loads((tmp_path / "scored" / f"{v.stem}.json").read_text())
        assert record["preprocessing"]["sector_mask"] == "none"
