"""Pose from video -> motion score, end to end on rendered CMU motion capture (BVH).

The stages of ``pose_synthetic.py`` (whose functions this script reuses) on real motion:

1. :class:`MocapDataModule` with ``render=True`` reads ``../shared/data/mocap/*.bvh`` (CMU
   subject 131), resamples to 30 fps, projects the skeleton (31 joints) to a side view and
   draws it as a stick-figure video on a textured background. The last file is held out:
   validation and test hold it unchanged plus one copy per perturbation (``freeze``: the
   pose held; ``tremor``: 6-10 Hz jitter of a limb), with different spans in val and test;
   the other files are the (normal) training videos.
2. The shape-template pose model (:class:`PoseTemplateModel`) trains on the training videos
   only, with no labels. Its settings here (2000 steps, frame pairs drawn from 64-frame
   clips: CMU motion changes slowly, and pairs of nearby frames let the translator copy the
   source) were chosen with a probe fitted on training file 01 and evaluated on training
   file 02, never on the held-out file: PCK@0.05 across videos 0.16 (500 steps, 16-frame
   clips), 0.23 (500, 64), 0.42 (1000, 64), 0.46 (2000, 64); the untrained template's
   mean-pose probe: 0.46.
3. Keypoint accuracy with mmpose's PCK / EPE (:mod:`seqnrl.metrics.pose`), trained vs
   untrained: ``across videos``: a linear map from the discovered keypoints to the 31 true
   2D joints fitted on every frame of the training files, evaluated on the unchanged held-out
   file; ``within videos``: fitted on the first half of the held-out file, evaluated on its
   second half.
4. The motion normative model trains on the *discovered* keypoints of the training videos,
   is calibrated on them and scores the test copies: frame AUROC per perturbation (that copy
   + the unchanged file). The same model on the true 2D joints is the reference, and the
   speed-typicality baseline (no learning) is printed beside both.
5. COCO JSON of the test keypoints and skeleton / part overlays of a perturbed test copy.

Prints tables, writes JSON (default ``bench_out/pose_mocap.json``, through
``scripts/bench/_common.save``) and the exports under ``bench_out/pose_mocap/``.

    python scripts/bench/pose_mocap.py --threads 1     # defaults: about 8 minutes on one core
    python scripts/bench/pose_mocap.py --pose-steps 150 --motion-epochs 2   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from motion_synthetic import per_type_metrics, quiet  # noqa: E402
from pose_synthetic import (  # noqa: E402
    add_common_args,
    evaluate_pose,
    export_overlays,
    motion_run,
    report,
    train_pose,
    videos,
)

from data_modules.mocap import MOCAP_ANOMALIES, MocapDataModule  # noqa: E402
from scripts.bench._common import save  # noqa: E402
from seqnrl.models.motion import descriptors as D  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "mocap"))
    p.add_argument("--view", default="side", choices=("side", "front"))
    p.add_argument("--out", type=Path, default=REPO / "bench_out" / "pose_mocap.json")
    add_common_args(p)
    # fewer, longer sequences than the synthetic set: more clips per sequence, fewer epochs
    p.set_defaults(pose_steps=2000, pose_clip_len=64, motion_epochs=8, motion_clips=120)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    quiet()
    t0 = time.time()
    export = a.out.with_suffix("")
    export.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(a.seed, workers=True)
    dm = MocapDataModule(
        root=a.root, dim=2, view=a.view, render=True, image_size=a.size, clip_len=a.pose_clip_len,
        batch_size=a.pose_batch, seed=a.seed, clips_per_sequence=1,
    )  # fmt: skip
    dm.setup(None)
    n_train = len(dm.dataset("train").sequences)
    dm.dataset("train").clips_per_sequence = max(1, a.pose_steps * a.pose_batch // n_train + 1)
    split_vids = {s: videos(dm, s) for s in ("train", "val", "test")}
    held_out = [x for x in split_vids["test"] if x[2].label == 0]  # the unchanged held-out file(s)
    t_data = time.time() - t0

    pose, untrained, t_pose = train_pose(a, dm.train_dataloader())
    te = time.time()
    kp_tr, _, acc, recon = evaluate_pose(pose, untrained, split_vids, held_out)

    t_eval = time.time() - te
    seqs = {s: [x[2] for x in v] for s, v in split_vids.items()}
    tm = time.time()
    motion = {
        "discovered": motion_run(a, lambda split, s: kp_tr[split][s.video_id], seqs, pose.joint_names, MOCAP_ANOMALIES),
        "true_2d": motion_run(a, lambda split, s: s.keypoints, seqs, list(dm.joint_names), MOCAP_ANOMALIES),
    }  # fmt: skip
    t_motion = time.time() - tm
    # reference with no learning, on the true and on the discovered keypoints
    types = {s.video_id: next((k for k in MOCAP_ANOMALIES if s.video_id.endswith(f"-{k}")), None) for s in seqs["test"]}
    labels = {s.video_id: s.frame_label.numpy() for s in seqs["test"]}
    for name, kp_of in (("true_2d", lambda sp, s: s.keypoints.numpy()), ("discovered", lambda sp, s: kp_tr[sp][s.video_id])):
        base = D.SpeedTypicality().fit([kp_of("train", s) for s in seqs["train"]])
        sig = {s.video_id: base.score(kp_of("test", s)) for s in seqs["test"]}
        motion[name]["rows"] += [{"anomaly": k, "signal": "speed_typicality", **m} for k, m in per_type_metrics(sig, labels, types).items()]
        motion[name]["rows"].sort(key=lambda r: (r["anomaly"], r["signal"]))

    tx = time.time()
    export_overlays(
        export, a, pose, kp_tr["test"], split_vids["test"], [(j, p) for j, p in enumerate(dm.parents) if p >= 0], dm.fps,
        f"discovered keypoints ({a.template} template) on rendered CMU mocap, seqnrl pose_mocap benchmark",
    )  # fmt: skip
    seconds = {
        "data": round(t_data, 1), "pose_fit": round(t_pose, 1), "keypoints_and_probe": round(t_eval, 1),
        "motion": round(t_motion, 1), "export": round(time.time() - tx, 1), "total": round(time.time() - t0, 1),
    }  # fmt: skip
    out = report(a, acc, recon, motion, export, seconds,
                 f"Unsupervised pose on rendered CMU mocap video ({a.template} template, {a.view} view, linear probe, mmpose PCK)")  # fmt: skip
    out["train_files"] = [p.name for p in dm.split_files()["train"]]
    out["test_files"] = [p.name for p in dm.split_files()["test"]]
    out["frames"] = {s: {vid: int(v.shape[1]) for vid, v, _ in x} for s, x in split_vids.items()}
    save(a.out.stem, out, a.out.parent)
    return out


if __name__ == "__main__":
    main()
