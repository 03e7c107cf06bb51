"""Pose from video -> motion score, end to end on rendered synthetic walking.

1. Render walking stick figures (:class:`SyntheticMotionDataModule` with ``render=True``);
   train sequences are normal, validation/test sequences carry tremor / freeze / limp.
2. Train the shape-template pose model (:class:`PoseTemplateModel`) on the training videos,
   with no labels.
3. Keypoint accuracy of the discovered keypoints, trained vs untrained (the untrained
   model returns the constant template: a linear probe of it predicts the mean pose), with
   mmpose's PCK / EPE through :mod:`seqnrl.metrics.pose`:
   * ``across videos`` (the standard protocol): linear map fitted on all frames of the
     training videos, evaluated on the test videos;
   * ``within videos`` (tracking): fitted on the first half of each test video, evaluated
     on its second half.
4. Train the motion normative model on the *discovered* keypoints of the training videos and
   score the test videos: frame AUROC per anomaly type; the same model on the true 2D
   joints is the reference.
5. Export the test keypoints as COCO JSON and draw skeleton overlays (discovered in colour,
   true joints in green) and part overlays for one test video.

Prints tables, writes JSON (default ``bench_out/pose_synthetic.json``) and the exports under
``bench_out/pose_synthetic/``.

    python scripts/bench/pose_synthetic.py                   # defaults: a few minutes on 2 cores
    python scripts/bench/pose_synthetic.py --pose-steps 200 --motion-epochs 3   # quicker look
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from motion_synthetic import print_table, quiet, score_rows, trainer  # noqa: E402

from data_modules.synthetic_motion import SyntheticMotionDataModule  # noqa: E402
from scripts.bench._common import save  # noqa: E402
from seqnrl.batch import collate  # noqa: E402
from seqnrl.data.motion_windows import MotionClipDataset, MotionSequence  # noqa: E402
from seqnrl.data.synthetic_motion import ANOMALIES, JOINT_NAMES, PARENTS  # noqa: E402
from seqnrl.io.keypoints_json import write_coco_keypoints  # noqa: E402
from seqnrl.io.write import write_video  # noqa: E402
from seqnrl.metrics import pose as pm  # noqa: E402
from seqnrl.models.motion import MotionTransformerModel  # noqa: E402
from seqnrl.models.pose import PoseTemplateModel  # noqa: E402
from seqnrl.viz_pose import SkeletonLayer, draw_skeletons, overlay_parts, save_overlay_grid  # noqa: E402

TRUE_EDGES = [(j, p) for j, p in enumerate(PARENTS) if p >= 0]


def add_common_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of the pose and motion stages (shared with ``pose_mocap.py``)."""
    p.add_argument("--size", type=int, default=32, help="frame size (square)")
    p.add_argument("--template", default="adult")
    p.add_argument("--pose-steps", type=int, default=600)
    p.add_argument("--pose-clip-len", type=int, default=16, help="frames a (target, source) pair is drawn from")
    p.add_argument("--pose-batch", type=int, default=8, help="clips per step (2 pairs each)")
    p.add_argument("--pose-width", type=int, default=16)
    p.add_argument("--pose-lr", type=float, default=2e-3)
    p.add_argument("--recon-loss", default="ms_ssim_l1")
    p.add_argument("--motion-epochs", type=int, default=12)
    p.add_argument("--motion-clip-len", type=int, default=32)
    p.add_argument("--motion-clips", type=int, default=16, help="training clips per sequence and epoch")
    p.add_argument("--motion-dim", type=int, default=48)
    p.add_argument("--asymmetry-weight", type=float, default=2.0, help="left/right asymmetry channel of the motion score (0 = off)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=24)
    p.add_argument("--n-val", type=int, default=8)
    p.add_argument("--n-test", type=int, default=12)
    p.add_argument("--n-frames", type=int, default=96)
    p.add_argument("--out", type=Path, default=REPO / "bench_out" / "pose_synthetic.json")
    return add_common_args(p).parse_args(argv)


def videos(dm, split: str) -> list[tuple[str, torch.Tensor, MotionSequence]]:
    """``(video_id, video (1, T, H, W) uint8, sequence)`` of every sequence of a split of a
    rendering motion data module."""
    ds = dm.dataset(split)
    return [(s.video_id, ds.video(i), s) for i, s in enumerate(ds.sequences)]


def discovered(model: PoseTemplateModel, vids) -> dict[str, np.ndarray]:
    return {vid: model.predict_keypoints(v).numpy() for vid, v, _ in vids}


def probes(kp: dict[str, np.ndarray], train, test) -> dict[str, dict[str, float]]:
    j = next(iter(kp.values())).shape[1]
    fit_x = np.concatenate([kp[v] for v, _, _ in train]).reshape(-1, j, 2)
    fit_y = np.concatenate([s.keypoints.numpy() for _, _, s in train])
    te_x = np.concatenate([kp[v] for v, _, _ in test]).reshape(-1, j, 2)
    te_y = np.concatenate([s.keypoints.numpy() for _, _, s in test])
    across = pm.linear_probe(fit_x, fit_y, te_x, te_y)
    preds, gts = [], []
    for v, _, s in test:  # within videos: first half -> second half, one map per video
        h = len(kp[v]) // 2
        w = pm.fit_linear_map(kp[v][:h], s.keypoints.numpy()[:h])
        preds.append(pm.apply_linear_map(kp[v][h:], w))
        gts.append(s.keypoints.numpy()[h:])
    within = pm.pose_metrics(np.concatenate(preds), np.concatenate(gts))
    return {"across_videos": across, "within_videos": within}


def train_pose(a, loader) -> tuple[PoseTemplateModel, PoseTemplateModel, float]:
    """The pose model trained ``a.pose_steps`` steps on ``loader`` (no labels), a copy of it
    untrained, and the training seconds."""
    pl.seed_everything(a.seed)
    pose = PoseTemplateModel(
        template=a.template, regressor_width=a.pose_width, translator_width=a.pose_width, lr=a.pose_lr,
        recon_loss=a.recon_loss,
    )  # fmt: skip
    untrained = copy.deepcopy(pose)
    tp = time.time()
    pl.Trainer(
        accelerator="cpu", devices=1, max_steps=a.pose_steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    ).fit(pose, train_dataloaders=loader)  # fmt: skip
    return pose, untrained, time.time() - tp


def evaluate_pose(pose, untrained, split_vids, probe_test) -> tuple[dict, dict, dict, dict]:
    """Discovered keypoints of every split (trained and untrained), the linear-probe accuracy
    (fit on the training videos, tested on ``probe_test``) and the reconstruction loss on
    fixed pairs of the ``probe_test`` videos."""
    kp_tr = {s: discovered(pose, v) for s, v in split_vids.items()}
    kp_un = {s: discovered(untrained, v) for s, v in split_vids.items()}
    acc = {
        "trained": probes(kp_tr["train"] | kp_tr["test"], split_vids["train"], probe_test),
        "untrained": probes(kp_un["train"] | kp_un["test"], split_vids["train"], probe_test),
    }
    n = min(v.shape[1] for _, v, _ in probe_test)  # equal lengths for stacking
    fixed = pose.sample_pairs(torch.stack([v[:, :n] for _, v, _ in probe_test]).float() / 255, torch.Generator().manual_seed(1))
    with torch.no_grad():
        recon = {"trained": float(pose.pair_losses(*fixed)["recon"]), "untrained": float(untrained.pair_losses(*fixed)["recon"])}
    return kp_tr, kp_un, acc, recon


def motion_run(a, kp_of, seqs: dict[str, list[MotionSequence]], names: list[str], anomalies=ANOMALIES) -> dict:
    """Train the motion model on the training sequences' keypoints (``kp_of(split, seq)``)
    and score the test ones; frame AUROC per anomaly type (the suffix of a video id)."""

    def with_kp(split: str, s: MotionSequence) -> MotionSequence:
        return MotionSequence(s.video_id, torch.as_tensor(kp_of(split, s)), s.frame_label, s.fps, s.label, s.source)

    ds = {
        split: MotionClipDataset([with_kp(split, s) for s in seqs[split]], a.motion_clip_len, mode="train" if split == "train" else "eval", clips_per_sequence=a.motion_clips)
        for split in ("train", "val", "test")
    }  # fmt: skip
    loaders = {
        "train": DataLoader(ds["train"], batch_size=16, sampler=ds["train"].sampler(seed=a.seed), collate_fn=collate),
        "val": DataLoader(ds["val"], batch_size=16, collate_fn=collate),
        "test": DataLoader(ds["test"], batch_size=16, collate_fn=collate),
    }
    pl.seed_everything(a.seed)
    model = MotionTransformerModel(
        n_joints=len(names), coord_dim=2, joint_names=names, dim=a.motion_dim, depth=2, asymmetry_weight=a.asymmetry_weight,
    )  # fmt: skip
    tr = trainer(a.motion_epochs)
    tr.fit(model, loaders["train"], loaders["val"])
    tr.test(model, loaders["test"], verbose=False)
    res = model.last_results
    types = {vid: next((k for k in anomalies if vid.endswith(k)), None) for vid in res}
    return {"rows": score_rows(res, types)}


def export_overlays(
    export: Path, a, pose, kp_test, test_vids, true_edges, fps: float, description: str, max_frames: int = 96
) -> None:
    """COCO JSON of the test keypoints; skeleton (discovered in colour, true joints in green)
    and part overlays of the first anomalous test video (at most ``max_frames`` frames, from
    shortly before its anomalous span)."""
    vid, video, seq = next((x for x in test_vids if x[2].label == 1), test_vids[0])
    write_coco_keypoints(
        export / "keypoints_test.json", kp_test, (a.size, a.size), pose.joint_names, pose.skeleton, fps=fps,
        info={"description": description},
    )  # fmt: skip
    lab = seq.frame_label.numpy()
    start = min(max(0, int(np.argmax(lab)) - 16) if lab.any() else 0, max(0, len(lab) - max_frames))
    keep = slice(start, start + max_frames)
    video = video[:, keep]
    layers = [
        SkeletonLayer(seq.keypoints.numpy()[keep], true_edges, color=(0.2, 1.0, 0.2), thickness=1.0, radius=1.0),
        SkeletonLayer(kp_test[vid][keep], pose.skeleton, thickness=1.5, radius=1.5),
    ]
    save_overlay_grid(export / "overlay_test.png", video, layers, n=8, cols=4, scale=8)
    write_video(export / "overlay_test.mp4", draw_skeletons(video, layers, scale=8), fps=fps)
    with torch.no_grad():
        frames = video.float().div(255).permute(1, 0, 2, 3)
        heat = pose.net.parts.heatmaps(pose.net.affines(frames), (a.size, a.size))
    save_overlay_grid(export / "parts_test.png", overlay_parts(video, heat), [], n=8, cols=4, scale=8)


def report(a, acc, recon, motion, export: Path, seconds: dict, title: str) -> dict:
    """Print the keypoint and motion tables; the result dict (``table``: keypoint accuracy)."""
    print(f"\nunsupervised keypoints ({a.template} template, {a.size}x{a.size}, {a.pose_steps} steps, "
          f"recon loss {a.recon_loss}): linear probe, PCK normalised by bbox size (mmpose)")  # fmt: skip
    print(f"{'model':10s} {'protocol':14s} {'PCK@0.05':>8s} {'PCK@0.1':>8s} {'MPJPE/bbox':>10s} {'recon':>7s}")
    for name in ("untrained", "trained"):
        for proto, m in acc[name].items():
            print(f"{name:10s} {proto:14s} {m['pck@0.05']:8.3f} {m['pck@0.1']:8.3f} {m['mpjpe_bbox']:10.3f} {recon[name]:7.3f}")
    for name, r in motion.items():
        print_table(r["rows"], f"motion model on {name} keypoints (frame AUROC)")
    print(f"\nexports in {export}; times {seconds}")
    return {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "recon_loss_test_pairs": recon,
        "keypoint_accuracy": acc,
        "motion": motion,
        "exports": sorted(str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in export.iterdir()),
        "seconds": seconds,
        "table": [{"model": name, "protocol": proto, "PCK@0.05": m["pck@0.05"], "PCK@0.1": m["pck@0.1"],
                   "MPJPE/bbox": m["mpjpe_bbox"], "recon loss": recon[name]}
                  for name in ("untrained", "trained") for proto, m in acc[name].items()],
        "title": title,
    }  # fmt: skip


def main(argv=None) -> dict:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    quiet()
    t0 = time.time()
    export = a.out.with_suffix("")
    export.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(a.seed, workers=True)
    dm = SyntheticMotionDataModule(
        n_train=a.n_train, n_val=a.n_val, n_test=a.n_test, n_frames=a.n_frames, render=True, image_size=a.size,
        clip_len=a.pose_clip_len, val_anomaly_fraction=0.75, batch_size=a.pose_batch, seed=a.seed,
        clips_per_sequence=max(1, a.pose_steps * a.pose_batch // a.n_train + 1),
    )  # fmt: skip
    split_vids = {s: videos(dm, s) for s in ("train", "val", "test")}
    t_data = time.time() - t0

    pose, untrained, t_pose = train_pose(a, dm.train_dataloader())
    te = time.time()
    kp_tr, _, acc, recon = evaluate_pose(pose, untrained, split_vids, split_vids["test"])

    # -- motion on discovered vs true keypoints --------------------------------------------
    t_eval = time.time() - te
    seqs = {s: [x[2] for x in v] for s, v in split_vids.items()}
    tm = time.time()
    motion = {
        "discovered": motion_run(a, lambda split, s: kp_tr[split][s.video_id], seqs, pose.joint_names),
        "true_2d": motion_run(a, lambda split, s: s.keypoints, seqs, list(JOINT_NAMES)),
    }
    t_motion = time.time() - tm

    tx = time.time()
    export_overlays(
        export, a, pose, kp_tr["test"], split_vids["test"], TRUE_EDGES, dm.fps,
        f"discovered keypoints ({a.template} template), seqnrl pose_synthetic benchmark",
    )  # fmt: skip
    seconds = {
        "data": round(t_data, 1), "pose_fit": round(t_pose, 1), "keypoints_and_probe": round(t_eval, 1),
        "motion": round(t_motion, 1), "export": round(time.time() - tx, 1), "total": round(time.time() - t0, 1),
    }  # fmt: skip
    out = report(a, acc, recon, motion, export, seconds,
                 f"Unsupervised pose on synthetic motion video ({a.template} template, linear probe, mmpose PCK)")  # fmt: skip
    save(a.out.stem, out, a.out.parent)
    return out


if __name__ == "__main__":
    main()
