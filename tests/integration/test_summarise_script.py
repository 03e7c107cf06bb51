"""scripts/summarise_recordings.py end to end on tiny generated recordings."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from seqnrl.data.input_spec import InputSpec
from seqnrl.errors import CheckpointError
from seqnrl.io.video import probe_video, read_video

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "summarise_recordings.py"
FPS = 10


def scene_frames(n: int, seed: int) -> np.ndarray:
    """(T, 64, 64, 3) uint8: grey background, a moving square, a red patch in the middle
    third (a distinct event), never black in the top-left corner."""
    rng = np.random.default_rng(seed)
    out = np.full((n, 64, 64, 3), 110, np.uint8)
    for t in range(n):
        x = 4 + (t * 3) % 40
        out[t, 20:36, x : x + 16] = 230
        if n // 3 <= t < 2 * n // 3:
            out[t, 40:60, 8:40] = (220, 30, 30)
        out[t] = np.clip(out[t].astype(int) + rng.integers(-6, 7, out[t].shape), 20, 255)
    return out


def write_clip(path: Path, frames: np.ndarray, codec: str = "libx264") -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(FPS))
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("in")
    write_clip(d / "alpha.mp4", scene_frames(40, 0))
    write_clip(d / "beta.avi", scene_frames(30, 1), codec="mpeg4")
    (d / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return d


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def check_outputs(folder: Path, budget: float = 0.15) -> dict:
    rec = json.loads((folder / "summary.json").read_text())
    assert rec["status"] == "complete"
    assert rec["feature_source"]["kind"] == "fallback"  # no --ckpt: labelled as fallback
    assert "FALLBACK" in rec["feature_source"]["description"]
    # the summary keeps its budget: whole shots first, then the best part of a shot
    assert rec["summary_frames"] == max(1, int(budget * rec["n_frames"])), (rec["summary_frames"], rec["n_frames"])
    assert rec["n_segments"] == len(rec["segments"]) >= 1
    for seg in rec["segments"]:
        assert 0 <= seg["start_s"] < seg["end_s"] <= rec["duration_s"] + 1e-6
        kf = folder / seg["keyframe"]
        img = np.asarray(Image.open(kf))
        assert img.shape[2] == 3
        assert img[1, 1].max() == 0, "timestamp box drawn into the key frame"
    assert len(list((folder / "keyframes").glob("*.png"))) == rec["n_segments"]
    info = probe_video(folder / "summary.mp4")
    assert info.n_frames == rec["summary_frames"]
    rows = list(csv.DictReader((folder / "scores.csv").open()))
    assert len(rows) == rec["n_frames"]
    assert {"frame", "time_s", "raw", "calibrated", "importance", "selected"} <= set(rows[0])
    assert sum(int(r["selected"]) for r in rows) == rec["summary_frames"]
    assert (folder / "timeline.png").stat().st_size > 1000
    assert (folder / "keyframes.png").stat().st_size > 1000 and rec["files"]["keyframe_sheet"] == "keyframes.png"
    assert not list(folder.glob(".thumbs*")), "the thumbnail spool is removed"
    return rec


def test_script_outputs_errors_resume_and_overwrite(inputs, tmp_path):
    out = tmp_path / "out"
    r = run_script(str(inputs), "--out", str(out), "--no-progress", "--budget", "0.2")
    assert r.returncode == 1, r.stderr[-2000:]
    err_lines = [line for line in r.stderr.splitlines() if line.startswith("ERROR")]
    assert len(err_lines) == 1 and "broken.mp4" in err_lines[0], r.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == {"alpha", "beta", "index.md"}  # no .partial left
    a = check_outputs(out / "alpha", 0.2)
    b = check_outputs(out / "beta", 0.2)
    assert a["n_frames"] == 40 and b["n_frames"] == 30
    index = (out / "index.md").read_text()
    assert "alpha" in index and "beta" in index and "broken.mp4" in index

    # second run: finished recordings are kept, not redone; the bad one still fails
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("*/*") if p.is_file()}
    rc = run_script(str(inputs), "--out", str(out), "--no-progress", "--budget", "0.2").returncode
    assert rc == 1
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp

    # an interrupted recording (stale .partial, no finished folder) is redone on resume
    shutil.rmtree(out / "beta")
    (out / "beta.partial").mkdir()
    (out / "beta.partial" / "junk").write_text("half-written")
    rc = run_script(str(inputs), "--out", str(out), "--no-progress", "--budget", "0.2").returncode
    assert rc == 1
    assert not (out / "beta.partial").exists()
    check_outputs(out / "beta", 0.2)
    assert (out / "alpha" / "summary.json").stat().st_mtime_ns == stamp[out / "alpha" / "summary.json"]

    # --overwrite redoes everything
    old = out / "alpha" / "summary.mp4"
    os.utime(old, ns=(1, 1))
    r = run_script(str(inputs / "alpha.mp4"), "--out", str(out), "--no-progress", "--overwrite", "--budget", "0.2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "alpha" / "summary.mp4").stat().st_mtime_ns > 1
    check_outputs(out / "alpha", 0.2)


def test_frame_conversion_matches_io(inputs):
    """The pipeline's batched conversion gives the pixels seqnrl.io gives the models."""
    from seqnrl.io.video import iter_frames
    from seqnrl.summarise import FrameBatch

    frames = [f for _, f in iter_frames(inputs / "alpha.mp4")][:8]
    fb = FrameBatch(frames, 0)
    for size, grey in ((32, True), ((24, 40), False), (96, True)):
        ref = read_video(inputs / "alpha.mp4", size=size, grayscale=grey).frames[:, :8]
        got = fb.model_input(size, grey)
        assert torch.equal(got.permute(1, 0, 2, 3), ref)


def tiny_checkpoint(path: Path, clip_len: int = 8) -> Path:
    from seqnrl.models.baseline.module import FrameAutoEncoderModel

    torch.manual_seed(0)
    m = FrameAutoEncoderModel(in_channels=1, width=4, depth=2, latent=8)
    m.calibrator.fit(np.linspace(0.0, 0.05, 200))
    spec = {"clip_len": clip_len, "stride": 4, "fps": 5.0, "image_size": 32, "grayscale": True}
    torch.save(
        {
            "state_dict": m.state_dict(),
            "hyper_parameters": dict(m.hparams),
            "seqnrl": {"format_version": 1, "model_class": "seqnrl.models.baseline.module.FrameAutoEncoderModel", "data_spec": spec},
        },
        path,
    )
    return path


def test_checkpoint_features_cover_every_frame(inputs, tmp_path):
    from seqnrl.summarise import SummariseConfig, load_normative_checkpoint, summarise_recording

    model = load_normative_checkpoint(tiny_checkpoint(tmp_path / "m.ckpt"))
    # a format-1 checkpoint (untyped data_spec) is converted on load
    assert InputSpec.of(model) == InputSpec(clip_len=8, stride=4, fps=5.0, image_size=32, channels=1, sector_mask="auto")
    assert model.calibrator.fitted
    cfg = SummariseConfig(policy_steps=5, budget=0.3)
    an, sel, rec = summarise_recording(inputs / "alpha.mp4", tmp_path / "o", cfg, model)
    assert an.fps == 5.0 and an.n_frames == 20  # 4 s at the checkpoint's 5 fps
    assert np.isfinite(an.raw).all() and np.isfinite(an.calibrated).all()
    assert ((an.calibrated >= 0) & (an.calibrated <= 1)).all()
    assert an.features.shape == (20, 8)
    assert not any("colour" in w for w in an.feature_info["warnings"])
    # the same recording with a colour-Doppler-like box: the grey model says so
    frames = read_video(inputs / "alpha.mp4").frames.clone()  # (3, T, H, W) uint8
    frames[0, :, 4:28, 4:28], frames[2, :, 4:28, 4:28] = 250, 10
    write_clip_path = tmp_path / "doppler.mp4"
    from seqnrl.io import write_video

    write_video(write_clip_path, frames, fps=10, lossless=True)
    an2, _, _ = summarise_recording(write_clip_path, tmp_path / "o2", cfg, model)
    assert any("in colour" in w for w in an2.feature_info["warnings"])
    assert rec["feature_source"]["kind"] == "checkpoint"
    assert "calibrator" in rec["feature_source"]["calibration"]


def test_checkpoint_loader_rejects_foreign_classes(tmp_path):
    from seqnrl.summarise import load_normative_checkpoint

    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "seqnrl": {"model_class": "os.system"}}, bad)
    with pytest.raises(CheckpointError, match="outside the seqnrl package"):
        load_normative_checkpoint(bad)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt"):
        load_normative_checkpoint(junk)


def test_output_names_keep_unicode_spaces_and_long_names(tmp_path):
    """A clinician finds their file: the output folder is the input's own name (NFC), with
    only what a file system cannot hold replaced; very long names are cut, not refused."""
    import unicodedata

    d = tmp_path / "in"
    d.mkdir()
    nfd = unicodedata.normalize("NFD", "scan with spaces ülüş 超声")  # as macOS writes it
    long = "Lungenultraschall " + "ä" * 110  # 238 bytes: a legal file name, over MAX_BYTES
    write_clip(d / f"{nfd}.mp4", scene_frames(20, 3))
    write_clip(d / f"{long}.mp4", scene_frames(20, 4))
    out = tmp_path / "out"
    res = run_script(str(d), "--out", str(out), "--no-progress", "--policy-steps", "0")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert "scan with spaces ülüş 超声" in names, names
    cut = next(n for n in names if n.startswith("Lungenultraschall"))
    assert len(cut.encode()) <= 200 and cut.endswith("ä"), cut
    assert "scan with spaces ülüş 超声" in (out / "index.md").read_text()
