#!/usr/bin/env python
"""Summarise recordings: short summary videos, key frames, per-frame scores and a timeline.

    python scripts/summarise_recordings.py INPUT... --out DIR [--ckpt model.ckpt]
        [--budget 0.15] [--fps 10] [--normative-weight 1.0] [--overwrite]

INPUT: video files (mp4/avi/mov/mpeg/mkv), DICOM cines (.dcm), frame folders, or folders
holding any of those. Without ``--ckpt`` features and scores come from a documented
fallback (per-recording PCA of grey thumbnails, a proxy anomaly score), labelled as such
in every output. Finished recordings are skipped unless ``--overwrite``; the exit code is
1 when any recording failed (each failure is printed as ``ERROR <file>: <reason>``).
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from seqnrl.errors import SeqNRLError
from seqnrl.summarise import SummariseConfig, summarise_batch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = SummariseConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="recordings or folders of recordings")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per recording + index.md)")
    p.add_argument("--ckpt", default=None, help="normative model checkpoint (features + calibrated scores)")
    p.add_argument("--summariser-ckpt", default=None, help="trained SummariserModule checkpoint (else the policy is fitted per recording)")
    p.add_argument("--budget", type=float, default=d.budget, help="summary length as a fraction of the recording")
    p.add_argument("--fps", type=float, default=d.fps, help="analysis frame rate (a checkpoint's own fps wins)")
    p.add_argument("--normative-weight", type=float, default=d.normative_weight, help="weight of the calibrated anomaly score (0 = plain DSN)")
    p.add_argument("--policy-steps", type=int, default=d.policy_steps, help="REINFORCE steps of the per-recording policy fit (0 = none)")
    p.add_argument("--shot-seconds", type=float, default=d.shot_seconds, help="mean shot length for KTS")
    p.add_argument("--selection", default=d.selection, choices=["coverage", "knapsack"],
                   help="coverage: shots covering the whole recording + importance (default); knapsack: DSN's knapsack on shot importance")
    p.add_argument("--max-shot-seconds", type=float, default=d.max_shot_seconds, help="longer shots are split")
    p.add_argument("--shot-value", default=d.shot_value, choices=["mean", "sum"],
                   help="knapsack value of a shot: mean importance (DSN; many short shots) or total importance")
    p.add_argument("--thumb-size", type=int, default=d.thumb_size, help="longest side of summary video frames / key frames")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--overwrite", action="store_true", help="redo recordings whose outputs exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SummariseConfig(
        budget=args.budget,
        fps=args.fps,
        normative_weight=args.normative_weight,
        policy_steps=args.policy_steps,
        summariser_ckpt=args.summariser_ckpt,
        shot_seconds=args.shot_seconds,
        shot_value=args.shot_value,
        selection=args.selection,
        max_shot_seconds=args.max_shot_seconds,
        thumb_size=args.thumb_size,
        seed=args.seed,
        device=args.device,
    )
    try:
        report = summarise_batch(
            args.inputs, args.out, cfg, ckpt=args.ckpt, overwrite=args.overwrite, progress=not args.no_progress
        )
    except SeqNRLError as e:  # bad checkpoint or settings: nothing can run
        print(f"ERROR {e}", file=sys.stderr)
        return 2
    print(
        f"{len(report.done)} summarised, {len(report.skipped)} already done (skipped), "
        f"{len(report.failed)} failed -> {args.out}/index.md",
        file=sys.stderr,
    )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
