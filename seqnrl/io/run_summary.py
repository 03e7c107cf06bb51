"""The output format of per-frame scores, one for every tool that writes them.

Per video (``seqnrl score``, Lightning predict with ``ScoreWriter``):

* ``<name>.csv``: one row per frame: ``frame, time_s, raw, calibrated, z, p_value``, the
  model's extra per-frame signals, ``above_threshold`` (``seqnrl score``), ``label``;
* ``<name>.json``: ``schema`` (:data:`FRAME_SCORES_SCHEMA`), ``video_id``, ``source``, ``fps``,
  ``n_frames``, ``label``, ``threshold_calibrated``, ``frames`` (the CSV rows), plus what the
  tool knows (checkpoint calibration, preprocessing, mask, warnings);
* ``<name>.png``: the score timeline.

Per run: ``scores_summary.json`` (:data:`SUMMARY_FILE`): ``schema``
(:data:`RUN_SUMMARY_SCHEMA`), ``inputs`` (one record per video: ``name``, ``source``,
``status``, ``n_frames``, ``video_score``, ``frames_above_threshold``, ``files``, ...),
``counts``, ``calibration`` and ``runs``, merged with earlier runs into the same folder
(:func:`merge_run_summary`). Documented in ``docs/output_format.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

SUMMARY_FILE = "scores_summary.json"
FRAME_SCORES_SCHEMA = "seqnrl.frame_scores/1"
RUN_SUMMARY_SCHEMA = "seqnrl.scores_summary/1"


def merge_run_summary(path: Path, new: dict) -> dict:
    """``new`` merged with the run summary already at ``path`` (never replaced wholesale).

    Inputs are keyed by their source: this run's record wins, an earlier run's record of an
    input not given this time is kept (``"from_earlier_run": true``). ``runs`` lists every
    run's checkpoint, time and counts, oldest first. A summary that cannot be read is moved
    aside to ``<name>.unreadable-<time>`` (nothing written is lost) and a new one started.
    """
    run = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "checkpoint": new.get("checkpoint"),
           "counts": new.get("counts")}
    old: dict = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError):
            path.rename(path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}"))
            old = {}
    here = {rec.get("source"): rec for rec in new["inputs"]}
    earlier = [{**rec, "from_earlier_run": True} for rec in old.get("inputs", [])
               if isinstance(rec, dict) and rec.get("source") not in here]
    return {"schema": RUN_SUMMARY_SCHEMA, **new, "inputs": new["inputs"] + earlier, "runs": [*old.get("runs", []), run]}
