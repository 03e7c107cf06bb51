"""UCSD Ped2 benchmark of the spatiotemporal transformers (kept for their rows; the model a user
gets is the motion prior of scripts/bench/ped2.py): train on normal training clips, frame AUROC on the test clips.

    python scripts/bench/ped2_st.py                                        # frame-difference reference only
    python scripts/bench/ped2_st.py --model configs/model/st_ped2.yaml --minutes 15
    python scripts/bench/ped2_st.py --model configs/model/st_transformer.yaml --minutes 60

Data roots are arguments, so the same script runs on any Ped2-layout folder. Frames are grey
and resized to ``--size H W`` (default 64x96, the 2:3 aspect of Ped2's 240x360); the model's
``image_size`` and ``clip_len`` are set from ``--size`` / ``--clip-len`` whatever its YAML says.

Training is budgeted in time: a few probe steps measure the seconds per step (and per bank
refresh), the number of whole epochs that fit in ``--minutes`` is planned (so the learning-rate
schedule decays over the run and every epoch fills the normal bank), and ``--minutes`` is
also a hard cap. The last two training clips are normal validation data: they calibrate the
scores and choose how they are pooled (no test clip is used to choose anything).

Score selection on validation pseudo-anomalies (``--select``, default on): after training,
copies of the validation clips are sped up locally (a band of a quarter to a half of the
width takes every 3rd-4th frame for 20-40 frames: its walkers move at a cyclist's speed;
the skipped-frame pseudo-anomalies of Astrid et al., BMVC 2021, made local). The model scores the unchanged and the sped-up validation clips, and
the candidate scores (the share of worst patches pooled per frame x the weights of
the prediction error and the embedding distance) are ranked by their pooled frame AUROC there;
the best is kept for calibration and the test. The same validation AUROC, printed for each
``--model``, is how two objectives are compared without the test clips.

Reported: ``val_pseudo``, the pooled frame AUROC on the sped-up validation clips (what chose
the score); pooled ("micro") frame AUROC of global scores (one score scale for every video,
possible on a live stream: our headline); the pooled AUROC after per-video min-max
normalisation (needs the whole video in advance; for comparison with papers only); the
mean per-video ("macro") AUROC; AP and EER. The model's score components (embedding
distance, reconstruction error) are reported beside it as diagnostics. Speed: frames per
second of the whole test pass (decoding, windows, losses and scores) and of the scoring
alone per new frame at the evaluation stride.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._common import REPO, SHARED_DATA, load_model_config, quiet_run, save, table  # noqa: E402

REFERENCES = {
    "future-frame prediction (Liu et al. 2018)": 0.954,
    "MemAE (Gong et al. 2019)": 0.941,
    "MNAD (Park et al. 2020)": 0.970,
    "MNAD (Park et al. 2020) re-trained compute-matched, 2 CPU cores, 46 min, measured by the maintainers (global / per-video)": "0.925 / 0.938",
}
KEYS = (
    "frame_auroc_micro",
    "frame_auroc_micro_pervideo_norm",
    "frame_auroc_macro",
    "frame_ap",
    "frame_eer",
)


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
    fps = n / (time.perf_counter() - t0)
    return {
        "metrics": m,
        "frames_per_second": fps,
        "train_minutes": 0.0,
        "scores": scores,
        "labels": labels,
    }


def plot_test_scores(
    path: Path, per_video: dict, fd_scores: dict, threshold: float, title: str
) -> Path:
    """The test clips one after another: the model's score (one global scale, its calibrated
    threshold dashed) and the frame-difference reference (rescaled to the model's range),
    labelled anomalous frames shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from seqnrl.io.atomic import atomic_path
    from seqnrl.viz import shade_runs

    fig, ax = plt.subplots(figsize=(12, 3.2), dpi=100)
    off, ticks = 0, []
    lo = min(np.nanmin(v["scores"]) for v in per_video.values())
    hi = max(np.nanmax(v["scores"]) for v in per_video.values())
    fd_all = np.concatenate([fd_scores[k] for k in per_video])
    for j, (k, v) in enumerate(per_video.items()):
        s = np.asarray(v["scores"], dtype=float)
        x = off + np.arange(len(s))
        shade_runs(
            ax, x, np.asarray(v["labels"]) == 1, "tab:red", "labelled anomalous" if j == 0 else None
        )
        fd = (np.asarray(fd_scores[k]) - fd_all.min()) / max(np.ptp(fd_all), 1e-9) * (hi - lo) + lo
        ax.plot(
            x, fd, color="0.55", lw=0.8, label="frame difference (rescaled)" if j == 0 else None
        )
        ax.plot(x, s, color="tab:blue", lw=1.2, label="model score" if j == 0 else None)
        ax.axvline(off, color="k", lw=0.5)
        ticks.append((off + len(s) / 2, k))
        off += len(s)
    if np.isfinite(threshold):
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label="calibrated threshold")
    ax.set_xticks([t for t, _ in ticks], [k for _, k in ticks])
    ax.set_xlim(0, off)
    ax.set_ylabel("anomaly score")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def plan_epochs(model, dm, minutes: float, probe_steps: int = 12) -> dict:
    """Seconds per optimiser step (median of ``probe_steps``) and per bank refresh measured on
    a copy of the model (so the run itself is untouched), and the whole epochs that fit in
    ``minutes``."""
    import torch

    from seqnrl import batch as B

    dm.setup("fit")
    loader = dm.train_dataloader()
    batch = next(iter(loader))
    probe = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    times = []
    for _ in range(probe_steps + 1):
        t0 = time.perf_counter()
        loss = probe.losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    # median of the steps after the first (warm-up): one slow step (another process on the
    # machine) must not shrink the plan, which then leaves budget unused
    step_s = float(sorted(times[1:])[len(times[1:]) // 2])
    refresh_s = 0.0
    if hasattr(probe, "refresh_bank"):
        t0 = time.perf_counter()
        probe.refresh_bank(batch[B.VIDEO], list(batch[B.VIDEO_ID]))
        per_clip = (time.perf_counter() - t0) / len(batch[B.VIDEO_ID])
        refresh_s = per_clip * min(probe.hparams.bank_clips, len(loader.dataset))
    steps_per_epoch = len(loader)
    epoch_s = steps_per_epoch * step_s + refresh_s
    epochs = max(1, int(minutes * 60 // epoch_s))
    return {
        "seconds_per_step": step_s,
        "seconds_per_bank_refresh": refresh_s,
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_epoch": epoch_s,
        "planned_epochs": epochs,
    }


def scoring_speed(model, dm, max_batches: int = 8) -> dict:
    """Scoring alone (no decoding, no loss): window-frames per second over test batches and
    the new frames per second of a stream scored with windows at the evaluation stride."""
    import torch

    from seqnrl import batch as B

    model.eval()
    n, secs = 0, 0.0
    with torch.no_grad():
        for i, batch in enumerate(dm.test_dataloader()):
            if i >= max_batches:
                break
            t0 = time.perf_counter()
            model.score_frames(batch)
            secs += time.perf_counter() - t0
            n += int((batch[B.FRAME_INDEX] >= 0).sum())
    stride = dm.stride or max(1, dm.clip_len // 2)
    wfps = n / max(secs, 1e-9)
    return {
        "window_frames_per_second": wfps,
        "windows_per_frame": dm.clip_len / stride,
        "stream_frames_per_second": wfps * stride / dm.clip_len,
    }


TOPK_CANDIDATES = (0.02, 0.05, 0.1, 0.2, 0.4)
WEIGHT_CANDIDATES = ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0))  # (error_weight, embed_weight)


def select_score(model, dm, seed: int, copies_per_clip: int = 4) -> dict:
    """The library's post-fit selection (:func:`seqnrl.scoring.selection.select_score_settings`)
    over ``TOPK_CANDIDATES`` x ``WEIGHT_CANDIDATES`` on the validation clips and their sped-up
    copies (it sets the best on the model, refreshing its bank and statistics); the
    frame-difference reference is scored on the same videos for comparison."""
    from seqnrl.metrics.anomaly import frame_metrics
    from seqnrl.scoring.baselines import frame_difference_scores
    from seqnrl.scoring.selection import pseudo_anomaly_set, select_score_settings, validation_clips

    clips = validation_clips(dm)
    grid = [{"error_topk": k, "embed_topk": k, "error_weight": we, "embed_weight": wd}
            for k in TOPK_CANDIDATES for we, wd in WEIGHT_CANDIDATES]  # fmt: skip
    record = select_score_settings(model, clips, grid, copies=copies_per_clip, seed=seed)
    videos, labels = pseudo_anomaly_set(clips, copies_per_clip, seed)
    fd = frame_metrics({k: frame_difference_scores(f) for k, f in videos.items()}, labels)
    rows = [{"topk": r["error_topk"], "error_weight": r["error_weight"], "embed_weight": r["embed_weight"],
             "val_pseudo_auroc_micro": r["val_pseudo_auroc"]} for r in record["rows"]]  # fmt: skip
    best = next(r for r in rows if r["topk"] == record["chosen"]["error_topk"]
                and (r["error_weight"], r["embed_weight"]) == (record["chosen"]["error_weight"], record["chosen"]["embed_weight"]))  # fmt: skip
    return {
        "candidates": rows,
        "chosen": best,
        "videos": record["n_videos"],
        "pseudo_anomalous_frames": record["n_pseudo_anomalous_frames"],
        "frames": int(sum(len(lab) for lab in labels.values())),
        "frame_difference_val_pseudo_auroc_micro": fd["frame_auroc_micro"],
    }


def fit_budgeted(model, dm, minutes: float, seed: int, select: bool = False) -> dict:
    """Fit for the whole epochs planned to fit in ``minutes`` (also a hard cap; planning
    counts), validate on the normal validation clips (bank refresh + calibration), test, and
    time every part. Results stay in ``model.last_results`` / ``model.last_metrics``."""
    import pytorch_lightning as pl

    pl.seed_everything(seed, workers=True, verbose=False)
    t0 = time.perf_counter()
    dm.setup("fit")  # decodes the training and validation clips (not part of the budget)
    decode_s = time.perf_counter() - t0
    t_plan = time.perf_counter()
    plan = plan_epochs(model, dm, minutes)
    plan_s = time.perf_counter() - t_plan
    left = max(0.25, minutes - plan_s / 60)
    plan["planned_epochs"] = max(1, int(left * 60 // plan["seconds_per_epoch"]))
    print(f"plan: { {k: round(v, 2) for k, v in plan.items()} }", flush=True)
    pl.seed_everything(seed, workers=True, verbose=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=plan["planned_epochs"],
        max_time={"minutes": left},
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - t0
    epochs, steps = trainer.current_epoch, int(trainer.global_step)
    selection, select_s = None, 0.0
    if select and hasattr(model, "refresh_bank"):
        t0 = time.perf_counter()
        selection = select_score(model, dm, seed)
        select_s = time.perf_counter() - t0
        c = selection["chosen"]
        print(
            f"validation pseudo-anomalies: chose topk {c['topk']}, error_weight {c['error_weight']}, "
            f"embed_weight {c['embed_weight']} (AUROC {c['val_pseudo_auroc_micro']:.3f}; frame difference "
            f"{selection['frame_difference_val_pseudo_auroc_micro']:.3f})",
            flush=True,
        )
    evaluator = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    t0 = time.perf_counter()
    evaluator.validate(
        model, datamodule=dm, verbose=False
    )  # bank (if stale) + calibration on normal clips
    val_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluator.test(model, datamodule=dm, verbose=False)
    test_s = time.perf_counter() - t0
    n_frames = sum(v.n_frames for v in model.last_results.values())
    return {
        "plan": plan,
        "plan_seconds": plan_s,
        "decode_seconds": decode_s,
        "fit_seconds": fit_s,
        "train_minutes": (plan_s + fit_s) / 60,
        "epochs": epochs,
        "steps": steps,
        "validate_seconds": val_s,
        "selection": selection,
        "selection_seconds": select_s,
        "test_seconds": test_s,
        "frames_scored": n_frames,
        "frames_per_second": n_frames / max(test_s, 1e-9),
        "calibration": {
            "n_ref": int(model.calibrator.n_ref),
            "threshold": float(model.calibrator.threshold),
            "target_fpr": float(model.calibrator.target_fpr),
        },
    }


def train_and_test(model, dm, minutes: float, seed: int, select: bool = False) -> dict:
    """:func:`fit_budgeted`, then the frame metrics of the score, of its components
    (diagnostics) and of every test video."""
    import torch

    from seqnrl.metrics.anomaly import frame_metrics
    from seqnrl.scoring.aggregate import smooth_scores

    run = fit_budgeted(model, dm, minutes, seed, select)
    res = model.last_results
    labels = {k: v.labels for k, v in res.items()}
    sigma = float(model.hparams.smooth_sigma)
    components = {}
    for sig in ("embed_dist", "recon_err"):
        if all(sig in v.extra for v in res.values()):
            m = frame_metrics(
                {k: smooth_scores(v.extra[sig], sigma) for k, v in res.items()}, labels
            )
            components[sig] = {k: m[k] for k in KEYS}
    per_video = {}
    for k, v in res.items():
        m = frame_metrics({k: v.scores}, {k: v.labels})
        flagged = model.calibrator.is_anomalous(torch.as_tensor(v.scores)).numpy()
        per_video[k] = {
            "frames": v.n_frames,
            "anomalous_frames": int((v.labels == 1).sum()),
            "frame_auroc": m["frame_auroc_micro"],
            "scores": [round(float(x), 4) for x in v.scores],
            "labels": [int(x) for x in v.labels],
            "flagged_share_normal_frames": float(flagged[v.labels == 0].mean())
            if (v.labels == 0).any()
            else None,
            "flagged_share_anomalous_frames": float(flagged[v.labels == 1].mean())
            if (v.labels == 1).any()
            else None,
        }
    return {
        "metrics": {k: model.last_metrics[k] for k in KEYS},
        "components_diagnostic": components,
        "per_video": per_video,
        **run,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--root", default=str(SHARED_DATA / "ped2"))
    ap.add_argument(
        "--model",
        default=None,
        help="model YAML (class_path + init_args); omit for the reference only",
    )
    ap.add_argument(
        "--minutes", type=float, default=60.0, help="training time budget (planning included)"
    )
    ap.add_argument("--size", type=int, nargs=2, default=[64, 96], metavar=("H", "W"))
    ap.add_argument("--clip-len", type=int, default=8)
    ap.add_argument("--stride", type=int, default=4, help="evaluation window stride")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--samples-per-video",
        type=int,
        default=64,
        help="random training clips per video and epoch",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="ped2_st")
    ap.add_argument(
        "--no-select",
        dest="select",
        action="store_false",
        help="keep the YAML's score pooling and weights (no validation pseudo-anomalies)",
    )
    args = ap.parse_args(argv)


    from data_modules.ped2 import Ped2DataModule

    quiet_run(args.threads)
    t_all = time.perf_counter()
    dm = Ped2DataModule(
        root=args.root,
        image_size=tuple(args.size),
        clip_len=args.clip_len,
        stride=args.stride,
        batch_size=args.batch_size,
        samples_per_video=args.samples_per_video,
        seed=args.seed,
    )
    rows, result = [], {"settings": vars(args), "references": REFERENCES}
    result["title"] = "UCSD Ped2, test clips 01-06: frame AUROC"
    result["description"] = (
        "micro_global: all test frames pooled, one global score scale (our headline, possible live); "
        "micro_pervideo_norm: pooled after per-video min-max normalisation (needs the whole video; "
        "papers' convention, for comparison only); macro: mean per-video AUROC. "
        f"Grey {args.size[0]}x{args.size[1]}, {args.threads} CPU threads; train_min includes planning."
    )
    fd = frame_difference(dm)
    fd_scores = fd.pop("scores")
    fd.pop("labels")
    result["frame_difference"] = fd
    rows.append(
        {
            "method": "frame difference (top-1%, smoothed)",
            "micro_global": fd["metrics"]["frame_auroc_micro"],
            "micro_pervideo_norm": fd["metrics"]["frame_auroc_micro_pervideo_norm"],
            "macro": fd["metrics"]["frame_auroc_macro"],
            "train_min": 0.0,
            "frames/s": fd["frames_per_second"],
        }
    )
    if args.model:
        overrides = {"in_channels": 1, "image_size": list(args.size), "clip_len": args.clip_len}
        model = load_model_config(args.model, overrides)
        r = train_and_test(model, dm, args.minutes, seed=args.seed, select=args.select)
        if hasattr(model, "score_frames"):
            r["speed"] = scoring_speed(model, dm)
        result["model"] = {"config": args.model, "overrides": overrides, **r}
        m = r["metrics"]
        fig = plot_test_scores(
            REPO / "bench_out" / f"{args.name}_scores.png",
            r["per_video"],
            fd_scores,
            r["calibration"]["threshold"],
            f"UCSD Ped2 test clips: {Path(args.model).stem} (frame AUROC pooled {m['frame_auroc_micro']:.3f}) "
            f"vs frame difference ({fd['metrics']['frame_auroc_micro']:.3f})",
        )
        result["figures"] = [str(fig)]
        if r["selection"]:
            rows[0]["val_pseudo"] = r["selection"]["frame_difference_val_pseudo_auroc_micro"]
        rows.append(
            {
                "method": Path(args.model).stem,
                "micro_global": m["frame_auroc_micro"],
                "micro_pervideo_norm": m["frame_auroc_micro_pervideo_norm"],
                "macro": m["frame_auroc_macro"],
                "train_min": r["train_minutes"],
                "frames/s": r["frames_per_second"],
                "val_pseudo": (r["selection"] or {})
                .get("chosen", {})
                .get("val_pseudo_auroc_micro"),
            }
        )
        for sig, cm in r["components_diagnostic"].items():
            rows.append(
                {
                    "method": f"  component {sig} (diagnostic)",
                    "micro_global": cm["frame_auroc_micro"],
                    "micro_pervideo_norm": cm["frame_auroc_micro_pervideo_norm"],
                    "macro": cm["frame_auroc_macro"],
                }
            )
        print(
            f"epochs {r['epochs']}, steps {r['steps']}, train {r['train_minutes']:.1f} min (planning "
            f"{r['plan_seconds']:.0f} s), validate {r['validate_seconds']:.0f} s, test {r['test_seconds']:.0f} s "
            f"for {r['frames_scored']} frames",
            flush=True,
        )
        if "speed" in r:
            print("speed:", {k: round(v, 1) for k, v in r["speed"].items()})
        for k, v in r["per_video"].items():
            print(
                f"  {k}: frame AUROC {v['frame_auroc']:.3f}, {v['anomalous_frames']}/{v['frames']} anomalous"
            )
    result["total_minutes"] = (time.perf_counter() - t_all) / 60
    print(table(rows))
    print("references (frame AUROC micro):", REFERENCES)
    save(args.name, {**result, "table": rows})
    if not math.isfinite(rows[-1].get("micro_global", float("nan"))):
        print("warning: AUROC undefined (a split without both classes?)")
    return result


if __name__ == "__main__":
    main()
