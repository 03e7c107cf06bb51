"""Interpretable motion descriptors shown next to the anomaly score.

* :func:`frame_speed_torch`: per-frame mean joint speed (a per-frame signal of the model).
* :func:`cadence`: the dominant gait frequency from the FFT of the left-right ankle (or
  other limb-end) difference signal: steps per minute = 2 x stride frequency x 60.
* :func:`motion_descriptors`: per-video dict: cadence, mean speed, movement variability
  (coefficient of variation of each joint's speed), range of motion and left/right asymmetry.
* :func:`contribution_summary`: which joints carry the anomaly score in the worst frames.
* :func:`mirror_pairs` / :func:`limb_asymmetry_torch`: left/right joint pairs by name and the
  windowed log ratio of their movement amplitudes (the model's asymmetry channel).

Keypoints are ``(T, K, D)`` with NaN where missing; units are those of the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from einops import rearrange, reduce, repeat

# substrings that name the ends of the legs / arms in common skeletons (synthetic, CMU BVH, COCO)
_LEG_ENDS = ("ankle", "foot", "toe", "heel")
_ARM_ENDS = ("wrist", "hand")


def frame_speed_torch(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` mean displacement per frame of the joints valid in both frames (frame 0
    takes frame 1's value; 0 where no joint is valid twice in a row)."""
    d = (x[:, 1:] - x[:, :-1]).norm(dim=-1)
    m = (valid[:, 1:] & valid[:, :-1]).to(x.dtype)
    sp = (d * m).sum(-1) / m.sum(-1).clamp_min(1)
    if sp.shape[1] == 0:
        return torch.zeros(x.shape[:2], device=x.device, dtype=x.dtype)
    return torch.cat([sp[:, :1], sp], dim=1)


def _side(name: str) -> str | None:
    """``l`` / ``r`` / ``None`` from names like ``l_ankle``, ``LeftFoot``, ``ankle_r``, ``LFoot``."""
    n = name.lower()
    for side, word in (("l", "left"), ("r", "right")):
        if n.startswith((f"{side}_", word, f"{side}.")) or n.endswith((f"_{side}", f".{side}")):
            return side
        if name[:1] == side.upper() and name[1:2].isupper():
            return side
    return None


def limb_end_pairs(joint_names: Sequence[str]) -> list[tuple[int, int]]:
    """``(left, right)`` joint indices of matching leg ends (first) and arm ends."""
    out = []
    for group in (_LEG_ENDS, _ARM_ENDS):
        for key in group:
            left = [i for i, n in enumerate(joint_names) if key in n.lower() and _side(n) == "l"]
            right = [i for i, n in enumerate(joint_names) if key in n.lower() and _side(n) == "r"]
            if left and right:
                out.append((left[0], right[0]))
                break
    return out


def _fill(sig: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs along axis 0 (columns independently)."""
    s = np.array(sig, dtype=np.float64, copy=True)
    t = np.arange(len(s))
    for c in range(s.shape[1]):
        ok = np.isfinite(s[:, c])
        if ok.sum() >= 2:
            s[:, c] = np.interp(t, t[ok], s[ok, c])
        else:
            s[:, c] = 0.0
    return s


def dominant_frequency(signal: np.ndarray, fps: float, fmin: float = 0.3, fmax: float = 3.0) -> tuple[float, float]:
    """Peak frequency (Hz) of ``(T,)`` or ``(T, C)`` signals (power summed over channels)
    within ``[fmin, fmax]``, from a Hann-windowed, zero-padded FFT with parabolic peak
    interpolation; and the peak's share of the power in the band (0-1, confidence)."""
    x = np.asarray(signal, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    x = _fill(x)
    x = x - x.mean(0)
    n = len(x)
    if n < 4:
        return float("nan"), 0.0
    win = np.hanning(n)[:, None]
    nfft = int(2 ** np.ceil(np.log2(max(8 * n, 256))))
    p = (np.abs(np.fft.rfft(x * win, n=nfft, axis=0)) ** 2).sum(1)
    f = np.fft.rfftfreq(nfft, 1.0 / fps)
    band = (f >= fmin) & (f <= min(fmax, 0.5 * fps))
    if not band.any() or p[band].sum() <= 0:
        return float("nan"), 0.0
    idx = np.flatnonzero(band)
    i = idx[np.argmax(p[idx])]
    fpk = f[i]
    if 0 < i < len(p) - 1:
        a, b, c = np.log(p[i - 1] + 1e-30), np.log(p[i] + 1e-30), np.log(p[i + 1] + 1e-30)
        den = a - 2 * b + c
        if den < 0:
            fpk = f[i] + 0.5 * (a - c) / den * (f[1] - f[0])
    near = band & (np.abs(f - fpk) <= 2.0 * fps / n)  # the main lobe of the window
    return float(fpk), float(p[near].sum() / p[band].sum())


def cadence(keypoints: np.ndarray, fps: float, joint_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Gait cadence from the FFT of the difference between left and right leg ends (they
    swing in anti-phase, so the difference oscillates once per stride). Without named
    limb ends, every joint's trajectory relative to the body centre is used.

    Returns ``stride_hz`` (gait cycles per second), ``steps_per_min`` (two steps per
    stride), ``confidence`` (share of band power at the peak) and ``joints`` (names used).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    pairs = limb_end_pairs(joint_names) if joint_names else []
    if pairs:
        li, ri = pairs[0]
        sig = kp[:, li] - kp[:, ri]
        used = [joint_names[li], joint_names[ri]]
    else:
        centre = np.nanmean(kp, axis=1, keepdims=True)
        sig = (kp - centre).reshape(len(kp), -1)
        used = list(joint_names) if joint_names else ["all"]
    f, conf = dominant_frequency(sig, fps)
    return {"stride_hz": f, "steps_per_min": 2.0 * 60.0 * f, "confidence": conf, "joints": used}


def motion_descriptors(
    keypoints: np.ndarray | torch.Tensor,
    fps: float,
    joint_names: Sequence[str] | None = None,
    parents: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Per-video descriptors of a ``(T, K, D)`` sequence.

    ``mean_speed`` (units/s, all joints), ``speed_per_joint``, ``variability_per_joint``
    (coefficient of variation of each joint's speed: movement variability),
    ``variability`` (its median over joints), ``range_of_motion_per_joint`` (RMS distance of
    each joint from its mean position, relative to its parent when ``parents`` are given),
    ``asymmetry`` (relative left/right difference of limb-end range of motion) and ``cadence``.
    """
    kp = keypoints.detach().cpu().numpy() if isinstance(keypoints, torch.Tensor) else np.asarray(keypoints)
    kp = kp.astype(np.float64)
    names = list(joint_names) if joint_names else [f"j{i:02d}" for i in range(kp.shape[1])]
    sp = np.linalg.norm(np.diff(kp, axis=0), axis=-1) * fps  # (T-1, K), NaN where missing
    with np.errstate(invalid="ignore", divide="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_sp = np.nanmean(sp, axis=0)
            cv = np.nanstd(sp, axis=0) / mean_sp
            rel = kp.copy()
            if parents is not None:
                for j, p in enumerate(parents):
                    if p >= 0:
                        rel[:, j] = kp[:, j] - kp[:, p]
            rom = np.sqrt(np.nanmean(((rel - np.nanmean(rel, axis=0)) ** 2).sum(-1), axis=0))
    asym = float("nan")
    pairs = limb_end_pairs(names)
    if pairs:
        li, ri = pairs[0]
        a, b = rom[li], rom[ri]
        if np.isfinite(a) and np.isfinite(b) and a + b > 0:
            asym = float(abs(a - b) / (0.5 * (a + b)))

    def d(v: np.ndarray) -> dict[str, float]:
        return {n: float(x) for n, x in zip(names, v)}

    return {
        "mean_speed": float(np.nanmean(sp)) if np.isfinite(sp).any() else float("nan"),
        "speed_per_joint": d(mean_sp),
        "variability": float(np.nanmedian(cv)) if np.isfinite(cv).any() else float("nan"),
        "variability_per_joint": d(cv),
        "range_of_motion_per_joint": d(rom),
        "asymmetry": asym,
        "cadence": cadence(kp, fps, names),
    }


def contribution_summary(
    extra: dict[str, np.ndarray],
    joint_names: Sequence[str],
    scores: np.ndarray | None = None,
    top_fraction: float = 0.1,
) -> dict[str, float]:
    """Each joint's share of the score (``contrib_<joint>`` signals) summed over the
    ``top_fraction`` highest-scoring frames (all frames without ``scores``); shares sum to 1,
    sorted from the largest."""
    cols = np.stack([np.asarray(extra[f"contrib_{n}"], dtype=np.float64) for n in joint_names], -1)
    frames = np.isfinite(cols).all(-1)
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        ok = np.isfinite(s) & frames
        if ok.any():
            k = max(1, int(np.ceil(top_fraction * ok.sum())))
            thr = np.sort(s[ok])[-k]
            frames = ok & (s >= thr)
    tot = cols[frames].sum(0)
    share = tot / max(tot.sum(), 1e-12)
    order = np.argsort(-share)
    return {joint_names[i]: float(share[i]) for i in order}


def sequence_speed(keypoints: np.ndarray) -> np.ndarray:
    """``(T,)`` mean joint displacement per frame of a ``(T, K, D)`` sequence, in units of the
    sequence's RMS joint distance from its centroid (body-size free); frame 0 copies frame 1."""
    kp = np.asarray(keypoints, dtype=np.float64)
    ok = np.isfinite(kp).all(-1)
    c = np.nanmean(kp[ok], axis=0) if ok.any() else np.zeros(kp.shape[-1])
    rms = np.sqrt(np.nanmean(((kp[ok] - c) ** 2).sum(-1))) if ok.any() else 1.0
    d = np.linalg.norm(np.diff(kp, axis=0), axis=-1) / max(rms, 1e-12)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sp = np.nanmean(d, axis=1)
    sp = np.r_[sp[:1], sp] if len(sp) else np.zeros(len(kp))
    return np.where(np.isfinite(sp), sp, np.nan)


class SpeedTypicality:
    """A reference scorer with no learning beyond two numbers: ``|log speed - mu| / sigma``
    per frame, ``mu``/``sigma`` of the log :func:`sequence_speed` of normal sequences (so a
    frozen pose and jerky motion both score high). Benchmarks print it beside the model."""

    def __init__(self) -> None:
        self.mu, self.sigma = 0.0, 1.0

    def fit(self, sequences: Sequence[np.ndarray]) -> SpeedTypicality:
        v = np.concatenate([np.log(sequence_speed(s) + 1e-6) for s in sequences])
        v = v[np.isfinite(v)]
        self.mu, self.sigma = float(v.mean()), float(max(v.std(), 1e-6))
        return self

    def score(self, keypoints: np.ndarray) -> np.ndarray:
        return np.abs(np.log(sequence_speed(keypoints) + 1e-6) - self.mu) / self.sigma


# -- left/right asymmetry channel of the frame score ----------------------------------------
def _mirror_name(name: str) -> str | None:
    """The right-side name matching a left-side joint name (``l_knee`` -> ``r_knee``,
    ``LeftKnee`` -> ``RightKnee``, ``knee_l`` -> ``knee_r``, ``LThumb`` -> ``RThumb``), else None."""
    if _side(name) != "l":
        return None
    low = name.lower()
    for word, repl in (("left", "right"), ("Left", "Right"), ("LEFT", "RIGHT")):
        if name.startswith(word):
            return repl + name[len(word) :]
    if low.startswith(("l_", "l.")):
        return ("R" if name[0] == "L" else "r") + name[1:]
    if low.endswith(("_l", ".l")):
        return name[:-1] + ("R" if name[-1] == "L" else "r")
    if name[:1] == "L" and name[1:2].isupper():
        return "R" + name[1:]
    return None


def mirror_pairs(joint_names: Sequence[str]) -> list[tuple[int, int]]:
    """``(left, right)`` indices of every joint whose mirrored name is also a joint, in the
    order of the left joints (e.g. shoulders, elbows, wrists, hips, knees, ankles)."""
    index = {n: i for i, n in enumerate(joint_names)}
    out = []
    for i, n in enumerate(joint_names):
        m = _mirror_name(n)
        if m is not None and m in index:
            out.append((i, index[m]))
    return out


def _window_mean(v: torch.Tensor, w: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian-weighted (``sigma`` frames) mean of ``v`` ``(N, T)`` with weights ``w``
    ``(N, T)`` along ``T``; returns the mean and the summed weight (0: no valid neighbour)."""
    half = max(1, int(round(3 * sigma)))
    x = torch.arange(-half, half + 1, device=v.device, dtype=v.dtype)
    kern = torch.exp(-0.5 * (x / sigma) ** 2).view(1, 1, -1)
    num = torch.nn.functional.conv1d((v * w).unsqueeze(1), kern, padding=half).squeeze(1)
    den = torch.nn.functional.conv1d(w.unsqueeze(1), kern, padding=half).squeeze(1)
    return num / den.clamp_min(1e-12), den


def limb_asymmetry_torch(
    x: torch.Tensor,
    valid: torch.Tensor,
    pairs: Sequence[tuple[int, int]],
    sigma: float = 16.0,
    rel_eps: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windowed left/right asymmetry of movement amplitude, ``(B, T, P)`` for ``P`` pairs.

    Each joint's position relative to the frame's centroid (of the valid joints) is taken;
    its movement amplitude at frame ``t`` is its Gaussian-windowed (``sigma`` frames)
    variance around the windowed mean, summed over coordinates. The channel of a pair is
    ``0.5 * log((amp_left + eps) / (amp_right + eps))``: 0 for symmetric movement (legs
    swinging in anti-phase have equal windowed variance), positive when the left joint moves
    more. ``eps`` is ``rel_eps`` times the clip's mean amplitude over all pair joints (plus
    ``1e-4`` of its spatial variance), so joints that barely move (e.g. hips relative to the
    pelvis) do not turn noise into large ratios, and a clip that does not move gives 0, not
    a ratio of rounding errors.
    Scale-free: any per-clip normalisation of ``x`` cancels.

    Returns the channels and their mask (both joints of the pair valid in the frame).
    ``x`` ``(B, T, K, D)`` (finite where ``valid``), ``valid`` ``(B, T, K)`` bool."""
    b, t, k, d = x.shape
    if not pairs:
        return x.new_zeros(b, t, 0), torch.zeros(b, t, 0, dtype=torch.bool, device=x.device)
    w = valid.to(x.dtype)
    xz = torch.where(valid.unsqueeze(-1), x, torch.zeros_like(x))
    n_valid = reduce(w, "b t k -> b t 1 1", "sum").clamp_min(1)
    centre = reduce(xz * w.unsqueeze(-1), "b t k d -> b t 1 d", "sum") / n_valid
    joints = sorted({j for p in pairs for j in p})
    col = {j: i for i, j in enumerate(joints)}
    rel = (xz - centre)[:, :, joints]
    wj = w[:, :, joints]
    flat = rearrange(rel, "b t j d -> (b j d) t")
    wf = repeat(wj, "b t j -> (b j d) t", d=d)
    m1, den = _window_mean(flat, wf, sigma)
    m2, _ = _window_mean(flat * flat, wf, sigma)
    var = reduce((m2 - m1 * m1).clamp_min(0), "(b j d) t -> b t j", "sum", b=b, d=d)
    ok = rearrange(den, "(b j d) t -> b t j d", b=b, d=d)[..., 0] > 1e-3
    # eps: a share of the clip's mean amplitude, floored by the clip's spatial spread (a clip
    # that does not move at all gives 0, not a ratio of rounding errors)
    okf = ok.to(x.dtype)
    mean_amp = reduce(var * okf, "b t j -> b 1 1", "sum") / reduce(okf, "b t j -> b 1 1", "sum").clamp_min(1)
    wr = wj.unsqueeze(-1)
    spread = reduce(rel * rel * wr, "b t j d -> b 1 1", "sum") / reduce(wr, "b t j 1 -> b 1 1", "sum").clamp_min(1)
    eps = rel_eps * mean_amp + 1e-4 * spread + 1e-12
    li = torch.tensor([col[p[0]] for p in pairs], device=x.device)
    ri = torch.tensor([col[p[1]] for p in pairs], device=x.device)
    a = 0.5 * (torch.log(var[..., li] + eps) - torch.log(var[..., ri] + eps))
    lj = torch.tensor([p[0] for p in pairs], device=x.device)
    rj = torch.tensor([p[1] for p in pairs], device=x.device)
    m = ok[..., li] & ok[..., ri] & valid[..., lj] & valid[..., rj]
    return torch.where(m, a, torch.zeros_like(a)), m
