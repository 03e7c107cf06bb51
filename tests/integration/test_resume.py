"""A fit killed with SIGKILL resumes from its last checkpoint and ends where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys

import torch

TINY = [
    "--data.n_train=4", "--data.n_val=2", "--data.n_test=2", "--data.n_frames=24", "--data.clip_len=8",
    "--data.image_size=32", "--data.batch_size=4", "--model.width=8", "--model.depth=2", "--model.latent=8",
    "--trainer.max_epochs=4", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
    "--trainer.enable_model_summary=false", "--seed_everything=11",
]


def _fit(tmp, ck, repo, extra=(), ckpt_path=None):
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "seqnrl.cli", "fit", *TINY,
           "--trainer.callbacks+=ModelCheckpoint", f"--trainer.callbacks.dirpath={ck}", "--trainer.callbacks.save_last=true",
           *extra]
    if ckpt_path:
        cmd.append(f"--ckpt_path={ckpt_path}")
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, repo_root):
    full = _fit(tmp_path, tmp_path / "full", repo_root)
    assert full.returncode == 0, full.stderr[-2000:]
    killed = _fit(tmp_path, tmp_path / "resumed", repo_root,
                  extra=["--trainer.callbacks+=tests.integration.killer.KillAtEpoch", "--trainer.callbacks.epoch=2"])
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=True)["epoch"] == 1
    resumed = _fit(tmp_path, tmp_path / "resumed", repo_root, ckpt_path="last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "full" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-4, atol=1e-5, msg=f"weights differ at {k}")
