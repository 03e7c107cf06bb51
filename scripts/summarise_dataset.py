#!/usr/bin/env python
"""Pick a small representative subset of a collection of recordings.

    python scripts/summarise_dataset.py ROOT --budget N --out DIR [--ckpt model.ckpt]
        [--per-class] [--method community|kcenter] [--data configs/data/lus.yaml]

ROOT: a folder with a ``manifest.csv`` (columns ``file``, optional ``label``, ``patient``;
files under ROOT or ROOT/videos), a manifest CSV, or a folder of videos / frame folders
(sub-folder names become labels). With ``--data`` the recordings come from a seqnrl data
module config (its ``class_path`` must be in ``data_modules`` or ``seqnrl``) and ROOT may
be omitted.

Every recording is embedded (normative-encoder features with ``--ckpt``; otherwise a
clearly labelled pixel-PCA fallback) with a motion descriptor, a kNN graph per class is
split into Louvain communities and the most central recording of each is kept (largest
communities first; split or k-center fill when there are fewer communities than budget).
Writes selection.csv, selection.json (reasons, coverage, unreadable files), embedding.png,
contact_sheet.png and embeddings.npz into DIR. Exit code 1 when some files were skipped.

``--evaluate classification|regression`` also trains a small model on the summary, on a
k-center subset, on a random subset of the same size and on all data (group folds by
patient, ``--eval-seeds``) and writes evaluation.json / evaluation.md: classification
targets are normal (0) vs anything else (1) from ``--target-column`` (default ``label``),
regression targets the column's numbers (e.g. ``ef``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
from pathlib import Path

import torch

from seqnrl.dataset_summary.embed import (
    collect_items,
    embed_collection,
    items_from_datamodule,
    load_encoder,
)
from seqnrl.dataset_summary.pipeline import (
    DatasetSummaryConfig,
    evaluate_collection,
    summarise_embedding,
    write_outputs,
)
from seqnrl.errors import ConfigError, SeqNRLError


def datamodule_from_yaml(path: str):
    import yaml

    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    spec = spec.get("data", spec) if isinstance(spec, dict) else spec
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ConfigError("expected a data config with class_path/init_args", path)
    cls_path = str(spec["class_path"])
    if not cls_path.startswith(("data_modules.", "seqnrl.")):
        raise ConfigError(f"refusing data module class {cls_path!r} outside data_modules/seqnrl", path)
    mod, _, name = cls_path.rpartition(".")
    cls = getattr(importlib.import_module(mod), name)
    return cls(**(spec.get("init_args") or {}))


def _target(item, column: str, task: str) -> float:
    value = item.label if column == "label" else item.fields.get(column, "")
    if task == "classification":
        from data_modules.folder import parse_label

        return float(parse_label(value))
    try:
        return float(value)
    except ValueError:
        return float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = DatasetSummaryConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default=None, help="folder, folder with manifest.csv, or manifest CSV")
    p.add_argument("--budget", type=int, required=True, help="recordings to keep (overall, or per class with --per-class)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--ckpt", default=None, help="normative model checkpoint (else the pixel-PCA fallback)")
    p.add_argument("--per-class", action="store_true", help="budget per class/label instead of overall")
    p.add_argument("--no-labels", action="store_true", help="ignore labels: one graph for the whole collection")
    p.add_argument("--method", choices=("community", "kcenter"), default=d.method)
    p.add_argument("--community-method", choices=("louvain", "label_propagation", "greedy_modularity"), default=d.community_method)
    p.add_argument("--centrality", choices=("degree", "closeness", "medoid"), default=d.centrality)
    p.add_argument("--overflow", choices=("largest", "merge"), default=d.overflow,
                   help="more communities than budget: keep the largest, or merge the most similar")
    p.add_argument("--k", type=int, default=d.k, help="neighbours per item in the kNN graph")
    p.add_argument("--resolution", type=float, default=d.resolution, help="Louvain resolution (>1: more, smaller communities)")
    p.add_argument("--motion-weight", type=float, default=d.motion_weight, help="share of the motion descriptor in the embedding")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="frames decoded per recording (spread over it)")
    p.add_argument("--fps", type=float, default=d.fallback_fps, help="analysis rate (a checkpoint's recorded fps wins)")
    p.add_argument("--manifest", default="manifest.csv", help="manifest file name inside ROOT")
    p.add_argument("--data", default=None, help="data module YAML (class_path/init_args) instead of ROOT")
    p.add_argument("--evaluate", choices=("classification", "regression"), default=None,
                   help="also compare summary vs k-center vs random vs all on a downstream task")
    p.add_argument("--target-column", default="label", help="manifest column of the downstream target")
    p.add_argument("--eval-model", choices=("logreg", "mlp", "ridge"), default=None)
    p.add_argument("--eval-seeds", type=int, default=5, help="seeds 0..N-1 of the comparison")
    p.add_argument("--eval-folds", type=int, default=4, help="group (patient) folds")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = DatasetSummaryConfig(
        budget=args.budget, per_class=args.per_class, method=args.method, community_method=args.community_method,
        centrality=args.centrality, k=args.k, resolution=args.resolution, motion_weight=args.motion_weight,
        max_frames=args.max_frames, fallback_fps=args.fps, seed=args.seed, use_labels=not args.no_labels,
        overflow=args.overflow,
    )
    try:
        problems: list = []
        if args.data:
            items = items_from_datamodule(datamodule_from_yaml(args.data))
        elif args.root is not None:
            items, problems = collect_items(args.root, args.manifest)
        else:
            raise ConfigError("give ROOT or --data")
        if not items:
            raise ConfigError("no recordings found", args.root)
        encoder = load_encoder(args.ckpt, fallback_fps=cfg.fallback_fps)
        emb = embed_collection(items, encoder, max_frames=cfg.max_frames, motion_weight=cfg.motion_weight,
                               progress=not args.no_progress)
        picks = summarise_embedding(emb, cfg)
        command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
        extra = {"root": args.root, "checkpoint": args.ckpt, "data_config": args.data, "command": command}
        res = write_outputs(Path(args.out), emb, picks, cfg, problems, extra)
        if args.evaluate:
            target = [_target(v.item, args.target_column, args.evaluate) for v in emb.videos]
            ev = evaluate_collection(emb, target, cfg, args.out, task=args.evaluate, model=args.eval_model,
                                     seeds=range(args.eval_seeds), n_folds=args.eval_folds,
                                     extra={"command": command})
            print(Path(args.out, "evaluation.md").read_text(), file=sys.stderr)
            res["evaluation"] = ev
    except SeqNRLError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 2
    for f in res["failed"]:
        print(f"SKIPPED {f['path']}: {f['reason']}", file=sys.stderr)
    feats = "FALLBACK pixel-PCA features" if res["fallback_features"] else "checkpoint features"
    print(f"{len(res['picks'])} of {res['n_items']} recordings chosen ({feats}); "
          f"max distance to nearest pick {res['coverage']['max_distance']:.3f} -> {args.out}", file=sys.stderr)
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
