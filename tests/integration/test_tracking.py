"""W&B offline logging through the CLI, read back from the local run files."""

import os
import time

import pytest

from seqnrl.cli import main
from seqnrl.tracking import git_commit, read_wandb_run

pytest.importorskip("wandb")

TINY = [
    "--data.n_train=4", "--data.n_val=4", "--data.n_test=2", "--data.n_frames=24", "--data.clip_len=8",
    "--data.image_size=32", "--model.width=8", "--model.depth=2", "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=1",
]


def test_wandb_offline_run_has_metrics_config_seed_commit_and_checkpoint(tmp_path, repo_root, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(repo_root / "configs/trainer/wandb.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}",
          "--seed_everything=123", *TINY])
    import wandb

    wandb.finish()  # flush the offline run as the process exit would
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # the offline writer flushes the run file asynchronously after finish(): wait for it
    deadline = time.monotonic() + 60
    while True:
        run = read_wandb_run(runs[0])
        keys = set().union(*run["history"])
        if "val/frame_auroc_micro" in keys and run["artifacts"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {"train/loss", "val/loss", "val/frame_auroc_micro"} <= keys
    assert run["config"]["run"]["seed"] == 123
    assert run["config"]["run"]["git_commit"] == git_commit()
    assert run["config"]["run"]["config"]["model"]["class_path"].endswith("FrameAutoEncoderModel")
    assert any(a["type"] == "model" for a in run["artifacts"]), "best checkpoint must be logged as an artefact"
    # media: score-over-time plots and an example clip (wandb.Video) after every validation
    assert {"val/score_timeline/filenames", "val/example_clip/videos"} <= keys
    media = runs[0] / "files" / "media"
    pngs = list((media / "images").rglob("*.png"))
    mp4s = list((media / "videos").rglob("*.mp4"))
    assert len(pngs) >= 2 * 2, "2 validation epochs x 2 timelines"
    assert mp4s and all(p.stat().st_size > 500 for p in mp4s)


def test_media_callback_draws_scores_into_the_clip_and_stays_silent_without_wandb(tmp_path):
    import numpy as np
    import pytorch_lightning as pl
    import torch

    from seqnrl.callbacks.wandb_media import WandbMediaCallback, score_bar_video

    clip = torch.rand(1, 4, 16, 16)
    v = score_bar_video(clip, np.array([0.0, 0.5, 1.0, np.nan]))
    assert v.shape == (3, 4, 18, 16) and v.dtype == torch.uint8
    bar = v[0, :, 16:]  # red channel of the bar
    assert bar[0].sum() == 0 and bar[3].sum() == 0  # score 0 and NaN: no bar
    assert (bar[1, :, :8] == 255).all() and (bar[1, :, 8:] == 0).all()  # half
    assert (bar[2] == 255).all()  # full
    # CSV-only trainer: the callback does nothing (and needs nothing)
    trainer = pl.Trainer(logger=pl.loggers.CSVLogger(tmp_path), enable_progress_bar=False)
    cb = WandbMediaCallback()
    cb._keep(trainer, "val", {"video": torch.rand(1, 1, 4, 8, 8)}, 0)
    assert cb._clip == {}


def test_csv_logger_records_run_metadata(tmp_path):
    main(["fit", *TINY, f"--trainer.default_root_dir={tmp_path}", "--seed_everything=5"])
    hp = list(tmp_path.rglob("hparams.yaml"))
    assert hp, "CSV logger must write hparams.yaml"
    text = hp[0].read_text()
    assert "seed: 5" in text and "git_commit" in text
    assert os.path.exists(hp[0].parent / "metrics.csv")
