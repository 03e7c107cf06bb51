"""Compare the spatiotemporal transformer's self-supervised objectives and score components
on synthetic echo.

For every (backbone, objective) it trains on normal clips, fills the normal memory bank from
the last epoch's training clips, then scores the validation and test videos with one set of
network passes and reports, on the test videos, pooled ("micro") and per-video ("macro")
frame AUROC and pooled AP of

* ``error``: the model's error component (``recon_err``: patch log-MSE standardised per
  patch position, mean |z| of the worst 10 % of patches),
* ``embed``: the model's embedding component (``embed_dist``: kNN distance of every patch
  token to normal tokens of the same position, mean of the worst 10 % of positions),
* ``combined w=x``: ``x * z(error) + z(embed)`` for x in {0.25, 0.5, 1, 2},
* ``combined w=val(x)``: the weight in {0, 0.25, 0.5, 1, 2} with the best micro AUROC on the
  validation videos (never chosen on the test videos); ``s1``: smoothed in time (sigma 1),
* ``plain error`` / ``plain embed`` / ``plain combined``: the textbook components for
  comparison: whole-frame log-MSE, and the L2-normalised frame embedding (tokens averaged
  over space) against a bank of frame embeddings,

beside two references: the top-1 % absolute frame difference (smoothed, sigma 2) and the
baseline per-frame auto-encoder. All scores are global (no per-video normalisation). Prints
a table and writes JSON with ``command`` and ``table`` (default ``bench_out/st_objectives.json``).

    python scripts/bench/st_objectives.py                          # the defaults
    python scripts/bench/st_objectives.py --epochs 2 --n-train 8   # a quick look
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from data_modules.synthetic import SyntheticEchoDataModule  # noqa: E402
from scripts.bench._common import save  # noqa: E402
from seqnrl import batch as B  # noqa: E402
from seqnrl.metrics.anomaly import frame_metrics  # noqa: E402
from seqnrl.models.baseline.module import FrameAutoEncoderModel  # noqa: E402
from seqnrl.models.st_transformer.module import STTransformerModel  # noqa: E402
from seqnrl.scoring.aggregate import smooth_scores  # noqa: E402
from seqnrl.scoring.baselines import frame_difference_scores  # noqa: E402
from seqnrl.scoring.windows import WindowScorer  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
KEYS = ("frame_auroc_micro", "frame_auroc_macro", "frame_ap")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--size", type=int, default=64, help="frame size (square)")
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--n-frames", type=int, default=64, help="frames per synthetic video")
    p.add_argument("--n-train", type=int, default=24)
    p.add_argument("--n-val", type=int, default=10)
    p.add_argument("--n-test", type=int, default=30)
    p.add_argument("--samples-per-video", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--objectives", nargs="+", default=["masked", "future"], choices=["masked", "future"]
    )
    p.add_argument(
        "--backbones", nargs="+", default=["factorised"], choices=["factorised", "frame_cnn"]
    )
    p.add_argument(
        "--no-baseline", action="store_true", help="skip the per-frame auto-encoder reference"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench_out" / "st_objectives.json")
    return p.parse_args(argv)


def make_data(a: argparse.Namespace) -> SyntheticEchoDataModule:
    return SyntheticEchoDataModule(
        n_train=a.n_train,
        n_val=a.n_val,
        n_test=a.n_test,
        n_frames=a.n_frames,
        clip_len=a.clip_len,
        image_size=a.size,
        batch_size=a.batch_size,
        samples_per_video=a.samples_per_video,
        seed=a.seed,
    )


def fit(a: argparse.Namespace, model: pl.LightningModule, dm, validate: bool) -> int:
    """Train (and for the baseline validate + test); returns the optimiser steps taken."""
    pl.seed_everything(a.seed, workers=True)
    tr = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=a.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        check_val_every_n_epoch=a.epochs,
    )
    tr.fit(model, datamodule=dm)
    if validate:
        tr.test(model, datamodule=dm, verbose=False)
    return int(tr.global_step)


def metrics(results, signal: str, sigma: float = 0.0) -> dict[str, float]:
    m = frame_metrics(
        {
            k: smooth_scores(v.extra[signal] if signal else v.scores, sigma)
            for k, v in results.items()
        },
        {k: v.labels for k, v in results.items()},
    )
    return {k: m[k] for k in KEYS}


def frame_difference(dm: SyntheticEchoDataModule) -> dict[str, float]:
    """Reference (:func:`seqnrl.scoring.baselines.frame_difference_scores`): mean of the top
    1 % absolute pixel differences to the previous frame, smoothed (sigma 2 frames)."""
    scores, labels = {}, {}
    for rec in dm.records()["test"]:
        scores[rec.video_id] = frame_difference_scores(rec.frames)
        labels[rec.video_id] = rec.frame_labels.numpy()
    m = frame_metrics(scores, labels)
    return {k: m[k] for k in KEYS}


@torch.no_grad()
def score_splits(model: STTransformerModel, dm) -> dict[str, dict]:
    """Per-frame signals of the validation and test videos: the model's components and the
    plain ones, all from one :meth:`STTransformerNet.analyse` pass per window."""
    model.eval()
    clips, ids = model.reservoir()
    # plain references from the same normal training clips: frame-level bank, log-MSE stats
    f_emb, f_err = [], []
    for s in range(0, len(clips), 16):
        pixel_err, tokens = model.net.analyse(clips[s : s + 16], model.hparams.error_pool)
        f_err.append(torch.log(pixel_err.flatten(start_dim=3).mean(dim=(1, 3)) + 1e-8))
        f_emb.append(F.normalize(model.net.frame_embeddings(tokens), dim=-1).unsqueeze(2))
    f_emb, f_err = torch.cat(f_emb), torch.cat(f_err)  # (n, T, 1, D), (n, T)
    n, t = f_err.shape
    codes = {v: i for i, v in enumerate(dict.fromkeys(ids))}
    owner = torch.tensor([codes[v] for v in ids])
    bank = f_emb.permute(2, 0, 1, 3).reshape(1, n * t, -1)
    bank_owner = owner.repeat_interleave(t)
    d = model._knn(f_emb, bank, owner[:, None] == bank_owner[None, :]).flatten()
    d = d[torch.isfinite(d)]
    plain_stats = (float(f_err.mean()), float(f_err.std()), float(d.mean()), float(d.std()))

    out = {}
    for split in ("val", "test"):
        dm.setup("validate" if split == "val" else "test")
        loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
        scorer = WindowScorer(model, smooth_sigma=0.0)  # the library's per-frame accumulation, unsmoothed
        for batch in loader:
            v = batch[B.VIDEO]
            pixel_err, tokens = model.net.analyse(v, model.hparams.error_pool)
            err = model.frame_errors(model.patch_errors(pixel_err))
            dist = model.knn_distance(model._embed(tokens))
            p_err = torch.log(pixel_err.flatten(start_dim=3).mean(dim=(1, 3)) + 1e-8)
            p_emb = F.normalize(model.net.frame_embeddings(tokens), dim=-1).unsqueeze(2)
            p_dist = model._knn(p_emb, bank)
            sig = {
                "z_err": (err - model.err_mean) / model.err_std,
                "z_emb": (dist - model.dist_mean) / model.dist_std,
                "z_perr": (p_err - plain_stats[0]) / plain_stats[1],
                "z_pemb": (p_dist - plain_stats[2]) / plain_stats[3],
            }
            scorer.add(batch, scored={"score": sig["z_err"] + sig["z_emb"], **sig})
        res = scorer.videos()
        for vs in res.values():
            vs.extra["plain"] = vs.extra["z_perr"] + vs.extra["z_pemb"]
            for w in WEIGHTS:
                vs.extra[f"w{w}"] = w * vs.extra["z_err"] + vs.extra["z_emb"]
        out[split] = res
    return out


def st_rows(name: str, seconds: float, steps: int, res: dict[str, dict]) -> list[dict]:
    val, test = res["val"], res["test"]
    w_best = max(WEIGHTS, key=lambda w: metrics(val, f"w{w}")["frame_auroc_micro"])
    rows = []
    for label, sig, sigma in (
        ("error", "z_err", 0.0),
        ("embed", "z_emb", 0.0),
        *((f"combined w={w:g}", f"w{w}", 0.0) for w in WEIGHTS if w > 0),
        (f"combined w=val({w_best:g})", f"w{w_best}", 0.0),
        (f"combined w=val({w_best:g}) s1", f"w{w_best}", 1.0),
        ("plain error", "z_perr", 0.0),
        ("plain embed", "z_pemb", 0.0),
        ("plain combined", "plain", 0.0),
    ):
        rows.append(
            {
                "model": name,
                "signal": label,
                "seconds": round(seconds, 1),
                "train_steps": steps,
                **metrics(test, sig, sigma),
            }
        )
    return rows


def main(argv=None) -> dict:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    t_all = time.time()
    rows: list[dict] = []
    dm = make_data(a)
    rows.append({"model": "frame_difference_top1%", "signal": "score", **frame_difference(dm)})
    if not a.no_baseline:
        model = FrameAutoEncoderModel(smooth_sigma=0.0)
        t0 = time.time()
        steps = fit(a, model, dm, validate=True)
        row = {"model": "baseline_frame_ae", "signal": "score", "train_steps": steps}
        rows.append(
            {**row, "seconds": round(time.time() - t0, 1), **metrics(model.last_results, "")}
        )
        print(f"baseline_frame_ae: {time.time() - t_all:.0f} s so far", flush=True)
    for bb in a.backbones:
        for obj in a.objectives:
            pl.seed_everything(a.seed)
            model = STTransformerModel(
                image_size=a.size,
                clip_len=a.clip_len,
                backbone=bb,
                objective=obj,
                patch_size=a.patch_size,
                dim=a.dim,
                depth=a.depth,
                heads=4,
                decoder_dim=min(64, a.dim),
                lr=a.lr,
                smooth_sigma=0.0,
            )
            t0 = time.time()
            steps = fit(a, model, dm, validate=False)  # the bank is filled at the end of training
            res = score_splits(model, dm)
            rows += st_rows(f"st_{bb}_{obj}", time.time() - t0, steps, res)
            print(f"st_{bb}_{obj}: {time.time() - t_all:.0f} s so far", flush=True)
    out = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "rows": rows,
        "total_seconds": round(time.time() - t_all, 1),
    }
    print(
        f"\n{'model':26s} {'signal':26s} {'AUROC micro':>11s} {'AUROC macro':>11s} {'AP':>6s} {'sec':>5s}"
    )
    for r in rows:
        print(
            f"{r['model']:26s} {r['signal']:26s} {r['frame_auroc_micro']:11.3f} "
            f"{r['frame_auroc_macro']:11.3f} {r['frame_ap']:6.3f} {r.get('seconds', float('nan')):5.0f} "
            f"{r.get('train_steps', 0):5d}"
        )
    print(
        f"total {out['total_seconds']:.0f} s; frame AUROC micro = all test frames pooled, "
        "macro = mean over test videos with both classes; global scores (no per-video normalisation)"
    )
    out["title"] = "Synthetic echo: ST transformer objectives and score components (frame AUROC, test videos)"
    out["table"] = rows
    save(a.out.stem, out, a.out.parent)
    return out


if __name__ == "__main__":
    main()
