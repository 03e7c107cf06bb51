#!/usr/bin/env python
"""Audit generated videos against the training set: diversity, fidelity, memorisation.

    python scripts/audit_generated.py --generated DIR --train DIR [--heldout DIR]
        [--ckpt encoder.ckpt] --out DIR

DIRs are folders of videos / frame folders (or folders with a manifest.csv). Every video
is embedded the same way (normative-encoder features with ``--ckpt``, else the labelled
pixel-PCA fallback fitted on the *training* videos; appearance mean + motion descriptor,
scaled on the training set) and the audit writes ``audit.json``, ``audit.md`` and plots:

* **IRS** (Dombrowski et al. CVPR 2025): IRS_alpha, IRS_inf with its confidence interval,
  and -- with ``--heldout`` -- the adjusted score (generated / held-out real, same number
  of queries), :mod:`seqnrl.metrics.irs`;
* **Frechet distance** of generated and of held-out videos to the training videos
  (Gaussian fits in the top principal components of the training embedding -- not
  comparable with published FID/FVD), :mod:`seqnrl.metrics.generation`;
* **near copies**: generated videos whose nearest training video is more cosine-similar
  than ``--near-copy-threshold`` (the held-out rate is reported beside it);
* **re-identification** (EchoNet-Synthetic): a Siamese network on clip embeddings
  (``--clips-per-video`` windows per video) trained on same-vs-different training
  recordings, threshold at ``--target-fpr`` on held-out real clips (or, without
  ``--heldout``, on 20 % of the training recordings kept out of its training), per
  video (maximum over its clips, the same rule that flags a generated video);
  :mod:`seqnrl.metrics.reid`. A generated video is flagged when any of its clips
  re-identifies a training recording. ``kept_generated.csv`` lists the videos that pass
  both filters.

Unreadable files are reported and skipped (exit code 1); bad settings exit with 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from seqnrl.dataset_summary.embed import (
    CollectionEmbedding,
    clip_descriptors,
    collect_items,
    decode_frames,
    encode_videos,
    finish_embedding,
    load_encoder,
)
from seqnrl.errors import ConfigError, SeqNRLError
from seqnrl.io.atomic import atomic_path, write_json, write_text
from seqnrl.metrics.generation import frechet_distance, retrieval_report
from seqnrl.metrics.irs import irs_adjusted, retrieval_score
from seqnrl.metrics.reid import fit_reid


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generated", required=True, help="folder of generated videos")
    p.add_argument("--train", required=True, help="folder of the generator's training videos")
    p.add_argument("--heldout", default=None, help="folder of real videos the generator never saw")
    p.add_argument("--ckpt", default=None, help="normative encoder checkpoint (else the pixel-PCA fallback)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine", help="IRS retrieval metric")
    p.add_argument("--confidence", type=float, default=0.95, help="IRS_inf confidence level")
    p.add_argument("--near-copy-threshold", type=float, default=0.95, help="cosine similarity of a near copy")
    p.add_argument("--clips-per-video", type=int, default=4, help="re-ID clips (windows) per video")
    p.add_argument("--target-fpr", type=float, default=0.05, help="re-ID false-positive rate on held-out real clips")
    p.add_argument("--reid-steps", type=int, default=400, help="Siamese training steps")
    p.add_argument("--fd-dims", type=int, default=16, help="principal components for the Frechet distance")
    p.add_argument("--max-frames", type=int, default=96, help="frames decoded per video")
    p.add_argument("--fps", type=float, default=5.0, help="analysis rate (a checkpoint's recorded fps wins)")
    p.add_argument("--motion-weight", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------
def _embed_sets(args, encoder) -> tuple[dict[str, CollectionEmbedding], list[tuple[str, str]]]:
    sets = {"train": args.train, "generated": args.generated}
    if args.heldout:
        sets["heldout"] = args.heldout
    encoded, failed = {}, []
    for name, root in sets.items():
        items, problems = collect_items(root)
        failed += problems
        if not items:
            raise ConfigError(f"no videos in the {name} folder", root)
        sources = ((it, (lambda it=it: decode_frames(it.path, encoder, args.max_frames))) for it in items)
        enc, bad = encode_videos(sources, encoder, not args.no_progress, total=len(items), desc=name)
        failed += bad
        if not enc:
            raise SeqNRLError(f"none of the {name} videos could be decoded", root)
        encoded[name] = enc
    embs = {"train": finish_embedding(encoded["train"], encoder, args.motion_weight)}  # fits PCA + scaler on train
    for name in encoded:
        if name != "train":
            embs[name] = finish_embedding(encoded[name], encoder, args.motion_weight, scaler=embs["train"].scaler)
    return embs, failed


def _clips(emb: CollectionEmbedding, n_clips: int) -> tuple[np.ndarray, np.ndarray]:
    xs, owner = [], []
    for i, v in enumerate(emb.videos):
        for app, mot in clip_descriptors(v.feats, v.fps, n_clips):
            xs.append(emb.scaler.transform(app, mot)[0])
            owner.append(i)
    return np.stack(xs), np.array(owner)


def _frechet(train: np.ndarray, other: np.ndarray, dims: int) -> float:
    if len(train) < 3 or len(other) < 2:
        return float("nan")
    mu = train.mean(0)
    _, _, vt = np.linalg.svd(train - mu, full_matrices=False)
    k = max(1, min(dims, len(train) - 1, len(other) - 1, vt.shape[0]))
    return frechet_distance((train - mu) @ vt[:k].T, (other - mu) @ vt[:k].T)


def _reid(args, embs) -> tuple[dict, np.ndarray, dict]:
    x_tr, own_tr = _clips(embs["train"], args.clips_per_video)
    rec_tr = np.array(embs["train"].ids)[own_tr]
    x_gen, own_gen = _clips(embs["generated"], args.clips_per_video)
    kw = dict(steps=args.reid_steps, seed=args.seed)
    if "heldout" in embs:
        filt = fit_reid(x_tr, rec_tr, **kw)
        x_cal, own_cal = _clips(embs["heldout"], args.clips_per_video)
        cal = filt.calibrate(x_cal, target_fpr=args.target_fpr, groups=own_cal)
        cal["calibration_set"] = "held-out real videos"
        cs = filt.recording_scores(x_cal)[0]
        cal_scores = np.array([cs[own_cal == u].max() for u in np.unique(own_cal)])
        pair = filt.pair_accuracy(x_cal, np.array(embs["heldout"].ids)[own_cal], seed=args.seed)
    else:
        recs = np.unique(rec_tr)
        rng = np.random.default_rng(args.seed)
        n_cal = max(1, int(round(0.2 * len(recs))))
        cal_recs = set(rng.choice(recs, n_cal, replace=False).tolist())
        m = np.array([r in cal_recs for r in rec_tr])
        if m.all() or (~m).sum() == 0 or len(np.unique(rec_tr[~m])) < 2:
            raise ConfigError("too few training recordings to hold some out for the re-ID threshold: give --heldout")
        filt = fit_reid(x_tr[~m], rec_tr[~m], **kw)
        cal = filt.calibrate(x_tr[m], target_fpr=args.target_fpr, groups=rec_tr[m])
        cal["calibration_set"] = f"{n_cal} training recordings kept out of the Siamese training (no --heldout)"
        cs = filt.recording_scores(x_tr[m])[0]
        cal_scores = np.array([cs[rec_tr[m] == u].max() for u in np.unique(rec_tr[m])])
        pair = filt.pair_accuracy(x_tr[m], rec_tr[m], seed=args.seed)
        # audit against every training recording
        filt.gallery = torch.as_tensor(x_tr, dtype=torch.float32)
        filt.gallery_recordings = rec_tr
    audit = filt.audit(x_gen)
    n_gen = len(embs["generated"])
    video_score = np.full(n_gen, -np.inf)
    video_match = [""] * n_gen
    for s, r, o in zip(audit.scores, audit.best_recording, own_gen):
        if s > video_score[o]:
            video_score[o], video_match[o] = s, str(r)
    flagged = video_score > audit.threshold
    matched = sorted({video_match[i] for i in np.flatnonzero(flagged)})
    out = {
        **audit.to_dict(),
        "calibration": cal,
        "heldout_pair_auroc": pair["pair_auroc"],
        "n_generated_videos": n_gen,
        "n_flagged_videos": int(flagged.sum()),
        "flagged_video_fraction": float(flagged.mean()),
        "fraction_training_reidentified": len(matched) / max(len(embs["train"]), 1),
        "reidentified": matched,
        "clips_per_video": args.clips_per_video,
    }
    return out, flagged, {"video_score": video_score, "video_match": video_match, "clip_scores": audit.scores,
                          "threshold": audit.threshold, "cal_scores": cal_scores}


# ---------------------------------------------------------------------------------------
def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _plots(out: Path, res: dict, embs, nn_gen, nn_ref, reid_info) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    # IRS
    fig, ax = plt.subplots(figsize=(6, 3.6))
    rows = [("generated", res["irs"]["generated"])]
    if "heldout" in res["irs"]:
        rows.append(("held-out real", res["irs"]["heldout"]))
    for j, (_lab, r) in enumerate(rows):
        ax.bar(j - 0.18, r["irs_alpha"], 0.34, color="tab:gray", label="IRS_alpha" if j == 0 else None)
        ax.bar(j + 0.18, r["irs_inf"], 0.34, color="tab:blue", label="IRS_inf" if j == 0 else None)
        ax.errorbar(j + 0.18, r["irs_inf"], yerr=[[r["irs_inf"] - r["irs_inf_low"]], [r["irs_inf_high"] - r["irs_inf"]]],
                    color="black", capsize=4)
    ax.set_xticks(range(len(rows)), [f"{lab}\n(s={r['n_queries']})" for lab, r in rows])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of training set")
    t = "Retrieval score (IRS)"
    if res["irs"].get("adjusted") is not None:
        a = res["irs"]["adjusted"]
        t += f"; adjusted {a['adjusted']:.2f} [{a['adjusted_low']:.2f}, {a['adjusted_high']:.2f}]"
    ax.set_title(t, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "irs.png")
    names.append("irs.png")
    # nearest-neighbour similarities
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(min(nn_gen.min(), nn_ref.min() if nn_ref is not None else 1, 0.0), 1.0, 30)
    ax.hist(nn_gen, bins=bins, alpha=0.6, label="generated")
    if nn_ref is not None:
        ax.hist(nn_ref, bins=bins, alpha=0.6, label="held-out real")
    ax.axvline(res["near_copies"]["threshold"], color="red", ls="--", label="near-copy threshold")
    ax.set_xlabel("cosine similarity to the nearest training video")
    ax.set_ylabel("videos")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "nn_similarity.png")
    names.append("nn_similarity.png")
    # re-ID scores
    fig, ax = plt.subplots(figsize=(6, 3.6))
    gs = reid_info["video_score"]
    lo = min(gs.min(), reid_info["cal_scores"].min())
    bins = np.linspace(lo, max(gs.max(), reid_info["threshold"]) + 1e-6, 30)
    ax.hist(gs, bins=bins, alpha=0.6, label="generated videos (max over clips)")
    ax.hist(reid_info["cal_scores"], bins=bins, alpha=0.6, label="calibration real videos (max over clips)")
    ax.axvline(reid_info["threshold"], color="red", ls="--", label=f"threshold (FPR {res['reid']['calibration']['target_fpr']:g})")
    ax.set_xlabel("re-ID score (logit, best training recording)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "reid.png")
    names.append("reid.png")
    # embedding
    tr = embs["train"].X
    mu = tr.mean(0)
    _, _, vt = np.linalg.svd(tr - mu, full_matrices=False)
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, col in (("train", "tab:gray"), ("heldout", "tab:green"), ("generated", "tab:orange")):
        if name in embs:
            p = (embs[name].X - mu) @ vt[:2].T
            ax.scatter(p[:, 0], p[:, 1], s=18, alpha=0.7, color=col, label=name)
    ax.set_title("embedding (PCA of the training videos)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "embedding.png")
    names.append("embedding.png")
    return names


def _markdown(res: dict, plots: list[str]) -> str:
    irs = res["irs"]
    g = irs["generated"]
    lines = [
        "# Generated-data audit",
        "",
        f"Features: {res['features']['description']}",
        "",
        f"{res['n']['train']} training, {res['n']['generated']} generated"
        + (f", {res['n']['heldout']} held-out real" if "heldout" in res["n"] else "") + " videos.",
        "",
        "## Diversity: retrieval score",
        "",
        "| set | queries | distinct retrieved | IRS_alpha | IRS_inf [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for name, r in (("generated", g), ("held-out real", irs.get("heldout"))):
        if r:
            lines.append(f"| {name} | {r['n_queries']} | {r['k_distinct']} | {r['irs_alpha']:.3f} | "
                         f"{r['irs_inf']:.3f} [{r['irs_inf_low']:.3f}, {r['irs_inf_high']:.3f}]"
                         + (" (all distinct: lower bound only)" if r["saturated"] else "") + " |")
    if irs.get("adjusted"):
        a = irs["adjusted"]
        lines += ["", f"Adjusted IRS (generated / held-out, {a['n_queries']} queries each): **{a['adjusted']:.3f}** "
                  f"[{a['adjusted_low']:.3f}, {a['adjusted_high']:.3f}]; ratio of distinct retrieved {a['adjusted_alpha']:.3f}."]
    fd = res["frechet"]
    lines += ["", "## Fidelity: Frechet distance (own features, PCA of the training set)", "",
              f"generated vs train: {fd['generated']:.3f}" + (f"; held-out real vs train (reference): {fd['heldout']:.3f}" if "heldout" in fd else ""),
              "", "## Memorisation", "",
              f"Near copies (cosine >= {res['near_copies']['threshold']}): {int(res['near_copies']['near_copies'])} of "
              f"{int(res['near_copies']['n_generated'])} generated"
              + (f"; held-out real at the same threshold: {int(res['near_copies_heldout']['near_copies'])} of {int(res['near_copies_heldout']['n_generated'])}" if "near_copies_heldout" in res else ""),
              "",
              f"Re-identification: {res['reid']['n_flagged_videos']} of {res['reid']['n_generated_videos']} generated videos "
              f"re-identify a training recording; **{100 * res['reid']['fraction_training_reidentified']:.1f} %** of the training "
              f"recordings are re-identified (threshold for FPR {res['reid']['calibration']['target_fpr']:g} on "
              f"{res['reid']['calibration']['calibration_set']}; held-out pair AUROC {res['reid']['heldout_pair_auroc']:.3f}).",
              "", f"Kept after both filters: {res['n_kept']} of {res['n']['generated']} (kept_generated.csv).", ""]
    if res["failed"]:
        lines += ["## Skipped files", ""] + [f"- `{f['path']}`: {f['reason']}" for f in res["failed"]] + [""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    try:
        encoder = load_encoder(args.ckpt, fallback_fps=args.fps)
        embs, failed = _embed_sets(args, encoder)
        tr, gen = embs["train"].X, embs["generated"].X
        irs: dict = {"generated": retrieval_score(gen, tr, args.metric, args.confidence).to_dict()}
        if "heldout" in embs:
            ho = embs["heldout"].X
            irs["heldout"] = retrieval_score(ho, tr, args.metric, args.confidence).to_dict()
            irs["adjusted"] = irs_adjusted(gen, tr, ho, args.metric, args.confidence, seed=args.seed)
        near = retrieval_report(gen, tr, args.near_copy_threshold)
        from seqnrl.metrics.generation import nearest_neighbours

        nn_idx, nn_gen = nearest_neighbours(gen, tr)
        nn_ref = nearest_neighbours(embs["heldout"].X, tr)[1] if "heldout" in embs else None
        fd = {"generated": _frechet(tr, gen, args.fd_dims), "dims": args.fd_dims}
        res: dict = {
            "features": embs["train"].info,
            "fallback_features": embs["train"].info.get("kind") == "fallback",
            "n": {k: len(v) for k, v in embs.items()},
            "irs": irs,
            "near_copies": near,
        }
        if "heldout" in embs:
            fd["heldout"] = _frechet(tr, embs["heldout"].X, args.fd_dims)
            res["near_copies_heldout"] = retrieval_report(embs["heldout"].X, tr, args.near_copy_threshold)
        res["frechet"] = fd
        reid, flagged, reid_info = _reid(args, embs)
        res["reid"] = reid
        near_flags = nn_gen >= args.near_copy_threshold
        keep = ~(flagged | near_flags)
        res["n_kept"] = int(keep.sum())
        res["failed"] = [{"path": p, "reason": r} for p, r in failed]
        res["settings"] = {k: v for k, v in vars(args).items()}
        rows = []
        for i, v in enumerate(embs["generated"].videos):
            rows.append({"file": v.item.path, "kept": int(keep[i]), "near_copy": int(near_flags[i]),
                         "nearest_training": embs["train"].ids[nn_idx[i]], "nn_similarity": round(float(nn_gen[i]), 6),
                         "reid_flag": int(flagged[i]), "reid_score": round(float(reid_info["video_score"][i]), 4),
                         "reid_match": reid_info["video_match"][i]})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "generated_audit.csv", buf.getvalue())
        kept = io.StringIO()
        kept.write("file\n" + "".join(f"{r['file']}\n" for r in rows if r["kept"]))
        write_text(out / "kept_generated.csv", kept.getvalue())
        plots = _plots(out, res, embs, nn_gen, nn_ref, reid_info)
        write_json(out / "audit.json", res)
        write_text(out / "audit.md", _markdown(res, plots))
    except SeqNRLError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 2
    for f in res["failed"]:
        print(f"SKIPPED {f['path']}: {f['reason']}", file=sys.stderr)
    g = irs["generated"]
    msg = (f"IRS_alpha {g['irs_alpha']:.3f}, IRS_inf {g['irs_inf']:.3f} [{g['irs_inf_low']:.3f}, {g['irs_inf_high']:.3f}]"
           + (f", adjusted {irs['adjusted']['adjusted']:.3f}" if "adjusted" in irs else "")
           + f"; near copies {int(near['near_copies'])}; re-ID {reid['n_flagged_videos']}/{reid['n_generated_videos']} videos, "
           f"{100 * reid['fraction_training_reidentified']:.1f}% of training recordings -> {out}/audit.md")
    print(msg, file=sys.stderr)
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
