"""Normative-learning evaluation (RQI, AHI, CACI + frame anomaly metrics) of restoration models.

After Bercea et al. (Nature Communications 2025); definitions in ``seqnrl/metrics/normative.py``
and ``docs/normative_metrics.md``. Every model is a restoration ``video -> pseudo-healthy video``:

* ``identity`` (returns its input: perfect RQI, zero correction) and ``blur`` (Gaussian blur,
  sigma ``--blur-sigma``: restores nothing, loses detail) are always evaluated as references;
* ``oracle`` (the anomalous pixels replaced by the true healthy content, known for synthetic
  echo and for injected artefacts) is the upper bound;
* each checkpoint (``seqnrl.models.loading.load_model``) through
  ``seqnrl.callbacks.normative_eval.restoration_fn``: the video diffusion model's
  ``reconstruct`` (one row per ``--noise-levels`` value, ``diffusion@0.40``), masked
  spatiotemporal transformers (``st_masked``: each pixel predicted from the complementary tube
  masks that hide it) and future-prediction transformers (``st_future``). ``--ckpt`` is
  evaluated on every data set, ``--echo-ckpt`` / ``--lus-ckpt`` on one only (a model trained on
  echo says little about lung ultrasound).

Data: synthetic echo (``make_echo``, seeds disjoint from the data module's: normal clips as the
normal "training" distribution and the healthy test set; anomalous clips with pixel masks and
their healthy version from the same seed) and, with ``--lus N``, lung ultrasound from
``../shared/data/lus`` split by patient as ``configs/data/lus.yaml`` (training patients' normal
clips = the normal distribution; up to N held-out normal clips of pat2/pat3, each used as it is
for RQI and with an injected artefact, ``inject_artefact``, for CACI and AHI, the clean clip
being the healthy truth), read with the data module's own loader (10 fps, grayscale, ``--size``).

Features (perceptual term of RQI, headline AHI): the normative encoder's ``embed_frames`` of the
first checkpoint of that data set that has one (the spatiotemporal transformer), else
``pixel_features``; ``ahi_pixel`` (8x8 average-pooled intensities) is always reported beside it.
Pretrained perceptual networks cannot be downloaded here.

Tiny checkpoints (training limited to 7-7.5 min of wall time on 2 shared CPU cores; the exact
commands that made the reported table, from the repository root, ``OMP_NUM_THREADS=1``)::

    C='[{"class_path":"pytorch_lightning.callbacks.ModelCheckpoint","init_args":{"dirpath":"bench_out/normative_ckpt/NAME","filename":"last","enable_version_counter":false}}]'
    L="--trainer.logger.init_args.save_dir bench_out/normative_ckpt/logs --trainer.enable_progress_bar false"
    # video diffusion, synthetic echo 32x32 (8 epochs x 32 steps of 4 clips)
    python -m seqnrl.cli fit --config configs/diffusion_synthetic_echo.yaml --trainer.callbacks="${C/NAME/diffusion_echo}" $L \\
      --trainer.max_epochs 8 --trainer.check_val_every_n_epoch 8 --trainer.max_time 00:00:07:30 \\
      --model.init_args.image_size 32 --model.init_args.lr 0.001 \\
      --data.init_args.image_size 32 --data.init_args.n_val 6 --data.init_args.batch_size 4
    # masked spatiotemporal transformer, synthetic echo 32x32 (patch 4: an 8x8 grid)
    python -m seqnrl.cli fit --config configs/st_synthetic_echo.yaml --trainer.callbacks="${C/NAME/st_masked_echo}" $L \\
      --trainer.max_epochs 15 --trainer.max_time 00:00:07:00 --model.init_args.objective masked \\
      --model.init_args.image_size 32 --model.init_args.patch_size 4 \\
      --data.init_args.image_size 32 --data.init_args.n_val 6
    # the same two on lung ultrasound (diffusion_lus / st_masked_lus): --data configs/data/lus.yaml
    # --data.init_args.image_size 32 instead of the echo data flags; the exact lines are in
    # docs/normative_metrics.md

Evaluation::

    python scripts/bench/normative_eval.py                      # references only, ~1 min
    python scripts/bench/normative_eval.py --lus 12 \\
      --echo-ckpt bench_out/normative_ckpt/diffusion_echo/last.ckpt \\
      --echo-ckpt bench_out/normative_ckpt/st_masked_echo/last.ckpt \\
      --lus-ckpt bench_out/normative_ckpt/diffusion_lus/last.ckpt \\
      --lus-ckpt bench_out/normative_ckpt/st_masked_lus/last.ckpt

Writes (through ``scripts/bench/_common.save``) ``bench_out/normative_eval.json`` (``command``,
``table``: one row per model and data set, ``per_clip`` tables), ``bench_out/normative_eval.md``
and a figure per data set ``bench_out/normative_eval_<data>.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.bench._common import SHARED_DATA, save, table  # noqa: E402
from seqnrl.callbacks.normative_eval import (  # noqa: E402
    blur,
    evaluate_restorations,
    feature_fn,
    oracle_restorations,
    restoration_fn,
    run_batched,
)
from seqnrl.data.synthetic_echo import restoration_set  # noqa: E402
from seqnrl.io.atomic import write_text  # noqa: E402
from seqnrl.metrics import normative as N  # noqa: E402

Restore = Callable[[torch.Tensor], torch.Tensor]
SMALL = (
    "perceptual",
    "fd_restored",
    "fd_unrestored",
    "fd_healthy",
)  # feature-scale dependent: 3 significant figures
COLS = ["data", "model", "rqi", "ssim", "mae", "perceptual", "fd_restored", "fd_unrestored", "fd_healthy",
        "ahi_ratio", "ahi", "ahi_gap", "ahi_pixel", "conservation", "correction", "caci", "fidelity",
        "frame_auroc_micro", "frame_auroc_macro", "frame_ap", "seconds"]  # fmt: skip


# ----------------------------------------------------------------------------- restorations
def model_label(model) -> str:
    """A short name: ``diffusion``, ``st_masked``, ``st_future`` or the class name."""
    if callable(getattr(model, "reconstruct", None)):
        return "diffusion"
    objective = getattr(getattr(model, "net", None), "objective", None)
    return f"st_{objective}" if objective else type(model).__name__


def checkpoint_models(
    paths: list[str], noise_levels: list[float], recon_steps: int | None = None
) -> tuple[dict[str, Restore], Callable | None, str]:
    """Restorations of the checkpoints (one per noise level for diffusion models) and the
    feature extractor of the first checkpoint with ``embed_frames`` (with its name)."""
    from seqnrl.models.loading import load_model

    out: dict[str, Restore] = {}
    feats, feats_name = None, "pixel_features (8x8 average pool)"
    for ck in paths:
        m = load_model(ck)
        label = model_label(m)
        if label in {k.split("@")[0] for k in out}:
            label = f"{label}:{Path(ck).parent.name}"
        if callable(getattr(m, "reconstruct", None)):
            for lev in noise_levels:
                out[f"{label}@{lev:.2f}"] = restoration_fn(m, noise_level=lev, steps=recon_steps)
        else:
            fn = restoration_fn(m)
            if fn is None:
                print(f"{ck}: {type(m).__name__} cannot restore a video; skipped")
            else:
                out[label] = fn
        if feats is None and feature_fn(m) is not None:
            feats, feats_name = feature_fn(m), f"{label}.embed_frames ({ck})"
    return out, feats, feats_name


# ----------------------------------------------------------------------------- data
def lus_data(a) -> dict | None:
    """Lung ultrasound split by patient as ``configs/data/lus.yaml`` (val pat2, test pat3),
    decoded by ``LUSDataModule``'s own loader; centre ``--frames`` of every normal clip."""
    from data_modules.lus import LUSDataModule

    root = SHARED_DATA / "lus"
    if not (root / "manifest.csv").is_file():
        print(f"no LUS data at {root}; skipped")
        return None
    dm = LUSDataModule(root=str(root), test_patients=["pat3"], val_patients=["pat2"], fps=10.0,
                       clip_len=a.frames, image_size=a.size, grayscale=True)  # fmt: skip
    recs = dm.records()

    def clips(split: str) -> list[tuple[str, torch.Tensor]]:
        out = []
        for r in recs[split]:
            if r.label != 0:
                continue
            try:
                v = dm.loader(r).frames.float() / 255.0
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the benchmark
                print(f"  skip {r.video_id}: {e}")
                continue
            if v.shape[1] >= a.frames:
                s = (v.shape[1] - a.frames) // 2
                out.append((r.video_id, v[:, s : s + a.frames]))
        return out

    train = clips("train")
    val, test = clips("val"), clips("test")
    held = (
        [c for pair in zip(val, test) for c in pair] + val[len(test) :] + test[len(val) :]
    )  # alternate patients
    held = held[: a.lus]
    if len(train) < 2 or len(held) < 2:
        print(f"too few usable LUS clips (train {len(train)}, held-out {len(held)}); skipped")
        return None
    # every held-out clip serves twice: as it is (RQI, normal frames) and with an artefact
    # (CACI, AHI, abnormal frames), its clean version being the truth
    normal = healthy = held
    inj = [N.inject_artefact(c, N.ARTEFACTS[i % 3], seed=i) for i, (_, c) in enumerate(healthy)]
    return {
        "name": "lus_injected",
        "train": torch.stack([c for _, c in train]),
        "normal": torch.stack([c for _, c in normal]),
        "anomalous": torch.stack([c for c, _ in inj]),
        "masks": torch.stack([m for _, m in inj]),
        "healthy": torch.stack([c for _, c in healthy]),
        "frame_labels": [(m.flatten(2).amax(-1)[0] > 0).long().numpy() for _, m in inj],
        "ids": [f"{vid}+{N.ARTEFACTS[i % 3]}" for i, (vid, _) in enumerate(healthy)],
        "normal_ids": [vid for vid, _ in normal],
        "region": None,
    }


# ----------------------------------------------------------------------------- evaluation
def figure(path: Path, d: dict, details: dict[str, dict], n_clips: int = 2) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(details)
    idx = list(range(min(n_clips, len(d["anomalous"]))))
    rows = [(m, i) for i in idx for m in models]
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2 * len(rows)), squeeze=False)
    for ax_row, (m, i) in zip(axes, rows):
        x, mask = d["anomalous"][i], d["masks"][i]
        t = int(mask.flatten(2).sum(-1)[0].argmax())  # the frame with the largest anomaly
        y = details[m]["restored_anomalous"][i]
        diff = (x - y).abs().mean(0)[t]
        for ax, img, title, kw in zip(
            ax_row,
            [x[0, t], y[0, t], diff, mask[0, t]],
            ["input", f"{m}", "|input - restoration|", "anomaly mask"],
            [
                {"vmin": 0, "vmax": 1},
                {"vmin": 0, "vmax": 1},
                {"vmin": 0, "vmax": max(float(diff.max()), 1e-3)},
                {"vmin": 0, "vmax": 1},
            ],
        ):
            ax.imshow(img.numpy(), cmap="gray", **kw)
            ax.set_title(f"{title}\n{d['ids'][i]} t={t}" if title == "input" else title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--ckpt",
        action="append",
        default=[],
        help="checkpoint evaluated on every data set (repeatable)",
    )
    p.add_argument(
        "--echo-ckpt",
        action="append",
        default=[],
        help="checkpoint for synthetic echo only (repeatable)",
    )
    p.add_argument(
        "--lus-ckpt",
        action="append",
        default=[],
        help="checkpoint for lung ultrasound only (repeatable)",
    )
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument(
        "--n-train",
        type=int,
        default=16,
        help="echo: normal clips forming the normal distribution (AHI)",
    )
    p.add_argument(
        "--n-normal", type=int, default=10, help="echo: healthy test clips (RQI, AHI floor)"
    )
    p.add_argument("--n-anomalous", type=int, default=10, help="echo: anomalous clips (AHI, CACI)")
    p.add_argument(
        "--lus",
        type=int,
        default=0,
        help="also lung ultrasound: up to N held-out clips (each clean and injected)",
    )
    p.add_argument("--blur-sigma", type=float, default=1.5)
    p.add_argument("--noise-levels", type=float, nargs="+", default=[0.25, 0.4, 0.55],
                   help="diffusion reconstruction noise levels (one row each)")  # fmt: skip
    p.add_argument(
        "--recon-steps",
        type=int,
        default=20,
        help="diffusion DDIM grid over the whole schedule (levels snap to it; 20 = steps of 0.05)",
    )
    p.add_argument(
        "--score-blur",
        type=float,
        default=1.0,
        help="Gaussian sigma applied to input and restoration before the frame score (0 = none)",
    )
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "bench_out")
    p.add_argument("--name", default="normative_eval")
    p.add_argument("--no-figure", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.time()
    refs: dict[str, Restore] = {"identity": lambda v: v.clone(), "blur": blur(a.blur_sigma)}

    datasets = [("echo", restoration_set(a.n_train, a.n_normal, a.n_anomalous, n_frames=a.frames, size=a.size))]
    if a.lus:
        d = lus_data(a)
        if d is not None:
            datasets.append(("lus", d))
    rows, details_out, feature_names, figures = [], {}, {}, []
    for key, d in datasets:
        ckpts = a.ckpt + (a.echo_ckpt if key == "echo" else a.lus_ckpt)
        models, features, feature_names[d["name"]] = checkpoint_models(
            ckpts, a.noise_levels, a.recon_steps
        )
        details = {}
        for name in [*refs, "oracle", *models]:
            ts = time.time()
            if name == "oracle":
                restored = oracle_restorations(d)
            else:
                fn = refs.get(name) or models[name]
                restored = (
                    run_batched(fn, d["normal"], a.batch),
                    run_batched(fn, d["anomalous"], a.batch),
                )
            row, det = evaluate_restorations(name, restored, d, features, a.score_blur)
            row["seconds"] = round(time.time() - ts, 1)
            rows.append(row)
            details[name] = det
            print(f"[{d['name']}] {name}: rqi {row['rqi']:.3f}  ahi {row['ahi']:.3f}  caci {row['caci']:.3f}  "
                  f"auroc {row['frame_auroc_micro']:.3f}  ({row['seconds']} s)", flush=True)  # fmt: skip
        if not a.no_figure:
            a.out.mkdir(parents=True, exist_ok=True)
            fig = a.out / f"{a.name}_{d['name']}.png"
            figure(fig, d, details)
            figures.append(str(fig))
        details_out[d["name"]] = {
            m: {k: v for k, v in det.items() if k != "restored_anomalous"}
            for m, det in details.items()
        }

    shown = [
        {
            c: (f"{r[c]:.3g}" if c in SMALL and isinstance(r.get(c), float) else r.get(c))
            for c in COLS
        }
        for r in rows
    ]
    md = table(shown, COLS)
    print("\n" + md)
    cmd = "python scripts/bench/normative_eval.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    result = {
        "command": cmd.strip(),
        "title": "Normative evaluation (RQI / AHI / CACI)",
        "description": (
            "Pseudo-healthy restorations of held-out clips. RQI = SSIM x (1 - MAE) on healthy clips; "
            "AHI = 1 - FD(restored anomalous, normal) / FD(anomalous, normal) in the normative encoder's "
            "features (ahi_pixel: 8x8 pooled pixels), ahi_gap = (FD_u - FD_r) / (FD_u - FD_healthy) with FD_healthy "
            "the distance of the held-out healthy clips (the floor); CACI = hmean(conservation, correction) with "
            "known masks (echo: generator; LUS: injected artefacts); frame AUROC of the per-frame "
            "mean |input - restoration| after a sigma-1 blur of both (pooled micro, per-clip macro; no per-video "
            "normalisation). Diffusion rows: pseudo-healthy DDIM reconstruction from noise level @x."
        ),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "features": feature_names,
        "definitions": {
            "rqi": "mean over healthy clips of SSIM * (1 - MAE) (frame means); perceptual = 1 - cos of features",
            "ahi": "1 - FD(restored anomalous, normal train) / FD(anomalous, normal train), per-frame features; "
            "ahi_ratio = FD_restored / FD_unrestored; ahi_gap = (FD_unrestored - FD_restored) / (FD_unrestored - "
            "FD_healthy), FD_healthy = FD(held-out healthy clips, normal train), NaN when FD_unrestored <= FD_healthy; "
            "ahi_clip: per-clip mean features; ahi_pixel: pixel features",
            "caci": "harmonic mean of conservation = 1 - healthy-pixel change / s and correction = anomalous-pixel "
            "change / s (clipped), s = mean |input - healthy truth| on anomalous pixels",
            "frame_auroc": "per-frame mean |blur(input) - blur(restoration)| (sigma --score-blur; echo: inside the "
            "fan); micro pooled, macro per clip",
        },
        "table": shown,
        "rows_full": rows,
        "per_clip": details_out,
        "figures": figures,
        "seconds": round(time.time() - t0, 1),
    }
    header = f"# Normative evaluation\n\nCommand: `{result['command']}`\n\nFeatures: " + "; ".join(
        f"{k}: {v}" for k, v in feature_names.items()
    )
    write_text(a.out / f"{a.name}.md", header + "\n\n```\n" + md + "\n```\n")
    save(a.name, _json_safe(result), a.out)
    return result


def _json_safe(obj):
    """NaN / inf -> None, recursively (strict JSON; ``make_results`` prints None as a dash)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


if __name__ == "__main__":
    main()
