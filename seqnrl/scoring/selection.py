"""Post-fit selection of a model's score settings on validation data.

Some hyper-parameters change only how a trained network's outputs become a frame score
(e.g. the motion prior's ``std_floor`` and ``topk``). They are chosen after training, by
the library, inside ``seqnrl fit`` (:class:`seqnrl.callbacks.score_selection.ScoreSelection`),
and the choice travels with the model: its hyper-parameters, its re-fitted calibration and a
record ``post_fit`` in the checkpoint. Benchmarks read that record; they do not choose.

Invariant: only the normal validation clips and pseudo-anomalies synthesised from them
(:func:`seqnrl.scoring.pseudo_anomalies.speedup_copies`) are scored; the network's weights are
not touched; the settings must be listed in the model's ``score_settings``; after the
choice the calibrator is re-fitted on the normal validation clips under the chosen setting,
with the same windows as every other consumer (:func:`seqnrl.scoring.windows.score_clip`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from seqnrl.errors import ConfigError
from seqnrl.metrics.anomaly import frame_metrics
from seqnrl.scoring.pseudo_anomalies import PSEUDO_ANOMALIES
from seqnrl.scoring.windows import score_clip

log = logging.getLogger(__name__)


def validation_clips(datamodule: Any) -> dict[str, torch.Tensor]:
    """``{video_id: frames (C, T, H, W)}`` of the data module's normal validation videos."""
    ds = datamodule.dataset("val")
    return {rec.video_id: ds.video(i).frames for i, rec in enumerate(ds.records) if rec.label in (0, -1)}


def pseudo_anomaly_set(
    clips: dict[str, torch.Tensor], copies: int, seed: int, kind: str = "speedup"
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """The normal clips (labels 0) and ``copies`` pseudo-anomalous copies of each, with their
    frame labels: ``kind`` ``"speedup"`` (locally sped-up motion) or ``"b_lines"`` (synthetic
    B-lines in lung ultrasound), see :mod:`seqnrl.scoring.pseudo_anomalies`."""
    if kind not in PSEUDO_ANOMALIES:
        raise ConfigError(f"pseudo-anomaly kind must be one of {sorted(PSEUDO_ANOMALIES)}, got {kind!r}")
    make = PSEUDO_ANOMALIES[kind]
    rng = np.random.default_rng(seed)
    videos, labels = {}, {}
    for k, f in clips.items():
        videos[k], labels[k] = f, np.zeros(f.shape[1], dtype=np.int64)
        for j, (c, lab) in enumerate(make(f, copies, rng)):
            videos[f"{k}_{kind}{j}"], labels[f"{k}_{kind}{j}"] = c, lab
    return videos, labels


def apply_settings(model: Any, settings: dict[str, Any]) -> None:
    """Set score settings on a model (and let it refresh what depends on them)."""
    allowed = tuple(getattr(model, "score_settings", ()))
    bad = sorted(set(settings) - set(allowed))
    if bad:
        raise ConfigError(
            f"{type(model).__name__}: {bad} are not score settings (the model lists {list(allowed)}); "
            "post-fit selection may only change how outputs become a score"
        )
    model.hparams.update(settings)
    hook = getattr(model, "on_score_settings_changed", None)
    if callable(hook):
        hook()


Grid = dict[str, Sequence[Any]] | Sequence[dict[str, Any]]


def candidates(grid: Grid) -> list[dict[str, Any]]:
    """The settings to try: every combination of a ``{name: values}`` grid, or the given list
    of settings (for settings that move together, e.g. tied top-k fractions)."""
    if isinstance(grid, dict):
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    out = [dict(c) for c in grid]
    if not out or any(set(c) != set(out[0]) for c in out):
        raise ConfigError("score-selection candidates must all set the same settings")
    return out


def evaluate_settings(
    model: Any,
    videos: dict[str, torch.Tensor],
    labels: dict[str, np.ndarray],
    grid: Grid,
) -> list[dict[str, Any]]:
    """Pooled frame AUROC of ``videos`` (normal clips and pseudo-anomalies, frame ``labels``)
    under every setting of ``grid``; the model's own setting is restored afterwards."""
    cands = candidates(grid)
    current = {k: model.hparams[k] for k in cands[0]}
    rows = []
    try:
        for setting in cands:
            apply_settings(model, setting)
            scores = {k: score_clip(model, f).raw for k, f in videos.items()}
            rows.append({**setting, "val_pseudo_auroc": frame_metrics(scores, labels)["frame_auroc_micro"]})
    finally:
        apply_settings(model, current)
    return rows


def select_score_settings(
    model: Any,
    clips: dict[str, torch.Tensor],
    grid: Grid,
    copies: int = 4,
    seed: int = 0,
    pseudo: str = "speedup",
) -> dict[str, Any]:
    """Score the validation pseudo-anomalies under every setting of ``grid``, keep the best
    pooled frame AUROC (the current setting wins ties), re-fit the calibrator on the normal
    clips and return the record (stored by the model as ``post_fit``)."""
    if not grid or not clips:
        raise ConfigError("score selection needs a non-empty grid and validation clips")
    names = list(candidates(grid)[0])
    current = {k: model.hparams[k] for k in names}
    videos, labels = pseudo_anomaly_set(clips, copies, seed, pseudo)
    rows = evaluate_settings(model, videos, labels, grid)
    best = max(r["val_pseudo_auroc"] for r in rows)
    winners = [r for r in rows if r["val_pseudo_auroc"] == best]
    chosen_row = next((r for r in winners if {k: r[k] for k in names} == current), winners[0])
    chosen = {k: chosen_row[k] for k in names}
    apply_settings(model, chosen)
    normal = np.concatenate([score_clip(model, f).raw for f in clips.values()])
    model.calibrator.fit(normal[np.isfinite(normal)])
    if chosen != current:
        log.info("score selection: %s replaces the configured %s (validation pseudo-anomalies)", chosen, current)
    return {
        "method": f"pooled frame AUROC on {pseudo} pseudo-anomalies made from the normal validation clips",
        "pseudo_anomalies": pseudo,
        "grid": {k: list(v) for k, v in grid.items()} if isinstance(grid, dict) else [dict(c) for c in grid],
        "settings": names,
        "rows": rows,
        "configured": current,
        "chosen": chosen,
        "changed": chosen != current,
        "n_videos": len(videos),
        "n_pseudo_anomalous_frames": int(sum(int(v.sum()) for v in labels.values())),
        "copies_per_clip": int(copies),
        "seed": int(seed),
    }
