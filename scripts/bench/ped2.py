"""UCSD Ped2 benchmark: train on normal training clips, frame AUROC on the test clips.

    python scripts/bench/ped2.py                                   # frame-difference reference only
    python scripts/bench/ped2.py --model configs/model/st_transformer.yaml --minutes 60

Data roots are arguments, so the same script runs on any Ped2-layout folder. Reports pooled
frame AUROC of globally calibrated scores (our headline: possible on a live stream) and, for
comparison with papers only, the AUROC after per-video min-max normalisation; plus macro AUROC.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._common import SHARED_DATA, load_model_config, save, table, train_and_test  # noqa: E402

REFERENCES = {
    "future-frame prediction (Liu et al. 2018)": 0.954,
    "MemAE (Gong et al. 2019)": 0.941,
    "MNAD (Park et al. 2020)": 0.970,
    "frame difference, DESIGN.md (global / per-video)": "0.912 / 0.897",
    "MNAD compute-matched, 2 CPU cores, 46 min (DESIGN.md)": "0.925 / 0.938",
}


def frame_difference(dm) -> dict:
    from seqnrl.metrics.anomaly import frame_metrics
    from seqnrl.scoring.baselines import frame_difference_scores

    ds = dm.dataset("test")  # decodes the clips (not timed)
    t0 = time.perf_counter()
    scores, labels = {}, {}
    for i, rec in enumerate(ds.records):
        frames = ds._load(i).frames
        scores[rec.video_id] = frame_difference_scores(frames)
        labels[rec.video_id] = rec.frame_labels.numpy()
    n = sum(len(s) for s in scores.values())
    m = frame_metrics(scores, labels)
    return {"metrics": m, "frames_per_second": n / (time.perf_counter() - t0), "train_minutes": 0.0}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(SHARED_DATA / "ped2"))
    ap.add_argument("--model", default=None, help="model YAML (class_path + init_args); omit for the reference only")
    ap.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    ap.add_argument("--size", type=int, nargs=2, default=[64, 96], metavar=("H", "W"))
    ap.add_argument("--clip-len", type=int, default=8)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="ped2")
    args = ap.parse_args(argv)

    import torch

    from data_modules.ped2 import Ped2DataModule

    torch.set_num_threads(max(1, torch.get_num_threads()))
    dm = Ped2DataModule(root=args.root, image_size=tuple(args.size), clip_len=args.clip_len, stride=args.stride,
                        batch_size=args.batch_size, seed=args.seed)
    rows, result = [], {"settings": vars(args), "references": REFERENCES}
    fd = frame_difference(dm)
    result["frame_difference"] = fd
    rows.append({"method": "frame difference (top-1%, smoothed)", "micro_global": fd["metrics"]["frame_auroc_micro"],
                 "micro_pervideo_norm": fd["metrics"]["frame_auroc_micro_pervideo_norm"],
                 "macro": fd["metrics"]["frame_auroc_macro"], "train_min": 0.0, "frames/s": fd["frames_per_second"]})
    if args.model:
        model = load_model_config(args.model, {"in_channels": 1})
        r = train_and_test(model, dm, args.minutes, seed=args.seed)
        result["model"] = {"config": args.model, **r}
        m = r["metrics"]
        rows.append({"method": Path(args.model).stem, "micro_global": m["frame_auroc_micro"],
                     "micro_pervideo_norm": m["frame_auroc_micro_pervideo_norm"], "macro": m["frame_auroc_macro"],
                     "train_min": r["train_minutes"], "frames/s": r["frames_per_second"]})
    print(table(rows))
    print("references (frame AUROC micro):", REFERENCES)
    save(args.name, {**result, "table": rows})
    return result


if __name__ == "__main__":
    main()
