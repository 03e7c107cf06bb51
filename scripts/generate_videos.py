"""Generate videos with a trained video diffusion checkpoint and measure their EF fidelity.

    python scripts/generate_videos.py --ckpt runs/diffusion/checkpoints/last.ckpt \
        --ef 30 45 60 75 --frames 64 --out-dir outputs/generated
    python scripts/generate_videos.py --ckpt ... --ef 55 --n-per-ef 4 --reference some_video.mp4

For each requested EF (times ``--n-per-ef``) one clip is generated (longer than the
training window via overlapping windows when ``--frames`` asks for it), optionally
conditioned on the first frame of each ``--reference`` video/frame folder (cycled over the
clips). Writes ``clip_XXX_efYY.mp4`` per clip, ``grid.png`` (frames of every clip) and
``fidelity.json``: the EF measured back on the frames with the synthetic generator's
cavity-area estimator (meaningful for models trained on synthetic echo; use
``--no-measure`` otherwise) and R^2 / MAE against the requested values. The checkpoint is
loaded with ``torch.load(weights_only=True)``.

With ``--features-ckpt`` (any seqnrl checkpoint whose model has ``embed_frames``, e.g. the
spatiotemporal transformer or the baseline auto-encoder) and ``--real N``, the generated
clips are also compared with ``N`` real synthetic-echo clips (the training generator's
seeds) in that model's feature space (per clip: mean and std over time of the frame
embeddings): Frechet distance, nearest-neighbour retrieval coverage and near copies
(``--near-copy-threshold``, cosine on features z-scored with the real clips' statistics). No I3D/FVD weights can be downloaded here, so these numbers
are only comparable with each other.

Diversity-aware generation (DiADM; models trained with ``feature_cond_dim > 0``):

    python scripts/generate_videos.py --ckpt diadm.ckpt --diadm --guidance 2 --out-dir outputs/diadm

steps through the training items whose features the checkpoint stores (or the ``(N, D)``
array of ``--item-features``, ``.npy`` or ``.pt``): clip ``i`` is conditioned on item
``i mod N`` (``--n-clips``, default one clip per item) with classifier-free guidance
``--guidance`` against the unconditional model. ``--ef`` is then optional (cycled over the
clips when given, and only meaningful for models that also condition on EF).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqnrl.data.input_spec import InputSpec  # noqa: E402
from seqnrl.io.atomic import atomic_path, write_json  # noqa: E402
from seqnrl.io.write import write_video  # noqa: E402
from seqnrl.metrics.generation import condition_fidelity, frechet_distance, retrieval_report  # noqa: E402
from seqnrl.models.video_diffusion import load_video_diffusion  # noqa: E402

DEFAULT_EF = (30.0, 45.0, 60.0, 75.0)


def load_references(paths: list[str], size: int | tuple[int, int], channels: int) -> torch.Tensor:
    """First frame of each video file / frame folder, ``(N, C, H, W)`` float in [0, 1]."""
    from seqnrl.io.video import read_video

    frames = []
    for p in paths:
        clip = read_video(p, size=size, grayscale=channels == 1, end=None, dtype=torch.float32)
        frames.append(clip.frames[:, 0])
    return torch.stack(frames)


def save_grid(path: Path, videos: torch.Tensor, titles: list[str], n_cols: int = 8) -> None:
    """A PNG with one row per clip and ``n_cols`` evenly spaced frames (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, _, t = videos.shape[:3]
    cols = np.linspace(0, t - 1, min(n_cols, t)).round().astype(int)
    fig, axes = plt.subplots(
        n, len(cols), figsize=(1.3 * len(cols), 1.4 * n), squeeze=False, dpi=100
    )
    for i in range(n):
        for j, f in enumerate(cols):
            ax = axes[i, j]
            img = videos[i, :, f].permute(1, 2, 0).numpy()
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(titles[i], fontsize=7)
            if i == 0:
                ax.set_title(f"frame {f}", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def clip_features(model, videos: torch.Tensor, clip_len: int, batch: int = 8) -> np.ndarray:
    """Per clip: [mean, std] over time of ``model.embed_frames`` on the first ``clip_len`` frames."""
    feats = []
    with torch.no_grad():
        for i in range(0, len(videos), batch):
            e = model.embed_frames(videos[i : i + batch, :, :clip_len].float())  # (B, T, D)
            feats.append(torch.cat([e.mean(1), e.std(1)], dim=1).cpu())
    return torch.cat(feats).numpy()


def real_synthetic_clips(n: int, n_frames: int, size, seed: int = 0) -> torch.Tensor:
    """``n`` normal clips from the synthetic echo generator (the training data's seeds)."""
    from seqnrl.data.synthetic_echo import make_echo

    hw = size if isinstance(size, int) else size[0]
    return torch.stack(
        [make_echo(seed * 1_000_003 + i, n_frames=n_frames, size=hw).video for i in range(n)]
    )


def diadm_items(model, path: str | None) -> tuple[list[str], torch.Tensor]:
    """Training-item ids and features ``(N, D)``: from ``path`` (.npy / .pt) or the
    checkpoint's stored items."""
    if not getattr(model, "feature_conditioned", False):
        raise SystemExit("--diadm needs a model trained with feature_cond_dim > 0")
    if path:
        if str(path).endswith(".npy"):
            feats = torch.as_tensor(np.load(path), dtype=torch.float32)
        else:
            feats = torch.as_tensor(torch.load(path, weights_only=True), dtype=torch.float32)
        ids = [f"item_{i:04d}" for i in range(len(feats))]
    else:
        ids, feats = model.item_features()
    if feats.ndim != 2 or not len(feats):
        raise SystemExit("no training-item features: the checkpoint has none, pass --item-features")
    return ids, feats


def finite_or_none(obj):
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ckpt", required=True, help="VideoDiffusionModel Lightning checkpoint")
    p.add_argument(
        "--ef",
        type=float,
        nargs="+",
        default=None,
        help="requested EF values (%%; default 30 45 60 75, none with --diadm)",
    )
    p.add_argument("--n-per-ef", type=int, default=1)
    p.add_argument(
        "--frames", type=int, default=None, help="frames per clip (default: the training window)"
    )
    p.add_argument(
        "--stride", type=int, default=None, help="window stride for long clips (default window/2)"
    )
    p.add_argument(
        "--reference",
        nargs="*",
        default=[],
        help="videos / frame folders whose first frames condition",
    )
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4, help="clips generated at once")
    p.add_argument(
        "--fps", type=float, default=None, help="frame rate of the MP4s (default: the data's)"
    )
    p.add_argument("--out-dir", default="outputs/generated")
    p.add_argument("--no-measure", action="store_true", help="skip the EF measurement")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--features-ckpt", default=None, help="seqnrl checkpoint whose embed_frames gives features"
    )
    p.add_argument(
        "--real",
        type=int,
        default=0,
        help="real synthetic-echo clips to compare with (needs --features-ckpt)",
    )
    p.add_argument("--near-copy-threshold", type=float, default=0.95)
    p.add_argument(
        "--diadm",
        action="store_true",
        help="step through the training items' features (models with feature_cond_dim > 0)",
    )
    p.add_argument(
        "--item-features", default=None, help="(N, D) .npy/.pt item features for --diadm"
    )
    p.add_argument("--n-clips", type=int, default=None, help="clips with --diadm (default N)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    model = load_video_diffusion(a.ckpt)
    spec = InputSpec.of(model)
    window = spec.clip_len
    size = spec.image_size or model.hparams.image_size
    size = size if isinstance(size, int) else tuple(size)
    n_frames = a.frames or window
    # a model trained at native rates has no rate of its own: the written files get --fps or 30
    fps = float(a.fps or spec.fps or 30.0)
    items = item_ids = None
    if a.diadm:
        item_ids, items = diadm_items(model, a.item_features)
        n_clips = a.n_clips or len(items)
        item_idx = [i % len(items) for i in range(n_clips)]
        efs_in = [float(e) for e in a.ef] if a.ef else None
        requested = (
            [efs_in[i % len(efs_in)] for i in range(n_clips)]
            if efs_in
            else [float("nan")] * n_clips
        )
    else:
        requested = [float(e) for e in (a.ef or DEFAULT_EF) for _ in range(a.n_per_ef)]
    has_ef = all(math.isfinite(e) for e in requested)
    refs = load_references(a.reference, size, model.hparams.in_channels) if a.reference else None
    out_dir = Path(a.out_dir)

    fmodel = None
    if a.features_ckpt and a.real > 1:  # load first: fail before the slow generation
        from seqnrl.models.loading import load_model

        fmodel = load_model(a.features_ckpt)
        if not hasattr(fmodel, "embed_frames"):
            raise SystemExit(
                f"{type(fmodel).__name__} has no embed_frames: cannot extract features"
            )

    videos = []
    for i0 in range(0, len(requested), a.batch):
        efs = requested[i0 : i0 + a.batch]
        ref = None
        if refs is not None:
            ref = refs[torch.arange(i0, i0 + len(efs)) % len(refs)]
        kw = dict(
            n=len(efs),
            ef=efs if has_ef else None,
            reference=ref,
            steps=a.steps,
            guidance_scale=a.guidance,
            sampler=a.sampler,
            seed=a.seed + i0,
        )
        if items is not None:
            kw["feature"] = items[item_idx[i0 : i0 + len(efs)]]
        if n_frames > window:
            v = model.generate_long(n_frames, stride=a.stride, **kw)
        else:
            v = model.sample(n_frames=n_frames, **kw)
        videos.append(v.cpu())
        print(f"generated {i0 + len(efs)}/{len(requested)}", flush=True)
    videos_t = torch.cat(videos)

    measured = [float("nan")] * len(requested)
    if not a.no_measure:
        from seqnrl.data.synthetic_echo import estimate_ef

        measured = [estimate_ef(v) for v in videos_t]
    files, titles = [], []
    for i, (v, ef, m) in enumerate(zip(videos_t, requested, measured)):
        name = f"clip_{i:03d}"
        title = ""
        if items is not None:
            name += f"_item{item_idx[i]:03d}"
            title = f"item {item_idx[i]} "
        if has_ef:
            name += f"_ef{ef:.0f}"
            title += f"EF {ef:.0f}"
        title += "" if math.isnan(m) else f" / {m:.0f}"
        path = out_dir / f"{name}.mp4"
        write_video(path, v, fps)
        files.append(str(path))
        titles.append(title.strip())
    save_grid(out_dir / "grid.png", videos_t, titles)
    report = {
        "checkpoint": str(a.ckpt),
        "n_clips": len(requested),
        "frames": n_frames,
        "window": window,
        "sampler": a.sampler,
        "steps": a.steps or model.hparams.sample_steps,
        "guidance_scale": a.guidance if a.guidance is not None else model.hparams.guidance_scale,
        "requested_ef": requested,
        "measured_ef": measured,
        "fidelity": condition_fidelity(requested, measured)
        if has_ef and not a.no_measure
        else None,
        "measure": None
        if a.no_measure
        else "seqnrl.data.synthetic_echo.estimate_ef (frame-based cavity area)",
        "files": files,
        "grid": str(out_dir / "grid.png"),
    }
    if items is not None:
        report["diadm"] = {
            "n_items": len(items),
            "items_of_clips": [item_ids[j] for j in item_idx],
            "item_features": a.item_features or "stored in the checkpoint",
        }
    if fmodel is not None:
        flen = InputSpec.of(fmodel).clip_len
        if n_frames < flen:
            raise SystemExit(
                f"generated clips have {n_frames} frames, the feature model wants {flen}"
            )
        real = real_synthetic_clips(a.real, flen, size)
        f_real, f_gen = clip_features(fmodel, real, flen), clip_features(fmodel, videos_t, flen)
        # cosine similarity of raw embeddings is dominated by their common offset: retrieval
        # uses features z-scored with the real set's statistics
        mu, sd = f_real.mean(0), f_real.std(0) + 1e-8
        z_real, z_gen = (f_real - mu) / sd, (f_gen - mu) / sd
        report["features"] = {
            "extractor": f"{type(fmodel).__name__} ({a.features_ckpt}), mean+std over time of embed_frames",
            "n_real": a.real,
            "frechet_distance": frechet_distance(f_real, f_gen) if len(f_gen) > 1 else float("nan"),
            "retrieval": retrieval_report(z_gen, z_real, a.near_copy_threshold),
            "retrieval_features": "z-scored with the real clips' mean/std",
        }
    report = finite_or_none(report)
    write_json(out_dir / "fidelity.json", report)
    print(
        json.dumps(
            {k: report.get(k) for k in ("requested_ef", "measured_ef", "fidelity", "features")},
            indent=2,
        )
    )
    print(f"wrote {len(files)} videos, grid.png and fidelity.json to {out_dir}")
    return report


if __name__ == "__main__":
    main()
