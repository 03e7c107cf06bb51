"""Lung ultrasound, leave-patient-out: video-level normal-vs-pathological AUROC.

    python scripts/bench/lus_video.py                       # the depth prior of configs/lus.yaml
    python scripts/bench/lus_video.py --config configs/lus.yaml --epochs 12

Normal clips form four patient groups: ``pat1``, ``pat2``, ``pat3`` (six lung-zone clips each)
and the single-clip normals (eight clips, each its own patient). Fold *k* tests group *k*,
calibrates on the normal clips of the next group (cyclically) and trains on the normal clips
of the other two, so no test patient is ever seen in training or calibration. Every
pathological clip (COVID-19, viral and bacterial pneumonia; 6 clips) is in every fold's test
set. The data set has no frame labels, so the figure is the video-level AUROC.

Each fold trains the model and data settings of ``configs/lus.yaml`` (the file ``seqnrl fit``
trains a user's model from) for its stated epochs, with that fold's patients; the budget is in
epochs, so a loaded machine makes a fold slower, never shorter. The same model untrained is
scored as a row, and a learning curve (pooled AUROC after 1, 2, 4, 8, ... epochs, with the
fold-mean training minutes) is written as a figure.

Nothing is chosen on the test clips. The model's settings (view, visible share, one-sided
excess, no smoothing, 12 epochs of about 600 steps) were fixed from the physics of lung
ultrasound and the prototype's loss curve before the first fold was scored. The one score
setting with an alternative, the pooling over the lower part (plain mean vs the mean of the 6
columns with the largest excess), is chosen by the library after each fold's training, as
``seqnrl fit`` does: ``ScoreSelection`` in ``configs/lus.yaml`` scores synthetic B-lines
(bright vertical streaks from the upper third of the view to its bottom,
:func:`seqnrl.scoring.pseudo_anomalies.b_lines`) drawn into the calibration group's normal
clips under both poolings and keeps the better; the ``validation pseudo-anomalies`` table
reports each fold's frame AUROC and choice. (The first run of this benchmark, before the
choice was a library step, found columns better on all four folds: 1.000/1.000/0.851/1.000
vs 0.799/0.821/0.668/0.857.) The pseudo-anomalies are narrow streaks, which favour
column pooling by construction; consolidation and white lung are broader.

Video score: mean of the top 10 % of a clip's frame scores, after the global calibration
to z-scores against the fold's normal validation frames (one linear map for every video:
no per-video normalisation). The alarm threshold set on the calibration group's frames at
the model's target false-positive rate (5 %) is applied to the held-out normal group: its
flagged share of frames is the transfer check (issue: within 2x the target). Scores of different folds are therefore on one scale, and the
pooled AUROC puts every normal clip (scored once, by the fold that held it out) against the
pathological clips as scored by each fold. The frame-difference reference (top-1 % absolute
frame difference, smoothed; the same top-10 % video score) is computed on the same decoded
clips. Caveat: the probes differ (linear vs convex) and are not balanced between the classes.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._common import (  # noqa: E402
    FIGURES_DIR,
    REPO,
    SHARED_DATA,
    curve_epochs,
    load_model_config,
    quiet_run,
    save,
    table,
)
from seqnrl.callbacks.score_selection import ScoreSelection  # noqa: E402

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
    return {
        rec.video_id: video_score(frame_difference_scores(ds._load(i).frames), top_fraction)
        for i, rec in enumerate(ds.records)
    }


CONFIG = REPO / "configs" / "lus.yaml"
FIGURE = FIGURES_DIR / "lus_learning_curve.png"
SEQNRL = [sys.executable, "-m", "seqnrl.cli"]


def config_settings(path: Path) -> tuple[dict, str, int, dict | None]:
    """Data init_args, model config path, epochs and the post-fit ``ScoreSelection``
    init_args (``None`` without one) of a ``seqnrl fit`` config."""
    import yaml

    cfg = yaml.safe_load(Path(path).read_text())
    model = (
        cfg["model"] if Path(cfg["model"]).is_absolute() else str(Path(path).parent / cfg["model"])
    )
    sel = next((c.get("init_args", {}) for c in cfg["trainer"].get("callbacks", [])
                if c["class_path"].endswith(".ScoreSelection")), None)  # fmt: skip
    return dict(cfg["data"]["init_args"]), model, int(cfg["trainer"]["max_epochs"]), sel


def snapshots(epochs):
    """Lightning callback keeping the weights and elapsed training minutes after ``epochs``
    (in ``.states``: epoch -> (state_dict, minutes))."""
    import pytorch_lightning as pl

    class Snapshots(pl.Callback):
        def __init__(self):
            self.keep, self.states, self.t0 = set(epochs), {}, None

        def on_train_start(self, trainer, module):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            e = trainer.current_epoch + 1
            if e in self.keep:
                self.states[e] = (
                    copy.deepcopy(module.state_dict()),
                    (time.perf_counter() - self.t0) / 60,
                )

    return Snapshots()


def evaluate(model, dm) -> dict:
    """Validate (calibration on the fold's normal calibration clips), then test; per-clip z
    video scores, and the share of the calibration threshold's alarms on normal test frames."""
    import pytorch_lightning as pl

    from seqnrl.scoring.aggregate import video_score

    ev = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    ev.validate(model, datamodule=dm, verbose=False)
    t0 = time.perf_counter()
    ev.test(model, datamodule=dm, verbose=False)
    test_s = time.perf_counter() - t0
    res = model.last_results
    top = float(model.hparams.video_top_fraction)
    import torch

    normal = [v for v in res.values() if v.label == 0]
    flagged = float(np.mean(np.concatenate([
        model.calibrator.is_anomalous(torch.as_tensor(v.scores, dtype=torch.float64)).numpy() for v in normal
    ]))) if normal else float("nan")  # fmt: skip
    return {
        "video_z": {k: video_score(model.calibrate(v)["z"], top) for k, v in res.items()},
        "labels": {k: int(v.label) for k, v in res.items()},
        "normal_fpr": flagged,
        "test_seconds": test_s,
        "frames": int(sum(v.n_frames for v in res.values())),
    }


def score_child(ckpt: Path, clips: list[str], out: Path, threads: int) -> tuple[dict, float]:
    """``seqnrl score`` of ``clips`` with a fold's checkpoint; per-frame raw scores read back
    from its CSVs, and its wall time."""
    import csv
    import os
    import shutil
    import subprocess

    if out.exists():
        shutil.rmtree(out)
    cmd = [*SEQNRL, "score", *clips, "--ckpt", str(ckpt), "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.time()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    scores = {}
    for c in clips:
        with open(out / f"{Path(c).stem}.csv", newline="") as fh:
            scores[Path(c).stem] = np.array([float(r["raw"]) for r in csv.DictReader(fh)])
    return scores, wall


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--root", default=str(SHARED_DATA / "lus"))
    ap.add_argument(
        "--config",
        default=str(CONFIG),
        help="seqnrl fit config whose model and data settings each fold trains",
    )
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per fold (default: the config's max_epochs)",
    )
    ap.add_argument("--folds", nargs="*", default=None, help="test groups to run (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="lus_video")
    ap.add_argument("--ckpt-dir", default=str(REPO / "runs" / "lus_folds"),
                    help="each fold's checkpoint is written here and re-scored by seqnrl score")  # fmt: skip
    args = ap.parse_args(argv)

    import pytorch_lightning as pl

    quiet_run(args.threads)
    data_kw, model_cfg, epochs, selection = config_settings(Path(args.config))
    epochs = args.epochs or epochs
    data_kw.update(root=args.root, seed=args.seed)
    data_kw.pop("val_patients", None), data_kw.pop("test_patients", None)
    keep = curve_epochs(epochs)
    t_all = time.perf_counter()
    grp = groups(args.root)
    names = list(grp)
    rows, per_clip, folds, cache, curve_pts, pseudo = [], [], {}, {}, {}, []
    for k, test_g in enumerate(names):
        if args.folds and test_g not in args.folds:
            continue
        val_g = names[(k + 1) % len(names)]
        train_g = [g for g in names if g not in (test_g, val_g)]
        dm = make_data_module(cache, test_patients=grp[test_g], val_patients=grp[val_g], **data_kw)
        recs = dm.records()
        assert not {r.patient for r in recs["train"]} & {r.patient for r in recs["test"]}, (
            "patient leak"
        )
        print(
            f"fold {k}: test {test_g}, calibrate on {val_g}, train on {train_g} "
            f"({len(recs['train'])} train / {len(recs['val'])} val / {len(recs['test'])} test clips)",
            flush=True,
        )
        pl.seed_everything(args.seed, workers=True, verbose=False)
        model = load_model_config(model_cfg)
        dm.setup("fit")
        untrained = evaluate(model, dm)
        snaps = snapshots(keep)
        # the config's post-fit score selection runs at the end of fit, as in `seqnrl fit`
        select = [ScoreSelection(**selection)] if selection else []
        trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, callbacks=[snaps, *select],
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
        t0 = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        fit_min = (time.perf_counter() - t0) / 60
        for e, (state, minutes) in sorted(snaps.states.items()):
            if e == epochs:
                continue
            snap = load_model_config(model_cfg)
            snap.load_state_dict(state)
            curve_pts.setdefault(e, []).append((minutes, evaluate(snap, dm)))
        final = evaluate(model, dm)
        curve_pts.setdefault(epochs, []).append((fit_min, final))
        # the user's path: this fold's checkpoint through seqnrl score, on this fold's test clips
        ckpt = Path(args.ckpt_dir) / f"{test_g.replace(' ', '_')}.ckpt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(ckpt)
        sources = [r.source for r in recs["test"]]
        cli, cli_wall = score_child(
            ckpt, sources, Path(args.ckpt_dir) / f"scored_{test_g.replace(' ', '_')}", args.threads
        )
        loop = model.last_results
        cli_diff = max(float(np.max(np.abs(cli[v] - loop[v].scores))) for v in loop)
        cli_fps = sum(len(x) for x in cli.values()) / max(cli_wall, 1e-9)
        print(f"seqnrl score with {ckpt.name}: max |score - benchmark score| {cli_diff:.2e}, "
              f"{cli_fps:.1f} frames/s including start-up", flush=True)  # fmt: skip
        curve_pts.setdefault(0, []).append((0.0, untrained))
        if model.post_fit:  # what the library chose on this fold's calibration group
            sel = model.post_fit
            pseudo.append({"fold": test_g, "calibration group": val_g,
                           **{r["pooling"]: r["val_pseudo_auroc"] for r in sel["rows"]},
                           "chosen": sel["chosen"]["pooling"]})  # fmt: skip
        fd = frame_difference_video_scores(dm, float(model.hparams.video_top_fraction))
        info = {r.video_id: r for r in recs["test"]}
        ids = sorted(final["video_z"])
        labels = [info[v].label for v in ids]
        for v in ids:
            r = info[v]
            per_clip.append(
                {
                    "fold": test_g,
                    "clip": v,
                    "patient": r.patient,
                    "label": r.extra["label_name"],
                    "probe": r.extra.get("probe", ""),
                    "score_z_top10": final["video_z"][v],
                    "untrained_z_top10": untrained["video_z"][v],
                    "frame_difference": fd[v],
                }
            )
        a = {
            n: auroc([res["video_z"][v] for v in ids], labels)
            for n, res in (("model", final), ("untrained", untrained))
        }
        a_fd = auroc([fd[v] for v in ids], labels)
        folds[test_g] = {"val": val_g, "train": train_g, "n_normal_test": labels.count(0),
                         "n_pathological_test": labels.count(1), "auroc": a["model"], "auroc_untrained": a["untrained"],
                         "auroc_frame_difference": a_fd, "train_minutes": fit_min, "epochs": epochs,
                         "steps": int(trainer.global_step), "normal_test_fpr": final["normal_fpr"],
                         "test_seconds": final["test_seconds"], "frames_scored": final["frames"],
                         "checkpoint": str(ckpt.relative_to(REPO)) if ckpt.is_relative_to(REPO) else str(ckpt),
                         "seqnrl_score_max_abs_diff": cli_diff, "seqnrl_score_frames_per_second": cli_fps,
                         "frames_per_second": final["frames"] / max(final["test_seconds"], 1e-9)}  # fmt: skip
        rows.append({"test group": test_g, "normal/path. clips": f"{labels.count(0)}/{labels.count(1)}",
                     "AUROC model": a["model"], "AUROC untrained": a["untrained"], "AUROC frame diff.": a_fd,
                     "FPR held-out normal @5%": final["normal_fpr"], "train_min": fit_min,
                     "steps": int(trainer.global_step), "seqnrl score fps": cli_fps,
                     "seqnrl score = bench": cli_diff < 1e-4})  # fmt: skip
        print(table(rows[-1:]), flush=True)
    tables = {}
    if len(folds) > 1:
        lab = [int(c["label"] != "normal") for c in per_clip]
        pooled = {
            n: auroc([c[key] for c in per_clip], lab)
            for n, key in (
                ("model", "score_z_top10"),
                ("untrained", "untrained_z_top10"),
                ("fd", "frame_difference"),
            )
        }
        rows.append(
            {
                "test group": "pooled over folds",
                "normal/path. clips": f"{lab.count(0)}/{lab.count(1)}",
                "AUROC model": pooled["model"],
                "AUROC untrained": pooled["untrained"],
                "AUROC frame diff.": pooled["fd"],
            }
        )
        rows.append(
            {
                "test group": "mean of folds",
                "AUROC model": float(np.mean([f["auroc"] for f in folds.values()])),
                "AUROC untrained": float(np.mean([f["auroc_untrained"] for f in folds.values()])),
                "AUROC frame diff.": float(
                    np.mean([f["auroc_frame_difference"] for f in folds.values()])
                ),
                "FPR held-out normal @5%": float(
                    np.mean([f["normal_test_fpr"] for f in folds.values()])
                ),
            }
        )
        normal = [c for c in per_clip if c["label"] == "normal"]
        tables["per pathology (normal clips of every fold vs this pathology as scored by each fold)"] = [
            {"pathology": p, "clips": len({c["clip"] for c in per_clip if c["label"] == p}),
             **{col: auroc([c[key] for c in normal + sub], [0] * len(normal) + [1] * len(sub))
                for col, key in (("AUROC model", "score_z_top10"), ("AUROC untrained", "untrained_z_top10"),
                                 ("AUROC frame diff.", "frame_difference"))}}
            for p in sorted({c["label"] for c in per_clip} - {"normal"})
            for sub in [[c for c in per_clip if c["label"] == p]]]  # fmt: skip
        tables["learning curve (pooled over folds)"] = curve = [
            {"epochs": e, "train_min (fold mean)": float(np.mean([m for m, _ in pts])),
             "AUROC model": pooled_auroc([r for _, r in pts])}
            for e, pts in sorted(curve_pts.items()) if len(pts) == len(folds)]  # fmt: skip
        tables[
            "validation pseudo-anomalies (synthetic B-lines in the calibration group), frame AUROC"
        ] = pseudo
        learning_curve_plot(FIGURE, curve, pooled["fd"])
    total = (time.perf_counter() - t_all) / 60
    print(table(rows))
    for name, t in tables.items():
        print(name)
        print(table(t))
    print(f"total {total:.1f} min")
    result = {
        "title": "Lung ultrasound, leave-patient-out: video-level AUROC (normal vs pathological)",
        "description": (
            "Depth prior (configs/lus.yaml), trained per fold on two normal patient groups, calibrated on "
            "a third, tested on the fourth against all 6 pathological clips. Video score: top-10 % mean "
            "of globally calibrated (z) frame scores. Pooled: every normal clip once + the pathological "
            "clips as scored by each fold. FPR: share of the held-out normal group's frames above the "
            "threshold set on the calibration group at a 5 % target."
        ),
        "settings": {**vars(args), "epochs": epochs, "data": data_kw, "model_config": model_cfg},
        "folds": folds,
        "per_clip": per_clip,
        "total_minutes": total,
        "table": rows,
        "tables": [{"title": k, "rows": v} for k, v in tables.items()],
        "figures": ["docs/figures/lus_learning_curve.png"] if len(folds) > 1 else [],
    }
    save(args.name, result)
    return result


def pooled_auroc(results: list[dict]) -> float:
    """Pooled video AUROC of one evaluation per fold (each fold's test clips on its z scale)."""
    s, y = [], []
    for r in results:
        for k, v in r["video_z"].items():
            s.append(v), y.append(r["labels"][k])
    return auroc(s, y)


def learning_curve_plot(path: Path, curve: list[dict], frame_difference: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqnrl.io.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot([c["train_min (fold mean)"] for c in curve], [c["AUROC model"] for c in curve], "o-", color="tab:blue",
            label="depth prior")  # fmt: skip
    ax.axhline(frame_difference, color="0.5", ls=":", label="frame difference (no learning)")
    ax.set_xlabel("training minutes per fold (2 CPU threads; 0 = untrained)")
    ax.set_ylabel("pooled video AUROC")
    ax.set_title("Lung ultrasound, leave-patient-out: AUROC against training time", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
