"""Collection -> representative subset: the pipeline behind ``scripts/summarise_dataset.py``.

:func:`summarise_dataset` embeds every recording (:mod:`.embed`), selects the subset
(:mod:`.select`) and writes, atomically, into the output folder:

* ``selection.csv`` -- one row per chosen recording with its reasons;
* ``selection.json`` -- settings, feature description (fallback or checkpoint), budget per
  class, the picks with reasons, every item's nearest pick and distance, coverage radii,
  and the files that could not be read (reported and skipped);
* ``embedding.png`` -- 2-D PCA of the embedding space, classes coloured, chosen items marked;
* ``contact_sheet.png`` -- the key frame (medoid frame) of every chosen recording;
* ``embeddings.npz`` -- ids, labels and the embedding matrix, for later comparisons.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqnrl.dataset_summary.embed import (
    CollectionEmbedding,
    FrameEncoder,
    VideoItem,
    collect_items,
    embed_collection,
    load_encoder,
)
from seqnrl.dataset_summary.select import Pick, cosine_similarity, select_subset
from seqnrl.io.atomic import atomic_path, write_json, write_text

log = logging.getLogger(__name__)


@dataclass
class DatasetSummaryConfig:
    """Settings of :func:`summarise_dataset` (recorded in ``selection.json``)."""

    budget: int = 10
    per_class: bool = False
    method: str = "community"  # or "kcenter"
    community_method: str = "louvain"
    centrality: str = "degree"
    k: int = 10
    resolution: float = 1.0
    motion_weight: float = 0.3
    max_frames: int = 96
    fallback_fps: float = 5.0
    seed: int = 0
    use_labels: bool = True
    overflow: str = "largest"  # more communities than budget: "largest" or "merge"


def _pca2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xc = x - x.mean(0)
    if len(x) < 2:
        return np.zeros((len(x), 2)), np.zeros(2)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    p = u[:, :2] * s[:2]
    if p.shape[1] < 2:
        p = np.pad(p, ((0, 0), (0, 2 - p.shape[1])))
    var = (s**2) / max((s**2).sum(), 1e-12)
    return p, np.pad(var[:2], (0, max(0, 2 - len(var[:2]))))


def plot_embedding(path: Path, emb: CollectionEmbedding, picks: Sequence[Pick], title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, var = _pca2(emb.X)
    labels = emb.labels
    classes = sorted(set(labels))
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(7.5, 6))
    for ci, c in enumerate(classes):
        m = np.array([lab == c for lab in labels])
        ax.scatter(p[m, 0], p[m, 1], s=22, color=cmap(ci % 10), alpha=0.6, label=c or "(no label)")
    chosen = [q.index for q in picks]
    ax.scatter(p[chosen, 0], p[chosen, 1], s=230, marker="*", facecolor="none", edgecolor="black", linewidth=1.4,
               label=f"chosen ({len(chosen)})")
    for q in picks:
        ax.annotate(emb.videos[q.index].item.id[:22], p[q.index], fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"PC1 ({100 * var[0]:.0f}% var)")
    ax.set_ylabel(f"PC2 ({100 * var[1]:.0f}% var)")
    ax.set_title(title or "collection embedding (PCA)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def _display_frame(path: str, t: float, max_side: int = 220) -> np.ndarray | None:
    """The frame at time ``t`` (s) at display resolution, or None when it cannot be read."""
    from seqnrl.errors import SeqNRLError
    from seqnrl.io.video import iter_frames

    try:
        last = None
        for ts, fr in iter_frames(path):
            last = fr
            if ts >= t - 1e-6:
                break
        if last is None:
            return None
        x = last.permute(1, 2, 0).numpy()
    except (SeqNRLError, OSError, RuntimeError, ValueError):
        return None
    h, w = x.shape[:2]
    f = max(1, int(np.ceil(max(h, w) / max_side)))
    return x[::f, ::f]


def plot_contact_sheet(path: Path, emb: CollectionEmbedding, picks: Sequence[Pick], from_files: bool = True,
                       cols: int = 5, note: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(picks), 1)
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.2 * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, q in zip(axes.ravel(), picks):
        v = emb.videos[q.index]
        img = _display_frame(v.item.path, v.key_time) if from_files else None
        if img is None:
            img = v.thumb
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        size = q.community_size if q.community >= 0 else q.assigned_size
        what = f"comm {q.community} (n={size})" if q.community >= 0 else f"k-center (n={size})"
        ax.set_title(f"{v.item.id[:24]}\n{q.label or '-'} | {what}\nt={v.key_time:.1f}s", fontsize=7)
    if note:
        fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def _rows(emb: CollectionEmbedding, picks: Sequence[Pick]) -> list[dict[str, Any]]:
    out = []
    for r, q in enumerate(picks):
        v = emb.videos[q.index]
        out.append(
            {
                "rank": r,
                "id": v.item.id,
                "path": v.item.path,
                "label": v.item.label,
                "patient": v.item.patient,
                "source": q.source,
                "community": q.community,
                "community_size": q.community_size,
                "centrality": None if not np.isfinite(q.centrality) else round(q.centrality, 6),
                "community_radius": None if not np.isfinite(q.community_radius) else round(q.community_radius, 6),
                "assigned_size": q.assigned_size,
                "assigned_radius": round(q.assigned_radius, 6),
                "key_time_s": round(v.key_time, 3),
                "reason": _reason(q),
            }
        )
    return out


def _reason(q: Pick) -> str:
    if q.source == "k-center":
        return (f"k-center fill: farthest from earlier picks; nearest pick of {q.assigned_size} item(s), "
                f"radius {q.assigned_radius:.3f}")
    how = {"community": "community", "split": "sub-community (split of a larger community)",
           "merged": "merged community (similar communities joined to meet the budget)"}.get(q.source, q.source)
    return (f"most central ({q.centrality:.3f}) member of {how} {q.community} of {q.community_size} item(s); "
            f"coverage radius {q.community_radius:.3f}")


def write_selection_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    fields = list(rows[0]) if rows else ["rank", "id", "path"]
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return write_text(path, buf.getvalue())


def coverage(emb: CollectionEmbedding, picks: Sequence[Pick]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every item's nearest pick (within its class when the picks are per class) and the
    largest / mean distance."""
    labels = np.array(emb.labels)
    by_label = {}
    for q in picks:
        by_label.setdefault(q.label, []).append(q.index)
    per_item = []
    dists = []
    for i, v in enumerate(emb.videos):
        cand = by_label.get(labels[i]) or [q.index for q in picks]
        s = cosine_similarity(emb.X[[i]], emb.X[cand])[0]
        j = int(np.argmax(s))
        d = float(1.0 - s[j])
        dists.append(d)
        per_item.append({"id": v.item.id, "label": v.item.label, "nearest_pick": emb.videos[cand[j]].item.id,
                         "distance": round(d, 6)})
    d = np.array(dists)
    return per_item, {"max_distance": float(d.max()), "mean_distance": float(d.mean())}


def summarise_embedding(emb: CollectionEmbedding, cfg: DatasetSummaryConfig) -> list[Pick]:
    labels = emb.labels if cfg.use_labels else None
    return select_subset(
        emb.X, cfg.budget, labels, per_class=cfg.per_class, method=cfg.method, k=cfg.k,
        community_method=cfg.community_method, centrality=cfg.centrality, resolution=cfg.resolution, seed=cfg.seed,
        overflow=cfg.overflow,
    )


def write_outputs(out: Path, emb: CollectionEmbedding, picks: list[Pick], cfg: DatasetSummaryConfig,
                  problems: Sequence[tuple[str, str]] = (), extra: dict | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows(emb, picks)
    per_item, cov = coverage(emb, picks)
    labels = emb.labels
    counts = {c: labels.count(c) for c in sorted(set(labels))}
    chosen_counts = {c: sum(1 for q in picks if q.label == c) for c in counts}
    failed = [{"path": p, "reason": r} for p, r in list(problems) + list(emb.failed)]
    fallback = emb.info.get("kind") == "fallback"
    summary = {
        "config": asdict(cfg),
        "features": emb.info,
        "fallback_features": fallback,
        "n_items": len(emb),
        "n_failed": len(failed),
        "class_counts": counts,
        "chosen_per_class": chosen_counts,
        "coverage": cov,
        "picks": rows,
        "items": per_item,
        "failed": failed,
        **(extra or {}),
    }
    write_selection_csv(out / "selection.csv", rows)
    write_json(out / "selection.json", summary)
    with atomic_path(out / "embeddings.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, X=emb.X, ids=np.array(emb.ids), labels=np.array(labels), patients=np.array(emb.patients),
                     chosen=np.array([q.index for q in picks], dtype=np.int64))
    tag = "FALLBACK features (no checkpoint)" if fallback else f"features: {emb.info.get('kind')}"
    title = f"{len(emb)} recordings, {len(picks)} chosen ({cfg.method}); {tag}"
    if not cfg.use_labels:
        title += "; labels shown, not used"
    plot_embedding(out / "embedding.png", emb, picks, title)
    plot_contact_sheet(out / "contact_sheet.png", emb, picks, note=title)
    return summary


def evaluate_collection(
    emb: CollectionEmbedding,
    target: Sequence[float],
    cfg: DatasetSummaryConfig,
    out: str | os.PathLike | None = None,
    *,
    task: str = "classification",
    model: str | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    n_folds: int = 4,
    strata: Sequence[str] | None = None,
    extra: dict | None = None,
) -> dict:
    """Summary vs k-center vs random vs all (:func:`.evaluate.compare_subsets`) on this
    embedding, grouped by patient; items with a non-finite or negative (unknown) target are
    left out. Writes ``evaluation.json`` and ``evaluation.md`` into ``out`` when given;
    ``extra`` (e.g. the command line) is recorded in its config."""
    from seqnrl.dataset_summary.evaluate import EvalConfig, compare_subsets, format_results

    y = np.asarray(target, dtype=np.float64)
    keep = np.isfinite(y) & ((y >= 0) if task == "classification" else True)
    ecfg = EvalConfig(
        budget=cfg.budget, per_class=cfg.per_class, task=task,
        model=model or ("logreg" if task == "classification" else "ridge"), n_folds=n_folds, seeds=tuple(seeds),
        k=cfg.k, community_method=cfg.community_method, centrality=cfg.centrality,
        extra={"features": emb.info.get("description", ""), "n_left_out": int((~keep).sum()), **(extra or {})},
    )
    st = None if strata is None else np.asarray(strata)[keep]
    res = compare_subsets(emb.X[keep], y[keep], np.asarray(emb.patients)[keep], st, ecfg)
    if out is not None:
        out = Path(out)
        write_json(out / "evaluation.json", res)
        metric = "video AUROC" if task == "classification" else "MAE / R^2"
        md = (f"# Subset vs random vs all ({task})\n\n{len(y[keep])} recordings, "
              f"{res['config']['n_groups']} patients/groups, {n_folds} group folds, seeds {list(seeds)}; "
              f"budget {cfg.budget}{' per class' if cfg.per_class else ''}; model {ecfg.model}; "
              f"{metric} of pooled held-out predictions, mean ± std over seeds.\n\n"
              f"Features: {emb.info.get('description', '')}\n\n{format_results(res)}\n")
        write_text(out / "evaluation.md", md)
    return res


def summarise_dataset(
    root: str | os.PathLike | None,
    out: str | os.PathLike,
    cfg: DatasetSummaryConfig | None = None,
    *,
    ckpt: str | os.PathLike | None = None,
    items: Sequence[VideoItem] | None = None,
    encoder: FrameEncoder | None = None,
    manifest: str | None = "manifest.csv",
    progress: bool = True,
) -> dict:
    """Embed the collection under ``root`` (or the given ``items``), choose the subset and
    write the outputs into ``out``; returns the ``selection.json`` content."""
    cfg = cfg or DatasetSummaryConfig()
    problems: list[tuple[str, str]] = []
    if items is None:
        if root is None:
            raise ValueError("give a root folder/manifest or items")
        items, problems = collect_items(root, manifest)
    if not items:
        from seqnrl.errors import SeqNRLError

        raise SeqNRLError("no recordings found", root)
    encoder = encoder or load_encoder(ckpt, fallback_fps=cfg.fallback_fps)
    emb = embed_collection(items, encoder, max_frames=cfg.max_frames, motion_weight=cfg.motion_weight, progress=progress)
    picks = summarise_embedding(emb, cfg)
    extra = {"root": str(root) if root is not None else None, "checkpoint": str(ckpt) if ckpt else None}
    return write_outputs(Path(out), emb, picks, cfg, problems, extra)
