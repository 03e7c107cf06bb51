"""Normative-learning metrics for restoration ("pseudo-healthy") models on video.

After Bercea et al., "Evaluating normative representation learning in generative AI for
robust anomaly detection in brain imaging", Nature Communications 2025: a normative model
should (i) reproduce healthy input faithfully (RQI), (ii) move pathological input towards
the healthy distribution (AHI), and (iii) change anomalous regions while leaving healthy
tissue alone (CACI). The paper's definitions are for 2-D images with pretrained perceptual
networks; ours are the video analogues below, defined here (not copied) and documented in
``docs/normative_metrics.md``.

Clips are ``(B, C, T, H, W)`` (or a sequence of ``(C, T, H, W)`` / ``(1, C, T, H, W)`` clips
of any lengths) in [0, 1]. Feature extractors are callables ``video (1, C, T, H, W) ->
(1, T, D)`` per-frame features, for instance a seqnrl normative encoder's ``embed_frames``.
Pretrained LPIPS / VGG / Inception weights cannot be downloaded here, so there is no such
default: the perceptual term of RQI is reported only when an extractor is given, and AHI
falls back to :func:`pixel_features` (average-pooled intensities) when none is.

Every metric returns ``{"<headline numbers>": float, ..., "table": [per-clip dicts]}``.
Pure functions of tensors and callables; no model is imported.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from scipy.linalg import LinAlgWarning
from torchmetrics.functional.image import structural_similarity_index_measure

from seqnrl.metrics.generation import frechet_distance

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
Clips = torch.Tensor | Sequence[torch.Tensor]

__all__ = [
    "ahi",
    "caci",
    "frame_difference_scores",
    "inject_artefact",
    "per_frame_mae",
    "per_frame_perceptual",
    "per_frame_ssim",
    "pixel_features",
    "rqi",
]


# ----------------------------------------------------------------------------- helpers
def _clips(x: Clips) -> list[torch.Tensor]:
    """A batch or sequence of clips as a list of ``(1, C, T, H, W)`` float tensors."""
    if isinstance(x, torch.Tensor):
        if x.ndim == 4:
            x = x.unsqueeze(0)
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W) clips, got shape {tuple(x.shape)}")
        return [c.unsqueeze(0).float() for c in x]
    out = []
    for c in x:
        c = torch.as_tensor(c)
        c = c.unsqueeze(0) if c.ndim == 4 else c
        if c.ndim != 5 or c.shape[0] != 1:
            raise ValueError(f"expected (C, T, H, W) clips, got shape {tuple(c.shape)}")
        out.append(c.float())
    return out


def _pairs(a: Clips, b: Clips) -> list[tuple[torch.Tensor, torch.Tensor]]:
    la, lb = _clips(a), _clips(b)
    if len(la) != len(lb):
        raise ValueError(f"{len(la)} clips but {len(lb)} restorations")
    for x, y in zip(la, lb):
        if x.shape != y.shape:
            raise ValueError(
                f"clip {tuple(x.shape)} and restoration {tuple(y.shape)} differ in shape"
            )
    return list(zip(la, lb))


def _ids(ids: Sequence[str] | None, n: int) -> list[str]:
    if ids is None:
        return [str(i) for i in range(n)]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} clips")
    return [str(i) for i in ids]


def _mean(values: Sequence[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _hmean(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)):
        return float("nan")
    return 0.0 if a + b <= 0 else 2.0 * a * b / (a + b)


# ----------------------------------------------------------------------------- per frame
def per_frame_mae(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per frame ``(B, T)`` of two ``(B, C, T, H, W)`` videos."""
    return reduce((x.float() - y.float()).abs(), "b c t h w -> b t", "mean")


def per_frame_ssim(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, kernel_size: int = 11
) -> torch.Tensor:
    """SSIM per frame ``(B, T)`` (torchmetrics, Gaussian window; the window shrinks to the
    largest odd size that fits frames smaller than ``kernel_size``)."""
    b, _, t, h, w = x.shape
    k = min(kernel_size, h if h % 2 else h - 1, w if w % 2 else w - 1)
    sigma = 1.5 * k / 11
    s = structural_similarity_index_measure(
        rearrange(y.float(), "b c t h w -> (b t) c h w"),
        rearrange(x.float(), "b c t h w -> (b t) c h w"),
        data_range=data_range,
        kernel_size=k,
        sigma=sigma,
        reduction="none",
    )
    return rearrange(s, "(b t) -> b t", b=b, t=t)


def per_frame_perceptual(x: torch.Tensor, y: torch.Tensor, features: FeatureFn) -> torch.Tensor:
    """Perceptual distance per frame ``(B, T)``: ``1 - cos(f(x)_t, f(y)_t)`` of the per-frame
    features ``(B, T, D)`` of ``features`` (0 = same direction, 2 = opposite)."""
    fx, fy = features(x), features(y)
    if fx.shape != fy.shape or fx.ndim != 3:
        raise ValueError(
            f"features must be (B, T, D) and agree, got {tuple(fx.shape)} and {tuple(fy.shape)}"
        )
    # 1 - cos(a, b) = |a/|a| - b/|b||^2 / 2, in float64: exactly 0 for equal features and no
    # cancellation for the tiny distances of normalised embeddings (1 - cos in float32 is
    # rounding noise below ~1e-7)
    a, b = F.normalize(fx.double(), dim=-1), F.normalize(fy.double(), dim=-1)
    return (0.5 * (a - b).pow(2).sum(-1)).float()


def pixel_features(video: torch.Tensor, grid: int = 8) -> torch.Tensor:
    """Fallback per-frame features ``(B, T, C * grid * grid)``: frames average-pooled to a
    ``grid x grid`` image (no learned weights; a crude stand-in for a perceptual network)."""
    b, _, t, _, _ = video.shape
    f = F.adaptive_avg_pool2d(rearrange(video.float(), "b c t h w -> (b t) c h w"), grid)
    return rearrange(f, "(b t) c h w -> b t (c h w)", b=b, t=t)


def frame_difference_scores(
    x: torch.Tensor, y: torch.Tensor, region: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-frame anomaly score ``(B, T)``: mean ``|x - y|`` (over channels and the pixels of
    ``region`` ``(H, W)``, default all) between a clip and its restoration."""
    d = reduce((x.float() - y.float()).abs(), "b c t h w -> b t h w", "mean")
    if region is None:
        return d.mean(dim=(-2, -1))
    r = region.to(d).expand_as(d)
    return (d * r).sum(dim=(-2, -1)) / r.sum(dim=(-2, -1)).clamp(min=1)


# ----------------------------------------------------------------------------- RQI
def rqi(
    normal: Clips,
    restored: Clips,
    features: FeatureFn | None = None,
    data_range: float = 1.0,
    ids: Sequence[str] | None = None,
    ssim_kernel: int = 11,
) -> dict:
    """Restoration Quality Index on healthy clips (their restorations should equal them).

    Per frame: MAE, SSIM and, when ``features`` is given, the perceptual distance of
    :func:`per_frame_perceptual`. Per clip: the frame means and
    ``rqi = ssim * (1 - mae / data_range)`` (in [-1, 1]; 1 = perfect restoration; the
    perceptual distance is reported beside it but not folded in, its scale depends on the
    extractor). The headline ``rqi`` (and ``mae``, ``ssim``, ``perceptual``) is the mean over
    clips."""
    pairs = _pairs(normal, restored)
    names = _ids(ids, len(pairs))
    table = []
    for name, (x, y) in zip(names, pairs):
        mae = float(per_frame_mae(x, y).mean())
        ssim = float(per_frame_ssim(x, y, data_range, ssim_kernel).mean())
        perc = (
            float(per_frame_perceptual(x, y, features).mean())
            if features is not None
            else float("nan")
        )
        table.append(
            {
                "clip": name,
                "mae": mae,
                "ssim": ssim,
                "perceptual": perc,
                "rqi": ssim * (1.0 - mae / data_range),
            }
        )
    return {
        "rqi": _mean([r["rqi"] for r in table]),
        "mae": _mean([r["mae"] for r in table]),
        "ssim": _mean([r["ssim"] for r in table]),
        "perceptual": _mean([r["perceptual"] for r in table]),
        "table": table,
    }


# ----------------------------------------------------------------------------- AHI
def _frame_feats(clips: list[torch.Tensor], features: FeatureFn) -> list[np.ndarray]:
    """Per-clip ``(T, D)`` feature arrays."""
    out = []
    for c in clips:
        with torch.no_grad():
            f = features(c)
        out.append(f.reshape(-1, f.shape[-1]).detach().cpu().double().numpy())
    return out


def _fd(a: np.ndarray, b: np.ndarray, eps: float) -> float:
    with warnings.catch_warnings():  # rank-deficient covariances with few samples: eps handles it
        warnings.simplefilter("ignore", LinAlgWarning)
        return frechet_distance(a, b, eps)


def _index(d_restored: float, d_unrestored: float) -> float:
    return 1.0 - d_restored / d_unrestored if d_unrestored > 0 else float("nan")


def ahi(
    restored: Clips,
    unrestored: Clips,
    normal: Clips,
    features: FeatureFn | None = None,
    ids: Sequence[str] | None = None,
    eps: float = 1e-6,
    healthy: Clips | None = None,
) -> dict:
    """Anomaly-to-Healthy Index: how far restoration moves pathological clips towards the
    normal (training) distribution in feature space.

    ``d_restored`` / ``d_unrestored`` are Fréchet distances (:func:`seqnrl.metrics.generation.
    frechet_distance`) from the restored / unrestored pathological clips to the ``normal``
    clips, at two granularities: ``frame`` (every frame's feature vector is a sample) and
    ``clip`` (each clip's mean frame feature is a sample). ``AHI = 1 - d_restored /
    d_unrestored``: 1 = restorations indistinguishable from normal data, 0 = no change in
    distance, < 0 = restoration moved away. ``ratio = d_restored / d_unrestored`` is reported
    too. The headline ``ahi`` is the frame level (many more samples than clips; the clip-level
    covariance is rank-deficient with few clips and is regularised by ``eps``).

    With ``healthy`` (held-out normal clips, unrestored), ``d_healthy`` is their distance to
    the normal clips: the floor that unseen normal data reaches (finite samples, other
    subjects), as the ``FID_UN;N`` term of the authors' code. ``ahi_gap = (d_unrestored -
    d_restored) / (d_unrestored - d_healthy)`` is then the share of the pathological clips'
    excess distance that restoration removes (1 = as close as unseen normal clips, 0 = no
    change; NaN when the pathological clips are not farther than the healthy ones, i.e. the
    features do not see the anomalies). Use as many healthy as pathological clips: Fréchet
    distances of few samples are biased upwards by an amount that depends on the count.

    Per-clip table: the frame-level Fréchet distance of that clip's frames (restored and
    unrestored) to the normal frames, and its index (noisy with few frames: use the pooled
    numbers as the result). ``features`` defaults to :func:`pixel_features`."""
    features = features or pixel_features
    rest, unrest, norm = _clips(restored), _clips(unrestored), _clips(normal)
    if len(rest) != len(unrest):
        raise ValueError(f"{len(rest)} restored but {len(unrest)} unrestored clips")
    fr, fu, fn = (
        _frame_feats(rest, features),
        _frame_feats(unrest, features),
        _frame_feats(norm, features),
    )
    fh = _frame_feats(_clips(healthy), features) if healthy is not None else None
    out: dict = {}
    for level, pool in (
        ("frame", np.concatenate),
        ("clip", lambda fs: np.stack([f.mean(0) for f in fs])),
    ):
        a, b, n = pool(fr), pool(fu), pool(fn)
        if min(len(a), len(n)) < 2:
            d_r = d_u = float("nan")
        else:
            d_r, d_u = _fd(a, n, eps), _fd(b, n, eps)
        out[f"{level}_d_restored"] = d_r
        out[f"{level}_d_unrestored"] = d_u
        out[f"{level}_ratio"] = d_r / d_u if d_u > 0 else float("nan")
        out[f"{level}_ahi"] = _index(d_r, d_u)
        d_h = (
            _fd(pool(fh), n, eps)
            if fh is not None and min(len(pool(fh)), len(n)) >= 2
            else float("nan")
        )
        out[f"{level}_d_healthy"] = d_h
        out[f"{level}_ahi_gap"] = (d_u - d_r) / (d_u - d_h) if d_u > d_h else float("nan")
    out["ahi"] = out["frame_ahi"]
    out["ahi_gap"] = out["frame_ahi_gap"]
    nf = np.concatenate(fn)
    table = []
    for name, a, b in zip(_ids(ids, len(rest)), fr, fu):
        if len(a) < 2:
            d_r = d_u = float("nan")
        else:
            d_r, d_u = _fd(a, nf, eps), _fd(b, nf, eps)
        table.append(
            {"clip": name, "d_restored": d_r, "d_unrestored": d_u, "ahi": _index(d_r, d_u)}
        )
    out["table"] = table
    return out


# ----------------------------------------------------------------------------- CACI
def caci(
    inputs: Clips,
    restored: Clips,
    masks: Clips,
    reference: Clips | None = None,
    scale: float | None = None,
    region: torch.Tensor | None = None,
    ids: Sequence[str] | None = None,
) -> dict:
    """Conservation and Correction Index from per-pixel anomaly masks.

    With ``change = |input - restoration|`` (averaged over channels), per clip:
    ``h`` = mean change over healthy pixels (mask 0) and ``a`` = mean change over anomalous
    pixels (mask 1), both restricted to ``region`` ``(H, W)`` (e.g. the ultrasound fan) when
    given. Both are expressed in units of ``s``, the change a perfect correction needs: the
    mean ``|input - reference|`` over the anomalous pixels when the true healthy ``reference``
    is given (synthetic data, injected artefacts), else (and for clips whose reference gives
    no anomaly contrast, e.g. normal clips) the fixed ``scale``:

    * ``conservation = max(0, 1 - h / s)`` (1 = healthy tissue untouched),
    * ``correction = min(1, a / s)`` (1 = anomalous pixels changed by the full anomaly
      contrast, 0 = unchanged),
    * ``caci`` = harmonic mean of the two (0 for the identity: it conserves but corrects
      nothing).

    With a reference, ``fidelity = max(0, 1 - mean |restoration - reference| / s)`` over the
    anomalous pixels says whether the change went towards the *right* content (a model that
    scrambles the anomaly gets correction but no fidelity); ``caci_fidelity`` is the harmonic
    mean of conservation and fidelity. Clips with empty masks have NaN correction and are
    left out of the CACI / correction / fidelity means (their conservation is in the table and
    in the conservation mean when a ``scale`` is given, NaN otherwise)."""
    pairs = _pairs(inputs, restored)
    ms = _clips(masks)
    refs = _clips(reference) if reference is not None else [None] * len(pairs)
    if len(ms) != len(pairs) or len(refs) != len(pairs):
        raise ValueError(
            "inputs, restorations, masks and references must have the same number of clips"
        )
    if reference is None and (scale is None or scale <= 0):
        raise ValueError("caci needs either the healthy reference clips or a positive scale")
    table = []
    for name, (x, y), m, ref in zip(_ids(ids, len(pairs)), pairs, ms, refs):
        change = reduce((x - y).abs(), "b c t h w -> b t h w", "mean")
        anom = reduce(m.float(), "b c t h w -> b t h w", "max").expand_as(change) > 0.5
        inside = torch.ones_like(anom) if region is None else region.to(torch.bool).expand_as(anom)
        a_px, h_px = anom & inside, ~anom & inside
        n_a, n_h = int(a_px.sum()), int(h_px.sum())
        h = float(change[h_px].mean()) if n_h else float("nan")
        a = float(change[a_px].mean()) if n_a else float("nan")
        fid = float("nan")
        if ref is not None:
            s = (
                float(reduce((x - ref).abs(), "b c t h w -> b t h w", "mean")[a_px].mean())
                if n_a
                else float("nan")
            )
            if (
                not (s > 0) and scale is not None
            ):  # no anomaly in this clip: the fixed scale is the unit
                s = float(scale)
            if n_a and s > 0:
                miss = float(reduce((y - ref).abs(), "b c t h w -> b t h w", "mean")[a_px].mean())
                fid = max(0.0, 1.0 - miss / s)
        else:
            s = float(scale)
        ok = math.isfinite(s) and s > 0
        cons = max(0.0, 1.0 - h / s) if ok and n_h else float("nan")
        corr = min(1.0, a / s) if ok and n_a else float("nan")
        table.append({
            "clip": name, "healthy_change": h, "anomalous_change": a, "scale": s,
            "anomalous_fraction": n_a / max(n_a + n_h, 1), "conservation": cons, "correction": corr,
            "caci": _hmean(cons, corr), "fidelity": fid, "caci_fidelity": _hmean(cons, fid),
        })  # fmt: skip
    with_anomaly = [r for r in table if math.isfinite(r["correction"])]
    return {
        "caci": _mean([r["caci"] for r in with_anomaly]),
        "conservation": _mean([r["conservation"] for r in table]),
        "correction": _mean([r["correction"] for r in with_anomaly]),
        "fidelity": _mean([r["fidelity"] for r in with_anomaly]),
        "caci_fidelity": _mean([r["caci_fidelity"] for r in with_anomaly]),
        "table": table,
    }


# ----------------------------------------------------------------------------- artefacts
ARTEFACTS = ("bright_blob", "dark_blob", "shadow")


def inject_artefact(
    clip: torch.Tensor,
    kind: str = "bright_blob",
    seed: int = 0,
    span: tuple[int, int] | None = None,
    strength: float = 0.6,
    radius: float = 0.15,
    mask_level: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic artefact with its mask on a real clip ``(C, T, H, W)`` in [0, 1] (for data
    such as lung ultrasound that has no pixel annotations).

    ``bright_blob`` adds ``strength * g``, ``dark_blob`` multiplies by ``1 - strength * g``,
    with ``g`` a Gaussian blob of std ``radius * min(H, W)`` at a random centre away from the
    borders; ``shadow`` darkens (by ``strength``) a wedge below a random depth hanging from a
    random apex on the top edge, like a rib's acoustic shadow (soft edges). The artefact is
    on frames ``span = (start, stop)`` (half-open; default a random contiguous 30-60 % of the
    clip). Returns ``(clip, mask)``, ``mask`` ``(1, T, H, W)`` float 0/1 = pixels whose
    artefact weight exceeds ``mask_level`` on the affected frames. Deterministic in ``seed``."""
    if kind not in ARTEFACTS:
        raise ValueError(f"unknown artefact {kind!r}; expected one of {ARTEFACTS}")
    if clip.ndim != 4:
        raise ValueError(f"expected a (C, T, H, W) clip, got shape {tuple(clip.shape)}")
    _, t, h, w = clip.shape
    rng = np.random.default_rng(seed)
    if span is None:
        n = max(1, int(round(t * rng.uniform(0.3, 0.6))))
        start = int(rng.integers(0, t - n + 1))
        span = (start, start + n)
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    if kind == "shadow":
        x0 = float(rng.uniform(0.25, 0.75)) * w
        depth = float(rng.uniform(0.15, 0.4)) * h
        half = math.radians(float(rng.uniform(6, 14)))
        ang = torch.atan2(x - x0, y + 1.0)
        g = torch.sigmoid((half - ang.abs()) / 0.03) * torch.sigmoid((y - depth) / 1.0)
    else:
        cy, cx = (float(rng.uniform(0.25, 0.75)) * n for n in (h, w))
        sd = radius * min(h, w)
        g = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sd**2))
    weight = torch.zeros(1, t, h, w)
    weight[:, span[0] : span[1]] = g
    out = clip.float().clone()
    if kind == "bright_blob":
        out = out + strength * weight
    else:
        out = out * (1.0 - strength * weight)
    return out.clamp(0.0, 1.0), (weight > mask_level).float()
