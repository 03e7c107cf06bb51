"""``make demo`` end to end at a tiny size: fit -> predict -> scripts/demo.py.

The same three commands as the Makefile, with ``configs/demo.yaml`` and overrides that
shrink data and model, run in a temporary folder (the config's relative ``runs/`` and
``outputs/`` land there). Checks the report and the files the demo tells a user to open,
and that the run is quiet (no third-party deprecation or advertising lines).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

TINY = [
    "--data.init_args.n_train=4", "--data.init_args.n_val=4", "--data.init_args.n_test=4",
    "--data.init_args.n_frames=24", "--data.init_args.clip_len=8", "--data.init_args.image_size=32",
    "--data.init_args.samples_per_video=2", "--model.init_args.image_size=32", "--model.init_args.clip_len=8",
    "--model.init_args.dim=16", "--model.init_args.depth=1", "--model.init_args.heads=2",
    "--model.init_args.decoder_dim=16", "--model.init_args.bank_size=64", "--model.init_args.bank_clips=8",
    "--model.init_args.eval_masks=2", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
]  # fmt: skip


def _run(cmd: list[str], cwd: Path, repo: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    env.pop("SEQNRL_VERBOSE", None)
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{cmd[:4]} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_demo_runs_end_to_end_at_a_tiny_size(tmp_path, repo_root):
    cfg = str(repo_root / "configs" / "demo.yaml")
    cli = [sys.executable, "-m", "seqnrl.cli"]
    fit = _run([*cli, "fit", "--config", cfg, *TINY], tmp_path, repo_root)
    ckpt = tmp_path / "runs" / "demo" / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    pred = _run([*cli, "predict", "--config", cfg, *TINY, "--ckpt_path", str(ckpt)], tmp_path, repo_root)
    for out in (fit, pred):
        text = out.stdout + out.stderr
        assert "LeafSpec" not in text and "litlogger" not in text, "third-party noise reached the user"
    lus = SHARED_DATA / "lus" / "videos" / "Pneu_prospective_file3.mp4"
    extra = ["--lus-clip", str(lus)] if lus.is_file() else ["--no-lus"]
    demo = _run([sys.executable, str(repo_root / "scripts" / "demo.py"), *extra], tmp_path, repo_root)
    assert "frame AUROC" in demo.stdout and "open these files:" in demo.stdout
    report = json.loads((tmp_path / "outputs" / "demo" / "demo_report.json").read_text())
    sc = report["scores"]
    assert sc["n_recordings"] == 4 and 0.0 <= sc["frame_auroc"] <= 1.0
    assert 0.0 <= sc["fpr_on_normal_recordings"] <= 1.0
    syn = report["synthetic_recording"]
    # the summary keeps its budget (15 % of 10 s, at the 30-fps analysis rate)
    assert abs(syn["summary"]["summary_s"] - 1.5) < 0.1, syn
    assert (tmp_path / "outputs" / "demo" / "summaries" / "synthetic_echo_dropout" / "summary.mp4").is_file()
    if lus.is_file():
        assert report["lus_clip"]["summary"]["duration_s"] > 0
        assert (tmp_path / "outputs" / "demo" / "summaries" / lus.stem / "timeline.png").is_file()
    for line in demo.stdout.split("open these files:")[1].split():
        assert (tmp_path / line).exists(), line
    # the checkpoint knows what its normal inputs looked like: scoring held-out synthetic echo
    # gives no out-of-distribution warning, a lung-ultrasound clip does
    rec = tmp_path / "outputs" / "demo" / "recordings" / "synthetic_echo_dropout.mp4"
    inputs = [str(rec), *([str(lus)] if lus.is_file() else [])]
    _run([*cli, "score", *inputs, "--ckpt", str(ckpt), "--out", "scored", "--no-progress"], tmp_path, repo_root)
    summary = json.loads((tmp_path / "scored" / "scores_summary.json").read_text())
    ood = {i["name"]: i["out_of_distribution"] for i in summary["inputs"]}
    assert ood["synthetic_echo_dropout"] is False, summary["inputs"]
    if lus.is_file():
        assert ood[lus.stem] is True, summary["inputs"]
