"""Pseudo-healthy anomaly scoring with the video diffusion model on synthetic echo.

Trains the diffusion model on normal synthetic echo clips (SyntheticEchoDataModule) for a
fixed wall-clock budget, validates once (fits the per-level statistics and the calibration
on normal validation frames), then scores the test videos (half with anomalies) and
reports frame AUROC micro (all frames pooled) and macro (mean over videos), of the combined
score and of each noise level alone, beside the model-free top-1 % frame-difference
reference and, when ``--transformer-ckpt`` is given, that checkpoint's model on the same
test videos. Scores are global (no per-video normalisation).

    python scripts/bench/diffusion_pseudo_healthy.py                 # 64x64, 10 min training
    python scripts/bench/diffusion_pseudo_healthy.py --minutes 3 --size 32
    python scripts/bench/diffusion_pseudo_healthy.py --transformer-ckpt runs/st/checkpoints/last.ckpt

Writes ``bench_out/diffusion_pseudo_healthy.json`` (``--name`` changes it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from data_modules.synthetic import SyntheticEchoDataModule  # noqa: E402
from scripts.bench._common import save, table  # noqa: E402
from seqnrl.data.input_spec import InputSpec  # noqa: E402
from seqnrl.metrics.anomaly import frame_metrics  # noqa: E402
from seqnrl.models.video_diffusion import VideoDiffusionModel  # noqa: E402
from seqnrl.scoring.aggregate import smooth_scores  # noqa: E402
from seqnrl.scoring.baselines import frame_difference_scores  # noqa: E402

KEYS = ("frame_auroc_micro", "frame_auroc_macro", "frame_ap")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--n-frames", type=int, default=64)
    p.add_argument("--n-train", type=int, default=24)
    p.add_argument("--n-val", type=int, default=10)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--samples-per-video", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--patch-size", type=int, default=2)
    p.add_argument("--prediction-type", default="v_prediction", choices=["v_prediction", "epsilon"])
    p.add_argument("--noise-levels", type=float, nargs="+", default=[0.25, 0.4, 0.55])
    p.add_argument("--recon-steps", type=int, default=10)
    p.add_argument("--score-reduce", default="mean", choices=["mean", "top"])
    p.add_argument("--latent", action="store_true")
    p.add_argument(
        "--transformer-ckpt",
        default=None,
        help="also test this seqnrl checkpoint on the same videos",
    )
    p.add_argument("--save-ckpt", default=None, help="save the trained diffusion model here")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (on a loaded shared machine 2 threads ran ~4x slower than 1)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="diffusion_pseudo_healthy")
    return p.parse_args(argv)


def make_data(a, clip_len: int | None = None, size: int | None = None) -> SyntheticEchoDataModule:
    return SyntheticEchoDataModule(
        n_train=a.n_train, n_val=a.n_val, n_test=a.n_test, n_frames=a.n_frames,
        clip_len=clip_len or a.clip_len, image_size=size or a.size, batch_size=a.batch_size,
        samples_per_video=a.samples_per_video, seed=a.seed,
    )  # fmt: skip


def metrics_of(results, signal: str = "score", sigma: float = 0.0) -> dict[str, float]:
    def get(vs):
        s = vs.scores if signal == "score" else vs.extra[signal]
        return smooth_scores(s, sigma)

    m = frame_metrics(
        {k: get(v) for k, v in results.items()}, {k: v.labels for k, v in results.items()}
    )
    return {k: m[k] for k in KEYS}


def frame_difference(dm: SyntheticEchoDataModule) -> dict[str, float]:
    scores, labels = {}, {}
    for rec in dm.records()["test"]:
        scores[rec.video_id] = frame_difference_scores(
            rec.frames.float(), top_fraction=0.01, smooth_sigma=1.0
        )
        labels[rec.video_id] = rec.frame_labels.numpy()
    m = frame_metrics(scores, labels)
    return {k: m[k] for k in KEYS}


def trainer(**kw) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, **kw,
    )  # fmt: skip


def per_anomaly(results) -> dict[str, dict[str, float]]:
    """Frame AUROC (micro) of each anomaly kind against all normal videos' frames."""
    normal = {k: v for k, v in results.items() if v.label == 0}
    kinds = sorted({k.split("_", 3)[-1] for k, v in results.items() if v.label == 1})
    out = {}
    for kind in kinds:
        sel = {k: v for k, v in results.items() if v.label == 1 and k.endswith(kind)} | normal
        out[kind] = metrics_of(sel)["frame_auroc_micro"]
    return out


def main(argv=None) -> dict:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    pl.seed_everything(a.seed, workers=True, verbose=False)
    dm = make_data(a)
    model = VideoDiffusionModel(
        clip_len=a.clip_len, image_size=a.size, base_channels=a.base_channels, patch_size=a.patch_size,
        prediction_type=a.prediction_type, noise_levels=tuple(a.noise_levels), recon_steps=a.recon_steps,
        score_reduce=a.score_reduce, latent=a.latent, lr=a.lr, latent_warmup_steps=100,
    )  # fmt: skip
    tr = trainer(
        max_time={"seconds": int(a.minutes * 60)},
        max_epochs=100_000,
        check_val_every_n_epoch=100_000,
    )
    t0 = time.time()
    tr.fit(model, datamodule=dm)
    train_s = time.time() - t0
    steps = int(tr.global_step)
    print(
        f"trained {steps} steps ({tr.current_epoch} epochs) in {train_s / 60:.1f} min", flush=True
    )
    t0 = time.time()
    tr.validate(model, datamodule=dm, verbose=False)
    val = metrics_of(model.last_results)
    val_s = time.time() - t0
    t0 = time.time()
    tr.test(model, datamodule=dm, verbose=False)
    test_s = time.time() - t0
    res = model.last_results
    n_frames = sum(v.n_frames for v in res.values())
    rows = [
        {"model": "diffusion pseudo-healthy", "signal": "combined", **metrics_of(res)},
        {
            "model": "diffusion pseudo-healthy",
            "signal": "combined, smoothed s=1",
            **metrics_of(res, sigma=1.0),
        },
    ]
    for i, lev in enumerate(a.noise_levels):
        rows.append(
            {
                "model": "diffusion pseudo-healthy",
                "signal": f"level {lev} only",
                **metrics_of(res, f"err_{i}"),
            }
        )
    rows.append({"model": "frame difference top-1% s=1", "signal": "score", **frame_difference(dm)})
    result: dict = {
        "args": vars(a),
        "train_steps": steps,
        "train_minutes": train_s / 60,
        "validate_seconds": val_s,
        "test_seconds": test_s,
        "test_frames": n_frames,
        "scoring_frames_per_second": n_frames / max(test_s, 1e-9),
        "val_metrics": val,
        "test_metrics": dict(model.last_metrics),
        "test_auroc_micro_per_anomaly": per_anomaly(res),
        "level_mean": model.level_mean.tolist(),
        "level_std": model.level_std.tolist(),
    }
    if a.save_ckpt:
        tr.save_checkpoint(a.save_ckpt)
        result["checkpoint"] = a.save_ckpt
    if a.transformer_ckpt:
        from seqnrl.models.loading import load_model

        other = load_model(a.transformer_ckpt)
        spec = InputSpec.of(other)
        dm2 = make_data(a, clip_len=spec.clip_len, size=spec.image_size)
        t0 = time.time()
        trainer().test(other, datamodule=dm2, verbose=False)
        rows.append(
            {
                "model": f"{type(other).__name__} ({Path(a.transformer_ckpt).name})",
                "signal": "score",
                **metrics_of(other.last_results),
            }
        )
        result["transformer"] = {
            "checkpoint": a.transformer_ckpt,
            "test_seconds": time.time() - t0,
            "test_metrics": dict(other.last_metrics),
        }
    result["rows"] = rows
    print(
        f"\nfrozen test set: {a.n_test} videos, {n_frames} frames; validation micro AUROC {val['frame_auroc_micro']:.3f}"
    )
    print(table(rows, ["model", "signal", *KEYS]))
    print(
        "per anomaly (micro):",
        {k: round(v, 3) for k, v in result["test_auroc_micro_per_anomaly"].items()},
    )
    print(
        f"train {train_s / 60:.1f} min ({steps} steps), validate {val_s:.0f} s, test {test_s:.0f} s "
        f"({result['scoring_frames_per_second']:.2f} frames/s)"
    )
    save(a.name, result)
    return result


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
