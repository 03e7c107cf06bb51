"""`seqnrl fit` / `seqnrl predict` with the spatiotemporal transformer configs (tiny sizes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from seqnrl.cli import build_cli, main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

# tiny data and model: 32x32 frames, 16-frame clips, one block
SMALL = [
    "--data.n_train=2",
    "--data.n_val=2",
    "--data.n_test=2",
    "--data.n_frames=20",
    "--data.image_size=32",
    "--data.batch_size=2",
    "--data.samples_per_video=1",
    "--model.image_size=32",
    "--model.clip_len=16",
    "--model.dim=32",
    "--model.depth=1",
    "--model.heads=2",
    "--model.bank_size=64",
    "--model.bank_clips=4",
]


def experiment_config(tmp_path: Path, model_yaml: str) -> Path:
    """The full experiment config with every output under ``tmp_path`` and absolute paths."""
    cfg = yaml.safe_load((CONFIGS / "st_synthetic_echo.yaml").read_text())
    tr = cfg["trainer"]
    tr["default_root_dir"] = str(tmp_path / "run")
    tr["logger"]["init_args"]["save_dir"] = str(tmp_path / "logs")
    for cb in tr["callbacks"]:
        if cb["class_path"].endswith("ModelCheckpoint"):
            cb["init_args"]["dirpath"] = str(tmp_path / "ckpt")
        if cb["class_path"].endswith("ScoreWriter"):
            cb["init_args"]["output_dir"] = str(tmp_path / "pred")
    cfg["model"] = str(CONFIGS / "model" / model_yaml)
    cfg["data"] = str(CONFIGS / "data" / "synthetic_echo.yaml")
    out = tmp_path / "experiment.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.mark.parametrize(
    "model_yaml",
    ["st_transformer.yaml", "st_transformer_future.yaml", "uvt.yaml", "st_ped2.yaml", "st_ped2_future.yaml"],
)
def test_fit_fast_dev_run(tmp_path, model_yaml):
    cfg = experiment_config(tmp_path, model_yaml)
    cli = build_cli(["fit", "--config", str(cfg), "--trainer.fast_dev_run=true", *SMALL])
    m = cli.model
    assert type(m).__name__ == "STTransformerModel"
    assert int(m.bank_count) > 0  # the memory bank was filled from the training clips


def test_fit_then_predict_scores_every_frame(tmp_path):
    cfg = experiment_config(tmp_path, "uvt.yaml")
    small = [*SMALL, "--model.cnn_depth=2", "--model.cnn_width=8"]
    fit = [
        "fit",
        "--config",
        str(cfg),
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
    ]
    assert main([*fit, *small]) == 0
    ckpt = tmp_path / "ckpt" / "best.ckpt"
    assert ckpt.exists()
    predict = [
        "predict",
        "--config",
        str(cfg),
        "--ckpt_path",
        str(ckpt),
        "--trainer.enable_progress_bar=false",
    ]
    cli = build_cli([*predict, *small])
    out = tmp_path / "pred"
    summary = json.loads((out / "scores_summary.json").read_text())
    assert summary["calibration"]["fitted"] is True
    records = cli.datamodule.records()["predict"]
    assert len(summary["inputs"]) == len(records) == 2
    for rec in records:
        rows = list(csv.DictReader((out / f"{rec.video_id}.csv").open()))
        assert [int(r["frame"]) for r in rows] == list(range(rec.frames.shape[1]))
        for col in ("raw", "calibrated", "recon_err", "embed_dist", "edes", "ef"):
            vals = [float(r[col]) for r in rows]
            assert all(v == v for v in vals), col  # no NaN: every frame scored
        assert all(0.0 <= float(r["calibrated"]) <= 1.0 for r in rows)
