"""`seqnrl score`: checkpoint-only scoring end to end (tiny sizes, CPU)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seqnrl.cli import main
from seqnrl.intake.sector import apply_mask, load_mask_png, save_mask_png
from seqnrl.io import read_video, write_video
from tests.unit.test_deid import make_untrained_checkpoint
from tests.unit.test_sector import add_overlays, fan_clip

pytestmark = pytest.mark.timeout(180)

TINY_FIT = [
    "fit",
    "--data.n_train=4", "--data.n_val=4", "--data.n_test=2", "--data.n_frames=24",
    "--data.clip_len=8", "--data.image_size=32", "--data.batch_size=4", "--data.samples_per_video=2",
    "--model.width=8", "--model.depth=2", "--model.latent=8",
    "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
    "--trainer.enable_model_summary=false",
]


@pytest.fixture(scope="module")
def fitted_ckpt(tmp_path_factory) -> Path:
    """Fit the baseline on synthetic echo through the CLI, then delete every config file:
    scoring must need nothing but the checkpoint."""
    root = tmp_path_factory.mktemp("fit")
    main([*TINY_FIT, f"--trainer.default_root_dir={root}", "--trainer.callbacks+=ModelCheckpoint",
          f"--trainer.callbacks.dirpath={root / 'ck'}", "--trainer.callbacks.filename=tiny"])
    ckpt = root / "ck" / "tiny.ckpt"
    assert ckpt.is_file()
    for cfg in root.rglob("*.yaml"):
        cfg.unlink()
    return ckpt


@pytest.fixture(scope="module")
def untrained_ckpt(tmp_path_factory) -> Path:
    return make_untrained_checkpoint(tmp_path_factory.mktemp("ck") / "untrained.ckpt")


def unseen_echo(path: Path, seed: int = 12345, n: int = 30, size: int = 48) -> Path:
    """A synthetic echo the model never saw (other seed, other size than training)."""
    from seqnrl.data.synthetic_echo import make_echo

    return write_video(path, make_echo(seed=seed, n_frames=n, size=size, fps=30).video, 30, lossless=True)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_checkpoint_only_scoring_of_an_unseen_video(fitted_ckpt, tmp_path, monkeypatch, capsys):
    video = unseen_echo(tmp_path / "unseen.mp4")
    other = unseen_echo(tmp_path / "other.mp4", seed=777, n=20)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no config can be picked up from the working directory
    out = tmp_path / "out"
    rc = main(["score", str(video), "--ckpt", str(fitted_ckpt), "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err

    record = json.loads((out / "unseen.json").read_text())
    raw_ckpt = torch.load(fitted_ckpt, map_location="cpu", weights_only=True)
    thr_raw = float(raw_ckpt["state_dict"]["calibrator.threshold"])
    fpr = float(raw_ckpt["state_dict"]["calibrator.target_fpr"])
    rows = read_rows(out / "unseen.csv")
    n_decoded = read_video(video).n_frames  # the checkpoint has no fps: native rate
    assert len(rows) == n_decoded == 30
    assert [int(r["frame"]) for r in rows] == list(range(30))
    raw = np.array([float(r["raw"]) for r in rows])
    cal = np.array([float(r["calibrated"]) for r in rows])
    flag = np.array([float(r["above_threshold"]) for r in rows])
    assert np.isfinite(raw).all() and ((cal >= 0) & (cal <= 1)).all()
    assert np.array_equal(flag == 1, raw > thr_raw), "flag must be raw > the checkpoint's threshold"
    assert (cal[flag == 1] >= 1 - fpr - 1e-6).all() and (cal[flag == 0] <= 1 - fpr + 1e-6).all()
    assert np.allclose([float(r["time_s"]) for r in rows], np.arange(30) / 30, atol=1e-6)
    # raw = the model's own score of each frame (the baseline scores frames independently,
    # so one window over the whole video gives the same values as overlapping windows)
    from seqnrl import batch as B
    from seqnrl.models.loading import load_model

    model = load_model(fitted_ckpt)
    frames = read_video(video, size=32, grayscale=True).frames
    if record["mask"]["active"]:  # the auto-detected sector, as the pipeline applied it
        frames = apply_mask(frames, load_mask_png(out / "unseen_mask.png"))
    with torch.no_grad():
        direct = model.score_frames(B.collate([B.make_sample(frames, video_id="v")]))[0].numpy()
    assert np.allclose(raw, direct, rtol=1e-4, atol=1e-7)
    # calibrated = the checkpoint's normal-validation ECDF of the raw score (no per-video
    # min-max or z normalisation, which would not match it)
    q = raw_ckpt["state_dict"]["calibrator.quantiles"].double().numpy()
    assert np.allclose(cal, np.interp(raw, q, np.linspace(0, 1, len(q))), atol=1e-4)

    assert record["checkpoint_calibration"]["threshold_raw"] == pytest.approx(thr_raw)
    assert record["preprocessing"]["clip_len"] == 8 and record["preprocessing"]["image_size"] == [32, 32]
    assert (out / "unseen.png").stat().st_size > 1000
    summary = json.loads((out / "scores_summary.json").read_text())
    assert summary["counts"] == {"scored": 1, "kept": 0, "failed": 0, "ignored_entries": 0}
    assert "no per-video normalisation" in summary["normalisation"]

    # global calibration: a video's scores do not depend on what else is scored with it
    out2 = tmp_path / "out2"
    assert main(["score", str(other), str(video), "--ckpt", str(fitted_ckpt), "--out", str(out2), "--no-progress"]) == 0
    assert read_rows(out2 / "unseen.csv") == rows


def test_burnt_in_text_is_masked_and_overlay_is_drawn(untrained_ckpt, tmp_path):
    frames, fan = fan_clip(n=20, h=96, w=128)
    overlays = add_overlays(frames, fan)
    video = write_video(tmp_path / "fan_with_text.mp4", torch.from_numpy(frames)[None], 20, lossless=True)
    out = tmp_path / "out"
    assert main(["score", str(video), "--ckpt", str(untrained_ckpt), "--out", str(out), "--overlay", "--no-progress"]) == 0
    record = json.loads((out / "fan_with_text.json").read_text())
    assert record["mask"]["method"] == "auto" and record["mask"]["active"]
    mask = np.asarray(Image.open(out / "fan_with_text_mask.png")) > 127
    for px in overlays.values():
        assert not (mask & px).any()
    ov = read_video(out / "fan_with_text_overlay.mp4")
    assert ov.n_frames == record["n_frames"] == 20
    assert ov.frames.shape[-1] == 128 and ov.frames.shape[-2] > 96  # frame + score panel
    img = ov.frames[:, :, :96].float()  # (3, T, 96, 128) the video part
    text = torch.from_numpy(overlays["text"] | overlays["logo"])
    assert float(img[:, :, text].mean()) < 12, "burnt-in text visible in the overlay"
    assert float(img[:, :, torch.from_numpy(fan & mask)].mean()) > 30
    # the score panel differs between frames (moving cursor)
    assert not torch.equal(ov.frames[:, 0, 96:], ov.frames[:, -1, 96:])

    # --mask none keeps the text; a mask file is used as given
    out_none = tmp_path / "out_none"
    assert main(["score", str(video), "--ckpt", str(untrained_ckpt), "--out", str(out_none), "--mask", "none", "--no-progress"]) == 0
    assert json.loads((out_none / "fan_with_text.json").read_text())["mask"]["method"] == "none"
    custom = save_mask_png(tmp_path / "my_mask.png", fan)
    out_file = tmp_path / "out_file"
    assert main(["score", str(video), "--ckpt", str(untrained_ckpt), "--out", str(out_file), "--mask", str(custom), "--no-progress"]) == 0
    assert json.loads((out_file / "fan_with_text.json").read_text())["mask"]["method"] == "file"


def test_folder_with_dotfiles_readme_and_a_frame_folder(untrained_ckpt, tmp_path, capsys):
    data = tmp_path / "recordings"
    data.mkdir()
    unseen_echo(data / "a.mp4", seed=1, n=12, size=32)
    unseen_echo(data / "b.avi", seed=2, n=10, size=32)
    frames = data / "c_frames"
    frames.mkdir()
    for i in range(9):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (24, 24), dtype=np.uint8)).save(frames / f"{i}.png")
    (frames / ".DS_Store").write_bytes(b"\0\1junk")
    (data / ".DS_Store").write_bytes(b"\0\1junk")
    (data / "._a.mp4").write_bytes(b"AppleDouble junk")  # hidden media-looking file
    (data / "README.txt").write_text("recordings of the day\n")
    (data / "notes.csv").write_text("a,b\n")
    out = tmp_path / "out"
    rc = main(["score", str(data), "--ckpt", str(untrained_ckpt), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "ERROR" not in err and "ignored 4 hidden or non-media entries" in err
    summary = json.loads((out / "scores_summary.json").read_text())
    assert summary["counts"] == {"scored": 3, "kept": 0, "failed": 0, "ignored_entries": 4}
    n = {i["name"]: i["n_frames"] for i in summary["inputs"]}
    assert n == {"a": 12, "b": 10, "c_frames": 9}


def test_existing_outputs_are_kept_unless_overwrite(untrained_ckpt, tmp_path, capsys):
    video = unseen_echo(tmp_path / "v.mp4", n=12, size=32)
    out = tmp_path / "out"
    args = ["score", str(video), "--ckpt", str(untrained_ckpt), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    stamp = (out / "v.csv").stat().st_mtime_ns
    os.utime(out / "v.csv", ns=(stamp - 10**9, stamp - 10**9))
    capsys.readouterr()
    assert main(args) == 0
    assert "SKIP" in capsys.readouterr().err
    assert (out / "v.csv").stat().st_mtime_ns == stamp - 10**9
    assert json.loads((out / "scores_summary.json").read_text())["counts"]["kept"] == 1
    assert main([*args, "--overwrite"]) == 0
    assert (out / "v.csv").stat().st_mtime_ns > stamp - 10**9


def test_unusable_checkpoint_and_arguments_exit_2(tmp_path, capsys):
    video = unseen_echo(tmp_path / "v.mp4", n=8, size=32)
    bad = tmp_path / "garbage.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["score", str(video), "--ckpt", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "garbage.ckpt" in err and "CheckpointError" in err
    good = make_untrained_checkpoint(tmp_path / "m.ckpt")
    assert main(["score", str(video), "--ckpt", str(good), "--mask", str(tmp_path / "nope.png")]) == 2
    assert "--mask" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["score", str(video)])  # --ckpt is required


def test_missing_input_fails_alone(untrained_ckpt, tmp_path, capsys):
    video = unseen_echo(tmp_path / "v.mp4", n=8, size=32)
    out = tmp_path / "out"
    rc = main(["score", str(tmp_path / "gone.mp4"), str(video), "--ckpt", str(untrained_ckpt), "--out", str(out), "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "ERROR" in err and "gone.mp4" in err and "no such file" in err
    assert (out / "v.csv").is_file()


def test_run_summary_is_merged_with_earlier_runs(untrained_ckpt, tmp_path, capsys):
    """A second run on other inputs into the same folder adds to scores_summary.json; the
    first run's records stay (marked as from an earlier run), and each run is listed."""
    a = unseen_echo(tmp_path / "a.mp4", seed=1, n=10, size=32)
    b = unseen_echo(tmp_path / "b.mp4", seed=2, n=10, size=32)
    out = tmp_path / "out"
    common = ["--ckpt", str(untrained_ckpt), "--out", str(out), "--no-progress"]
    assert main(["score", str(a), *common]) == 0
    assert main(["score", str(b), *common]) == 0
    summary = json.loads((out / "scores_summary.json").read_text())
    by_name = {i["name"]: i for i in summary["inputs"]}
    assert set(by_name) == {"a", "b"}
    assert by_name["a"].get("from_earlier_run") is True and "from_earlier_run" not in by_name["b"]
    assert [r["counts"]["scored"] for r in summary["runs"]] == [1, 1]
    # an unreadable summary is moved aside, not overwritten
    (out / "scores_summary.json").write_text("{broken")
    assert main(["score", str(b), *common, "--overwrite"]) == 0
    assert list(out.glob("scores_summary.json.unreadable-*"))
    assert json.loads((out / "scores_summary.json").read_text())["runs"][0]["counts"]["scored"] == 1
    capsys.readouterr()


def test_colour_recording_on_a_grey_model_is_flagged(untrained_ckpt, tmp_path, capsys):
    """A colour-Doppler-like box on a grey model: warned per input and in the JSON; the same
    recording in grey is not."""
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(1, 12, 32, 32, generator=g).expand(3, 12, 32, 32).clone()
    colour = grey.clone()
    colour[0, :, 8:20, 8:20], colour[2, :, 8:20, 8:20] = 1.0, 0.0  # a red box, 14 % of the frame
    data = tmp_path / "in"
    data.mkdir()
    write_video(data / "grey.mp4", grey, fps=10, lossless=True)
    write_video(data / "doppler.mp4", colour, fps=10, lossless=True)
    out = tmp_path / "out"
    assert main(["score", str(data), "--ckpt", str(untrained_ckpt), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    rec = {n: json.loads((out / f"{n}.json").read_text()) for n in ("grey", "doppler")}
    assert any("in colour" in w for w in rec["doppler"]["warnings"]) and rec["doppler"]["out_of_distribution"]
    assert not any("colour" in w for w in rec["grey"]["warnings"])
    assert "doppler.mp4" in err and "in colour" in err
