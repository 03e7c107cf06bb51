#!/usr/bin/env python
"""Score a folder of BVH motion-capture files with a trained kinematic prior.

    python scripts/score_bvh.py FOLDER_OR_FILES... --ckpt runs/motion_styles/checkpoints/last.ckpt --out OUT
                                [--overwrite] [--threshold-window 30]

Needs nothing but the checkpoint (``seqnrl fit --config configs/motion_styles.yaml`` writes
one): each file is read with forward kinematics, resampled to the frame rate the model was
trained at and divided by its skeleton's rest height, exactly as the training data module
does (:func:`data_modules.motion_styles.load_bvh_positions`), and scored in one causal pass
(every frame's score uses that frame and the frames before it only).

Writes, atomically, per input ``OUT/<name>.csv`` (frame, time in s, score, calibrated score,
above the alarm threshold) and ``OUT/scores_summary.json`` (per take: frames, mean and
maximum score, share of frames above the threshold, the mean score of the worst 1-s window,
the three joints that carry most of the score in the frames above the threshold;
and the files that could not be scored, with the reason), merged with an earlier run's
summary in the same folder as ``seqnrl score`` does. A file that cannot be read is
reported and skipped (exit code 1); existing per-take outputs are kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_modules.motion_styles import load_bvh_positions  # noqa: E402
from seqnrl.data.input_spec import InputSpec  # noqa: E402
from seqnrl.errors import SeqNRLError  # noqa: E402
from seqnrl.io.atomic import write_json, write_text  # noqa: E402
from seqnrl.io.run_summary import SUMMARY_FILE, merge_run_summary  # noqa: E402
from seqnrl.models.kinematic_prior.module import KinematicPriorModel  # noqa: E402
from seqnrl.models.loading import load_model  # noqa: E402


def bvh_inputs(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() == ".bvh" and q.is_file())
        else:
            out.append(p)
    return out


def top_joints(model: KinematicPriorModel, shares: torch.Tensor, frames: np.ndarray, n: int = 3) -> list[dict]:
    """The ``n`` joints that carry most of the score over ``frames`` (bool ``(T,)``; all
    frames when none is set), from per-frame joint shares ``(T, K)``, with their share."""
    per = shares[torch.as_tensor(frames) if frames.any() else slice(None)].sum(0)
    share = per / per.sum().clamp_min(1e-12)
    names = list(model.hparams.joint_names or [str(j) for j in range(len(share))])
    return [{"joint": names[j], "share": round(float(share[j]), 3)} for j in share.argsort(descending=True)[:n].tolist()]


def worst_window(scores: np.ndarray, window: int) -> float:
    if len(scores) < window:
        return float(scores.mean())
    return float(np.convolve(scores, np.ones(window) / window, mode="valid").max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("inputs", nargs="+", help="BVH files or folders (searched recursively)")
    ap.add_argument("--ckpt", required=True, help="kinematic prior checkpoint")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ap.add_argument("--window-s", type=float, default=1.0, help="window for the worst-window score (s)")
    args = ap.parse_args(argv)

    model = load_model(args.ckpt, expected=KinematicPriorModel).eval()
    fps = float(InputSpec.of(model).fps)
    window = max(1, int(round(args.window_s * fps)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = bvh_inputs(args.inputs)
    if not files:
        print(f"no .bvh files in {args.inputs}", file=sys.stderr)
        return 2
    records = []
    for path in files:
        name = path.stem
        target = out / f"{name}.csv"
        source = str(path.resolve())
        if target.exists() and not args.overwrite:
            records.append({"source": source, "status": "kept", "csv": target.name})
            print(f"keep {target} (exists; --overwrite replaces it)", file=sys.stderr)
            continue
        try:
            pos, names, _ = load_bvh_positions(path, fps)
            if model.hparams.joint_names and list(names) != list(model.hparams.joint_names):
                raise SeqNRLError(f"skeleton has joints {names[:4]}... ({len(names)}); the model was trained on "
                                  f"{len(model.hparams.joint_names)} joints {list(model.hparams.joint_names)[:4]}...")
            raw, shares = model.explain_sequence(pos)
        except (SeqNRLError, ValueError, OSError) as e:
            records.append({"source": source, "status": "failed", "error": f"{type(e).__name__}: {e}"})
            print(f"ERROR {path}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        fitted = model.calibrator.fitted
        cal = model.calibrator.calibrated(torch.as_tensor(raw)).numpy() if fitted else np.full(len(raw), np.nan)
        thr = float(model.calibrator.threshold) if fitted else float("nan")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["frame", "time_s", "score", "calibrated", "above_threshold"])
        for i, (r, c) in enumerate(zip(raw, cal)):
            w.writerow([i, f"{i / fps:.4f}", f"{r:.6g}", f"{c:.6g}", int(fitted and r > thr)])
        write_text(target, buf.getvalue())
        records.append({
            "source": source,
            "status": "scored",
            "take": name,
            "frames": len(raw),
            "mean_score": float(raw.mean()),
            "max_score": float(raw.max()),
            f"worst_{args.window_s:g}s_window": worst_window(raw, window),
            "above_threshold": float((raw > thr).mean()) if fitted else None,
            "top_joints": top_joints(model, shares, raw > thr if fitted else np.zeros(len(raw), bool)),
            "csv": target.name,
        })
    counts = {k: sum(r["status"] == k for r in records) for k in ("scored", "kept", "failed")}
    summary = {
        "checkpoint": str(Path(args.ckpt).resolve()),
        "fps": fps,
        "threshold": float(model.calibrator.threshold) if model.calibrator.fitted else None,
        "target_fpr": float(model.hparams.target_fpr),
        "counts": counts,
        "inputs": records,
    }
    write_json(out / SUMMARY_FILE, merge_run_summary(out / SUMMARY_FILE, summary))
    print(f"{counts['scored']} scored, {counts['kept']} kept, {counts['failed']} failed -> {out / SUMMARY_FILE}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
