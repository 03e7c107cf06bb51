"""The one input-discovery rule: the same folder means the same recordings to seqnrl score,
the summariser, the dataset summary and the folder data module."""

from __future__ import annotations

import shutil

import numpy as np
import torch
from PIL import Image

from seqnrl.io import write_video
from seqnrl.io.discovery import is_frame_folder, is_media_file, list_media, walk_media


def _folder(root):
    root.mkdir()
    clip = torch.rand(1, 4, 16, 16)
    write_video(root / "b.mp4", clip, fps=5)
    shutil.copy(root / "b.mp4", root / "c.wmv")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "a.gif")
    # a DICOM file without suffix (recognised by its preamble)
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundMultiFrameImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.NumberOfFrames = "US", 4, 4, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = np.zeros((2, 4, 4), np.uint8).tobytes()
    ds.save_as(root / "IM0001", enforce_file_format=True)
    frames = root / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), i * 40, np.uint8)).save(frames / f"f{i}.png")
    mixed = root / "sub"  # images beside a video: not a frame folder, its video is a recording
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "cover.png")
    shutil.copy(root / "b.mp4", mixed / "d.mp4")
    (root / "README.txt").write_text("notes")
    (root / ".hidden.mp4").write_bytes(b"x")
    (root / "notdicom").write_bytes(b"plain bytes")
    return root


def test_the_rule(tmp_path):
    root = _folder(tmp_path / "in")
    assert is_media_file(root / "IM0001") and not is_media_file(root / "notdicom")
    assert is_media_file(root / "a.gif") and not is_media_file(root / ".hidden.mp4")
    assert is_frame_folder(root / "frames") and not is_frame_folder(root / "sub")
    items, ignored = list_media(root)
    assert [p.name for p in items] == ["IM0001", "a.gif", "b.mp4", "c.wmv", "frames"]
    assert ignored == 4  # .hidden.mp4, README.txt, notdicom, sub
    assert [p.relative_to(root).as_posix() for p in walk_media(root)] == [
        "IM0001", "a.gif", "b.mp4", "c.wmv", "frames", "sub/d.mp4",
    ]  # fmt: skip
    assert walk_media(root, exclude=root / "sub")[-1].name == "frames"


def test_score_and_summariser_agree(tmp_path):
    from seqnrl.score import expand_inputs
    from seqnrl.summarise import find_recordings

    root = _folder(tmp_path / "in")
    scored, problems, _ = expand_inputs([root])
    summarised, missing = find_recordings([root])
    assert not problems and not missing
    assert [p.name for p in scored] == [p.name for p in summarised[: len(scored)]]
    assert {p.name for p in summarised} - {p.name for p in scored} == {"d.mp4"}  # the summariser also recurses
