"""``seqnrl score``: per-frame anomaly scores of any recordings from a checkpoint alone.

::

    seqnrl score VIDEO... --ckpt model.ckpt [--out DIR] [--overlay] [--mask auto|none|PATH.png]
                          [--smooth SIGMA] [--overwrite]

Everything comes from the checkpoint (:func:`seqnrl.models.loading.load_model`): the model
class and weights, the preprocessing (its :class:`~seqnrl.data.input_spec.InputSpec`: frame
rate, frame size, channels, ``clip_len``, window ``stride``, sector mask) and the
calibration (the normal-validation ECDF and the operating threshold at ``target_fpr``).
No data configuration is read.

Per input (video file, frame folder or DICOM cine; a folder that is not a frame folder
stands for the media files in it):

1. probe it, and find the sector mask (:mod:`seqnrl.intake.sector`) when masking is on;
2. stream overlapping windows (``clip_len``/``stride``) at the checkpoint's rate, size and
   colour mode (:func:`seqnrl.io.stream_windows`), blank outside the sector, score each
   batch of windows and average the window scores of every frame;
3. smooth (the checkpoint's ``smooth_sigma`` or ``--smooth``) and calibrate with the
   checkpoint's *global* calibrator; the per-frame flag is ``raw > threshold``;
4. write ``<name>.csv`` / ``<name>.json`` / ``<name>.png``
   (:func:`seqnrl.callbacks.score_writer.write_video_scores`), ``<name>_mask.png`` when a
   mask was detected, and with ``--overlay`` ``<name>_overlay.mp4``.

``scores_summary.json`` lists every input (scored, kept from an earlier run, or failed with
its reason). A bad input prints one ``ERROR <file>: <ErrorClass>: <cause>`` line on stderr
and the batch goes on; the exit code is 1 when any input failed, 2 when the checkpoint or the
arguments are unusable. Scores are never normalised per video: see ``docs/intake.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from seqnrl import batch as B
from seqnrl.data.input_spec import InputSpec
from seqnrl.errors import CheckpointError, ConfigError, SeqNRLError, VideoReadError
from seqnrl.intake.deid import dicom_pseudonym, is_dicom_input
from seqnrl.intake.sector import SectorMask, apply_mask, resize_mask, resolve_mode, sector_mask_for
from seqnrl.io.atomic import atomic_path, write_json
from seqnrl.io.discovery import MEDIA_SUFFIXES, is_frame_folder, list_media  # noqa: F401 - MEDIA_SUFFIXES re-exported
from seqnrl.io.frames import list_frame_files
from seqnrl.io.names import display_path
from seqnrl.io.names import safe_name as _safe_name
from seqnrl.io.run_summary import SUMMARY_FILE, merge_run_summary  # noqa: F401 - re-exported
from seqnrl.io.video import iter_frames, probe_video, stream_windows
from seqnrl.scoring.input_profile import coloured_fraction, frame_statistics, input_warnings
from seqnrl.scoring.windows import FrameScores, WindowScorer

log = logging.getLogger(__name__)

NORMALISATION_NOTE = (
    "scores are calibrated with the checkpoint's global normal-validation statistics; "
    "no per-video normalisation (it changes AUROC and needs the whole video in advance)"
)


# ---------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------
@dataclass
class ScoreConfig:
    """Options of a scoring run (the command-line flags).

    Attributes:
        out: output folder.
        overlay: also write ``<name>_overlay.mp4`` (score drawn over the frames).
        mask: ``"auto"``, ``"none"`` or a mask image; ``None`` follows the checkpoint's
            input spec (what the model was trained on).
        smooth: temporal smoothing sigma in frames; ``None`` uses the checkpoint's.
        overwrite: redo inputs whose outputs exist (else they are kept and skipped).
        batch_windows: windows per model forward pass.
        folder_fps: frame rate of frame folders (they carry none).
        overlay_max_side: longest side of the overlay video frames.
        progress: show tqdm progress bars.
    """

    out: Path = Path("scores")
    overlay: bool = False
    mask: str | None = None
    smooth: float | None = None
    overwrite: bool = False
    batch_windows: int = 8
    folder_fps: float = 25.0
    overlay_max_side: int = 480
    progress: bool = True


@dataclass
class Preprocessing:
    """The checkpoint's input spec and the masking this run applies."""

    spec: InputSpec
    sector_mask: str
    sector_mask_from: str

    @property
    def clip_len(self) -> int:
        return self.spec.clip_len

    @property
    def stride(self) -> int:
        return int(self.spec.stride)

    @property
    def fps(self) -> float | None:
        return self.spec.fps

    @property
    def image_size(self) -> tuple[int, int] | None:
        return self.spec.image_size

    @property
    def grayscale(self) -> bool:
        return self.spec.grayscale

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.spec.to_dict(),
            "grayscale": self.grayscale,
            "sector_mask": _mode_label(self.sector_mask),
            "sector_mask_from": self.sector_mask_from,
        }


def _mode_label(mode: str) -> str:
    return mode if mode in ("auto", "none") else f"file:{Path(mode).name}"


def preprocessing_from(model: Any, mask_flag: str | None = None) -> Preprocessing:
    """The loaded model's input spec (:meth:`InputSpec.of`) and the masking to apply."""
    spec = InputSpec.of(model)
    if spec.modality != "video":
        raise CheckpointError(f"{type(model).__name__} models {spec.modality}, not video: use scripts/score_bvh.py")
    mode, where = resolve_mode(mask_flag, spec.sector_mask)
    return Preprocessing(spec=spec, sector_mask=mode, sector_mask_from=where)


# ---------------------------------------------------------------------------------------
# inputs and names
# ---------------------------------------------------------------------------------------
@dataclass
class InputItem:
    """One recording to score and the names it gets in the outputs."""

    path: Path
    name: str = ""
    dicom: bool = False

    @property
    def display(self) -> str:
        """The path as given, printable (undecodable bytes as ``\\xNN``)."""
        return display_path(self.path)

    @property
    def source(self) -> str:
        """What outputs call the input: a pseudonym for DICOM, else the path."""
        return self.name if self.dicom else self.display

    def redact(self, text: str) -> str:
        """``text`` with the input's path and file name replaced by its pseudonym (DICOM)."""
        if not self.dicom:
            return text
        for s in sorted(
            {str(self.path), str(self.path.resolve()), self.display, self.path.name},
            key=len,
            reverse=True,
        ):
            if s:
                text = text.replace(s, self.name)
        return text


def safe_name(name: str) -> str:
    return _safe_name(name, fallback="video")


def _path_hash(p: Path) -> str:
    return hashlib.sha1(os.fsencode(p.resolve())).hexdigest()[:6]


def expand_inputs(
    inputs: Sequence[str | os.PathLike],
) -> tuple[list[Path], list[tuple[str, SeqNRLError]], int]:
    """Files stay files; a frame folder is one recording; any other folder stands for the
    media files and frame folders in it. Returns (recordings, problems, ignored count)."""
    out: list[Path] = []
    problems: list[tuple[str, SeqNRLError]] = []
    ignored = 0
    for inp in inputs:
        p = Path(inp)
        if not p.exists():
            problems.append(
                (display_path(p), VideoReadError("no such file or folder", display_path(p)))
            )
        elif p.is_dir() and not is_frame_folder(p):
            try:
                items, n_ign = list_media(p)
            except OSError as e:
                problems.append(
                    (display_path(p), SeqNRLError(f"cannot list folder: {e}", display_path(p)))
                )
                continue
            ignored += n_ign
            if n_ign:
                log.info("%s: ignored %d hidden or non-media entries", display_path(p), n_ign)
            if not items:
                problems.append(
                    (
                        display_path(p),
                        VideoReadError(
                            "folder holds no videos, DICOM files or frame folders", display_path(p)
                        ),
                    )
                )
            out.extend(items)
        else:
            out.append(p)
    seen: set[Path] = set()
    uniq = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            uniq.append(p)
    return uniq, problems, ignored


def name_inputs(paths: Sequence[Path]) -> list[InputItem]:
    """Output names: DICOM inputs get their pseudonym (:func:`dicom_pseudonym`), others their
    sanitised stem; a short hash of the path is appended to names that collide."""
    items = []
    for p in paths:
        dicom = is_dicom_input(p)
        name = dicom_pseudonym(p) if dicom else safe_name(p.stem if p.is_file() else p.name)
        items.append(InputItem(p, name, dicom))
    counts: dict[str, int] = {}
    for it in items:
        counts[it.name.lower()] = counts.get(it.name.lower(), 0) + 1
    for it in items:
        if counts[it.name.lower()] > 1:
            it.name = f"{it.name}-{_path_hash(it.path)}"
    return items


def output_files(name: str, overlay: bool) -> list[str]:
    files = [f"{name}.csv", f"{name}.json", f"{name}.png"]
    if overlay:
        files.append(f"{name}_overlay.mp4")
    return files


# ---------------------------------------------------------------------------------------
# scoring one recording
# ---------------------------------------------------------------------------------------
def frame_folder_warnings(path: Path) -> list[str]:
    """Frame folders of 16-bit or RGBA images are converted; say so."""
    files = list_frame_files(path) if path.is_dir() else []
    if not files:
        return []
    try:
        with Image.open(files[0]) as im:
            mode = im.mode
    except (OSError, ValueError, SyntaxError):
        return []
    if mode.startswith("I;16") or mode in ("I", "F"):
        return [f"frames are {mode} (more than 8 bits): scaled to 8 bits"]
    if mode in ("RGBA", "LA", "PA"):
        return [f"frames are {mode}: the alpha channel is dropped"]
    return []


def _batches(windows: Iterator, n: int) -> Iterator[list]:
    buf = []
    for w in windows:
        buf.append(w)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


@dataclass
class Scored:
    """Per-frame results of one recording (smoothed and calibrated by the window scorer)."""

    fps: float
    frames: FrameScores
    input_stats: np.ndarray | None = None  # (N, 2) brightness / contrast of the model's input frames


def score_frames_of(
    model: Any,
    item: InputItem,
    prep: Preprocessing,
    fps: float,
    mask: np.ndarray | None,
    cfg: ScoreConfig,
    bar: tqdm | None = None,
) -> Scored:
    """Stream the windows of one recording through the model's :class:`WindowScorer`."""
    sigma = None if cfg.smooth is None else float(cfg.smooth)
    scorer = WindowScorer(model, smooth_sigma=sigma)
    model_mask: torch.Tensor | None = None
    windows = stream_windows(
        item.path,
        prep.clip_len,
        prep.stride,
        fps=fps,
        size=prep.image_size,
        grayscale=prep.grayscale,
        folder_fps=cfg.folder_fps,
        align_last=True,  # the windows of training and evaluation (eval_window_starts)
    )
    seen = 0
    stats: list[np.ndarray] = []
    seen_stats = 0
    for group in _batches(windows, cfg.batch_windows):
        samples = []
        for w in group:
            frames = w.frames
            if mask is not None:
                if model_mask is None:
                    model_mask = resize_mask(mask, tuple(frames.shape[-2:]))
                frames = apply_mask(frames, model_mask)
            idx = torch.arange(w.start_index, w.start_index + frames.shape[1])
            idx[w.n_valid :] = -1
            samples.append(
                B.make_sample(
                    frames,
                    video_id=item.name,
                    source=item.source,
                    start_frame=w.start_index,
                    fps=fps,
                    frame_index=idx,
                )
            )
        batch = B.collate(samples)
        for w, clip in zip(group, batch[B.VIDEO]):  # each frame once: the window's new frames
            new = slice(max(0, seen_stats - w.start_index), w.n_valid)
            if new.start < new.stop:
                stats.append(frame_statistics(clip[:, new]))
            seen_stats = max(seen_stats, w.start_index + w.n_valid)
        scorer.add(batch)
        if bar is not None:
            last = max(w.start_index + w.n_valid for w in group)
            bar.update(max(0, last - seen))
            seen = max(seen, last)
    if not len(scorer):
        raise SeqNRLError("no windows could be scored", item.display)
    return Scored(fps=fps, frames=scorer.finish(item.name), input_stats=np.concatenate(stats) if stats else None)


def native_colour(path: Path, folder_fps: float, n: int = 8) -> float | None:
    """Coloured share of the first ``n`` native RGB frames (colour-on-grey check); ``None``
    when they cannot be read (the scoring itself reports why)."""
    try:
        frames = [f for _, f in itertools.islice(iter_frames(path, folder_fps=folder_fps), n)]
    except (SeqNRLError, OSError, ValueError, av.FFmpegError):
        return None
    return coloured_fraction(torch.stack(frames)) if frames else None


def _input_profile_record(profile: Any, stats: np.ndarray | None) -> dict | None:
    """The input's median brightness / contrast and their z-scores against the checkpoint's
    normal inputs (``None`` z when the checkpoint has no profile)."""
    if stats is None or not len(stats):
        return None
    from seqnrl.scoring.input_profile import FEATURES

    med = np.median(stats, 0)
    z = profile.z(stats) if profile is not None and profile.fitted else [None] * len(FEATURES)
    return {f: {"median": _f(m), "z": _f(zz) if zz is not None else None} for f, m, zz in zip(FEATURES, med, z)}


def _video_score(values: np.ndarray, top_fraction: float) -> float | None:
    from seqnrl.scoring.aggregate import video_score

    v = video_score(values, top_fraction)
    return v if math.isfinite(v) else None


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def score_recording(
    model: Any, item: InputItem, prep: Preprocessing, cfg: ScoreConfig, progress: bool = True
) -> dict:
    """Score one recording and write its outputs; returns its summary record."""
    from seqnrl.callbacks.score_writer import write_video_scores

    out = Path(cfg.out)
    notes: list[str] = []
    info = probe_video(item.path, folder_fps=cfg.folder_fps)
    fps = prep.fps or info.fps
    notes += frame_folder_warnings(item.path)

    mask_res = sector_mask_for(
        item.path, prep.sector_mask, png=out / f"{item.name}_mask.png", folder_fps=cfg.folder_fps
    )
    if prep.sector_mask == "auto" and not mask_res.active:
        log.info("%s: not masked (%s)", item.source, mask_res.reason)

    expected = max(1, math.floor(info.duration * fps + 1e-6)) if info.duration > 0 else None
    bar = tqdm(
        total=expected,
        desc=item.name[:40],
        unit="frame",
        leave=False,
        disable=not progress,
        file=sys.stderr,
    )
    try:
        scored = score_frames_of(model, item, prep, fps, mask_res.mask, cfg, bar)
    finally:
        bar.close()
    fs = scored.frames
    n = len(fs.raw)
    if n < prep.clip_len:
        notes.append(
            f"only {n} frame(s) at {fps:g} fps, fewer than the model's clip_len {prep.clip_len}: "
            "the window was padded by repeating the last frame (scores less reliable)"
        )
    sigma = fs.smooth_sigma
    raw, flags = fs.raw, fs.above_threshold
    cal_mod = model.calibrator
    fitted = bool(cal_mod.fitted)
    if not fitted:
        notes.append("checkpoint has no fitted calibration: raw scores only, no threshold")
    # the colour probe decodes a few native frames again: only a grey model can be warned
    colour = native_colour(item.path, cfg.folder_fps) if prep.grayscale else None
    ood = input_warnings(model, scored.input_stats, raw, colour=colour)
    notes += ood
    vs = fs.video
    vs.fps, vs.source = fps, item.source
    vs.extra = {**vs.extra, "above_threshold": flags}
    cal = fs.calibration
    thr_cal = fs.threshold_calibrated
    record = write_video_scores(out, vs, cal, thr_cal)
    top = float(model.hparams.get("video_top_fraction", 0.1) or 0.1)
    base = cal["calibrated"] if fitted else raw
    extra = {
        "checkpoint_calibration": {
            "fitted": fitted,
            "target_fpr": _f(cal_mod.target_fpr),
            "threshold_raw": _f(cal_mod.threshold) if fitted else None,
            "threshold_calibrated": thr_cal,
            "above_threshold_rule": "raw > threshold_raw (global operating point, no per-video normalisation)",
        },
        "smooth_sigma": sigma,
        "preprocessing": {**prep.as_dict(), "fps_used": fps},
        "native": {"fps": info.fps, "height": info.height, "width": info.width, "kind": info.kind},
        "mask": mask_res.describe(),
        "n_windows": fs.n_windows,
        "out_of_distribution": bool(ood),
        "input_profile": _input_profile_record(getattr(model, "input_profile", None), scored.input_stats),
        "warnings": [item.redact(w) for w in notes],
    }
    record.update(extra)
    write_json(out / f"{item.name}.json", record)
    files = output_files(item.name, False)
    if mask_res.method == "auto" and mask_res.active:
        files.append(f"{item.name}_mask.png")
    if cfg.overlay:
        write_overlay(out / f"{item.name}_overlay.mp4", item, vs, cal, thr_cal, fps, mask_res, cfg)
        files.append(f"{item.name}_overlay.mp4")
    return {
        "name": item.name,
        "source": item.source,
        "status": "scored",
        "n_frames": n,
        "fps": fps,
        "video_score": _video_score(base, top),
        "max_calibrated": _f(np.nanmax(cal["calibrated"]))
        if fitted and np.isfinite(cal["calibrated"]).any()
        else None,
        "frames_above_threshold": int(np.nansum(flags)) if fitted else None,
        "out_of_distribution": bool(ood),
        "mask": mask_res.describe(),
        "warnings": extra["warnings"],
        "files": files,
    }


# ---------------------------------------------------------------------------------------
# overlay video
# ---------------------------------------------------------------------------------------
def _even(v: int) -> int:
    return max(2, v - v % 2)


def overlay_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(h, w))
    return _even(int(round(h * s))), _even(int(round(w * s)))


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _curve_panel(cal: np.ndarray, thr: float | None, width: int, height: int) -> np.ndarray:
    """The whole recording's calibrated score as a curve (x = time), threshold dashed."""
    im = Image.new("RGB", (width, height), (18, 18, 18))
    d = ImageDraw.Draw(im)
    top, bottom = 14, height - 3
    n = len(cal)

    def y_of(v: float) -> float:
        return bottom - float(np.clip(v, 0, 1)) * (bottom - top)

    if thr is not None:
        y = y_of(thr)
        for x0 in range(0, width, 8):
            d.line([(x0, y), (x0 + 4, y)], fill=(200, 200, 200))
    xs = np.linspace(0, width - 1, n) if n > 1 else np.array([width / 2])
    for i in range(max(0, n - 1)):
        a, b = cal[i], cal[i + 1]
        if np.isfinite(a) and np.isfinite(b):
            above = thr is not None and max(a, b) > thr
            d.line(
                [(xs[i], y_of(a)), (xs[i + 1], y_of(b))],
                fill=(235, 60, 60) if above else (80, 200, 255),
                width=2,
            )
    if n == 1 and np.isfinite(cal[0]):
        d.ellipse([xs[0] - 2, y_of(cal[0]) - 2, xs[0] + 2, y_of(cal[0]) + 2], fill=(80, 200, 255))
    return np.asarray(im).copy()


def overlay_frame(
    frame: np.ndarray,
    panel: np.ndarray,
    k: int,
    n: int,
    t: float,
    value: float,
    z: float,
    above: bool,
) -> np.ndarray:
    """One overlay frame: the video frame with a score bar on its left edge and a red border
    when above threshold, the score curve with a cursor below it, and a text line."""
    h, w = frame.shape[:2]
    img = frame.copy()
    bar_w = max(4, w // 60)
    if np.isfinite(value):
        fill = int(round(float(np.clip(value, 0, 1)) * h))
        colour = (235, 40, 40) if above else (250, 210, 40)
        img[:, :bar_w] = (img[:, :bar_w] * 0.4).astype(np.uint8)
        if fill:
            img[h - fill :, :bar_w] = colour
    if above:
        b = max(2, w // 120)
        img[:b], img[-b:], img[:, -b:] = (235, 40, 40), (235, 40, 40), (235, 40, 40)
    pan = panel.copy()
    x = int(round(k * (pan.shape[1] - 1) / max(1, n - 1)))
    pan[:, max(0, x - 1) : x + 1] = (255, 255, 255)
    im = Image.fromarray(pan)
    text = (
        f"t {t:7.2f} s  score {value:.3f}  z {z:+.2f}"
        if np.isfinite(value)
        else f"t {t:7.2f} s  raw only"
    )
    if above:
        text += "  ABOVE THRESHOLD"
    ImageDraw.Draw(im).text((4, 1), text, fill=(255, 255, 255), font=_font())
    return np.concatenate([img, np.asarray(im)], axis=0)


class _StreamWriter:
    """H.264 (yuv420p) encoder fed one ``(H, W, 3)`` uint8 frame at a time."""

    def __init__(self, path: Path, fps: float, hw: tuple[int, int], crf: int = 23):
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(10_000)
        )
        self.stream.height, self.stream.width = hw
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
        self.n = 0

    def write(self, image: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.n
        self.container.mux(self.stream.encode(frame))
        self.n += 1

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()


def write_overlay(
    path: Path,
    item: InputItem,
    vs: Any,
    cal: dict[str, np.ndarray],
    thr: float | None,
    fps: float,
    mask_res: SectorMask,
    cfg: ScoreConfig,
) -> int:
    """Second streaming pass: frames at the scoring rate, sector-masked like the model input,
    with the score drawn into the pixels. Returns the number of frames written."""
    info = probe_video(item.path, folder_fps=cfg.folder_fps)
    hw = overlay_size(info.height, info.width, cfg.overlay_max_side)
    panel_h = _even(max(40, hw[0] // 5))
    values = cal["calibrated"] if np.isfinite(cal["calibrated"]).any() else _unit(vs.scores)
    panel = _curve_panel(values, thr, hw[1], panel_h)
    disp_mask = resize_mask(mask_res.mask, hw).numpy() if mask_res.mask is not None else None
    flags = vs.extra.get("above_threshold", np.zeros(vs.n_frames))
    n = vs.n_frames
    written = 0
    with atomic_path(path, overwrite=True) as tmp:
        writer = _StreamWriter(tmp, fps, (hw[0] + panel_h, hw[1]))
        try:
            for k, (t, frame) in enumerate(
                iter_frames(item.path, fps=fps, size=hw, folder_fps=cfg.folder_fps)
            ):
                if k >= n:
                    break
                img = frame.permute(1, 2, 0).numpy()
                if disp_mask is not None:
                    img = img * disp_mask[..., None].astype(np.uint8)
                writer.write(
                    overlay_frame(
                        img,
                        panel,
                        k,
                        n,
                        t,
                        float(values[k]),
                        float(cal["z"][k]),
                        bool(flags[k] == 1),
                    )
                )
                written += 1
        finally:
            try:
                writer.close()
            except (av.FFmpegError, OSError, ValueError) as e:
                raise SeqNRLError(f"cannot write overlay video: {e}", path) from e
    return written


def _unit(x: np.ndarray) -> np.ndarray:
    """Raw scores squeezed into [0, 1] for drawing only (uncalibrated checkpoints)."""
    ok = np.isfinite(x)
    if not ok.any():
        return x
    lo, hi = np.nanmin(x), np.nanmax(x)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


# ---------------------------------------------------------------------------------------
# the batch
# ---------------------------------------------------------------------------------------
@dataclass
class ScoreReport:
    scored: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    ignored_entries: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def _emit(kind: str, display: str, text: str) -> None:
    line = f"{kind} {display}: {text}".replace("\n", " ")
    tqdm.write(line, file=sys.stderr)


def _failure(
    item_source: str, display: str, err: BaseException, item: InputItem | None = None
) -> dict:
    cause = err.cause if isinstance(err, SeqNRLError) else str(err)
    cls = type(err).__name__
    _emit("ERROR", display, f"{cls}: {cause}")
    msg = f"{cls}: {cause}"
    if item is not None:
        msg = item.redact(msg)
    return {"source": item_source, "status": "failed", "error_class": cls, "error": msg}


def score_inputs(
    inputs: Sequence[str | os.PathLike], ckpt: str | os.PathLike, cfg: ScoreConfig
) -> ScoreReport:
    """Score every recording of ``inputs`` with the checkpoint ``ckpt`` (see module doc).

    Raises :class:`CheckpointError` / :class:`ConfigError` when nothing can be scored."""
    from seqnrl.models.loading import load_model

    model = load_model(ckpt)
    if not hasattr(model, "score_frames") or not hasattr(model, "calibrator"):
        raise CheckpointError(
            f"{type(model).__name__} is not a normative model (no score_frames/calibrator)", ckpt
        )
    prep = preprocessing_from(model, cfg.mask)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    paths, problems, ignored = expand_inputs(inputs)
    report = ScoreReport(ignored_entries=ignored)
    if ignored:
        _emit(
            "NOTE", "inputs", f"ignored {ignored} hidden or non-media entries in the given folders"
        )
    for disp, err in problems:
        # a missing *.dcm may be named after the patient: its record gets a pseudonym too
        dcm = Path(disp).suffix.lower() in (".dcm", ".dicom")
        source = dicom_pseudonym(disp) if dcm else disp
        report.failed.append(_failure(source, disp, err, InputItem(Path(disp), source, dcm)))
    items = name_inputs(paths)
    outer = tqdm(
        items,
        desc="score",
        unit="input",
        disable=not cfg.progress or len(items) < 2,
        file=sys.stderr,
    )
    for item in outer:
        wanted = output_files(item.name, cfg.overlay)
        if not cfg.overwrite and all((out / f).is_file() for f in wanted):
            rec = {"name": item.name, "source": item.source, "status": "kept", "files": wanted}
            try:
                import json

                old = json.loads((out / f"{item.name}.json").read_text(encoding="utf-8"))
                rec["n_frames"] = old.get("n_frames")
            except (OSError, ValueError):
                pass
            report.skipped.append(rec)
            _emit(
                "SKIP",
                item.display if not item.dicom else item.name,
                "outputs exist (use --overwrite to redo)",
            )
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                rec = score_recording(model, item, prep, cfg, progress=cfg.progress)
            for w in caught:  # e.g. a DICOM cine without frame timing
                if issubclass(w.category, UserWarning):
                    rec["warnings"].append(item.redact(str(w.message)))
            for w in rec["warnings"]:
                _emit("WARNING", item.display, w)
            report.scored.append(rec)
        except KeyboardInterrupt:
            raise
        except (
            SeqNRLError,
            FileExistsError,
            OSError,
            ValueError,
            RuntimeError,
            av.FFmpegError,
        ) as e:
            report.failed.append(_failure(item.source, item.display, e, item))
    _write_summary(out, ckpt, model, prep, cfg, report)
    return report


def _write_summary(
    out: Path,
    ckpt: str | os.PathLike,
    model: Any,
    prep: Preprocessing,
    cfg: ScoreConfig,
    report: ScoreReport,
) -> None:
    cal = model.calibrator
    summary = {
        "checkpoint": Path(ckpt).name,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "preprocessing": prep.as_dict(),
        "calibration": cal.describe(),
        "normalisation": NORMALISATION_NOTE,
        "options": {
            "overlay": cfg.overlay,
            "mask": _mode_label(cfg.mask) if cfg.mask else None,
            "smooth": cfg.smooth,
            "overwrite": cfg.overwrite,
        },
        "counts": {
            "scored": len(report.scored),
            "kept": len(report.skipped),
            "failed": len(report.failed),
            "ignored_entries": report.ignored_entries,
        },
        "inputs": report.scored + report.skipped + report.failed,
    }
    write_json(out / SUMMARY_FILE, merge_run_summary(out / SUMMARY_FILE, summary))


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqnrl score",
        description=(
            "Per-frame anomaly scores of videos, frame folders and DICOM cines from a checkpoint "
            "alone (model, preprocessing and calibration all come from it)."
        ),
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="VIDEO",
        help="video files, DICOM cines, frame folders or folders of them",
    )
    p.add_argument("--ckpt", required=True, help="seqnrl checkpoint (.ckpt)")
    p.add_argument("--out", default="scores", help="output folder (default: ./scores)")
    p.add_argument(
        "--overlay",
        action="store_true",
        help="also write <name>_overlay.mp4 with the score drawn in",
    )
    p.add_argument(
        "--mask",
        default=None,
        metavar="auto|none|PATH.png",
        help="sector masking: auto-detect, none, or a mask image (white = keep); "
        "default: the checkpoint's sector_mask setting, else auto",
    )
    p.add_argument(
        "--smooth",
        type=float,
        default=None,
        metavar="SIGMA",
        help="temporal smoothing in frames (default: the checkpoint's)",
    )
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist")
    p.add_argument(
        "--batch-windows", type=int, default=8, help="windows per forward pass (default 8)"
    )
    p.add_argument(
        "--folder-fps", type=float, default=25.0, help="frame rate of frame folders (default 25)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def score_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``seqnrl score``; returns the exit code (0 ok, 1 some input failed,
    2 unusable checkpoint or arguments)."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.smooth is not None and not args.smooth >= 0:
        _emit("ERROR", "--smooth", f"must be >= 0, got {args.smooth}")
        return 2
    if args.batch_windows < 1 or not args.folder_fps > 0:
        _emit("ERROR", "arguments", "--batch-windows must be >= 1 and --folder-fps > 0")
        return 2
    cfg = ScoreConfig(
        out=Path(args.out),
        overlay=args.overlay,
        mask=args.mask,
        smooth=args.smooth,
        overwrite=args.overwrite,
        batch_windows=args.batch_windows,
        folder_fps=args.folder_fps,
        progress=not args.no_progress,
    )
    try:
        report = score_inputs(args.inputs, args.ckpt, cfg)
    except (CheckpointError, ConfigError) as e:
        _emit("ERROR", display_path(e.path or args.ckpt), f"{type(e).__name__}: {e.cause}")
        return 2
    n_ok, n_kept, n_bad = len(report.scored), len(report.skipped), len(report.failed)
    _emit(
        "DONE",
        display_path(cfg.out),
        f"{n_ok} scored, {n_kept} kept, {n_bad} failed -> {SUMMARY_FILE}",
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(score_main())
