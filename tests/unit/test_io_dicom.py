"""DICOM cines: the real echo from pydicom's test data and generated photometric variants."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from seqnrl.errors import DicomError, VideoReadError
from seqnrl.io import iter_frames, probe_video, read_video, stream_windows

T, H, W = 5, 6, 8


def _echo_path() -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("examples_ybr_color.dcm")
    if path is None:
        pytest.skip("pydicom test file examples_ybr_color.dcm is not available")
    return path


def _dataset(n_frames: int | None, **attrs) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = H, W
    if n_frames is not None:
        ds.NumberOfFrames = n_frames
    ds.PixelRepresentation = 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _save(ds: Dataset, path, pixels: np.ndarray, photometric: str, bits: int = 8) -> None:
    samples = 3 if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") else 1
    ds.SamplesPerPixel = samples
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit = bits, bits - 1
    ds.PixelData = pixels.astype("<u2" if bits > 8 else np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _rgb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def _as_cthw(arr: np.ndarray) -> torch.Tensor:
    """(T, H, W, C) numpy -> (C, T, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(3, 0, 1, 2)


# --------------------------------------------------------------------------- real echo


def test_real_echo_cine():
    path = _echo_path()
    info = probe_video(path)
    assert (info.kind, info.n_frames, info.height, info.width, info.channels) == (
        "dicom",
        30,
        240,
        320,
        3,
    )
    assert info.fps == pytest.approx(30.0, rel=1e-3)
    clip = read_video(path)
    assert clip.frames.shape == (3, 30, 240, 320) and clip.frames.dtype == torch.uint8
    assert clip.fps == pytest.approx(30.0, rel=1e-3)
    assert clip.timestamps.tolist() == pytest.approx([k * 0.033333 for k in range(30)], abs=1e-4)
    # the same RGB pixels as pydicom's own (YBR_FULL_422 -> RGB) conversion
    reference = pydicom.dcmread(path).pixel_array
    assert torch.equal(clip.frames, _as_cthw(reference))
    assert (clip.frames[0] != clip.frames[1]).any()  # colour, not grey


def test_real_echo_streams_in_windows():
    path = _echo_path()
    windows = list(stream_windows(path, 8, 8, size=(60, 80), grayscale=True))
    assert [(w.start_index, w.n_valid) for w in windows] == [(0, 8), (8, 8), (16, 8), (24, 6)]
    assert windows[0].frames.shape == (1, 8, 60, 80)


# --------------------------------------------------------------------------- generated cines


def test_monochrome2_8bit(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (T, H, W), dtype=np.uint8)
    _save(_dataset(T, FrameTime=40), tmp_path / "m2.dcm", grey, "MONOCHROME2")
    assert probe_video(tmp_path / "m2.dcm").channels == 1
    clip = read_video(tmp_path / "m2.dcm", grayscale=True)
    assert torch.equal(clip.frames, torch.from_numpy(grey)[None])
    assert clip.fps == 25.0
    assert torch.equal(clip.timestamps, torch.arange(T, dtype=torch.float64) / 25)
    rgb = read_video(tmp_path / "m2.dcm").frames
    assert torch.equal(rgb, torch.from_numpy(grey)[None].expand(3, -1, -1, -1))


def test_monochrome1_is_inverted(tmp_path):
    grey = np.random.default_rng(2).integers(0, 256, (T, H, W), dtype=np.uint8)
    _save(_dataset(T, FrameTime=40), tmp_path / "m1.dcm", grey, "MONOCHROME1")
    clip = read_video(tmp_path / "m1.dcm", grayscale=True)
    assert torch.equal(clip.frames, 255 - torch.from_numpy(grey)[None])


def test_monochrome2_12bit_is_scaled_to_8bit(tmp_path):
    grey = np.random.default_rng(3).integers(0, 4096, (T, H, W), dtype=np.uint16)
    grey[0, 0, :2] = [0, 4095]
    _save(_dataset(T, FrameTime=40), tmp_path / "m16.dcm", grey, "MONOCHROME2", bits=12)
    clip = read_video(tmp_path / "m16.dcm", grayscale=True)
    expected = (grey.astype(np.int64) * 255 + 2047) // 4095
    assert torch.equal(clip.frames[0], torch.from_numpy(expected.astype(np.uint8)))
    assert clip.frames[0, 0, 0, :2].tolist() == [0, 255]


def test_rgb(tmp_path):
    rgb = _rgb()
    _save(_dataset(T, FrameTime=40), tmp_path / "rgb.dcm", rgb, "RGB")
    assert torch.equal(read_video(tmp_path / "rgb.dcm").frames, _as_cthw(rgb))


def test_ybr_full(tmp_path):
    rgb = _rgb(4)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    _save(_dataset(T, FrameTime=40), tmp_path / "ybr.dcm", ybr, "YBR_FULL")
    out = read_video(tmp_path / "ybr.dcm").frames
    assert (out.int() - _as_cthw(rgb).int()).abs().max() <= 2  # 8-bit YCbCr rounding


def test_ybr_full_422_uncompressed(tmp_path):
    rgb = _rgb(5)
    rgb[:, :, 1::2] = rgb[:, :, 0::2]  # column pairs share chroma, so 4:2:2 loses nothing
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    y = ybr[..., 0]
    packed = np.stack([y[:, :, 0::2], y[:, :, 1::2], ybr[:, :, 0::2, 1], ybr[:, :, 0::2, 2]], -1)
    ds = _dataset(T, FrameTime=40)
    ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PhotometricInterpretation = 3, 0, "YBR_FULL_422"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = packed.tobytes()
    ds.save_as(tmp_path / "422.dcm", enforce_file_format=True)
    out = read_video(tmp_path / "422.dcm").frames
    assert out.shape == (3, T, H, W)
    assert (out.int() - _as_cthw(rgb).int()).abs().max() <= 2


def test_palette_color(tmp_path):
    rng = np.random.default_rng(6)
    lut = rng.integers(0, 256, (256, 3), dtype=np.uint16)
    index = rng.integers(0, 256, (T, H, W), dtype=np.uint8)
    ds = _dataset(T, FrameTime=40)
    for i, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(
            ds, f"{colour}PaletteColorLookupTableData", (lut[:, i] * 257).astype("<u2").tobytes()
        )
    _save(ds, tmp_path / "pal.dcm", index, "PALETTE COLOR")
    assert probe_video(tmp_path / "pal.dcm").channels == 3
    out = read_video(tmp_path / "pal.dcm").frames
    assert torch.equal(out, _as_cthw(lut[index].astype(np.uint8)))


@pytest.mark.parametrize(
    ("attrs", "fps", "times"),
    [
        ({"CineRate": 20}, 20.0, [0.0, 0.05, 0.1, 0.15, 0.2]),
        # FrameTimeVector: per-frame intervals (ms); fps = mean rate over the span, 4 / 0.25 s
        ({"FrameTimeVector": [0, 50, 50, 100, 50]}, 16.0, [0.0, 0.05, 0.1, 0.2, 0.25]),
        ({"RecommendedDisplayFrameRate": 10}, 10.0, [0.0, 0.1, 0.2, 0.3, 0.4]),
        ({"FrameTime": 33.333, "CineRate": 10}, 30.0, [k / 30 for k in range(5)]),
    ],
)
def test_frame_timing_sources(tmp_path, attrs, fps, times):
    _save(_dataset(T, **attrs), tmp_path / "t.dcm", _rgb(), "RGB")
    clip = read_video(tmp_path / "t.dcm")
    assert clip.fps == pytest.approx(fps)
    assert clip.timestamps.tolist() == pytest.approx(times)


def test_no_frame_timing_warns_and_uses_the_default(tmp_path):
    _save(_dataset(T), tmp_path / "t.dcm", _rgb(), "RGB")
    with pytest.warns(UserWarning, match="no frame timing"):
        clip = read_video(tmp_path / "t.dcm", folder_fps=12.5)
    assert clip.fps == 12.5


def test_dicom_recognised_by_preamble_without_suffix(tmp_path):
    rgb = _rgb(7)
    _save(_dataset(T, FrameTime=40), tmp_path / "IM0001", rgb, "RGB")
    assert probe_video(tmp_path / "IM0001").kind == "dicom"
    streamed = [f for _, f in iter_frames(tmp_path / "IM0001")]
    assert torch.equal(torch.stack(streamed, dim=1), _as_cthw(rgb))


# --------------------------------------------------------------------------- errors


def test_single_frame_is_not_a_cine(tmp_path):
    _save(_dataset(None), tmp_path / "single.dcm", _rgb()[0], "RGB")
    with pytest.raises(DicomError, match="not a multi-frame cine") as err:
        read_video(tmp_path / "single.dcm")
    assert "single.dcm" in str(err.value)


def test_compressed_without_decoder_names_syntax_and_packages(tmp_path):
    ds = _dataset(T, FrameTime=40)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7not really jpeg-ls\xff\xd9"] * T)
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "jls.dcm", enforce_file_format=True)
    if pydicom.pixels.get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(DicomError) as err:
        probe_video(tmp_path / "jls.dcm")
    message = str(err.value)
    for part in ("jls.dcm", "JPEG-LS Lossless", "pylibjpeg", "gdcm"):
        assert part in message


def test_not_dicom_inside_dcm(tmp_path):
    (tmp_path / "fake.dcm").write_text("this is no DICOM file\n" * 20)
    with pytest.raises(VideoReadError, match="fake.dcm"):
        read_video(tmp_path / "fake.dcm")


def test_dicom_without_pixels(tmp_path):
    ds = _dataset(T)
    ds.save_as(tmp_path / "nopix.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="no pixel data"):
        probe_video(tmp_path / "nopix.dcm")


def test_cine_without_rows_is_a_dicom_error(tmp_path):
    ds = _dataset(T, FrameTime=40)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = bytes(T * H * W)
    del ds.Rows
    ds.save_as(tmp_path / "norows.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="norows.dcm"):
        read_video(tmp_path / "norows.dcm")
