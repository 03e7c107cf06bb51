"""De-identification: PHI tags blanked by deidentify_dataset, and no patient-identifying
value (nor the file name that often carries one) in anything `seqnrl score` writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from seqnrl.data.input_spec import InputSpec
from seqnrl.intake import deid as D
from seqnrl.intake.deid import deidentify_dataset, dicom_pseudonym, hashed_uid
from seqnrl.score import score_main

PHI = {
    "PatientName": "DOE^JANE",
    "PatientID": "PID-123456",
    "PatientBirthDate": "19700101",
    "InstitutionName": "SAINT ELSEWHERE HOSPITAL",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "AccessionNumber": "ACC-987654",
    "StudyDate": "20240229",
    "OperatorsName": "SONO^GRAPHER",
}
#: byte strings that must never appear in an output (long enough not to occur by chance)
NEEDLES = [v.encode() for v in PHI.values()] + [b"DOE_JANE", b"DOE JANE", b"123456"]


def make_untrained_checkpoint(path: Path, clip_len: int = 4, image_size: int = 16, seed: int = 0) -> Path:
    """A loadable seqnrl checkpoint without training (tiny frame auto-encoder, calibrator
    fitted to made-up normal scores): exercises the checkpoint-only pipeline in a second."""
    from seqnrl.models.baseline.module import FrameAutoEncoderModel

    torch.manual_seed(seed)
    model = FrameAutoEncoderModel(in_channels=1, width=4, depth=2, latent=4)
    # "auto": these stand for checkpoints of recordings whose sector the tool must find
    model.input_spec = InputSpec(clip_len=clip_len, image_size=image_size, channels=1, sector_mask="auto")
    model.calibrator.fit(np.random.default_rng(seed).normal(0.08, 0.01, 400))
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def phi_cine(path: Path, n_frames: int = 10, rows: int = 24, cols: int = 32, uid: str | None = None) -> Path:
    """A multi-frame ultrasound DICOM carrying fake patient data in its tags."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid or generate_uid()
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    for k, v in PHI.items():
        setattr(ds, k, v)
    ds.PatientSex = "F"
    ds.PatientAge = "054Y"
    ref = Dataset()
    ref.ReferencedSOPInstanceUID = generate_uid()
    ref.InstitutionName = PHI["InstitutionName"]
    ds.ReferencedImageSequence = [ref]
    ds.add_new(0x00091010, "LO", "PRIVATE PID-123456")
    ds.Rows, ds.Columns = rows, cols
    ds.NumberOfFrames = n_frames
    ds.FrameTime = 40
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 256, (n_frames, rows, cols), dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_deidentify_dataset_leaves_no_phi(tmp_path):
    src = phi_cine(tmp_path / "a.dcm")
    ds = pydicom.dcmread(src)
    old_uid = str(ds.SOPInstanceUID)
    out = deidentify_dataset(ds)
    assert out is ds
    for kw, value in PHI.items():  # replaced (dicognito: consistent fake values) or removed
        assert kw not in ds or str(ds[kw].value) != value, kw
    assert not any(e.tag.is_private for e in ds.iterall())
    assert ds.SOPInstanceUID != old_uid
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.PatientIdentityRemoved == "YES" and "dicognito" in ds.DeidentificationMethod
    ds.save_as(tmp_path / "clean.dcm", enforce_file_format=True)
    data = (tmp_path / "clean.dcm").read_bytes()
    for needle in NEEDLES:
        assert needle not in data, needle
    for seq_item in ds.ReferencedImageSequence:  # nested attributes too
        assert str(seq_item.get("InstitutionName", "")) != PHI["InstitutionName"]
    # still a readable cine with the same pixels
    assert np.array_equal(pydicom.dcmread(tmp_path / "clean.dcm").pixel_array, pydicom.dcmread(src).pixel_array)
    # the same key gives the same result (a series stays consistent)
    again = deidentify_dataset(pydicom.dcmread(src))
    assert again.SOPInstanceUID == ds.SOPInstanceUID and again.PatientName == ds.PatientName


def test_pseudonyms_are_keyed(tmp_path, monkeypatch):
    """Without the site key an output cannot be re-linked to its input: the same UID gives
    other pseudonyms under another key; the key file is created once, private, and reused."""
    uid = "1.2.3.4"
    monkeypatch.delenv(D.KEY_ENV, raising=False)
    monkeypatch.setenv(D.KEY_FILE_ENV, str(tmp_path / "site" / "deid.key"))
    first = hashed_uid(uid)
    key_file = tmp_path / "site" / "deid.key"
    assert key_file.is_file() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert hashed_uid(uid) == first and first != hashed_uid("1.2.3.5")
    assert first.startswith("2.25.") and len(first) <= 64 and pydicom.uid.UID(first).is_valid
    monkeypatch.setenv(D.KEY_FILE_ENV, str(tmp_path / "other" / "deid.key"))
    assert hashed_uid(uid) != first
    monkeypatch.setenv(D.KEY_ENV, "x" * 40)
    assert hashed_uid(uid) not in (first,)
    (tmp_path / "short.key").write_text("abc")
    monkeypatch.delenv(D.KEY_ENV)
    monkeypatch.setenv(D.KEY_FILE_ENV, str(tmp_path / "short.key"))
    with pytest.raises(D.ConfigError, match="too short"):
        hashed_uid(uid)


def test_pseudonym_comes_from_the_uid_not_the_file_name(tmp_path):
    uid = generate_uid()
    a = phi_cine(tmp_path / "DOE_JANE_PID-123456.dcm", uid=uid)
    b = phi_cine(tmp_path / "other" / "IM0001.dcm", uid=uid)
    pa, pb = dicom_pseudonym(a), dicom_pseudonym(b)
    assert pa == pb and pa.startswith("dicom-") and len(pa) == 6 + 16
    assert dicom_pseudonym(phi_cine(tmp_path / "c.dcm")) != pa
    (tmp_path / "broken.dcm").write_bytes(b"not dicom")  # unreadable: hash of the path
    assert dicom_pseudonym(tmp_path / "broken.dcm").startswith("dicom-")


@pytest.mark.timeout(120)
def test_no_phi_in_any_output_of_score(tmp_path, capsys):
    ckpt = make_untrained_checkpoint(tmp_path / "ck" / "m.ckpt")
    study = tmp_path / "DOE^JANE_PID-123456"
    good = phi_cine(study / "DOE_JANE_19700101.dcm")
    # a broken DICOM with PHI in its name: its failure record must not carry it either
    broken = phi_cine(study / "DOE_JANE_PID-123456_still.dcm", n_frames=1)
    out = tmp_path / "out"
    rc = score_main([str(good), str(broken), "--ckpt", str(ckpt), "--out", str(out), "--overlay", "--no-progress"])
    assert rc == 1  # the single-frame DICOM failed
    err = capsys.readouterr().err
    assert "DicomError" in err and "not a multi-frame cine" in err

    files = sorted(p for p in out.rglob("*") if p.is_file())
    names = {p.name for p in files}
    pseudo = dicom_pseudonym(good)
    assert {f"{pseudo}.csv", f"{pseudo}.json", f"{pseudo}.png", f"{pseudo}_overlay.mp4", "scores_summary.json"} <= names
    for p in files:
        data = p.read_bytes()
        rel = os.fsencode(p.relative_to(tmp_path))
        for needle in NEEDLES:
            assert needle not in data, f"{needle!r} found inside {p.name}"
            assert needle not in rel, f"{needle!r} in the output path {rel!r}"
        assert b"DOE" not in rel and b"JANE" not in rel
    record = json.loads((out / f"{pseudo}.json").read_text())
    assert record["source"] == pseudo and record["video_id"] == pseudo
    assert record["n_frames"] == 10
    summary = json.loads((out / "scores_summary.json").read_text())
    sources = {i["source"] for i in summary["inputs"]}
    assert pseudo in sources and dicom_pseudonym(broken) in sources
    failed = [i for i in summary["inputs"] if i["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error_class"] == "DicomError"
    assert str(study) not in json.dumps(summary)
