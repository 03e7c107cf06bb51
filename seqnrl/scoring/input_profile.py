"""What the model's normal inputs looked like, so scoring can say when an input is not like them.

A normative model only knows its training distribution: an echo model scoring lung
ultrasound, or a model trained at one gain scoring a much brighter probe, returns numbers
that mean nothing, and calibrated scores make them look trustworthy. :class:`InputProfile`
holds a compact summary of the normal validation inputs (the frames the calibration was fitted
on, exactly as the model saw them): the mean and spread of each frame's **brightness** (mean
grey level) and **contrast** (standard deviation of its pixels). Like the calibrator, its
statistics are buffers, so they travel in the checkpoint.

:meth:`InputProfile.check` compares an input's per-frame statistics with the profile and
returns plain-language warnings: its median brightness or contrast more than
``max_z`` (default 4) normal standard deviations away. A second check needs no profile: when
far more frames exceed the alarm threshold than the calibration's false-positive target
(``max_alarm_ratio`` times, default 8, and at least half the frames), the whole recording is
unlike the normal data; that may be a pathology, or the wrong model, and the warning says so.
A third needs only the input spec: a grey model (one channel) fed a recording in colour
(at least ``MAX_COLOUR_FRACTION`` of its pixels clearly coloured, e.g. a colour-Doppler box)
never saw what that colour becomes in grey; grey B-mode with small coloured markers does not
trigger it.
Invariant: on inputs drawn like the normal validation data no warning fires (tested both
ways).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FEATURES = ("brightness", "contrast")
COLOUR_PIXEL = 40  # max - min over R, G, B (of 255) from which a pixel counts as coloured
MAX_COLOUR_FRACTION = 0.02  # coloured share of pixels from which a recording is "in colour"


def coloured_fraction(frames: torch.Tensor) -> float:
    """Share of clearly coloured pixels of RGB frames ``(N, 3, H, W)`` uint8 (0 for grey)."""
    if frames.ndim != 4 or frames.shape[1] != 3 or not frames.numel():
        return 0.0
    f = frames.to(torch.int16)
    spread = f.amax(1) - f.amin(1)  # (N, H, W)
    return float((spread > COLOUR_PIXEL).float().mean())


def frame_statistics(video: torch.Tensor, n_valid: torch.Tensor | None = None) -> np.ndarray:
    """Per-frame ``(brightness, contrast)`` of ``video`` ``(B, C, T, H, W)`` in [0, 1] (or
    ``(C, T, H, W)``) -> ``(N, 2)`` float64 over the first ``n_valid[b]`` frames of each clip."""
    v = video[None] if video.ndim == 4 else video
    v = v.detach().to(torch.float64)
    grey = v.mean(1)  # (B, T, H, W)
    stats = torch.stack([grey.mean((-2, -1)), grey.std((-2, -1))], dim=-1)  # (B, T, 2)
    if n_valid is None:
        return stats.reshape(-1, 2).cpu().numpy()
    return torch.cat([stats[b, : int(n)] for b, n in enumerate(n_valid)]).cpu().numpy()


class InputProfile(nn.Module):
    def __init__(self, max_z: float = 4.0, max_alarm_ratio: float = 8.0):
        super().__init__()
        self.max_z, self.max_alarm_ratio = float(max_z), float(max_alarm_ratio)
        self.register_buffer("mean", torch.zeros(len(FEATURES), dtype=torch.float64))
        self.register_buffer("std", torch.ones(len(FEATURES), dtype=torch.float64))
        self.register_buffer("n_ref", torch.tensor(0, dtype=torch.long))

    @property
    def fitted(self) -> bool:
        return int(self.n_ref) > 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the profile existed load as "not fitted" (no warnings
        # from it) instead of failing on missing keys
        for name, buf in self.named_buffers(recurse=False):
            state_dict.setdefault(prefix + name, buf.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit(self, stats: np.ndarray) -> None:
        """``stats`` ``(N, 2)`` from :func:`frame_statistics` of normal validation frames."""
        s = np.asarray(stats, dtype=np.float64).reshape(-1, len(FEATURES))
        s = s[np.isfinite(s).all(1)]
        if len(s) < 2:
            return
        self.mean.copy_(torch.from_numpy(s.mean(0)))
        # a floor on the spread: a data set of near-identical frames must not make every
        # new recording "out of distribution" over a grey level
        self.std.copy_(torch.from_numpy(np.maximum(s.std(0), 0.01)))
        self.n_ref.fill_(len(s))

    def z(self, stats: np.ndarray) -> np.ndarray:
        """Median per-feature z-score of an input's frame statistics."""
        s = np.asarray(stats, dtype=np.float64).reshape(-1, len(FEATURES))
        return (np.median(s, 0) - self.mean.cpu().numpy()) / self.std.cpu().numpy()

    def check(self, stats: np.ndarray | None, frac_above: float | None = None, target_fpr: float | None = None) -> list[str]:
        """Warnings for one input (empty when it looks like the normal data); see the module doc."""
        out = []
        if self.fitted and stats is not None and len(stats):
            for name, z in zip(FEATURES, self.z(stats)):
                if abs(z) > self.max_z:
                    side = "higher" if z > 0 else "lower"
                    out.append(f"input outside the model's training data: frame {name} is {abs(z):.1f} normal "
                               f"standard deviations {side} than in its normal validation frames (a different "
                               "modality, probe or gain?); treat its scores with caution")
        if frac_above is not None and target_fpr and target_fpr > 0:
            if frac_above >= max(0.5, self.max_alarm_ratio * target_fpr):
                out.append(f"{frac_above:.0%} of the frames are above the alarm threshold, set for "
                           f"{target_fpr:.0%} of normal frames: the whole recording is unlike the model's normal "
                           "data (a pathology throughout, or a model trained on other data)")
        return out


def colour_warning(model, colour: float | None) -> list[str]:
    """The colour-on-grey warning (see the module doc) for a model and an input's
    :func:`coloured_fraction`; none for colour models or models without an input spec."""
    spec = getattr(model, "input_spec", None)
    if colour is None or spec is None or spec.channels != 1 or colour < MAX_COLOUR_FRACTION:
        return []
    return [f"input is in colour ({colour:.0%} of its pixels clearly coloured, e.g. colour Doppler) but the "
            "model was trained on grey frames: the colour is converted to grey, which the model never saw; "
            "treat its scores with caution"]


def input_warnings(model, stats: np.ndarray | None, raw: np.ndarray, colour: float | None = None) -> list[str]:
    """:meth:`InputProfile.check` for one input scored by ``model`` (a normative model with
    ``input_profile`` and ``calibrator``): its frame statistics and the share of its finite
    raw frame scores above the calibrated alarm threshold, plus :func:`colour_warning` for
    the input's ``colour`` (coloured share of its native frames). One rule for ``seqnrl
    score`` and the summariser; no profile warnings from a model without a profile."""
    profile = getattr(model, "input_profile", None)
    if profile is None:
        return colour_warning(model, colour)
    cal = model.calibrator
    frac = None
    r = np.asarray(raw, dtype=np.float64)
    r = r[np.isfinite(r)]
    if cal.fitted and r.size:
        frac = float(cal.is_anomalous(torch.from_numpy(r)).double().mean())
    return profile.check(stats, frac, float(cal.target_fpr)) + colour_warning(model, colour)
