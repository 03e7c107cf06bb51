"""Prediction writer: per-frame scores of every video as CSV + JSON + timeline PNG."""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.callbacks import BasePredictionWriter

from seqnrl.io.atomic import write_json, write_text
from seqnrl.io.names import safe_name as _safe_name
from seqnrl.io.run_summary import FRAME_SCORES_SCHEMA, SUMMARY_FILE, merge_run_summary
from seqnrl.metrics.anomaly import frame_metrics
from seqnrl.scoring.aggregate import VideoScores
from seqnrl.viz import plot_score_timeline

log = logging.getLogger(__name__)


def safe_name(video_id: str) -> str:
    """A file-name-safe version of a video id (:func:`seqnrl.io.names.safe_name`)."""
    return _safe_name(video_id, fallback="video")


def score_table(vs: VideoScores, cal: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for i in range(vs.n_frames):
        row = {"frame": i, "time_s": round(float(vs.times[i]), 6), "raw": float(vs.scores[i])}
        for k in ("calibrated", "z", "p_value"):
            row[k] = float(cal[k][i])
        for k, v in vs.extra.items():
            row[k] = float(v[i])
        row["label"] = int(vs.labels[i])
        rows.append(row)
    return rows


def write_video_scores(out_dir: Path, vs: VideoScores, cal: dict[str, np.ndarray], threshold: float | None) -> dict:
    """Write ``<id>.csv``, ``<id>.json`` and ``<id>.png`` for one video; returns the JSON record.

    ``threshold`` is the operating point on the calibrated scale (``1 - target_fpr``)."""
    name = safe_name(vs.video_id)
    rows = score_table(vs, cal)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
    write_text(out_dir / f"{name}.csv", buf.getvalue())
    has_cal = np.isfinite(cal["calibrated"]).any()
    record = {
        "schema": FRAME_SCORES_SCHEMA,
        "video_id": vs.video_id,
        "source": vs.source,
        "fps": vs.fps,
        "n_frames": vs.n_frames,
        "label": vs.label,
        "threshold_calibrated": threshold,
        "frames": rows,
    }
    write_json(out_dir / f"{name}.json", record)
    plot_score_timeline(
        out_dir / f"{name}.png",
        vs.times,
        cal["calibrated"] if has_cal else vs.scores,
        labels=vs.labels if (vs.labels >= 0).any() else None,
        threshold=threshold if has_cal else None,
        title=f"{vs.video_id}",
        ylabel="calibrated score (normal CDF)" if has_cal else "raw score",
    )
    return record


class ScoreWriter(BasePredictionWriter):
    """Aggregates window predictions to per-frame scores and writes them under ``output_dir``.

    Per video: ``<id>.csv`` (frame, time, raw, calibrated, z, p_value, extra signals, label),
    ``<id>.json`` and a timeline ``<id>.png``; for the run: ``scores_summary.json`` (the format of
    ``seqnrl score``, :mod:`seqnrl.io.run_summary`) with video-level
    scores and, where labels are known, frame AUROC micro/macro, AP and EER.
    """

    def __init__(self, output_dir: str = "outputs/predict"):
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        from seqnrl.models.base import gather_scorer
        from seqnrl.scoring.windows import WindowScorer

        scorer = WindowScorer(pl_module)
        preds = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        for p in preds:  # predict_step outputs: the batch's keys and the model's signals
            scorer.add(p, scored=p["scores"])
        scorer = gather_scorer(scorer)
        if trainer.global_rank != 0:
            return
        self.write_results(pl_module, scorer.videos())

    def write_results(self, pl_module, results: dict[str, VideoScores]) -> dict:
        from seqnrl.scoring.aggregate import video_score

        out = self.output_dir
        os.makedirs(out, exist_ok=True)
        cal_thr = pl_module.calibrator
        summary_videos = []
        for vid, vs in sorted(results.items()):
            cal = pl_module.calibrate(vs)
            thr = cal_thr.threshold_calibrated
            write_video_scores(out, vs, cal, thr)
            base = cal["calibrated"] if cal_thr.fitted else vs.scores
            vscore = video_score(base, pl_module.hparams.video_top_fraction)
            summary_videos.append(
                {
                    "name": safe_name(vid),
                    "video_id": vid,
                    "source": vs.source or vid,
                    "status": "scored",
                    "n_frames": vs.n_frames,
                    "fps": vs.fps if np.isfinite(vs.fps) else None,
                    "label": vs.label,
                    "video_score": vscore if np.isfinite(vscore) else None,
                    "frames_above_threshold": int(np.nansum(cal["above_threshold"])) if thr is not None else None,
                    "files": [f"{safe_name(vid)}.{e}" for e in ("csv", "json", "png")],
                }
            )
        metrics = frame_metrics(
            {k: v.scores for k, v in results.items()},
            {k: v.labels for k, v in results.items()},
            video_labels={k: v.label for k, v in results.items()},
            video_scores={v["video_id"]: v["video_score"] for v in summary_videos},
        )
        summary = {
            "model_class": f"{type(pl_module).__module__}.{type(pl_module).__qualname__}",
            "calibration": cal_thr.describe(),
            "metrics": {k: (v if np.isfinite(v) else None) for k, v in metrics.items()},
            "counts": {"scored": len(summary_videos), "kept": 0, "failed": 0},
            "inputs": summary_videos,
        }
        write_json(out / SUMMARY_FILE, merge_run_summary(out / SUMMARY_FILE, summary))
        log.info("wrote scores of %d videos to %s", len(results), out)
        return summary
