"""One inference path: the same clips scored through every consumer give the same per-frame
scores — the Lightning test loop, Lightning predict + ScoreWriter, ``seqnrl score`` (a child
process, from the checkpoint alone), the summariser's checkpoint features and the library's
``score_clip``. The model is fitted by ``seqnrl fit`` on a folder of videos, so its input
spec travels from the data module through the checkpoint."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqnrl.data.input_spec import InputSpec
from seqnrl.io import write_video


def _clip(seed: int, n: int, anomalous: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 1, 32, 32, generator=g) * 0.5
    t = torch.arange(n).float().view(1, n, 1, 1)
    wave = 0.2 * torch.sin(t / 3.0 + torch.arange(32).float().view(1, 1, 1, 32) / 5.0)
    v = (base + wave + 0.25).clamp(0, 1)
    if anomalous:
        v[:, n // 2 :, 8:20, 8:20] = 1.0
    return v


def _layout(root: Path) -> dict[str, Path]:
    files = {}
    for split, items in {
        "train/normal": [("t0", 0, 24), ("t1", 1, 24), ("t2", 2, 24)],
        "val/normal": [("v0", 3, 20)],
        "test/normal": [("n0", 4, 19)],
        "test/abnormal": [("a0", 5, 21)],
    }.items():
        (root / split).mkdir(parents=True)
        for name, seed, n in items:
            files[name] = write_video(root / split / f"{name}.mp4", _clip(seed, n, "abnormal" in split), fps=10,
                                      lossless=True)  # fmt: skip
    return files


def _csv_raw(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        return np.array([float(r["raw"]) for r in csv.DictReader(f)])


@pytest.mark.slow
def test_every_consumer_gives_the_same_frame_scores(tmp_path, repo_root):
    import pytorch_lightning as pl

    from data_modules.folder import FolderVideoDataModule
    from seqnrl.callbacks.score_writer import ScoreWriter
    from seqnrl.models.loading import load_model
    from seqnrl.scoring.windows import score_clip
    from seqnrl.summarise import NormativeFeatures, analyse_recording

    root = tmp_path / "videos"
    files = _layout(root)
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    data = ["--data=data_modules.folder.FolderVideoDataModule", f"--data.root={root}", "--data.clip_len=8",
            "--data.stride=3", "--data.fps=10", "--data.image_size=32", "--data.batch_size=4",
            "--data.samples_per_video=2"]  # fmt: skip
    ck = tmp_path / "ck"
    fit = [sys.executable, "-m", "seqnrl.cli", "fit", *data, "--model.width=4", "--model.depth=2",
           "--model.latent=4", "--model.smooth_sigma=1.0", "--trainer.max_epochs=1", "--trainer.logger=false",
           "--trainer.enable_progress_bar=false", "--trainer.callbacks+=ModelCheckpoint",
           f"--trainer.callbacks.dirpath={ck}", "--trainer.callbacks.filename=m"]  # fmt: skip
    res = subprocess.run(fit, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = ck / "m.ckpt"
    model = load_model(ckpt).eval()
    spec = InputSpec.of(model)
    assert spec == InputSpec(clip_len=8, stride=3, fps=10.0, image_size=32, channels=1)
    assert model.calibrator.fitted

    # 1. the Lightning test loop and 2. predict + ScoreWriter, on the data module
    dm = FolderVideoDataModule(root=str(root), clip_len=8, stride=3, fps=10, image_size=32, batch_size=4)
    kw = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    pl.Trainer(**kw).test(model, datamodule=dm, verbose=False)
    loop = {k: v.scores for k, v in model.last_results.items()}
    pred = tmp_path / "pred"
    pl.Trainer(**kw, callbacks=[ScoreWriter(pred)]).predict(model, datamodule=dm, return_predictions=False)
    # 3. seqnrl score from the checkpoint alone
    scored = tmp_path / "scored"
    cmd = [sys.executable, "-m", "seqnrl.cli", "score", str(files["n0"]), str(files["a0"]), "--ckpt", str(ckpt),
           "--out", str(scored), "--no-progress"]  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]

    ds = dm.dataset("test")
    assert sorted(r.video_id for r in ds.records) == sorted(loop)
    for i, rec in enumerate(ds.records):
        name = Path(rec.source).stem
        ref = loop[rec.video_id]
        assert np.isfinite(ref).all() and len(ref) == ds.n_frames(i)
        # 4. the library's scorer on the clip in memory; 5. the summariser's checkpoint features
        lib = score_clip(model, ds.video(i).frames).raw
        an = analyse_recording(files[name], NormativeFeatures(model, fps=2.0))
        for other, what in ((_csv_raw(pred / f"{rec.video_id}.csv"), "predict + ScoreWriter"),
                            (_csv_raw(scored / f"{name}.csv"), "seqnrl score"),
                            (lib, "score_clip"), (an.raw, "summariser")):  # fmt: skip
            assert other.shape == ref.shape, what
            np.testing.assert_allclose(other, ref, rtol=1e-4, atol=1e-5, err_msg=what)
    # the abnormal clip's square is what the scores see, on one global scale
    a = next(k for k in loop if "a0" in k)
    assert loop[a][-5:].mean() > loop[a][:5].mean()
