"""Sector / field-of-view masking: generated fans with burnt-in overlays, a real lung clip,
mask files, the cache and the transform."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from seqnrl.errors import ConfigError
from seqnrl.intake import sector as S
from seqnrl.intake.sector import (
    SectorCache,
    SectorParams,
    apply_mask,
    detect_sector,
    load_mask_png,
    resize_mask,
    resolve_mode,
    save_mask_png,
    sector_mask_for,
)
from seqnrl.io import write_video
from tests.conftest import shared_data

# 5x7 block glyphs, drawn as constant pixels (burnt-in text)
GLYPHS = {
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
    "I": ["11111", "00100", "00100", "00100", "00100", "00100", "11111"],
    "D": ["11110", "10001", "10001", "10001", "10001", "10001", "11110"],
    "0": ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    "7": ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
}


def draw_text(frames: np.ndarray, text: str, y: int, x: int, scale: int = 2, value: int = 230) -> np.ndarray:
    """Burn ``text`` into every frame ``(T, H, W)`` at ``(y, x)``; returns the text's pixels."""
    where = np.zeros(frames.shape[1:], bool)
    for k, ch in enumerate(text):
        glyph = np.array([[c == "1" for c in row] for row in GLYPHS[ch]])
        big = np.kron(glyph, np.ones((scale, scale), bool))
        x0 = x + k * 6 * scale
        where[y : y + big.shape[0], x0 : x0 + big.shape[1]] |= big
    frames[:, where] = value
    return where


def fan_clip(n: int = 24, h: int = 96, w: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A convex-probe-like clip: speckled fan whose brightness decays with depth, black
    outside. Returns ``(frames (T, H, W) uint8, fan (H, W) bool)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy + 12, xx - w / 2)
    ang = np.degrees(np.arctan2(xx - w / 2, yy + 12))
    fan = (np.abs(ang) <= 34) & (r >= 16) & (r <= h + 4)
    base = 170 * np.exp(-2.0 * yy / h) + 15
    frames = np.zeros((n, h, w), np.uint8)
    for t in range(n):
        band = 1 + 0.3 * np.sin(yy / 6 + t / 2)  # moving pleura-like band
        speckle = rng.gamma(4.0, 0.25, (h, w))
        frames[t] = np.clip(base * band * speckle, 0, 255).astype(np.uint8) * fan
    return frames, fan


def add_overlays(frames: np.ndarray, fan: np.ndarray) -> dict[str, np.ndarray]:
    """Burnt-in static text and logo, a sweeping ECG trace and a changing frame counter,
    all outside the fan. Returns the pixels of each overlay."""
    n, h, w = frames.shape
    out = {"text": draw_text(frames, "PID07", 2, 2, scale=1)}
    logo = np.zeros((h, w), bool)
    logo[3:11, w - 14 : w - 3] = True
    frames[:, logo] = 200
    out["logo"] = logo
    # ECG: one bright pixel per column, phase moving with time, bottom-left corner
    ecg = np.zeros((h, w), bool)
    for t in range(n):
        for x in range(2, 16):
            y = h - 8 + int(round(3 * np.sin((x + 3 * t) / 3.0)))
            frames[t, y, x] = 255
            ecg[y, x] = True
    out["ecg"] = ecg
    # frame counter: a small block of pixels that changes every frame, bottom-right corner
    counter = np.zeros((h, w), bool)
    counter[h - 10 : h - 3, w - 16 : w - 4] = True
    rng = np.random.default_rng(7)
    for t in range(n):
        frames[t, counter] = rng.integers(0, 2, counter.sum()) * 250
    out["counter"] = counter
    for name, px in out.items():  # the overlays really are outside (and clear of) the fan
        assert not (px & ndimage.binary_dilation(fan, iterations=5)).any(), name
    return out


# ---------------------------------------------------------------------------------------
# detection on generated clips
# ---------------------------------------------------------------------------------------
def test_fan_is_found_and_burnt_in_overlays_are_blanked():
    frames, fan = fan_clip()
    overlays = add_overlays(frames, fan)
    res = detect_sector(frames)
    assert res.active, res.reason
    kept = (res.mask & fan).sum() / fan.sum()
    assert kept > 0.97, f"only {kept:.1%} of the fan kept"
    # at most a thin rim beyond the fan (box-filtered motion, hull over the near-field arc)
    assert ndimage.distance_transform_edt(~fan)[res.mask].max() <= 3.0
    for name, px in overlays.items():
        assert not (res.mask & px).any(), f"{name} overlay inside the mask"
    masked = apply_mask(torch.from_numpy(frames)[None], res.mask)  # (1, T, H, W)
    for px in overlays.values():
        assert int(masked[0][:, torch.from_numpy(px)].max()) == 0
    assert torch.equal(masked[0][:, torch.from_numpy(fan & res.mask)], torch.from_numpy(frames)[:, fan & res.mask])


def test_static_shadow_inside_the_fan_is_kept_by_the_convex_hull():
    """A rib shadow: a black, motionless wedge from mid-depth to the fan's far edge. It does
    not move, and it opens onto the surround, so only the convex hull puts it back."""
    frames, fan = fan_clip()
    h, w = fan.shape
    yy, xx = np.mgrid[0:h, 0:w]
    ang = np.degrees(np.arctan2(xx - w / 2, yy + 12))
    shadow = fan & (np.abs(ang - 8) <= 6) & (yy > 0.4 * h)
    frames[:, shadow] = 0
    res = detect_sector(frames)
    assert res.active
    assert (res.mask & shadow).sum() / shadow.sum() > 0.95


def test_rgb_and_float_frames_give_the_same_mask():
    frames, fan = fan_clip(n=12)
    grey = detect_sector(frames).mask
    rgb = detect_sector(np.repeat(frames[..., None], 3, axis=-1)).mask
    flt = detect_sector(frames.astype(np.float32) / 255.0).mask
    assert (grey != rgb).mean() < 0.005 and (grey != flt).mean() < 0.005


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: np.full((10, 32, 32), 90, np.uint8), "no pixel changes"),
        (lambda: fan_clip(n=1)[0], "from 1 frame"),
        (lambda: np.random.default_rng(0).integers(0, 255, (8, 40, 40), dtype=np.uint8), "fills the whole frame"),
    ],
    ids=["static", "one_frame", "whole_frame_moves"],
)
def test_nothing_is_masked_when_there_is_no_sector(make, reason):
    res = detect_sector(make())
    assert not res.active and reason in res.reason


def test_camera_scene_with_static_bright_background_is_not_masked():
    """A pedestrian-camera-like scene: textured static background, a moving blob. Masking the
    background away would destroy the scene: the bright surround rejects the mask."""
    rng = np.random.default_rng(0)
    bg = rng.integers(60, 200, (64, 64), dtype=np.uint8)
    frames = np.repeat(bg[None], 16, axis=0)
    for t in range(16):
        frames[t, 20:44, 2 + 2 * t : 20 + 2 * t] = rng.integers(0, 255, (24, 18))
    res = detect_sector(frames)
    assert not res.active and "not dark" in res.reason


def test_small_moving_speck_is_not_a_sector():
    frames = np.zeros((10, 64, 64), np.uint8)
    frames[:, 30:34, 30:34] = np.random.default_rng(0).integers(0, 255, (10, 4, 4))
    res = detect_sector(frames)
    assert not res.active


# ---------------------------------------------------------------------------------------
# the transform and resizing
# ---------------------------------------------------------------------------------------
def test_apply_mask_shapes_and_dtypes():
    mask = np.zeros((8, 10), bool)
    mask[2:6, 3:9] = True
    x = torch.full((3, 4, 8, 10), 200, dtype=torch.uint8)
    y = apply_mask(x, mask)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert int(y[:, :, ~torch.from_numpy(mask)].max()) == 0 and int(y[:, :, torch.from_numpy(mask)].min()) == 200
    xb = torch.rand(2, 1, 3, 8, 10)
    assert torch.equal(apply_mask(xb, mask)[..., ~torch.from_numpy(mask)], torch.zeros_like(xb[..., ~torch.from_numpy(mask)]))
    assert apply_mask(x, None) is x
    with pytest.raises(ValueError):
        apply_mask(torch.zeros(8, 10), mask)


@pytest.mark.parametrize("hw", [(16, 20), (5, 7), (40, 30)])
def test_resized_mask_never_keeps_a_pixel_touching_the_outside(hw):
    frames, fan = fan_clip(n=12, h=48, w=64)
    res = detect_sector(frames)
    small = resize_mask(res.mask, hw).numpy()
    assert small.shape == hw and small.any()
    outside = torch.from_numpy(~res.mask).float()[None, None]
    # the fraction of outside pixels under each output pixel (area/bilinear both bleed)
    touched = torch.nn.functional.interpolate(outside, size=hw, mode="area")[0, 0].numpy() > 0
    if hw[0] <= 48 and hw[1] <= 64:
        assert not (small & touched).any()


def test_apply_mask_resizes_a_native_mask_to_the_model_size():
    frames, fan = fan_clip(n=12, h=48, w=64)
    res = detect_sector(frames)
    x = torch.full((1, 2, 24, 32), 1.0)
    y = apply_mask(x, res.mask)
    assert 0.4 < float(y.mean()) < float(res.mask.mean())


# ---------------------------------------------------------------------------------------
# files, cache, mode resolution
# ---------------------------------------------------------------------------------------
def test_mask_png_round_trip_and_checks(tmp_path):
    mask = np.zeros((30, 40), bool)
    mask[5:25, 10:30] = True
    p = save_mask_png(tmp_path / "m.png", mask, key="abc")
    assert np.array_equal(load_mask_png(p), mask)
    assert S.png_key(p) == "abc"
    # same aspect, other size: resized; other aspect: refused; all black: refused
    assert load_mask_png(p, (60, 80)).shape == (60, 80)
    with pytest.raises(ConfigError, match="aspect"):
        load_mask_png(p, (40, 40))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(ConfigError, match="entirely black"):
        load_mask_png(tmp_path / "black.png")
    (tmp_path / "junk.png").write_bytes(b"no png")
    with pytest.raises(ConfigError, match="junk.png"):
        load_mask_png(tmp_path / "junk.png")


def test_masks_are_cached_per_recording(tmp_path, monkeypatch):
    frames, fan = fan_clip(n=16, h=48, w=64)
    video = write_video(tmp_path / "fan.mp4", torch.from_numpy(frames)[None], 25, lossless=True)
    calls = []
    real = S.detect_sector
    monkeypatch.setattr(S, "detect_sector", lambda f, p=None: calls.append(1) or real(f, p))
    cache = SectorCache()
    png = tmp_path / "out" / "fan_mask.png"
    a = sector_mask_for(video, "auto", png=png, cache=cache)
    b = sector_mask_for(video, "auto", png=png, cache=cache)
    assert a.active and b is a and len(calls) == 1 and png.is_file()
    # a new process (empty memory cache) reuses the PNG while the video is unchanged
    c = sector_mask_for(video, "auto", png=png, cache=SectorCache())
    assert len(calls) == 1 and np.array_equal(c.mask, a.mask) and c.info.get("cached_png")
    # a changed recording is detected again
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    sector_mask_for(video, "auto", png=png, cache=cache)
    assert len(calls) == 2
    assert not sector_mask_for(video, "none", cache=cache).active
    # a mask file of the recording's size
    custom = save_mask_png(tmp_path / "custom.png", fan)
    f = sector_mask_for(video, str(custom), cache=cache)
    assert f.method == "file" and np.array_equal(f.mask, fan)


def test_mode_resolution_order(tmp_path):
    assert resolve_mode(None, None) == ("none", "default")
    assert resolve_mode(None, "auto") == ("auto", "checkpoint input spec")
    assert resolve_mode(None, "none") == ("none", "checkpoint input spec")
    assert resolve_mode("auto", "none") == ("auto", "--mask")
    with pytest.raises(ConfigError, match="--mask"):
        resolve_mode(str(tmp_path / "missing.png"), "none")


# ---------------------------------------------------------------------------------------
# a real lung ultrasound clip
# ---------------------------------------------------------------------------------------
def test_real_lung_clip_keeps_the_moving_area_and_drops_burnt_in_text():
    clip = shared_data("lus/videos/Reg_pat1Image_133327.mpeg")
    frames = S.sample_frames(clip, SectorParams(sample_frames=32))
    std = ndimage.uniform_filter(frames.astype(np.float32).std(axis=0), 5)
    moving = std > 2.0
    # burn text into the top-left corner, which the fan (convex probe) leaves black
    text_frames = frames.copy()
    text = draw_text(text_frames, "PID07", 6, 4, scale=2)
    assert not (text & ndimage.binary_dilation(moving, iterations=3)).any(), "test text overlaps the image"
    res = detect_sector(text_frames)
    assert res.active, res.reason
    kept = (res.mask & moving).sum() / moving.sum()
    assert kept > 0.90, f"mask keeps only {kept:.1%} of the moving area"
    assert not (res.mask & text).any(), "burnt-in text kept"
    assert 0.6 < res.area_fraction < 0.95
    masked = apply_mask(torch.from_numpy(text_frames)[None], res.mask)
    assert int(masked[0][:, torch.from_numpy(text)].max()) == 0


def test_large_recordings_are_detected_at_a_bounded_size(tmp_path):
    """Detection on a recording larger than DETECT_MAX_SIDE runs on area-averaged frames and
    returns a mask at the native size (the scoring of a 4000x4000 clip took minutes)."""
    from seqnrl.io.write import write_video

    assert S.detection_size(480, 640) is None
    assert S.detection_size(1280, 1920) == (427, 640)
    h, w = 1280, 1280
    yy, xx = np.mgrid[0:h, 0:w]
    fan = ((yy > 60) & (np.abs(xx - w / 2) < (yy - 60) * 0.7) & (np.hypot(yy - 60, xx - w / 2) < 1150))
    rng = np.random.default_rng(0)
    frames = np.stack([(fan * rng.integers(60, 200, (h, w))).astype(np.uint8) for _ in range(12)])
    video = write_video(tmp_path / "big.mp4", torch.from_numpy(frames)[None], 10.0)
    res = S.sector_mask_for(video, "auto", cache=None)
    assert res.active, res.reason
    assert res.mask.shape == (h, w)
    inside = (res.mask & fan).sum() / fan.sum()
    outside = (res.mask & ~fan).sum() / (~fan).sum()
    assert inside > 0.9 and outside < 0.05, (inside, outside)
