"""Synthetic apical four-chamber echocardiography: the framework's embedded default data.

Every clip is rendered from a small physiological model, deterministically from a seed:

* a cardiac **volume curve** per beat: isovolumic contraction (volume held at EDV), fast
  ejection, isovolumic relaxation (held at ESV), rapid filling, diastasis, atrial kick;
  ED = start of isovolumic contraction (maximum volume), ES = end of ejection (minimum);
* the **LV** is drawn as an ellipse (long axis vertical, apex fixed near the transducer,
  the base moving towards the apex in systole) whose area follows the volume curve through
  ``volume = VOLUME_COEF * area_cm2 ** 1.5`` (area-length-like), so EF can be measured back
  from the frames (:func:`cavity_mask`, :func:`cavity_area`, :func:`estimate_ef`); the
  myocardium keeps its area, so the wall thickens in systole;
* RV, both atria and the pericardium around it, tissue texture that moves with the wall,
  multiplicative Rayleigh speckle that partly changes every frame, depth attenuation and a
  fan-shaped field of view that is exactly black outside.

Geometry is in centimetres: the image is ``DEPTH_CM`` deep and as wide, the fan's apex at
the top centre. Volumes are mL-like (EDV around 100).

Anomalies (:data:`ANOMALIES`) act inside a span of frames (half-open ``[start, stop)``) and
leave every other frame bit-identical to the normal clip of the same seed, except
``reduced_ef`` which changes the whole clip (dilated LV, EF 20-40 %). ``pixel_mask`` marks
the pixels whose noise-free image differs from the normal version's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from seqnrl.batch import Sample, make_sample
from seqnrl.errors import ConfigError

ANOMALIES = ("reduced_ef", "dyssynchrony", "dropout", "akinesia", "arrhythmia")

DEPTH_CM = 16.0  # image height (and width) in cm
SECTOR_HALF_ANGLE_DEG = 42.0
SECTOR_RADIUS_CM = 15.6
VOLUME_COEF = 0.57  # mL = VOLUME_COEF * (cavity area in cm^2) ** 1.5
LV_X_CM = 1.4  # LV long axis, right of the image centre (apical four-chamber view)
LV_APEX_CM = 3.0  # depth of the endocardial apex
LV_SEED_CM = (LV_X_CM, 6.2)  # a point inside the LV cavity in every phase
MASK_THRESHOLD = 0.04  # noise-free intensity difference counted as "changed" in pixel_mask

_F_RF, _F_DIA = 0.72, 0.84  # normalised volume after rapid filling / after diastasis
_LONG_AXIS_POWER = 0.4  # a ~ area^0.4, b ~ area^0.6: the long axis shortens less


@dataclass
class EchoSample:
    """One synthetic clip. ``video`` ``(1, T, H, W)`` float32 in [0, 1]."""

    video: torch.Tensor
    volume: torch.Tensor  # (T,) float32, mL-like
    ed_frames: list[int]
    es_frames: list[int]
    ef: float  # % from the volume curve: 100 * (max - min) / max over the clip's frames
    frame_label: torch.Tensor  # (T,) int64, 1 = anomalous frame
    pixel_mask: torch.Tensor  # (1, T, H, W) float32 0/1
    ed_es_signal: torch.Tensor  # (T,) float32: +1 at ED, -1 at ES, cosine in between
    anomaly: str | None
    fps: float
    anomaly_span: tuple[int, int] | None = None  # [start, stop) frames; whole clip for reduced_ef
    seed: int | None = None
    # (T, 4) float32 LV endocardial ellipse per frame in pixels: centre x, centre y, vertical
    # semi-axis, horizontal semi-axis (pixel i's centre at coordinate i). Exact for normal and
    # reduced_ef clips; segmental anomalies bend the drawn boundary away from it.
    lv_ellipse: torch.Tensor | None = None

    @property
    def label(self) -> int:
        return int(self.anomaly is not None)

    def to_sample(self, video_id: str, source: str = "synthetic://echo") -> Sample:
        """The clip as a batch-contract sample (:func:`seqnrl.batch.make_sample`)."""
        return make_sample(
            self.video,
            video_id=video_id,
            source=source,
            fps=self.fps,
            n_frames=self.video.shape[1],
            frame_label=self.frame_label,
            label=self.label,
            ef=self.ef,
            ed_es=self.ed_es_signal,
            pixel_mask=self.pixel_mask,
        )


# ----------------------------------------------------------------------------- cardiac cycle


@dataclass(frozen=True)
class _Timing:
    period: float  # s
    bounds: np.ndarray  # phase boundaries in s from ED: ivc end, ej end, ivr end, rf end, dia end

    @property
    def es_frac(self) -> float:
        return float(self.bounds[1] / self.period)


def _timing(period: float) -> _Timing:
    q = math.sqrt(period)
    d = np.array([0.05, 0.28, 0.08, 0.16, 0.12]) * q  # ivc, ejection, ivr, rapid filling, atrial
    if period - d.sum() < 0.03 * period:
        d *= 0.97 * period / d.sum()
    dia = period - d.sum()
    durs = np.array([d[0], d[1], d[2], d[3], dia])
    return _Timing(period, np.cumsum(durs))


def _profile(phi: np.ndarray, tm: _Timing) -> np.ndarray:
    """Normalised LV volume (1 = EDV, 0 = ESV) at beat phase ``phi`` (beats since an ED)."""
    tau = np.mod(phi, 1.0) * tm.period
    e0, e1, e2, e3, e4 = tm.bounds
    p = tm.period

    def s(lo, hi):
        return np.clip((tau - lo) / max(hi - lo, 1e-9), 0.0, 1.0)

    def rise(x):
        return 0.5 * (1.0 - np.cos(np.pi * x))

    v = np.ones_like(tau)
    v = np.where((tau >= e0) & (tau < e1), 1.0 - rise(s(e0, e1) ** 0.75), v)
    v = np.where((tau >= e1) & (tau < e2), 0.0, v)
    v = np.where((tau >= e2) & (tau < e3), _F_RF * rise(s(e2, e3) ** 0.7), v)
    v = np.where((tau >= e3) & (tau < e4), _F_RF + (_F_DIA - _F_RF) * rise(s(e3, e4)), v)
    v = np.where(tau >= e4, _F_DIA + (1.0 - _F_DIA) * rise(s(e4, p)), v)
    return v


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


# ----------------------------------------------------------------------------- geometry


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in cm: x (1, 1, W) lateral (0 at the centre), y (1, H, 1) depth."""
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    x = ((c - 0.5) * DEPTH_CM).float().view(1, 1, size)
    y = (c * DEPTH_CM).float().view(1, size, 1)
    return x, y


def sector_mask(size: int) -> torch.Tensor:
    """``(H, W)`` bool: pixels inside the ultrasound fan (everything else is exactly black)."""
    x, y = _grid(size)
    r = torch.sqrt(x**2 + y**2)
    th = torch.atan2(x, y)
    return ((th.abs() <= math.radians(SECTOR_HALF_ANGLE_DEG)) & (r <= SECTOR_RADIUS_CM))[0]


def _smooth_noise(
    gen: torch.Generator, n: int, out_hw: tuple[int, int], coarse: int
) -> torch.Tensor:
    """``(n, 1, H, W)`` smooth random fields, zero mean, unit-ish std (bicubic upsampling)."""
    z = torch.randn(n, 1, coarse, coarse, generator=gen)
    return F.interpolate(z, size=out_hw, mode="bicubic", align_corners=False)


def _win(dang: torch.Tensor, half_width: float) -> torch.Tensor:
    """Cosine window of an angular distance (radians), 1 at 0, 0 beyond ``half_width``."""
    x = (dang.abs() / half_width).clamp(max=1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * x))


def _wrap(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def _col(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32)).view(-1, 1, 1)


def _ellipse_layers(x, y, cx, cy, a, b, th, tau):
    """Soft (cavity, outer wall) memberships of an ellipse with wall thickness ``th``."""
    u = (x - cx) / b
    v = (y - cy) / a
    d = torch.sqrt(u * u + v * v) + 1e-6
    s = torch.sqrt((b * u) ** 2 + (a * v) ** 2) / d  # cm per normalised unit along the ray
    m_in = torch.sigmoid((1.0 - d) * s / tau)
    m_out = torch.sigmoid((1.0 + th / s - d) * s / tau)
    return m_in, m_out


# ----------------------------------------------------------------------------- rendering


def _render(p: dict, g: dict, tau: float) -> torch.Tensor:
    """Noise-free image ``(T, H, W)`` from per-frame parameters ``p`` and static fields ``g``."""
    x, y = g["x"], g["y"]
    col = {k: _col(v) for k, v in p.items() if isinstance(v, np.ndarray)}
    dx, dy = p["dx"], p["dy"]

    img = g["tissue"].expand(col["a"].shape[0], -1, -1).clone()

    # pericardium: a bright band around the whole heart, breathing slightly with the beat
    pa = 7.4 * (1.0 + 0.015 * col["v"])
    pb = 6.3 * (1.0 + 0.015 * col["v"])
    m_in, m_out = _ellipse_layers(x, y, -1.0 + dx, 8.5 + dy, pa, pb, 0.4, tau)
    img = torch.lerp(img, 0.95 * g["tex_bg"], (m_out - m_in) * g["peri_fade"])

    # atria (behind the ventricles)
    for pre, wall in (("la", 0.36), ("ra", 0.32)):
        m_in, m_out = _ellipse_layers(
            x, y, col[pre + "_cx"], col[pre + "_cy"], col[pre + "_a"], col[pre + "_b"], 0.28, tau
        )
        img = torch.lerp(img, wall * g["tex_bg"], m_out)
        img = torch.lerp(img, g["blood"], m_in)

    # right ventricle
    m_in, m_out = _ellipse_layers(
        x, y, col["rv_cx"], col["rv_cy"], col["rv_a"], col["rv_b"], 0.45, tau
    )
    img = torch.lerp(img, 0.48 * g["tex_bg"], m_out)
    img = torch.lerp(img, g["blood"], m_in)

    # left ventricle in its own normalised polar coordinates (u, v): boundary radius rho(alpha)
    a, b, cx, cy = col["a"], col["b"], col["cx"], col["cy"]
    u, v = torch.broadcast_tensors((x - cx) / b, (y - cy) / a)
    d = torch.sqrt(u * u + v * v) + 1e-6
    sin_a, cos_a = u / d, v / d
    alpha = torch.atan2(u, v)  # 0 towards the base (down), +pi/2 lateral wall (right)
    s = torch.sqrt((b * sin_a) ** 2 + (a * cos_a) ** 2)
    seg = _win(_wrap(alpha - p["seg_c"]), p["seg_hw"]) * col["seg_on"]
    ur = col["b_ref"] * sin_a / b
    vr = (col["a_ref"] - a + col["a_ref"] * cos_a) / a
    rho = 1.0 + seg * (torch.sqrt(ur * ur + vr * vr) - 1.0)
    base = _win(alpha, 0.55)  # the valve plane: thinner, slightly less bright
    thick = col["w"] * (1.0 - 0.3 * base)
    thick = torch.lerp(thick, col["w_ref"] * (1.0 - 0.3 * base), seg)
    m_in = torch.sigmoid((rho - d) * s / tau)
    m_out = torch.sigmoid((rho + thick / s - d) * s / tau)
    tex = F.grid_sample(
        g["tex_lv"].expand(u.shape[0], -1, -1, -1),
        torch.stack((u / 2.2, v / 2.2), dim=-1),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )[:, 0]
    wall = 0.62 * (1.0 + 0.25 * tex) * (1.0 + p["scar"] * seg)
    img = torch.lerp(img, wall, m_out)
    img = torch.lerp(img, g["blood"], m_in)

    # acoustic dropout wedge (anomaly), attenuation, fan
    if p["drop_on"].any():
        wedge = _win(g["theta"] - p["drop_c"], p["drop_hw"])
        wedge = wedge * torch.sigmoid((g["r"] - p["drop_r0"]) / 0.3)
        img = img * (1.0 - p["drop_depth"] * wedge * col["drop_on"])
    return img * g["gain"]


def _static_fields(size: int, gen: torch.Generator, rng: np.random.Generator) -> dict:
    x, y = _grid(size)
    r = torch.sqrt(x**2 + y**2)
    theta = torch.atan2(x, y)
    hw = (size, size)
    n = _smooth_noise(gen, 4, hw, coarse=max(6, size // 6))[:, 0]
    n2 = _smooth_noise(gen, 1, hw, coarse=3)[0, 0]
    # background tissue: mottled mid-grey, a bright near field (chest wall) fading with depth
    tissue = 0.2 + 0.07 * n[0] + 0.05 * n2
    tissue = tissue + 0.35 * torch.exp(-((r - 0.6) ** 2) / 0.5) * (1 + 0.3 * n[1])
    tissue = tissue.clamp(0.02, 1.0)
    tex_bg = (1.0 + 0.2 * n[2]).clamp(0.5, 1.6)
    # blood pool: nearly black, with a faint haze (near-field clutter) close to the probe
    blood = (0.04 + 0.015 * n[3] + 0.06 * torch.exp(-r / 3.0) * (1 + 0.5 * n[1])).clamp(0.01, 0.2)
    peri_fade = ((12.5 - y) / 2.5).clamp(0.0, 1.0).expand(1, size, size)
    tex_lv = torch.randn(1, 1, 24, 24, generator=gen)
    tex_lv = F.avg_pool2d(F.pad(tex_lv, (1, 1, 1, 1), mode="circular"), 3, stride=1) * 2.0
    att_k = float(rng.uniform(0.03, 0.045))
    lateral = ((math.radians(SECTOR_HALF_ANGLE_DEG) - theta.abs()) / math.radians(4)).clamp(0, 1)
    radial = ((SECTOR_RADIUS_CM - r) / 0.4).clamp(0, 1)
    fan = sector_mask(size)
    shade = torch.exp(-att_k * r) * (0.55 + 0.45 * lateral) * (0.3 + 0.7 * radial) * fan
    return dict(
        x=x,
        y=y,
        r=r[0],
        theta=theta[0],
        tissue=tissue.view(1, size, size),
        tex_bg=tex_bg.view(1, size, size),
        blood=blood.view(1, size, size),
        tex_lv=tex_lv,
        peri_fade=peri_fade,
        shade=shade[0],
        fan=fan,
        gain=float(rng.uniform(0.9, 1.15)),
    )


def _blur_matrix(n: int, sigma: float, boundary: str, norm: str) -> torch.Tensor:
    """``(n, n)`` matrix applying a 1-D Gaussian along an axis (``x @ M.T`` blurs the last
    axis, ``M @ x`` the second last): a matmul is much faster on CPU than a 1-channel conv.
    ``boundary`` "reflect" (mirror without repeating the edge) or "replicate"; ``norm``
    "l1" (mean preserving) or "l2" (variance preserving for white noise)."""
    k = max(1, int(math.ceil(3 * sigma)))
    taps = torch.arange(-k, k + 1)
    w = torch.exp(-(taps.double() ** 2) / (2 * sigma**2))
    w = w / (w.sum() if norm == "l1" else w.norm())
    idx = torch.arange(n).view(-1, 1) + taps.view(1, -1)
    if boundary == "reflect":
        idx = idx.abs()
        idx = torch.where(idx > n - 1, 2 * (n - 1) - idx, idx).clamp(0, n - 1)
    else:
        idx = idx.clamp(0, n - 1)
    m = torch.zeros(n, n, dtype=torch.float64)
    m.scatter_add_(1, idx, w.expand(n, -1).contiguous())
    return m.float()


def _speckle(
    gen: torch.Generator, t: int, size: int, strength: float, rho_static: float = 0.5
) -> torch.Tensor:
    """Multiplicative Rayleigh speckle ``(T, H, W)`` with mean 1 and std/mean ``strength``;
    half of it is fixed to the scene, half new every frame; grains wider than deep."""
    z_static = torch.randn(1, 2, size, size, generator=gen)
    z_frame = torch.randn(t, 2, size, size, generator=gen)
    if strength <= 0:
        return torch.ones(t, size, size)
    z = math.sqrt(rho_static) * z_static + math.sqrt(1 - rho_static) * z_frame
    px = size / 64.0
    # unit L2 norm keeps the gaussians' unit variance after blurring
    z = (
        _blur_matrix(size, 0.55 * px, "reflect", "l2")
        @ z
        @ _blur_matrix(size, 0.9 * px, "reflect", "l2").T
    )
    rayleigh = torch.sqrt(z[:, 0] ** 2 + z[:, 1] ** 2) / math.sqrt(math.pi / 2)
    return (1.0 + strength * (rayleigh - 1.0) / 0.5227).clamp(min=0.0)


# ----------------------------------------------------------------------------- events


def _events(phi_of_t, t_lo: float, t_hi: float, es_frac: float, step: float):
    """ED / ES event times (s) of a monotone beat phase function over ``[t_lo, t_hi]``."""
    tg = np.arange(t_lo, t_hi + step, step)
    ph = phi_of_t(tg)
    ks = np.arange(math.ceil(ph[0]), math.floor(ph[-1]) + 1)
    ed = np.interp(ks, ph, tg)
    es_k = ks[(ks + es_frac >= ph[0]) & (ks + es_frac <= ph[-1])]
    es = np.interp(es_k + es_frac, ph, tg)
    return ed, es


def _pick_frames(times, opposite, vol, fps, pick_max):
    """Frame of each in-clip event: argmax (ED) / argmin (ES) of the volume between the
    neighbouring opposite events."""
    n = len(vol)
    tf = np.arange(n) / fps
    out = []
    for te in times:
        if te < -1e-9 or te > tf[-1] + 1e-9:
            continue
        prev = opposite[opposite < te]
        nxt = opposite[opposite > te]
        lo = prev.max() if len(prev) else -np.inf
        hi = nxt.min() if len(nxt) else np.inf
        idx = np.nonzero((tf > lo) & (tf < hi))[0]
        if len(idx) == 0:
            continue
        sub = vol[idx]
        out.append(int(idx[np.argmax(sub) if pick_max else np.argmin(sub)]))
    return sorted(set(out))


def _ed_es_signal(n, ed_frames, es_frames, ed_t, es_t, fps) -> np.ndarray:
    """+1 at ED, -1 at ES, cosine in between. Events outside the clip anchor the ends at
    their (fractional) frame positions."""
    t_last = (n - 1) / fps
    anchors = [(float(f), 1.0) for f in ed_frames] + [(float(f), -1.0) for f in es_frames]
    anchors += [(t * fps, 1.0) for t in ed_t if t < -1e-9 or t > t_last + 1e-9]
    anchors += [(t * fps, -1.0) for t in es_t if t < -1e-9 or t > t_last + 1e-9]
    anchors.sort()
    pos = np.array([a[0] for a in anchors])
    val = np.array([a[1] for a in anchors])
    f = np.arange(n, dtype=np.float64)
    j = np.clip(np.searchsorted(pos, f, side="right") - 1, 0, len(pos) - 2)
    p0, p1 = pos[j], pos[j + 1]
    x = np.clip((f - p0) / np.maximum(p1 - p0, 1e-9), 0.0, 1.0)
    s0, s1 = val[j], val[j + 1]
    # s0 == -s1 always (events alternate); the general form keeps it safe if not
    return 0.5 * (s0 + s1) + 0.5 * (s0 - s1) * np.cos(np.pi * x)


# ----------------------------------------------------------------------------- public API


def make_echo(
    seed: int,
    n_frames: int = 64,
    size: int = 64,
    fps: float = 30.0,
    heart_rate_bpm: float | None = None,
    ef: float | None = None,
    anomaly: str | None = None,
    anomaly_span: tuple[int, int] | None = None,
    speckle: float = 0.25,
) -> EchoSample:
    """One synthetic apical-four-chamber clip.

    ``heart_rate_bpm`` defaults to a random 55-95; ``ef`` (%) to a random normal 55-70, or
    20-40 with ``anomaly="reduced_ef"`` (where a given ``ef`` is the reduced value).
    ``anomaly_span`` is ``(start, stop)``, half-open, in frames; default a random contiguous
    25-50 % of the clip (ignored by ``reduced_ef``, which affects every frame).
    ``speckle`` is the std/mean of the multiplicative speckle (0 = none).
    All random choices come from ``seed``; the normal parameters are drawn identically
    whatever the anomaly, so ``make_echo(s)`` is the normal version of
    ``make_echo(s, anomaly=...)``.
    """
    if anomaly is not None and anomaly not in ANOMALIES:
        raise ConfigError(f"unknown anomaly {anomaly!r}; expected one of {ANOMALIES}")
    if n_frames < 2:
        raise ConfigError(f"n_frames must be >= 2, got {n_frames}")
    if size < 16:
        raise ConfigError(f"size must be >= 16, got {size}")
    if not fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps}")
    if speckle < 0:
        raise ConfigError(f"speckle must be >= 0, got {speckle}")
    if heart_rate_bpm is not None and not 20 <= heart_rate_bpm <= 240:
        raise ConfigError(f"heart_rate_bpm must be in [20, 240], got {heart_rate_bpm}")
    if ef is not None and not 5 <= ef <= 90:
        raise ConfigError(f"ef must be in [5, 90] %, got {ef}")

    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0])
    # --- normal parameters, always drawn in this order
    hr = float(rng.uniform(55, 95))
    ef_n = float(rng.uniform(55, 70))
    phase0 = float(rng.uniform(0, 1))
    a_ed = float(rng.uniform(3.9, 4.5))
    b_ed = float(rng.uniform(2.2, 2.6))
    w_ed = float(rng.uniform(0.9, 1.1))
    dx, dy = (float(z) for z in rng.uniform(-0.4, 0.4, 2))
    rv_a, rv_b = float(rng.uniform(2.9, 3.4)), float(rng.uniform(1.3, 1.7))
    la_a, la_b = float(rng.uniform(1.5, 1.9)), float(rng.uniform(1.8, 2.2))
    ra_a, ra_b = float(rng.uniform(1.4, 1.8)), float(rng.uniform(1.6, 2.0))
    gen = torch.Generator().manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF)
    g = _static_fields(size, gen, rng)
    noise = _speckle(gen, n_frames, size, speckle)
    add_noise = torch.rand(n_frames, size, size, generator=gen)

    if heart_rate_bpm is not None:
        hr = float(heart_rate_bpm)
    if ef is not None and anomaly != "reduced_ef":
        ef_n = float(ef)
    period = 60.0 / hr
    tm = _timing(period)
    t = np.arange(n_frames) / fps
    t0 = -phase0 * period  # first ED at or before the clip's start

    def phi_normal(tt):
        return (np.asarray(tt) - t0) / period

    # --- anomaly parameters from their own stream
    arng = np.random.default_rng(
        [int(seed) & 0xFFFFFFFF, 1, ANOMALIES.index(anomaly) if anomaly else 99]
    )
    span_len = max(1, int(round(arng.uniform(0.25, 0.5) * n_frames)))
    span_start = int(arng.integers(0, n_frames - span_len + 1))
    span = (span_start, span_start + span_len)
    if anomaly_span is not None:
        s0, s1 = (int(z) for z in anomaly_span)
        if not 0 <= s0 < s1 <= n_frames:
            raise ConfigError(
                f"anomaly_span must satisfy 0 <= start < stop <= n_frames={n_frames}, "
                f"got {anomaly_span}"
            )
        span = (s0, s1)
    if anomaly == "reduced_ef":
        span = (0, n_frames)
    on = np.zeros(n_frames)
    if anomaly is not None:
        on[span[0] : span[1]] = 1.0

    def geometry(vn, ef_pct, a0, b0, w0):
        edv = VOLUME_COEF * (math.pi * a0 * b0) ** 1.5
        esv = edv * (1.0 - ef_pct / 100.0)
        vol = esv + (edv - esv) * vn
        ratio = (vol / edv) ** (2.0 / 3.0)  # area / ED area
        a = a0 * ratio**_LONG_AXIS_POWER
        b = b0 * ratio ** (1.0 - _LONG_AXIS_POWER)
        m = math.pi * ((a0 + w0) * (b0 + w0) - a0 * b0)  # myocardial area, conserved
        w = 0.5 * (-(a + b) + np.sqrt((a + b) ** 2 + 4.0 * m / math.pi))
        return a, b, w

    # --- normal volume profile, possibly warped (arrhythmia)
    v_n = _profile(phi_normal(t), tm)
    phi_fn = phi_normal
    v = v_n
    ef_clip, a0, b0, w0 = ef_n, a_ed, b_ed, w_ed
    p_extra: dict = dict(seg_c=0.0, seg_hw=1.0, scar=0.0, drop_c=0.0, drop_hw=0.1)
    p_extra.update(drop_r0=0.0, drop_depth=0.0)
    seg_on = np.zeros(n_frames)
    drop_on = np.zeros(n_frames)
    ref = None  # (a_ref, b_ref, w_ref) per frame for segmental anomalies
    if anomaly == "reduced_ef":
        ef_clip = float(ef) if ef is not None else float(arng.uniform(20, 40))
        a0, b0 = a_ed * float(arng.uniform(1.08, 1.18)), b_ed * float(arng.uniform(1.15, 1.3))
        w0 = w_ed * float(arng.uniform(0.7, 0.85))
    elif anomaly == "arrhythmia":
        # one extra, premature and poorly filled beat squeezed into the span; the rhythm is
        # back in phase after it (the volume curve is periodic in the beat phase)
        ta, tb = (span[0] - 0.5) / fps, (span[1] - 0.5) / fps

        def phi_fn(tt, _ta=ta, _tb=tb):
            tt = np.asarray(tt)
            return phi_normal(tt) + _smoothstep((tt - _ta) / (_tb - _ta))

        uu = np.clip((t - ta) / (tb - ta), 0.0, 1.0)
        inside = (uu > 0) & (uu < 1)
        warped = _profile(phi_normal(t) + _smoothstep(uu), tm) * (
            1.0 - float(arng.uniform(0.3, 0.5)) * np.sin(np.pi * uu)
        )
        v = np.where(inside, warped, v_n)
    elif anomaly in ("dyssynchrony", "akinesia"):
        side = float(arng.choice([-1.0, 1.0]))
        seg_on = on
        if anomaly == "dyssynchrony":
            p_extra.update(seg_c=side * float(arng.uniform(1.2, 2.0)))
            p_extra.update(seg_hw=float(arng.uniform(0.7, 1.0)))
            delay = float(arng.uniform(0.3, 0.45)) * period
            v_del = _profile(phi_normal(t - delay), tm)
            ref = geometry(v_del, ef_n, a_ed, b_ed, w_ed)
        else:
            p_extra.update(seg_c=side * float(arng.uniform(1.3, 2.3)))
            p_extra.update(seg_hw=float(arng.uniform(0.6, 0.9)))
            p_extra.update(scar=float(arng.uniform(0.25, 0.4)))
            ref = (np.full(n_frames, a_ed), np.full(n_frames, b_ed), np.full(n_frames, 0.6 * w_ed))
    elif anomaly == "dropout":
        drop_on = on
        p_extra.update(drop_c=math.radians(float(arng.uniform(-25, 25))))
        p_extra.update(drop_hw=math.radians(float(arng.uniform(8, 14))))
        p_extra.update(drop_r0=float(arng.uniform(1.0, 4.0)))
        p_extra.update(drop_depth=float(arng.uniform(0.9, 0.97)))

    def params(vn, ef_pct, a0_, b0_, w0_, ref_, seg_on_, drop_on_):
        a, b, w = geometry(vn, ef_pct, a0_, b0_, w0_)
        if ref_ is None:
            ref_ = (a, b, w)
        base_lv = LV_APEX_CM + dy + 2 * a
        rv_sa = 1.0 - 0.15 * (1 - vn)
        rv_sb = 1.0 - 0.25 * (1 - vn)
        rva, rvb = rv_a * rv_sa, rv_b * rv_sb
        atr = 1.0 + 0.12 * (1 - vn)  # atria fill during ventricular systole
        rv_cx = LV_X_CM + dx - b - w - rvb + 0.05
        rv_cy = LV_APEX_CM + 1.3 + dy + rva
        p = dict(
            v=vn,
            a=a,
            b=b,
            w=w,
            cx=np.full_like(a, LV_X_CM + dx),
            cy=LV_APEX_CM + dy + a,
            a_ref=ref_[0],
            b_ref=ref_[1],
            w_ref=ref_[2],
            seg_on=seg_on_,
            drop_on=drop_on_,
            rv_a=rva,
            rv_b=rvb,
            rv_cx=rv_cx,
            rv_cy=rv_cy,
            la_a=la_a * atr,
            la_b=la_b * atr,
            la_cx=np.full_like(a, LV_X_CM + dx + 0.3),
            la_cy=base_lv + 0.1 + la_a * atr,
            ra_a=ra_a * atr,
            ra_b=ra_b * atr,
            ra_cx=rv_cx - 0.2,
            ra_cy=rv_cy + rva + 0.1 + ra_a * atr,
            dx=dx,
            dy=dy,
        )
        p.update(p_extra)
        return p

    p = params(v, ef_clip, a0, b0, w0, ref, seg_on, drop_on)
    tau = 0.45 * DEPTH_CM / size
    base = _render(p, g, tau) * g["shade"]

    # LV volume from the drawn cavity: area = a * b * 1/2 * integral of rho(alpha)^2
    al = torch.linspace(-math.pi, math.pi, 721, dtype=torch.float64)[:-1].view(1, -1)
    a_t = torch.as_tensor(p["a"], dtype=torch.float64).view(-1, 1)
    b_t = torch.as_tensor(p["b"], dtype=torch.float64).view(-1, 1)
    ar = torch.as_tensor(p["a_ref"], dtype=torch.float64).view(-1, 1)
    br = torch.as_tensor(p["b_ref"], dtype=torch.float64).view(-1, 1)
    sgn = _win(_wrap(al - p["seg_c"]), p["seg_hw"]) * torch.as_tensor(seg_on).view(-1, 1)
    ur, vr = br * torch.sin(al) / b_t, (ar - a_t + ar * torch.cos(al)) / a_t
    rho = 1.0 + sgn * (torch.sqrt(ur**2 + vr**2) - 1.0)
    area = (a_t * b_t * math.pi * (rho**2).mean(dim=1, keepdim=True))[:, 0]
    volume = (VOLUME_COEF * area**1.5).numpy()

    # events and ED/ES frames
    step = period / 2000.0
    ed_t, es_t = _events(phi_fn, -2 * period, t[-1] + 2 * period, tm.es_frac, step)
    ed_frames = _pick_frames(ed_t, es_t, volume, fps, pick_max=True)
    es_frames = _pick_frames(es_t, ed_t, volume, fps, pick_max=False)
    signal = _ed_es_signal(n_frames, ed_frames, es_frames, ed_t, es_t, fps)
    if ed_frames and es_frames:
        ef_out = float(100.0 * (volume.max() - volume.min()) / volume.max())
    else:
        ef_out = float(ef_clip)

    # labels and pixel mask against the normal rendering of the same seed
    frame_label = torch.zeros(n_frames, dtype=torch.long)
    pixel_mask = torch.zeros(1, n_frames, size, size)
    if anomaly is not None:
        frame_label[span[0] : span[1]] = 1
        sl = slice(span[0], span[1])
        zeros = np.zeros(span[1] - span[0])
        pn = params(v_n[sl], ef_n, a_ed, b_ed, w_ed, None, zeros, zeros)
        base_n = _render(pn, g, tau) * g["shade"]
        diff = (base[sl] - base_n).abs() > MASK_THRESHOLD
        pixel_mask[0, sl] = diff.float()

    px_cm = DEPTH_CM / size
    video = base * noise + 0.02 * add_noise * g["shade"]
    video = (video.clamp(0.0, 1.0) * g["fan"]).unsqueeze(0).contiguous()
    return EchoSample(
        video=video.float(),
        volume=torch.as_tensor(volume, dtype=torch.float32),
        ed_frames=ed_frames,
        es_frames=es_frames,
        ef=ef_out,
        frame_label=frame_label,
        pixel_mask=pixel_mask,
        ed_es_signal=torch.as_tensor(signal, dtype=torch.float32),
        anomaly=anomaly,
        fps=float(fps),
        anomaly_span=span if anomaly is not None else None,
        seed=int(seed),
        lv_ellipse=torch.as_tensor(
            np.stack(
                [
                    (p["cx"] + DEPTH_CM / 2) / px_cm - 0.5,
                    p["cy"] / px_cm - 0.5,
                    p["a"] / px_cm,
                    p["b"] / px_cm,
                ],
                axis=1,
            ),
            dtype=torch.float32,
        ),
    )


def make_echo_dataset(
    seed: int, n_videos: int, anomaly_fraction: float = 0.0, **kw
) -> list[EchoSample]:
    """``n_videos`` clips; ``round(anomaly_fraction * n_videos)`` of them, at positions and
    with types chosen deterministically from ``seed``, carry an anomaly (types cycle through
    :data:`ANOMALIES` in a seeded order). ``kw`` goes to :func:`make_echo`."""
    if "anomaly" in kw or "seed" in kw:
        raise ConfigError("make_echo_dataset chooses 'seed' and 'anomaly' itself")
    if not 0.0 <= anomaly_fraction <= 1.0:
        raise ConfigError(f"anomaly_fraction must be in [0, 1], got {anomaly_fraction}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 2])
    seeds = rng.integers(0, 2**31 - 1, size=n_videos)
    n_abn = int(round(anomaly_fraction * n_videos))
    which = set(rng.permutation(n_videos)[:n_abn].tolist())
    order = [ANOMALIES[i] for i in rng.permutation(len(ANOMALIES))]
    out, k = [], 0
    for i in range(n_videos):
        kind = None
        if i in which:
            kind = order[k % len(order)]
            k += 1
        out.append(make_echo(int(seeds[i]), anomaly=kind, **kw))
    return out


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """Float video in [0, 1] to uint8 (values outside are clipped)."""
    return (video.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


# ----------------------------------------------------------------------------- measuring back


def _frames(video: torch.Tensor) -> torch.Tensor:
    """``(T, H, W)`` float from ``(T, H, W)``, ``(C, T, H, W)`` (channels averaged) or uint8."""
    v = torch.as_tensor(video).detach().cpu()
    if v.dtype == torch.uint8:
        v = v.float() / 255.0
    v = v.float()
    if v.ndim == 4:
        v = v.mean(dim=0)
    if v.ndim != 3:
        raise ValueError(f"expected a (T, H, W) or (C, T, H, W) video, got {tuple(v.shape)}")
    return v


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(T, H, W)`` frames (replicated edges)."""
    h, w = x.shape[-2:]
    return (
        _blur_matrix(h, sigma, "replicate", "l1") @ x @ _blur_matrix(w, sigma, "replicate", "l1").T
    )


def cavity_mask(video: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """``(T, H, W)`` bool LV cavity per frame: smooth, threshold dark pixels, keep the dark
    component around the LV position of this generator's layout, fill its holes.

    ``threshold`` defaults to the midpoint of the 10th and 90th intensity percentiles of
    the LV region (blood vs. wall). Meant for videos of this generator's geometry
    (e.g. diffusion samples trained on it), not for real echoes.
    """
    from scipy import ndimage

    x = _frames(video)
    t, h, w = x.shape
    sp = DEPTH_CM / h
    xs = _gauss_blur(x, max(0.5, 0.15 / sp))
    xc = ((torch.arange(w) + 0.5) / w - 0.5) * DEPTH_CM
    yc = (torch.arange(h) + 0.5) / h * DEPTH_CM
    roi = ((xc.view(1, -1) - LV_X_CM) / 4.2) ** 2 + ((yc.view(-1, 1) - 7.5) / 6.5) ** 2 < 1.0
    if threshold is None:
        vals = xs[:, roi]
        q = torch.quantile(
            vals.flatten()[:: max(1, vals.numel() // 200_000)], torch.tensor([0.1, 0.9])
        )
        threshold = float(0.5 * (q[0] + q[1]))
    dark = (xs < threshold) & sector_mask(w).unsqueeze(0) if h == w else (xs < threshold)
    dark = dark.numpy()
    struct = np.zeros((3, 3, 3), dtype=bool)
    struct[1] = ndimage.generate_binary_structure(2, 1)
    # erode before labelling so that thin dark bridges (a gap in the valve plane, speckle
    # holes in a thin wall) do not join the LV to the atrium; grow back inside ``dark``
    n_er = max(1, int(round(0.25 / sp)))
    core = ndimage.binary_erosion(dark, structure=struct, iterations=n_er)
    labels, _ = ndimage.label(core, structure=struct)
    sx = int(np.clip((LV_SEED_CM[0] / DEPTH_CM + 0.5) * w, 0, w - 1))
    sy = int(np.clip(LV_SEED_CM[1] / DEPTH_CM * h, 0, h - 1))
    rad = max(1, int(round(0.6 / sp)))
    out = np.zeros_like(dark)
    for i in range(t):
        patch = labels[i, max(0, sy - rad) : sy + rad + 1, max(0, sx - rad) : sx + rad + 1]
        ids, counts = np.unique(patch[patch > 0], return_counts=True)
        if len(ids):
            sel = labels[i] == ids[np.argmax(counts)]
            sel = ndimage.binary_dilation(sel, structure=struct[1], iterations=n_er) & dark[i]
            out[i] = ndimage.binary_fill_holes(sel)
    return torch.from_numpy(out)


def estimate_volume_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """``(T,)`` float32 volumes (this generator's units) of ``(T, H, W)`` cavity masks:
    ``VOLUME_COEF * area_cm2 ** 1.5`` with the generator's pixel spacing ``DEPTH_CM / H``."""
    m = torch.as_tensor(mask)
    sp = DEPTH_CM / m.shape[-2]
    area = m.float().sum(dim=(-2, -1)) * sp * sp
    return VOLUME_COEF * area**1.5


def cavity_area(video: torch.Tensor) -> torch.Tensor:
    """``(T,)`` float32 LV cavity area in cm^2 measured on the frames (see :func:`cavity_mask`)."""
    m = cavity_mask(video)
    sp = DEPTH_CM / m.shape[-2]
    return m.float().sum(dim=(-2, -1)) * sp * sp


def estimate_ef(video: torch.Tensor) -> float:
    """EF (%) measured on the frames: cavity volumes, a 3-frame temporal median, then
    ``100 * (max - min) / max``. Needs at least one ED and one ES in the clip."""
    vol = estimate_volume_from_mask(cavity_mask(video))
    if len(vol) >= 3:
        p = F.pad(vol.view(1, 1, -1), (1, 1), mode="replicate").view(-1)
        vol = p.unfold(0, 3, 1).median(dim=1).values
    vmax = float(vol.max())
    return float("nan") if vmax <= 0 else 100.0 * (vmax - float(vol.min())) / vmax


def restoration_set(n_train: int, n_normal: int, n_anomalous: int, n_frames: int = 32, size: int = 64) -> dict:
    """The synthetic-echo set of the normative evaluation (RQI / AHI / CACI): ``train``
    normal clips, held-out ``normal`` clips, ``anomalous`` clips (every kind of
    :data:`ANOMALIES` in turn) with their pixel ``masks``, frame labels and the ``healthy``
    clip each anomalous one was made from (same seed, no anomaly). Seeds are disjoint from
    the data module's (10 000+, 20 000+, 30 000+)."""
    kw = {"n_frames": n_frames, "size": size}
    train = [make_echo(10_000 + i, **kw).video for i in range(n_train)]
    normal = [make_echo(20_000 + i, **kw).video for i in range(n_normal)]
    anom = [
        make_echo(30_000 + i, anomaly=ANOMALIES[i % len(ANOMALIES)], **kw)
        for i in range(n_anomalous)
    ]
    healthy = [make_echo(30_000 + i, **kw).video for i in range(n_anomalous)]
    return {
        "name": "synthetic_echo",
        "train": torch.stack(train),
        "normal": torch.stack(normal),
        "anomalous": torch.stack([e.video for e in anom]),
        "masks": torch.stack([e.pixel_mask for e in anom]),
        "healthy": torch.stack(healthy),
        "frame_labels": [e.frame_label.numpy() for e in anom],
        "ids": [f"{e.anomaly}_{i}" for i, e in enumerate(anom)],
        "normal_ids": [f"normal_{i}" for i in range(n_normal)],
        "region": sector_mask(size),
    }
