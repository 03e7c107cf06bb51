"""`seqnrl` CLI end to end on the embedded default (tiny sizes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqnrl.cli import main

TINY_DATA = [
    "--data.n_train=4", "--data.n_val=4", "--data.n_test=4", "--data.n_frames=24",
    "--data.clip_len=8", "--data.image_size=32", "--data.batch_size=4", "--data.samples_per_video=2",
]
TINY_MODEL = ["--model.width=8", "--model.depth=2", "--model.latent=8"]


def test_fit_fast_dev_run_on_default(tmp_path):
    main(["fit", "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}", *TINY_DATA])


def test_demo_config_parses(repo_root, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(repo_root / "configs" / "demo.yaml"), "--print_config"])
    assert "STTransformerModel" in capsys.readouterr().out  # the demo trains the ST transformer


def test_fit_then_predict_writes_scores_for_every_frame(tmp_path):
    ck, out = tmp_path / "ck", tmp_path / "pred"
    common = [*TINY_DATA, *TINY_MODEL, f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false"]
    main([
        "fit", *common, "--trainer.max_epochs=2",
        "--trainer.callbacks+=ModelCheckpoint", f"--trainer.callbacks.dirpath={ck}",
        "--trainer.callbacks.filename=best", "--trainer.callbacks.monitor=val/loss",
    ])
    ckpt = ck / "best.ckpt"
    assert ckpt.is_file()
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["state_dict"]["calibrator.n_ref"] > 0, "calibration must be fitted on validation and saved"
    assert raw["seqnrl"]["format_version"] == 2 and raw["seqnrl"]["input_spec"]["clip_len"] == 8
    assert "input_spec" not in raw["hyper_parameters"]  # plain types only: loads with weights_only=True
    main([
        "predict", *common, f"--ckpt_path={ckpt}",
        "--trainer.callbacks+=seqnrl.callbacks.score_writer.ScoreWriter", f"--trainer.callbacks.output_dir={out}",
    ])
    summary = json.loads((out / "scores_summary.json").read_text())  # the format of `seqnrl score`
    assert summary["schema"] == "seqnrl.scores_summary/1" and summary["calibration"]["fitted"] is True
    assert len(summary["inputs"]) == 4
    for v in summary["inputs"]:
        csv_name, json_name, png_name = v["files"]
        rows = (out / csv_name).read_text().strip().splitlines()
        assert len(rows) == 1 + 24  # header + every frame
        assert rows[0].startswith("frame,time_s,raw,calibrated,z,p_value")
        assert (out / png_name).stat().st_size > 1000
        assert json.loads((out / json_name).read_text())["schema"] == "seqnrl.frame_scores/1"
    assert summary["metrics"]["frame_auroc_micro"] is not None


@pytest.mark.ddp
def test_ddp_two_processes_on_cpu(tmp_path, repo_root):
    """Two-process DDP (gloo) fit on CPU completes and writes one checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "seqnrl.cli", "fit", *TINY_DATA, *TINY_MODEL,
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert list(Path(tmp_path).rglob("*.ckpt")), "rank 0 must save a checkpoint"


def test_console_script_exit_code_is_zero_on_success(tmp_path):
    import shutil

    exe = shutil.which("seqnrl") or str(Path(sys.executable).parent / "seqnrl")
    r = subprocess.run([exe, "fit", "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}", *TINY_DATA],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def test_top_level_help_answers_without_loading_torch():
    """``seqnrl --help`` prints the subcommands without importing torch or Lightning (the
    9-s wait a user saw); a subcommand's own --help still goes through LightningCLI."""
    import subprocess
    import sys

    code = ("import sys; from seqnrl.cli import main; rc = main(['--help']); "
            "heavy = [m for m in ('torch', 'pytorch_lightning') if m in sys.modules]; "
            "assert rc == 0 and not heavy, heavy")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "fit" in res.stdout and "score" in res.stdout
