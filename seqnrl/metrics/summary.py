"""Video summary F-score (the SumMe / TVSum protocol used by DSN and its successors).

A summary is a per-frame 0/1 mask. Against one reference (user) summary:
``precision = |pred & ref| / |pred|``, ``recall = |pred & ref| / |ref|``,
``F = 2 P R / (P + R)`` (0 when the overlap is empty). Over several users the SumMe
convention takes the **maximum** F-score and the TVSum convention the **mean**.

Reference files (:func:`load_reference_summaries`):

* CSV, one row per frame, one column per user (optional ``frame``/``time``/``time_s``
  columns are ignored), values 0/1 (any non-zero counts as selected);
* CSV, one row per user with a ``user`` column followed by per-frame values (``wide``);
* JSON: ``{"user_summary": [[0, 1, ...], ...]}`` or a plain list of per-user lists, or
  ``{"<video id>": {"user_summary": [...]}}`` (pass ``video_id``).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from seqnrl.errors import SeqNRLError

_IGNORED_COLUMNS = {"frame", "frame_index", "index", "time", "time_s", "t"}


def summary_fscore(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """``(f, precision, recall)`` of a predicted 0/1 summary against one reference."""
    p = np.asarray(pred).astype(bool).ravel()
    r = np.asarray(ref).astype(bool).ravel()
    if p.shape != r.shape:
        raise ValueError(f"prediction has {p.size} frames, reference {r.size}: align them first")
    overlap = float(np.logical_and(p, r).sum())
    if overlap == 0:
        return 0.0, 0.0, 0.0
    precision = overlap / float(p.sum())
    recall = overlap / float(r.sum())
    return 2 * precision * recall / (precision + recall), precision, recall


def evaluate_summary(pred: np.ndarray, refs: np.ndarray, mode: str = "max") -> dict[str, float]:
    """F-score of ``pred`` (T,) against ``refs`` (U, T): ``mode`` ``"max"`` (SumMe) or
    ``"avg"`` (TVSum). Precision and recall are those of the chosen/averaged users."""
    refs = np.atleast_2d(np.asarray(refs))
    if refs.shape[0] == 0:
        raise ValueError("no reference summaries")
    pred = align_length(pred, refs.shape[1])
    res = np.array([summary_fscore(pred, r) for r in refs])
    if mode == "max":
        i = int(np.argmax(res[:, 0]))
        f, p, r = res[i]
    elif mode in ("avg", "mean"):
        f, p, r = res.mean(0)
    else:
        raise ValueError(f"mode must be 'max' (SumMe) or 'avg' (TVSum), got {mode!r}")
    return {"f_score": float(f), "precision": float(p), "recall": float(r), "n_users": int(len(refs))}


def align_length(mask: np.ndarray, n_frames: int) -> np.ndarray:
    """Resample a per-frame mask to ``n_frames`` by nearest frame (e.g. a summary computed
    at 10 fps against references at the native rate)."""
    m = np.asarray(mask).ravel()
    if len(m) == n_frames:
        return m
    if len(m) == 0:
        return np.zeros(n_frames, dtype=m.dtype)
    idx = np.minimum((np.arange(n_frames) * len(m) / n_frames).astype(np.int64), len(m) - 1)
    return m[idx]


def load_reference_summaries(path: str | os.PathLike, video_id: str | None = None) -> np.ndarray:
    """Per-user 0/1 reference summaries ``(U, T)`` (uint8) from a CSV or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SeqNRLError(f"cannot read reference summaries: {e}", path) from e
    try:
        if path.suffix.lower() == ".json":
            refs = _from_json(json.loads(text), video_id)
        else:
            refs = _from_csv(text)
    except (ValueError, KeyError, TypeError) as e:
        raise SeqNRLError(f"bad reference summaries: {e}", path) from e
    if refs.ndim != 2 or refs.size == 0:
        raise SeqNRLError(f"bad reference summaries: expected users x frames, got shape {refs.shape}", path)
    return (refs != 0).astype(np.uint8)


def _from_json(obj, video_id: str | None) -> np.ndarray:
    if isinstance(obj, dict) and video_id is not None and video_id in obj:
        obj = obj[video_id]
    if isinstance(obj, dict):
        for key in ("user_summary", "user_summaries", "references", "summaries"):
            if key in obj:
                obj = obj[key]
                break
        else:
            raise KeyError(f"no user_summary key (keys: {sorted(obj)[:8]})")
    arr = np.asarray(obj, dtype=np.float64)
    return np.atleast_2d(arr)


def _from_csv(text: str) -> np.ndarray:
    rows = list(csv.reader(line for line in text.splitlines() if line.strip()))
    if not rows:
        raise ValueError("empty CSV")
    header = [h.strip().lower() for h in rows[0]]
    body = rows[1:]
    if "user" in header:  # wide: one row per user
        j = header.index("user")
        return np.array([[float(v) for k, v in enumerate(r) if k != j] for r in body])
    keep = [k for k, h in enumerate(header) if h not in _IGNORED_COLUMNS]
    if not keep:
        raise ValueError("no user columns")
    cols = np.array([[float(r[k]) for k in keep] for r in body])
    return cols.T
