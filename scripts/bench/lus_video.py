"""Lung ultrasound, leave-patient-out: video-level normal-vs-pathological AUROC.

    python scripts/bench/lus_video.py --model configs/model/st_transformer.yaml --minutes-per-fold 1.5

Normal clips form four patient groups: ``pat1``, ``pat2``, ``pat3`` (six lung-zone clips each)
and the single-clip normals (eight clips, each its own patient). Fold *k* tests group *k*,
calibrates on the normal clips of the next group (cyclically) and trains on the normal clips
of the other two, so no test patient is ever seen in training or calibration. Every
pathological clip (COVID-19, viral and bacterial pneumonia; 6 clips) is in every fold's test
set. The data set has no frame labels, so the figure is the video-level AUROC.

Video score: mean of the top 10 % of a clip's frame scores, after the global calibration
to z-scores against the fold's normal validation frames (one linear map for every video:
no per-video normalisation). Scores of different folds are therefore on one scale, and the
pooled AUROC puts every normal clip (scored once, by the fold that held it out) against the
pathological clips as scored by each fold. The frame-difference reference (top-1 % absolute
frame difference, smoothed; the same top-10 % video score) is computed on the same decoded
clips. Caveat: the probes differ (linear vs convex) and are not balanced between the classes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._common import SHARED_DATA, load_model_config, quiet_run, save, table  # noqa: E402
from scripts.bench.ped2_st import fit_budgeted  # noqa: E402

PATIENT_GROUPS = ("pat1", "pat2", "pat3")
SINGLES = "single-clip normals"


def groups(root: str) -> dict[str, list[str]]:
    """Normal patient groups: ``pat1..pat3`` and the single-clip normals together."""
    from data_modules.lus import LUSDataModule

    recs = LUSDataModule(root=root).all_records()
    normal = sorted({r.patient for r in recs if r.label == 0})
    out = {g: [g] for g in PATIENT_GROUPS if g in normal}
    out[SINGLES] = [p for p in normal if p not in PATIENT_GROUPS]
    return out


class _CachedLoader:
    """A video loader that decodes each file once for all folds (same rate, size, colour)."""

    def __init__(self, inner, cache: dict):
        self.inner, self.cache = inner, cache

    def __call__(self, rec):
        if rec.source not in self.cache:
            self.cache[rec.source] = self.inner(rec)
        return self.cache[rec.source]


def make_data_module(cache: dict, **kw):
    """:class:`data_modules.lus.LUSDataModule` whose clips are decoded once across folds."""
    from data_modules.lus import LUSDataModule

    class CachedLUS(LUSDataModule):
        @property
        def loader(self):
            return _CachedLoader(super().loader, cache)

    return CachedLUS(**kw)


def auroc(scores, labels) -> float:
    from seqnrl.metrics.anomaly import auroc as _auroc

    return _auroc(np.asarray(scores, float), np.asarray(labels))


def frame_difference_video_scores(dm, top_fraction: float) -> dict[str, float]:
    from seqnrl.scoring.aggregate import video_score
    from seqnrl.scoring.baselines import frame_difference_scores

    ds = dm.dataset("test")
    return {rec.video_id: video_score(frame_difference_scores(ds._load(i).frames), top_fraction)
            for i, rec in enumerate(ds.records)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(SHARED_DATA / "lus"))
    ap.add_argument("--model", default="configs/model/st_transformer.yaml")
    ap.add_argument("--minutes-per-fold", type=float, default=1.5, help="training budget of each fold")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--stride", type=int, default=16,
                    help="evaluation window stride (default clip_len: every frame scored once)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples-per-video", type=int, default=16)
    ap.add_argument("--top-fraction", type=float, default=0.1, help="video score = mean of this top share of frames")
    ap.add_argument("--folds", nargs="*", default=None, help="test groups to run (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="lus_video")
    args = ap.parse_args(argv)


    from seqnrl.scoring.aggregate import video_score

    quiet_run(args.threads)
    t_all = time.perf_counter()
    grp = groups(args.root)
    names = list(grp)
    rows, per_clip, folds, cache = [], [], {}, {}
    for k, test_g in enumerate(names):
        if args.folds and test_g not in args.folds:
            continue
        val_g = names[(k + 1) % len(names)]
        train_g = [g for g in names if g not in (test_g, val_g)]
        dm = make_data_module(cache, root=args.root, test_patients=grp[test_g], val_patients=grp[val_g], fps=args.fps,
                           clip_len=args.clip_len, stride=args.stride, image_size=args.size,
                           batch_size=args.batch_size, samples_per_video=args.samples_per_video, seed=args.seed)
        recs = dm.records()
        assert not {r.patient for r in recs["train"]} & {r.patient for r in recs["test"]}, "patient leak"
        print(f"fold {k}: test {test_g}, calibrate on {val_g}, train on {train_g} "
              f"({len(recs['train'])} train / {len(recs['val'])} val / {len(recs['test'])} test clips)", flush=True)
        model = load_model_config(args.model, {"in_channels": 1, "image_size": args.size, "clip_len": args.clip_len})
        t0 = time.perf_counter()
        run = fit_budgeted(model, dm, args.minutes_per_fold, seed=args.seed)
        fd = frame_difference_video_scores(dm, args.top_fraction)
        info = {r.video_id: r for r in recs["test"]}
        ids = sorted(model.last_results)
        labels = [info[v].label for v in ids]
        ours = {v: video_score(model.calibrate(model.last_results[v])["z"], args.top_fraction) for v in ids}
        for v in ids:
            r = info[v]
            per_clip.append({"fold": test_g, "clip": v, "patient": r.patient, "label": r.extra["label_name"],
                             "probe": r.extra.get("probe", ""), "score_z_top10": ours[v], "frame_difference": fd[v]})
        a_ours, a_fd = auroc([ours[v] for v in ids], labels), auroc([fd[v] for v in ids], labels)
        folds[test_g] = {"val": val_g, "train": train_g, "n_normal_test": labels.count(0),
                         "n_pathological_test": labels.count(1), "auroc": a_ours, "auroc_frame_difference": a_fd,
                         "seconds": time.perf_counter() - t0, **{k2: run[k2] for k2 in (
                             "train_minutes", "epochs", "steps", "test_seconds", "frames_scored", "frames_per_second")}}
        rows.append({"test group": test_g, "normal/path. clips": f"{labels.count(0)}/{labels.count(1)}",
                     "AUROC model": a_ours, "AUROC frame diff.": a_fd, "train_min": run["train_minutes"],
                     "steps": run["steps"]})
        print(table(rows[-1:]), flush=True)
    if len(folds) > 1:
        lab = [int(c["label"] != "normal") for c in per_clip]
        rows.append({"test group": "pooled over folds", "normal/path. clips": f"{lab.count(0)}/{lab.count(1)}",
                     "AUROC model": auroc([c["score_z_top10"] for c in per_clip], lab),
                     "AUROC frame diff.": auroc([c["frame_difference"] for c in per_clip], lab)})
        rows.append({"test group": "mean of folds",
                     "AUROC model": float(np.mean([f["auroc"] for f in folds.values()])),
                     "AUROC frame diff.": float(np.mean([f["auroc_frame_difference"] for f in folds.values()]))})
    total = (time.perf_counter() - t_all) / 60
    print(table(rows))
    print(f"total {total:.1f} min")
    for c in per_clip:
        print(f"  {c['fold']:>20s} {c['clip']:45s} {c['label']:20s} z-top10 {c['score_z_top10']:7.2f}  "
              f"frame diff {c['frame_difference']:6.2f}")
    result = {
        "title": "Lung ultrasound, leave-patient-out: video-level AUROC (normal vs pathological)",
        "description": ("Each fold tests one normal patient group (pat1, pat2, pat3, single-clip normals) against "
                        "all 6 pathological clips; trained on two other groups, calibrated on the remaining one. "
                        "Video score: top-10 % mean of globally calibrated (z) frame scores. Pooled: every normal "
                        "clip once + the pathological clips as scored by each fold."),
        "settings": vars(args), "folds": folds, "per_clip": per_clip, "total_minutes": total, "table": rows,
    }
    save(args.name, result)
    return result


if __name__ == "__main__":
    main()
