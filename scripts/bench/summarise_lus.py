#!/usr/bin/env python
"""Does a 15 % summary of a lung-ultrasound examination show every zone, and the sick one?

    python scripts/bench/summarise_lus.py [--lus ../shared/data/lus] [--budget 0.15]
        [--normative-weight 1.0] [--ckpt model.ckpt] [--fps 10] [--size 192]

For each patient pat1..pat3 the six zone clips (manifest order) are decoded at a common
rate and size (``read_video``) and concatenated into one recording (``write_video``); in
six more recordings per patient one zone is replaced by a pathological clip (label !=
normal; each patient sees all six pathological clips, each at a different position). Every
recording is analysed once (features + scores: ``--ckpt`` or the fallback) and summarised

* ``dsn``: DSN policy fitted to the recording, diversity + representativeness reward only,
  importance = policy probability (normative weight 0);
* ``dsn+normative``: the same with the normative reward and importance term (weight
  ``--normative-weight``);
* ``uniform``: evenly spaced shots (KTS shots, every k-th), ``random``: random shot scores
  through the same knapsack (mean of 5 seeds).

Reported: zone coverage (fraction of the six zones with at least one selected frame),
pathological recall (pathological zone selected at all) and the pathological zone's share
of the summary (its share of the recording is the chance level). Writes
``bench_out/summarise_lus.json``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.bench._common import save  # noqa: E402
from seqnrl.io.video import read_video  # noqa: E402
from seqnrl.io.write import write_video  # noqa: E402
from seqnrl.shots import select_shots  # noqa: E402
from seqnrl.summarise import (  # noqa: E402
    FallbackFeatures,
    NormativeFeatures,
    SummariseConfig,
    analyse_recording,
    load_normative_checkpoint,
    select_summary,
    summarise_recording,
)
from seqnrl.viz import plot_score_timeline  # noqa: E402

PATIENTS = ("pat1", "pat2", "pat3")


def read_manifest(root: Path) -> list[dict]:
    with open(root / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def build_recordings(root: Path, work: Path, fps: float, size: int) -> list[dict]:
    rows = read_manifest(root)
    path_clips = [r["file"] for r in rows if r["label"] != "normal"]
    zones = {p: [r["file"] for r in rows if r["patient"] == p] for p in PATIENTS}
    for p, z in zones.items():
        if len(z) != 6:
            raise SystemExit(f"{p}: expected 6 zone clips in the manifest, found {len(z)}")
    cache: dict[str, torch.Tensor] = {}

    def clip(name: str) -> torch.Tensor:
        if name not in cache:
            cache[name] = read_video(root / "videos" / name, fps=fps, size=size).frames
        return cache[name]

    recs = []
    work.mkdir(parents=True, exist_ok=True)
    for pi, p in enumerate(PATIENTS):
        for k in [None, *range(6)]:
            files = list(zones[p])
            if k is not None:
                files[k] = path_clips[(k + pi) % len(path_clips)]
            name = f"{p}_normal" if k is None else f"{p}_zone{k + 1}_{Path(files[k]).stem}"
            lengths = [clip(f).shape[1] for f in files]
            path = work / f"{name}.mp4"
            if not path.exists():
                write_video(path, torch.cat([clip(f) for f in files], dim=1), fps)
            recs.append({"name": name, "path": path, "patient": p, "path_zone": k, "files": files,
                         "bounds": np.cumsum([0, *lengths]).tolist()})
    return recs


def zone_metrics(mask: np.ndarray, bounds: list[int], path_zone: int | None) -> dict:
    n = min(len(mask), bounds[-1])
    mask = mask[:n]
    per_zone = [int(mask[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:])]
    out = {"coverage": float(np.mean([c > 0 for c in per_zone])), "frames_per_zone": per_zone}
    if path_zone is not None:
        a, b = bounds[path_zone], bounds[path_zone + 1]
        out["path_recall"] = float(per_zone[path_zone] > 0)
        out["path_share"] = per_zone[path_zone] / max(1, int(mask.sum()))
        out["path_chance"] = (b - a) / n
    return out


def uniform_mask(shots: np.ndarray, t: int, budget: float, value: str) -> np.ndarray:
    """Evenly spread shots: importance 1 on every k-th shot, knapsack under the budget."""
    lengths = shots[:, 1] - shots[:, 0]
    k = max(1, int(round(len(shots) * lengths.mean() / max(1.0, budget * t))))
    imp = np.zeros(t)
    for i in range(0, len(shots), k):
        imp[shots[i, 0] : shots[i, 1]] = 1.0
    return select_shots(imp, shots, budget, value=value)[0]


def random_masks(shots: np.ndarray, t: int, budget: float, value: str, seeds: int = 5) -> list[np.ndarray]:
    out = []
    for s in range(seeds):
        rng = np.random.default_rng(s)
        imp = np.repeat(rng.uniform(size=len(shots)), shots[:, 1] - shots[:, 0])
        out.append(select_shots(imp, shots, budget, value=value)[0])
    return out


def summarise_table(results: list[dict], methods: list[str]) -> dict:
    table = {}
    for m in methods:
        cov = [r[m]["coverage"] for r in results]
        rec = [r[m]["path_recall"] for r in results if "path_recall" in r[m]]
        share = [r[m]["path_share"] for r in results if "path_share" in r[m]]
        table[m] = {"zone_coverage": float(np.mean(cov)), "path_recall": float(np.mean(rec)) if rec else None,
                    "path_share": float(np.mean(share)) if share else None, "n_recordings": len(cov),
                    "n_pathological": len(rec)}
    chance = [r["dsn"]["path_chance"] for r in results if "path_chance" in r["dsn"]]
    table["_chance_path_share"] = float(np.mean(chance)) if chance else None
    return table


def example_figures(r: dict, cfg: SummariseConfig, model, out_dir: Path, tag: str) -> list[str]:
    """Summarise one examination with every output (summary.mp4, key frames, JSON) and draw
    the README pictures: its score timeline with zone boundaries and the key-frame sheet."""
    import shutil

    an, sel, _ = summarise_recording(r["path"], out_dir / r["name"], cfg, model)
    labels = np.zeros(an.n_frames)
    if r["path_zone"] is not None:
        labels[r["bounds"][r["path_zone"]] : r["bounds"][r["path_zone"] + 1]] = 1
    timeline = out_dir.parent / f"{tag}_timeline.png"
    plot_score_timeline(
        timeline, an.times, an.calibrated, labels=labels, selected=sel.mask, shots=np.array(r["bounds"][1:-1]),
        title=f"{r['name']}\nsix lung zones (dotted: zone boundaries), red: pathological zone, "
        f"green: the {cfg.budget:.0%} summary",
        ylabel="proxy score" if model is None else "calibrated anomaly score",
    )
    sheet = out_dir.parent / f"{tag}_keyframes.png"
    shutil.copy2(out_dir / r["name"] / "keyframes.png", sheet)
    return [str(timeline), str(sheet)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lus", default=str(REPO.parent / "shared" / "data" / "lus"))
    ap.add_argument("--budget", type=float, default=0.15)
    ap.add_argument("--normative-weight", type=float, default=1.0)
    ap.add_argument("--fps", type=float, default=10.0, help="common frame rate of the built recordings")
    ap.add_argument("--size", type=int, default=192, help="common frame side of the built recordings")
    ap.add_argument("--policy-steps", type=int, default=SummariseConfig.policy_steps)
    ap.add_argument("--shot-seconds", type=float, default=SummariseConfig.shot_seconds)
    ap.add_argument("--selection", default=SummariseConfig.selection, choices=["coverage", "knapsack"])
    ap.add_argument("--shot-value", default=SummariseConfig.shot_value, choices=["sum", "mean"])
    ap.add_argument("--ckpt", default=None, help="normative model checkpoint (default: fallback features)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=str(REPO / "bench_out" / "lus_work"))
    ap.add_argument("--out", default=str(REPO / "bench_out" / "summarise_lus.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.lus)
    if not (root / "manifest.csv").is_file():
        raise SystemExit(f"no LUS data at {root} (expected manifest.csv and videos/)")

    t0 = time.perf_counter()
    recs = build_recordings(root, Path(args.work) / f"{args.size}px_{args.fps:g}fps", args.fps, args.size)
    build_s = time.perf_counter() - t0
    model = load_normative_checkpoint(args.ckpt) if args.ckpt else None
    base = SummariseConfig(budget=args.budget, fps=args.fps, policy_steps=args.policy_steps, seed=args.seed,
                           shot_seconds=args.shot_seconds, shot_value=args.shot_value, selection=args.selection)
    cfgs = {"dsn": replace(base, normative_weight=0.0),
            "dsn+normative": replace(base, normative_weight=args.normative_weight)}
    other = "knapsack" if args.selection == "coverage" else "coverage"
    cfgs[f"dsn+normative ({other})"] = replace(base, normative_weight=args.normative_weight, selection=other)
    methods = [*cfgs, "uniform", "random"]
    results = []
    t1 = time.perf_counter()
    for i, r in enumerate(recs):
        src = FallbackFeatures(args.fps) if model is None else NormativeFeatures(model, args.fps)
        an = analyse_recording(r["path"], src)
        row = {"name": r["name"], "patient": r["patient"], "path_zone": r["path_zone"], "files": r["files"]}
        for m, cfg in cfgs.items():
            sel = select_summary(an, cfg)
            row[m] = zone_metrics(sel.mask, r["bounds"], r["path_zone"])
            row[m]["summary_fraction"] = float(sel.mask.mean())
            row[m]["n_segments"] = int(len(sel.segments))
        row["uniform"] = zone_metrics(uniform_mask(sel.shots, an.n_frames, args.budget, args.shot_value), r["bounds"], r["path_zone"])
        rnd = [zone_metrics(m, r["bounds"], r["path_zone"]) for m in random_masks(sel.shots, an.n_frames, args.budget, args.shot_value)]
        row["random"] = {k: float(np.mean([x[k] for x in rnd])) for k in rnd[0] if k != "frames_per_zone"}
        cal = an.calibrated
        if r["path_zone"] is not None:
            a, b = r["bounds"][r["path_zone"]], r["bounds"][r["path_zone"] + 1]
            row["score_path_zone"] = float(np.nanmean(cal[a:b]))
            row["score_other_zones"] = float(np.nanmean(np.r_[cal[:a], cal[b:]]))
        results.append(row)
        print(f"[{i + 1}/{len(recs)}] {r['name']:<55} cov dsn {row['dsn']['coverage']:.2f} "
              f"norm {row['dsn+normative']['coverage']:.2f}"
              + (f"  path recall dsn {row['dsn']['path_recall']:.0f} norm {row['dsn+normative']['path_recall']:.0f}"
                 if r["path_zone"] is not None else ""), flush=True)
    run_s = time.perf_counter() - t1
    table = summarise_table(results, methods)
    feat = "checkpoint " + args.ckpt if args.ckpt else "fallback (per-recording PCA + proxy score)"
    print(f"\nLUS examinations: {len(recs)} recordings ({sum(r['path_zone'] is not None for r in recs)} with a "
          f"pathological zone), budget {args.budget:.0%}, features: {feat}")
    hdr = f"{'method':<30} {'zone coverage':>13} {'path. recall':>12} {'path. share':>11}"
    print(hdr)
    print("-" * len(hdr))
    for m in methods:
        t = table[m]
        print(f"{m:<30} {t['zone_coverage']:>13.3f} {t['path_recall']:>12.3f} {t['path_share']:>11.3f}")
    print(f"{'(chance share)':<30} {'':>13} {'':>12} {table['_chance_path_share']:>11.3f}")
    sp = [r["score_path_zone"] for r in results if "score_path_zone" in r]
    so = [r["score_other_zones"] for r in results if "score_other_zones" in r]
    print(f"mean calibrated score: pathological zone {np.mean(sp):.3f}, other zones {np.mean(so):.3f}")
    print(f"build {build_s:.0f} s, analyse + select {run_s:.0f} s")
    out = Path(args.out)
    example = next(r for r in recs if r["patient"] == "pat1" and r["path_zone"] == 2)
    figures = example_figures(example, cfgs["dsn+normative"], model, out.parent / f"{out.stem}_example", out.stem)
    save(out.stem, {"title": f"Lung-ultrasound examination summaries, {'learned encoder' if args.ckpt else 'fallback'} features (target: every zone and the pathological clip)",
                    "description": f"{len(recs)} examinations built from six zone clips of pat1..pat3 (18 with one zone "
                    f"replaced by a pathological clip), {args.budget:.0%} budget, features: {feat}, selection: "
                    f"{args.selection}. zone_coverage: fraction of zones with a selected frame; path_recall: "
                    "pathological zone selected; path_share: its share of the summary (chance: its share of the "
                    "recording).",
                    "settings": vars(args), "feature_source": feat, "selection": args.selection, "figures": figures,
                    "table": table, "recordings": results, "build_seconds": build_s, "run_seconds": run_s,
                    "mean_score_path_zone": float(np.mean(sp)), "mean_score_other_zones": float(np.mean(so))},
         out.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
