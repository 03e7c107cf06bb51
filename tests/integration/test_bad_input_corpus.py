"""The bad-input corpus (scripts/make_bad_inputs.py): each kind gives its documented clear
error (class + file name) or is processed as documented; a batch over the whole corpus
reports every bad file and still scores the good ones."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from seqnrl import errors
from seqnrl.data.keypoints import check_keypoints
from seqnrl.data.manifest import read_manifest
from seqnrl.intake.bad_inputs import VFR_TIMES_MS, Kind, load_corpus, make_corpus, markdown_table
from seqnrl.intake.deid import dicom_pseudonym
from seqnrl.io import probe_video, read_video
from seqnrl.io.bvh import read_bvh
from seqnrl.score import display_path, score_main
from tests.unit.test_deid import make_untrained_checkpoint

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[tuple[Kind, Path]]]:
    root = tmp_path_factory.mktemp("bad") / "corpus"
    make_corpus(root)
    return root, load_corpus(root)


def read_with(kind: Kind, path: Path):
    if kind.reader == "video":
        probe_video(path)
        return read_video(path)
    if kind.reader == "bvh":
        return read_bvh(path)
    if kind.reader == "keypoints":
        return check_keypoints(np.load(path), source=str(path))
    if kind.reader == "manifest":
        return read_manifest(path)
    raise AssertionError(kind.reader)


def test_corpus_has_every_kind(corpus):
    root, entries = corpus
    names = {k.kind for k, _ in entries}
    assert len(entries) >= 16
    for must in ("zero_byte", "truncated_mp4", "header_only", "audio_only", "image_renamed", "unknown_codec",
                 "one_frame", "vfr", "frames_16bit", "frames_rgba", "dicom_single_frame", "dicom_compressed",
                 "bvh_missing_channel", "keypoints_all_nan", "manifest_dotdot", "manifest_missing_columns",
                 "non_utf8_name"):
        assert must in names
    for _, path in entries:
        assert os.path.lexists(path), path


def test_each_kind_gives_its_documented_result(corpus):
    root, entries = corpus
    for kind, path in entries:
        if kind.expect == "error":
            with pytest.raises(errors.SeqNRLError) as err:
                read_with(kind, path)
            e = err.value
            assert type(e).__name__ == kind.error_class, (kind.kind, type(e).__name__, str(e))
            assert path.name in str(e), (kind.kind, str(e))
            assert any(frag in str(e) for frag in kind.message.split("|")), (kind.kind, str(e))
        else:
            assert read_with(kind, path) is not None, kind.kind


def test_partially_missing_keypoints_are_masked(corpus):
    root, entries = corpus
    path = dict((k.kind, p) for k, p in entries)["keypoints_partial_nan"]
    kp = np.load(path)
    mask = check_keypoints(kp, source=str(path))
    assert np.array_equal(mask, np.isfinite(kp).all(-1))
    assert not mask[2, 1] and not mask[5].any() and mask.sum() == 8 * 5 - 1 - 5


def test_variable_frame_rate_is_resampled_by_timestamp(corpus):
    root, entries = corpus
    path = dict((k.kind, p) for k, p in entries)["vfr"]
    native = read_video(path)
    assert np.allclose(native.timestamps.numpy(), np.array(VFR_TIMES_MS) / 1000)
    clip = read_video(path, fps=10)
    # span = last timestamp + one nominal frame (0.62 + 0.04 s) -> 6 frames at 10 fps
    assert np.allclose(clip.timestamps.numpy(), np.arange(6) / 10)
    # frame k shows the latest source frame at or before k / 10 s (pixel value 20 * index)
    assert clip.frames[0, :, 0, 0].tolist() == [0, 40, 60, 100, 100, 120]


def test_batch_over_the_corpus_reports_each_bad_file_and_scores_the_good(corpus, tmp_path, capsys):
    from seqnrl.data.synthetic_echo import make_echo
    from seqnrl.io import write_video

    root, entries = corpus
    good = write_video(tmp_path / "good.mp4", make_echo(seed=3, n_frames=16, size=32).video, 25)
    ckpt = make_untrained_checkpoint(tmp_path / "m.ckpt")
    bvh = dict((k.kind, p) for k, p in entries)["bvh_missing_channel"]
    out = tmp_path / "out"
    # the corpus folder (expanded: non-media entries ignored), the good video, and a non-video
    # file given explicitly (it must be reported, not crash the batch)
    rc = score_main([str(root), str(good), str(bvh), "--ckpt", str(ckpt), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    summary = json.loads((out / "scores_summary.json").read_text())
    by_source = {i["source"]: i for i in summary["inputs"]}
    assert by_source[display_path(good)]["status"] == "scored"
    assert (out / "good.csv").is_file()

    video_kinds = [(k, p) for k, p in entries if k.reader == "video"]
    failed = {i["error_class"] for i in summary["inputs"] if i["status"] == "failed"}
    assert failed <= {"VideoReadError", "DicomError"}
    n_failed = 0
    for kind, path in video_kinds:
        source = dicom_pseudonym(path) if path.suffix == ".dcm" else display_path(path)
        recs = [i for i in summary["inputs"] if i["source"] == source]
        assert recs, kind.kind
        rec = recs[0]
        if kind.expect == "error":
            n_failed += 1
            assert rec["status"] == "failed" and rec["error_class"] == kind.error_class, (kind.kind, rec)
            line = [ln for ln in err.splitlines() if ln.startswith("ERROR") and display_path(path) in ln]
            assert len(line) == 1, (kind.kind, err)
            assert kind.error_class in line[0]
        else:
            assert rec["status"] == "scored", (kind.kind, rec)
            rows = (out / f"{rec['name']}.csv").read_text().strip().splitlines()
            assert len(rows) - 1 == rec["n_frames"] >= 1
            if kind.expect == "warn":
                assert any(kind.message in w for w in rec["warnings"]), (kind.kind, rec["warnings"])
                assert any(ln.startswith("WARNING") and kind.message in ln for ln in err.splitlines())
    # the non-video file given explicitly is one more failure
    assert by_source[display_path(bvh)]["status"] == "failed"
    assert summary["counts"]["failed"] == n_failed + 1
    non_video = sum(1 for k, _ in entries if k.reader != "video")
    # corpus.json + the non-video kinds (the two manifests live in sub-folders)
    assert summary["counts"]["ignored_entries"] == non_video + 1
    assert rc == 1 and "Traceback" not in err


def test_docs_table_lists_every_kind(corpus):
    root, entries = corpus
    doc = (REPO / "docs" / "bad_inputs.md").read_text()
    for kind, _ in entries:
        assert f"| {kind.kind} |" in doc, f"docs/bad_inputs.md lacks {kind.kind}"
    assert markdown_table([k for k, _ in entries]).count("\n") == len(entries) + 1


def test_summariser_batch_over_the_corpus_reports_each_bad_file_and_goes_on(corpus, tmp_path, capsys):
    """The same corpus through the summariser in one batch (fallback features): every bad
    video is a failure with its reason, the good ones are summarised, nothing crashes."""
    from seqnrl.data.synthetic_echo import make_echo
    from seqnrl.io import write_video
    from seqnrl.summarise import SummariseConfig, summarise_batch

    root, entries = corpus
    good = write_video(tmp_path / "good clip ü.mp4", make_echo(seed=4, n_frames=40, size=32).video, 25)
    out = tmp_path / "summaries"
    report = summarise_batch([root, good], out, SummariseConfig(policy_steps=0), progress=False)
    err = capsys.readouterr().err
    failed = {str(p) for p, _ in report.failed}
    done = {r["folder"] for r in report.done}
    assert "good clip ü" in done and (out / "good clip ü" / "summary.mp4").is_file()
    for kind, path in entries:
        if kind.reader != "video":
            continue
        if kind.expect == "error":
            assert str(path) in failed, (kind.kind, failed)
            assert any(ln.startswith("ERROR") and path.name in ln for ln in err.splitlines()), kind.kind
        else:
            assert str(path) not in failed, (kind.kind, report.failed)
    assert "Traceback" not in err
    assert (out / "index.md").is_file()
