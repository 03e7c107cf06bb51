"""Synthetic echo: ejection-fraction regression and ED/ES detection heads of the
spatiotemporal transformer, on held-out synthetic clips with known truth.

    python scripts/bench/st_echo_heads.py                                   # UVT design, ~8-9 min
    python scripts/bench/st_echo_heads.py --models configs/model/uvt.yaml configs/model/st_transformer.yaml

Data: synthetic apical-four-chamber clips (``seqnrl.data.synthetic_echo.make_echo``: volume
curve, EF, ED/ES frames known exactly) at 32x32 (``--size``; the frame CNN of the UVT design
at 64x64 gets too few steps in a few CPU minutes), 30 fps, 64 frames (2-3 beats at 55-95 bpm).
The generator's normal EF is 55-70 %; here every clip's EF is drawn uniformly from
``--ef-range`` (default 20-75 %, roughly the bulk of EchoNet-Dynamic) so that EF regression
has a spread to learn, and no anomalies are injected. Train / validation / test clips come
from disjoint seeds. The models are trained with their self-supervised objective plus the EF
loss and the ED/ES regression-signal loss (+1 at ED, -1 at ES, cosine in between); EF of a
video = mean of its window predictions; ED/ES = peaks/troughs of the per-frame averaged
signal (``seqnrl.metrics.regression``).

Reported on the test clips: EF MAE, RMSE (% points), R^2, ED and ES aFD (frames), beside a
mean predictor (the training clips' mean EF) and the numbers the Ultrasound Video Transformer
paper reports on *real* EchoNet-Dynamic (ES aFD 3.36, ED aFD 7.17, EF MAE 5.95). Different
data: synthetic clips are far easier in appearance, and our EF spread is uniform; the
comparison says only that the heads work, not that they match UVT on patients.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from data_modules.synthetic import SyntheticEchoDataModule  # noqa: E402
from scripts.bench._common import load_model_config, quiet_run, save, table  # noqa: E402
from scripts.bench.ped2_st import fit_budgeted  # noqa: E402
from seqnrl.data.clips import VideoRecord  # noqa: E402

UVT_REAL_ECHONET = {"es_afd": 3.36, "ed_afd": 7.17, "ef_mae": 5.95}


class WideEFEchoDataModule(SyntheticEchoDataModule):
    """Normal synthetic echo clips with EF drawn uniformly from ``ef_range`` (per-clip seed)."""

    def __init__(self, ef_range: tuple[float, float] = (20.0, 75.0), **kw):
        super().__init__(**kw)
        self.ef_range = tuple(ef_range)

    def build_records(self) -> dict[str, list[VideoRecord]]:
        from seqnrl.data.synthetic_echo import make_echo

        out: dict[str, list[VideoRecord]] = {}
        for s_i, split in enumerate(("train", "val", "test")):
            recs = []
            for i in range(self.n[split]):
                seed = self.seed * 1_000_003 + s_i * 100_003 + i
                ef = float(np.random.default_rng([seed, 7]).uniform(*self.ef_range))
                e = make_echo(seed=seed, n_frames=self.n_frames, size=self.image_size, fps=self.video_fps, ef=ef)
                recs.append(VideoRecord(
                    video_id=f"echo_{split}_{i:03d}", source=f"synthetic://echo/{split}/{i}?seed={seed}&ef={ef:.1f}",
                    label=0, patient=f"{split}_{i}", split=split, frames=e.video, fps=e.fps,
                    frame_labels=e.frame_label, ef=e.ef, ed_es=e.ed_es_signal,
                ))  # fmt: skip
            out[split] = recs
        return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["configs/model/uvt.yaml"])
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget per model")
    ap.add_argument("--n-train", type=int, default=48)
    ap.add_argument("--n-val", type=int, default=8)
    ap.add_argument("--n-test", type=int, default=24)
    ap.add_argument("--n-frames", type=int, default=64)
    ap.add_argument("--clip-len", type=int, default=32, help="frames per window (about one beat)")
    ap.add_argument("--size", type=int, default=32, help="frame size (32: about 4x the steps of 64 in the budget)")
    ap.add_argument("--ef-range", type=float, nargs=2, default=[20.0, 75.0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples-per-video", type=int, default=4)
    ap.add_argument("--ef-weight", type=float, default=None, help="override the config's EF loss weight")
    ap.add_argument("--edes-weight", type=float, default=None, help="override the config's ED/ES loss weight")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="st_echo_heads")
    args = ap.parse_args(argv)


    from seqnrl.metrics.regression import ef_metrics

    quiet_run(args.threads)
    t_all = time.perf_counter()
    dm = WideEFEchoDataModule(
        ef_range=tuple(args.ef_range), n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
        n_frames=args.n_frames, clip_len=args.clip_len, image_size=args.size, batch_size=args.batch_size,
        samples_per_video=args.samples_per_video, seed=args.seed,
    )  # fmt: skip
    recs = dm.records()
    train_ef = np.array([r.ef for r in recs["train"]])
    test_ef = np.array([r.ef for r in recs["test"]])
    base = ef_metrics(np.full_like(test_ef, train_ef.mean()), test_ef)
    rows = [{"method": "mean predictor (training mean EF)", **base, "ed_afd": None, "es_afd": None}]
    rows.append({"method": "UVT paper, real EchoNet-Dynamic (different data)", "ef_mae": UVT_REAL_ECHONET["ef_mae"],
                 "ef_rmse": None, "ef_r2": None, "ed_afd": UVT_REAL_ECHONET["ed_afd"],
                 "es_afd": UVT_REAL_ECHONET["es_afd"]})
    runs = {}
    for cfg in args.models:
        over = {"in_channels": 1, "image_size": args.size, "clip_len": args.clip_len}
        if args.ef_weight is not None:
            over["ef_weight"] = args.ef_weight
        if args.edes_weight is not None:
            over["edes_weight"] = args.edes_weight
        model = load_model_config(cfg, over)
        hp = model.hparams
        if hp.ef_weight <= 0 or hp.edes_weight <= 0:
            raise SystemExit(f"{cfg}: the EF and ED/ES heads are off (set --ef-weight / --edes-weight)")
        t0 = time.perf_counter()
        run = fit_budgeted(model, dm, args.minutes, seed=args.seed)
        m = model.regression_metrics("test")
        per_video = {v: {"ef_true": float(next(r.ef for r in recs["test"] if r.video_id == v)),
                         "ef_pred": float(np.nanmean(vs.extra["ef"]))} for v, vs in model.last_results.items()}
        runs[cfg] = {"metrics": m, "per_video": per_video, "seconds": time.perf_counter() - t0,
                     "hparams": {k: hp[k] for k in ("backbone", "objective", "dim", "depth", "ef_weight",
                                                    "edes_weight", "peak_distance")}, **run}
        rows.append({"method": f"{Path(cfg).stem} ({hp.backbone}, {hp.objective})", **{k: m.get(k) for k in (
            "ef_mae", "ef_rmse", "ef_r2", "ed_afd", "es_afd")}, "train_min": run["train_minutes"],
            "steps": run["steps"]})
        print(table(rows[-1:]), flush=True)
    total = (time.perf_counter() - t_all) / 60
    print(table(rows))
    print(f"EF in % points, aFD in frames at 30 fps; {args.n_test} held-out synthetic clips; total {total:.1f} min")
    result = {
        "title": "Synthetic echo: EF regression and ED/ES detection heads (held-out synthetic clips)",
        "description": (f"EF drawn uniformly from {args.ef_range[0]:g}-{args.ef_range[1]:g} %; "
                        f"{args.n_train}/{args.n_val}/{args.n_test} train/val/test clips of {args.n_frames} frames, "
                        f"{args.clip_len}-frame windows. The UVT row is the paper's figure on real EchoNet-Dynamic: "
                        "different data, shown for scale only."),
        "settings": vars(args), "references": {f"UVT on real EchoNet-Dynamic: {k}": v for k, v in UVT_REAL_ECHONET.items()},
        "mean_predictor": base, "runs": runs, "total_minutes": total, "table": rows,
    }
    save(args.name, result)
    return result


if __name__ == "__main__":
    main()
