"""Normative-learning evaluation (RQI, AHI, CACI + frame anomaly metrics) of restoration models.

After Bercea et al. (Nature Communications 2025); definitions in ``seqnrl/metrics/normative.py``
and ``docs/normative_metrics.md``. Every model is a restoration ``video -> pseudo-healthy video``:

* ``identity`` (returns its input: perfect RQI, zero correction) and ``blur`` (Gaussian blur,
  sigma ``--blur-sigma``: restores nothing, loses detail) are always evaluated as references;
* ``oracle`` (the anomalous pixels replaced by the true healthy content, known for synthetic
  echo and for injected artefacts) is the upper bound;
* each ``--ckpt`` (loaded with ``seqnrl.models.loading.load_model``): models with
  ``reconstruct(video)`` (video diffusion: noise to ``--noise-level`` and denoise), masked
  spatiotemporal transformers (each pixel predicted from the complementary tube masks that
  hide it) and future-prediction transformers (next-tubelet prediction; the first tubelet is
  copied from the input).

Data: synthetic echo (``make_echo``: normal clips as the normal "training" distribution and
the healthy test set; anomalous clips with pixel masks, their healthy version from the same
seed) and, with ``--lus N``, N lung-ultrasound clips from ``../shared/data/lus`` with
injected artefacts (``inject_artefact``; the clip before injection is the healthy version).

Features (perceptual term of RQI, AHI): the first checkpoint with ``embed_frames`` (the
normative encoder) if any, else average-pooled 8x8 intensities (``pixel_features``);
pretrained perceptual networks cannot be downloaded here.

    python scripts/bench/normative_eval.py                      # references only, ~1 min
    python scripts/bench/normative_eval.py --ckpt runs/st/checkpoints/last.ckpt --lus 4

Writes ``bench_out/normative_eval.json`` (``table``: one row per model and dataset),
``bench_out/normative_eval.md`` and ``bench_out/normative_eval.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from einops import repeat

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.bench._common import SHARED_DATA, save, table  # noqa: E402
from seqnrl.data.synthetic_echo import ANOMALIES, make_echo, sector_mask  # noqa: E402
from seqnrl.io.atomic import write_text  # noqa: E402
from seqnrl.metrics import normative as N  # noqa: E402
from seqnrl.metrics.anomaly import frame_metrics  # noqa: E402

Restore = Callable[[torch.Tensor], torch.Tensor]
COLS = ["data", "model", "rqi", "ssim", "mae", "perceptual", "ahi", "ahi_clip", "conservation", "correction",
        "caci", "fidelity", "frame_auroc_micro", "frame_auroc_macro", "frame_ap"]  # fmt: skip


# ----------------------------------------------------------------------------- restorations
def blur(sigma: float) -> Restore:
    def f(v: torch.Tensor) -> torch.Tensor:
        k = max(1, int(np.ceil(3 * sigma)))
        ax = torch.arange(-k, k + 1, dtype=torch.float32)
        w = torch.exp(-(ax**2) / (2 * sigma**2))
        w = w / w.sum()
        b, c, t, h, wd = v.shape
        y = v.reshape(b * c * t, 1, h, wd)
        y = torch.nn.functional.conv2d(
            torch.nn.functional.pad(y, (k, k, 0, 0), mode="replicate"), w.view(1, 1, 1, -1)
        )
        y = torch.nn.functional.conv2d(
            torch.nn.functional.pad(y, (0, 0, k, k), mode="replicate"), w.view(1, 1, -1, 1)
        )
        return y.reshape(b, c, t, h, wd)

    return f


def adapt(model, noise_level: float) -> Restore | None:
    """A restoration function for a loaded model, or None when it cannot restore."""
    if hasattr(model, "reconstruct"):  # video diffusion: pseudo-healthy reconstruction
        return lambda v: model.reconstruct(v, noise_level=noise_level).float().cpu()
    net = getattr(model, "net", None)
    if net is not None and hasattr(net, "eval_mask_set") and hasattr(net, "forward_masked"):
        dev = next(model.parameters()).device

        @torch.no_grad()
        def st(v: torch.Tensor) -> torch.Tensor:
            v = v.to(dev)
            if getattr(net, "objective", "masked") == "future":
                pred, _ = net.forward_future(v)
                k = net.tubelet_size
                return torch.cat((v[:, :, :k], pred[:, :, k:]), dim=2).clamp(0, 1).cpu()
            num, den = torch.zeros_like(v), torch.zeros_like(v[:, :1])
            for m in net.eval_mask_set:  # every pixel from the masks that hide it
                mask = repeat(m, "n -> b n", b=v.shape[0])
                rec, _ = net.forward_masked(v, mask)
                pm = net.pixel_mask(mask, v.shape[2]).to(v)
                num, den = num + rec * pm, den + pm
            return (num / den.clamp(min=1)).clamp(0, 1).cpu()

        return st
    return None


def run_batched(fn: Restore, clips: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(clips[i : i + batch]) for i in range(0, len(clips), batch)])


# ----------------------------------------------------------------------------- data
def echo_data(a) -> dict:
    kw = {"n_frames": a.frames, "size": a.size}
    train = [make_echo(10_000 + i, **kw).video for i in range(a.n_train)]
    normal = [make_echo(20_000 + i, **kw).video for i in range(a.n_normal)]
    anom = [
        make_echo(30_000 + i, anomaly=ANOMALIES[i % len(ANOMALIES)], **kw)
        for i in range(a.n_anomalous)
    ]
    healthy = [make_echo(30_000 + i, **kw).video for i in range(a.n_anomalous)]
    return {
        "name": "synthetic_echo",
        "train": torch.stack(train),
        "normal": torch.stack(normal),
        "anomalous": torch.stack([e.video for e in anom]),
        "masks": torch.stack([e.pixel_mask for e in anom]),
        "healthy": torch.stack(healthy),
        "frame_labels": [e.frame_label.numpy() for e in anom],
        "ids": [f"{e.anomaly}_{i}" for i, e in enumerate(anom)],
        "region": sector_mask(a.size),
    }


def lus_data(a) -> dict | None:
    import csv

    from seqnrl.io.video import read_video

    root = SHARED_DATA / "lus"
    if not (root / "manifest.csv").is_file():
        print(f"no LUS data at {root}; skipped")
        return None
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    rows = [r for r in rows if r.get("label") == "normal"] or rows
    clips = []
    for r in rows[: a.lus * 3]:
        try:
            v = read_video(
                root / "videos" / r["file"],
                size=a.size,
                grayscale=True,
                dtype=torch.float32,
                fps=10.0,
            ).frames
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the benchmark
            print(f"  skip {r['file']}: {e}")
            continue
        if v.shape[1] >= a.frames:
            s = (v.shape[1] - a.frames) // 2
            clips.append(v[:, s : s + a.frames])
    if len(clips) < 4:
        print("fewer than 4 usable LUS clips; skipped")
        return None
    n = len(clips)
    half = max(2, n // 2)
    train, rest = clips[:half], clips[half:]
    normal, healthy = rest[: max(1, len(rest) // 2)], rest[max(1, len(rest) // 2) :] or rest
    inj = [N.inject_artefact(c, N.ARTEFACTS[i % 3], seed=i) for i, c in enumerate(healthy)]
    return {
        "name": "lus_injected",
        "train": torch.stack(train),
        "normal": torch.stack(normal),
        "anomalous": torch.stack([c for c, _ in inj]),
        "masks": torch.stack([m for _, m in inj]),
        "healthy": torch.stack(healthy),
        "frame_labels": [(m.flatten(2).amax(-1)[0] > 0).long().numpy() for _, m in inj],
        "ids": [f"{N.ARTEFACTS[i % 3]}_{i}" for i in range(len(inj))],
        "region": None,
    }


# ----------------------------------------------------------------------------- evaluation
def evaluate(name: str, fn: Restore, d: dict, features, batch: int) -> tuple[dict, dict]:
    rest_n = run_batched(fn, d["normal"], batch)
    rest_a = run_batched(fn, d["anomalous"], batch)
    r = N.rqi(d["normal"], rest_n, features=features)
    h = N.ahi(
        rest_a, d["anomalous"], d["train"], features=features or N.pixel_features, ids=d["ids"]
    )
    c = N.caci(
        d["anomalous"], rest_a, d["masks"], reference=d["healthy"], region=d["region"], ids=d["ids"]
    )
    s_n = N.frame_difference_scores(d["normal"], rest_n, d["region"]).numpy()
    s_a = N.frame_difference_scores(d["anomalous"], rest_a, d["region"]).numpy()
    scores = [*s_n, *s_a]
    labels = [np.zeros(len(s), int) for s in s_n] + list(d["frame_labels"])
    fm = frame_metrics(scores, labels)
    row = {
        "data": d["name"], "model": name, "rqi": r["rqi"], "ssim": r["ssim"], "mae": r["mae"],
        "perceptual": r["perceptual"], "ahi": h["ahi"], "ahi_clip": h["clip_ahi"],
        "fd_restored": h["frame_d_restored"], "fd_unrestored": h["frame_d_unrestored"],
        "conservation": c["conservation"], "correction": c["correction"], "caci": c["caci"],
        "fidelity": c["fidelity"], "caci_fidelity": c["caci_fidelity"], **fm,
    }  # fmt: skip
    detail = {
        "rqi": r["table"],
        "ahi": h["table"],
        "caci": c["table"],
        "restored_anomalous": rest_a,
    }
    return row, detail


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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ckpt", action="append", default=[], help="model checkpoint (repeatable)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument(
        "--n-train", type=int, default=8, help="normal clips forming the normal distribution (AHI)"
    )
    p.add_argument("--n-normal", type=int, default=4, help="healthy test clips (RQI)")
    p.add_argument("--n-anomalous", type=int, default=5, help="anomalous clips (AHI, CACI)")
    p.add_argument(
        "--lus", type=int, default=0, help="also N lung-ultrasound clips with injected artefacts"
    )
    p.add_argument("--blur-sigma", type=float, default=1.5)
    p.add_argument(
        "--noise-level", type=float, default=0.4, help="diffusion reconstruction noise level"
    )
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "bench_out")
    p.add_argument("--name", default="normative_eval")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.time()

    models: dict[str, Restore] = {"identity": lambda v: v.clone(), "blur": blur(a.blur_sigma)}
    features = None
    feature_name = "pixel_features (8x8 average pool)"
    for ck in a.ckpt:
        from seqnrl.models.loading import load_model

        m = load_model(ck)
        fn = adapt(m, a.noise_level)
        label = f"{type(m).__name__}:{Path(ck).parent.parent.name or Path(ck).stem}"
        if fn is None:
            print(f"{ck}: {type(m).__name__} cannot restore a video; skipped")
        else:
            models[label] = fn
        if features is None and hasattr(m, "embed_frames"):
            features, feature_name = m.embed_frames, f"{label}.embed_frames"

    datasets = [echo_data(a)]
    if a.lus:
        d = lus_data(a)
        if d is not None:
            datasets.append(d)
    rows, details_out = [], {}
    for d in datasets:
        # oracle: the anomalous pixels replaced by the true healthy content (upper bound)
        def oracle(v: torch.Tensor, d=d) -> torch.Tensor:
            out = v.clone()
            for j in range(len(v)):
                hit = [
                    i for i in range(len(d["anomalous"])) if torch.equal(d["anomalous"][i], v[j])
                ]
                if hit:
                    i, m = hit[0], d["masks"][hit[0]]
                    out[j] = v[j] * (1 - m) + d["healthy"][i] * m
            return out

        details = {}
        for name, fn in {**models, "oracle": oracle}.items():
            ts = time.time()
            row, det = evaluate(name, fn, d, features, a.batch)
            row["seconds"] = round(time.time() - ts, 2)
            rows.append(row)
            details[name] = det
            print(f"[{d['name']}] {name}: rqi {row['rqi']:.3f}  ahi {row['ahi']:.3f}  caci {row['caci']:.3f}  "
                  f"auroc {row['frame_auroc_micro']:.3f}  ({row['seconds']} s)")  # fmt: skip
        a.out.mkdir(parents=True, exist_ok=True)
        figure(a.out / f"{a.name}_{d['name']}.png", d, details)
        details_out[d["name"]] = {
            m: {k: v for k, v in det.items() if k != "restored_anomalous"}
            for m, det in details.items()
        }

    md = table(rows, COLS)
    print("\n" + md)
    result = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "features": feature_name,
        "definitions": {
            "rqi": "mean over healthy clips of SSIM * (1 - MAE) (frame means); perceptual = 1 - cos of features",
            "ahi": "1 - FD(restored anomalous, normal train) / FD(anomalous, normal train), per-frame features; "
            "ahi_clip: same with per-clip mean features",
            "caci": "harmonic mean of conservation = 1 - healthy-pixel change / s and correction = anomalous-pixel "
            "change / s (clipped), s = mean |input - healthy truth| on anomalous pixels",
            "frame_auroc": "per-frame mean |input - restoration| (echo: inside the fan); micro pooled, macro per clip",
        },
        "table": rows,
        "per_clip": details_out,
        "seconds": round(time.time() - t0, 1),
    }
    header = (f"# Normative evaluation\n\nCommand: `python scripts/bench/{Path(__file__).name} "
              f"{' '.join(argv if argv is not None else sys.argv[1:])}`; features: {feature_name}.\n\n")  # fmt: skip
    write_text(a.out / f"{a.name}.md", header + "```\n" + md + "\n```\n")
    save(a.name, result, a.out)
    return result


if __name__ == "__main__":
    main()
