#!/usr/bin/env python
"""Which data seqnrl reads, shown by reading it: the README's supported-data table.

    python scripts/bench/supported_data.py [--shared ../shared/data]

For every supported format a small sample is generated here (PyAV, pydicom, h5py, our own
writers) and read back through the public readers; where ``../shared/data`` holds real
files of that format (lung-ultrasound mpeg/mp4/mov, UCSD Ped2 jpg frame folders, CMU BVH),
the first one is read too. A row says what was read (frames, rate, size) or the error, so
the table can only claim what this run demonstrated. Writes
``bench_out/supported_data.json`` (``table`` -> the README via ``scripts/make_results.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.bench._common import SHARED_DATA, save  # noqa: E402
from seqnrl.io import read_video  # noqa: E402


def _frames(n: int = 12, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, 1, h // 4, w // 4, generator=g).repeat(1, n, 1, 1)
    shift = torch.linspace(0, 1, n)[None, :, None, None]
    x = torch.nn.functional.interpolate((base + shift) % 1.0, size=(h, w), mode="bilinear", align_corners=False)
    return (x * 255).round().to(torch.uint8)


def _container(path: Path, codec: str, pix_fmt: str = "yuv420p", fps: int = 10) -> Path:
    import av

    video = _frames().permute(1, 2, 3, 0).numpy()
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = video.shape[2], video.shape[1], pix_fmt
        for i, img in enumerate(video):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def _frame_folder(d: Path, suffix: str) -> Path:
    from PIL import Image

    d.mkdir()
    for i, img in enumerate(_frames().permute(1, 2, 3, 0).numpy()):
        Image.fromarray(img).save(d / f"frame_{i + 1}{suffix}")
    return d


def _dicom(path: Path, photometric: str) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    rgb = _frames().permute(1, 2, 3, 0).numpy()  # (T, H, W, 3)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["seqnrl-supported", photometric])
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundMultiFrameImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.NumberOfFrames, ds.Rows, ds.Columns = rgb.shape[0], rgb.shape[1], rgb.shape[2]
    ds.FrameTime = 100  # ms: 10 fps
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if photometric == "MONOCHROME2":
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = rgb[..., 0].tobytes()
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.PixelData = rgb.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _video_row(read: Callable[[], object]) -> str:
    clip = read()
    c, t, h, w = clip.frames.shape
    return f"{t} frames, {clip.fps:g} fps, {h}x{w}, {c} ch"


def _bvh(path: Path) -> str:
    from seqnrl.io.bvh import forward_kinematics, read_bvh

    m = read_bvh(path)
    pos = forward_kinematics(m)
    return f"{pos.shape[0]} frames, {1.0 / m.frame_time:g} fps, {pos.shape[1]} joints"


def _bvh_sample(path: Path) -> Path:
    lines = ["HIERARCHY", "ROOT Hips", "{", "  OFFSET 0 0 0",
             "  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation",
             "  JOINT Spine", "  {", "    OFFSET 0 5 0", "    CHANNELS 3 Zrotation Yrotation Xrotation",
             "    End Site", "    {", "      OFFSET 0 5 0", "    }", "  }", "}", "MOTION", "Frames: 10",
             "Frame Time: 0.0333333"]
    lines += [" ".join(f"{v:.3f}" for v in [0, 0, 0, i, 0, 0, 2 * i, 0, 0]) for i in range(10)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _keypoints(path: Path) -> str:
    from seqnrl.io.keypoints_json import read_coco_keypoints, write_coco_keypoints

    kp = np.random.default_rng(0).uniform(0, 32, size=(8, 3, 2))
    write_coco_keypoints(path, {"clip": kp}, (32, 32), ["a", "b", "c"], [(0, 1), (1, 2)])
    data = read_coco_keypoints(path)
    kp = data["videos"]["clip"]["keypoints"]
    return f"{len(data['videos'])} video, {kp.shape[0]} frames x {kp.shape[1]} joints"


def _summe(path: Path) -> str:
    from seqnrl.io.summe_h5 import SummeVideo, read_summe_h5, write_summe_h5

    rng = np.random.default_rng(0)
    n = 60
    video = SummeVideo(
        features=rng.normal(size=(n // 15 * 15 // 15, 8)).astype(np.float32),
        change_points=np.array([[0, 29], [30, 59]]),
        n_frame_per_seg=np.array([30, 30]),
        n_frames=n,
        picks=np.arange(0, n, 15),
        user_summary=(rng.uniform(size=(2, n)) > 0.8).astype(np.float32),
        gtscore=rng.uniform(size=n // 15).astype(np.float32),
    )
    write_summe_h5(path, {"video_1": video})
    back = read_summe_h5(path)
    v = back["video_1"]
    return f"{len(back)} video, {v.n_frames} frames, {len(v.picks)} picks, {v.user_summary.shape[0]} user summaries"


def first(pattern: str, root: Path) -> Path | None:
    hits = sorted(root.glob(pattern))
    return hits[0] if hits else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(SHARED_DATA), help="the shared data folder (real samples)")
    ap.add_argument("--out", default=str(REPO / "bench_out" / "supported_data.json"))
    args = ap.parse_args(argv)
    shared = Path(args.shared)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        # (format, reader, data modules, sample builder -> description, real file or None)
        cases: list[tuple[str, str, str, Callable[[], str], Path | None]] = [
            ("MP4 (H.264)", "read_video / iter_frames (PyAV)", "Folder, LUS, EchoNet-Dynamic",
             lambda: _video_row(lambda: read_video(_container(d / "a.mp4", "libx264")) ),
             first("lus/videos/*.mp4", shared)),
            ("AVI (MPEG-4 Part 2)", "read_video (PyAV)", "Folder, EchoNet-Dynamic (its videos are .avi)",
             lambda: _video_row(lambda: read_video(_container(d / "a.avi", "mpeg4"))), None),
            ("MOV (H.264)", "read_video (PyAV)", "Folder, LUS",
             lambda: _video_row(lambda: read_video(_container(d / "a.mov", "libx264"))),
             first("lus/videos/*.mov", shared)),
            ("MPEG-1/2 program stream (.mpeg)", "read_video (PyAV)", "Folder, LUS",
             lambda: _video_row(lambda: read_video(_container(d / "a.mpeg", "mpeg1video", fps=25))),
             first("lus/videos/*.mpeg", shared)),
            ("Frame folder (PNG)", "read_video on a folder (natural sort; 25 fps unless given)", "Folder, Ped2",
             lambda: _video_row(lambda: read_video(_frame_folder(d / "png", ".png"))), None),
            ("Frame folder (JPEG)", "read_video on a folder (natural sort; 25 fps unless given)", "Ped2, Folder",
             lambda: _video_row(lambda: read_video(_frame_folder(d / "jpg", ".jpg"))),
             first("ped2/training/*", shared)),
            ("DICOM cine, MONOCHROME2", "read_video (pydicom; FrameTime)", "Folder, score / summarise scripts",
             lambda: _video_row(lambda: read_video(_dicom(d / "grey.dcm", "MONOCHROME2"))), None),
            ("DICOM cine, RGB", "read_video (pydicom)", "Folder, score / summarise scripts",
             lambda: _video_row(lambda: read_video(_dicom(d / "rgb.dcm", "RGB"))), None),
            ("BVH motion capture", "seqnrl.io.bvh.read_bvh + forward_kinematics", "Mocap",
             lambda: _bvh(_bvh_sample(d / "a.bvh")), first("mocap/*.bvh", shared)),
            ("COCO-style keypoint JSON", "seqnrl.io.keypoints_json", "pose export / motion input",
             lambda: _keypoints(d / "kp.json"), None),
            ("SumMe/TVSum HDF5", "seqnrl.io.summe_h5", "summariser training / evaluation",
             lambda: _summe(d / "s.h5"), None),
        ]
        rows = []
        for fmt, reader, modules, build, real in cases:
            try:
                sample = build()
            except Exception as e:  # noqa: BLE001 - the table reports what failed
                sample = f"FAILED: {type(e).__name__}: {e}"
            if real is None:
                real_desc = "–"
            else:
                try:
                    real_desc = (_bvh(real) if real.suffix == ".bvh" else
                                 _video_row(lambda r=real: read_video(r)))
                    real_desc = f"{real.relative_to(shared)}: {real_desc}"
                except Exception as e:  # noqa: BLE001
                    real_desc = f"{real.name}: FAILED {type(e).__name__}: {e}"
            rows.append({"format": fmt, "reader": reader, "data modules": modules, "generated sample": sample,
                         "real file (../shared/data)": real_desc})
            print(f"{fmt:<34} {sample:<40} {real_desc}")
    failed = [r["format"] for r in rows if "FAILED" in r["generated sample"] or "FAILED" in r["real file (../shared/data)"]]
    save(Path(args.out).stem, {
        "title": "Supported data (each row read in this run)",
        "description": "A generated sample of each format is read back through the public readers; where "
        "../shared/data holds that format, its first file is read too. Any format can also be listed in a "
        "manifest for the Folder data module.",
        "table": rows,
        "failed": failed,
        "seconds": time.perf_counter() - t0,
    }, Path(args.out).parent)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
