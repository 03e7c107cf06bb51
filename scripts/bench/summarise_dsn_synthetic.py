#!/usr/bin/env python
"""DSN on synthetic videos with known important segments: F-score vs uniform and random.

    python scripts/bench/summarise_dsn_synthetic.py [--n-train 40] [--n-test 20]
        [--epochs 30] [--budget 0.15] [--seed 0]

Each synthetic "video" is a per-frame feature sequence at 2 fps (what the summariser sees):
a walk through a few *recurring* scenes (the routine part of a scan: long, repetitive,
with drift and noise) interrupted by 2-4 short *events*, each a scene seen nowhere else in
the video (the important segments). A simulated calibrated anomaly score is high on the
events (plus noise and false alarms on some routine frames). Five simulated users make
reference summaries of about 15 %: every event (boundaries jittered) plus a short piece of
routine chosen differently by each user.

Methods, all through the same KTS shots and 15 % knapsack:

* ``dsn``: SummariserModule trained with REINFORCE on the training videos (diversity +
  representativeness, no labels), Lightning Trainer;
* ``dsn+normative``: the same trained with the normative reward, importance mixed with
  the score as in :mod:`seqnrl.summarise`;
* ``dsn per-video``: a policy fitted to each test video itself (no normative reward);
* ``per-video+norm.``: the pipeline's default, a per-video fit with the normative reward and
  importance = min-max(policy) + weight x score;
* ``score only``: importance = the anomaly score; ``uniform``: evenly spaced shots;
  ``random``: random shot scores (mean of 5 seeds).

Reported: F-score against the references, max over users (SumMe convention) and mean
over users (TVSum convention), with the knapsack valuing shots by mean importance (the
DSN convention, biased to many short shots) and by total importance. Writes ``bench_out/summarise_dsn_synthetic.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from scripts.bench._common import save  # noqa: E402
from seqnrl.metrics.summary import evaluate_summary  # noqa: E402
from seqnrl.models.summariser.module import SummariserModule, SummaryFeatureDataset, collate_videos  # noqa: E402
from seqnrl.models.summariser.net import fit_policy  # noqa: E402
from seqnrl.shots import kts_shots, select_shots  # noqa: E402

FPS = 2.0


def make_video(rng: np.random.Generator, dim: int = 64, n_users: int = 5, budget: float = 0.15) -> dict:
    n_scenes = int(rng.integers(3, 6))
    scenes = rng.normal(size=(n_scenes, dim))
    parts, is_event = [], []
    n_events = int(rng.integers(2, 5))
    n_routine = int(rng.integers(10, 16))
    kinds = ["r"] * n_routine
    for pos in rng.choice(np.arange(1, n_routine), size=n_events, replace=False):
        kinds.insert(int(pos), "e")
    prev = -1
    for kind in kinds:
        if kind == "e":
            length = int(rng.integers(5, 11))
            proto = rng.normal(size=dim)
            seg = proto + 0.15 * rng.normal(size=(length, dim))
        else:
            length = int(rng.integers(12, 31))
            s = int(rng.choice([i for i in range(n_scenes) if i != prev]))
            prev = s
            drift = np.cumsum(0.03 * rng.normal(size=(length, dim)), axis=0)
            seg = scenes[s] + drift + 0.3 * rng.normal(size=(length, dim))
        parts.append(seg)
        is_event.append(np.full(length, kind == "e"))
    x = np.concatenate(parts).astype(np.float32)
    ev = np.concatenate(is_event)
    t = len(x)
    # simulated calibrated score: high on events, false alarms on a few routine frames
    score = np.clip(rng.normal(0.4, 0.15, t), 0, 1)
    score[ev] = np.clip(rng.normal(0.85, 0.1, ev.sum()), 0, 1)
    fa = rng.choice(np.flatnonzero(~ev), size=max(1, t // 40), replace=False)
    score[fa] = np.clip(rng.normal(0.8, 0.1, len(fa)), 0, 1)
    # reference summaries
    users = np.zeros((n_users, t), dtype=np.uint8)
    edges = np.flatnonzero(np.diff(np.r_[0, ev.astype(int), 0])).reshape(-1, 2)
    for u in range(n_users):
        for a, b in edges:
            ja, jb = rng.integers(-1, 2, size=2)
            users[u, max(0, a + ja) : min(t, b + jb)] = 1
        room = int(budget * t) - int(users[u].sum())
        if room >= 3:
            start = int(rng.choice(np.flatnonzero(~ev)))
            users[u, start : min(t, start + room)] = 1
    return {"features": torch.from_numpy(x), "scores": torch.from_numpy(score.astype(np.float32)),
            "user_summary": users, "events": ev}


def shots_of(v: dict) -> np.ndarray:
    return kts_shots(v["features"].numpy(), fps=FPS, shot_seconds=2.5, min_shot_frames=2)


VALUES = ("mean", "sum")


def fscores(masks: dict[str, np.ndarray], refs: np.ndarray) -> list[float]:
    """[F max, F avg] for each knapsack value convention, in VALUES order."""
    out = []
    for v in VALUES:
        out += [evaluate_summary(masks[v], refs, "max")["f_score"], evaluate_summary(masks[v], refs, "avg")["f_score"]]
    return out


def minmax(x: np.ndarray) -> np.ndarray:
    return (x - x.min()) / (x.max() - x.min()) if x.max() > x.min() else np.zeros_like(x)


def train(videos: list[dict], normative_weight: float, epochs: int, seed: int, hidden: int) -> SummariserModule:
    pl.seed_everything(seed, verbose=False)
    ds = SummaryFeatureDataset([{"video_id": f"v{i}", "features": v["features"], "scores": v["scores"]}
                                for i, v in enumerate(videos)])
    model = SummariserModule(in_dim=int(videos[0]["features"].shape[1]), hidden=hidden, lr=3e-3,
                             normative_weight=normative_weight, target_rate=0.15, temporal_distance=20)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(ds, batch_size=1, shuffle=True, collate_fn=collate_videos))
    model.train_reward = float(trainer.callback_metrics.get("train/reward", float("nan")))
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-test", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--budget", type=float, default=0.15)
    ap.add_argument("--normative-weight", type=float, default=1.0)
    ap.add_argument("--per-video-steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench_out" / "summarise_dsn_synthetic.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    train_v = [make_video(rng, budget=args.budget) for _ in range(args.n_train)]
    test_v = [make_video(rng, budget=args.budget) for _ in range(args.n_test)]

    t0 = time.perf_counter()
    dsn = train(train_v, 0.0, args.epochs, args.seed, args.hidden)
    dsn_n = train(train_v, args.normative_weight, args.epochs, args.seed, args.hidden)
    train_s = time.perf_counter() - t0

    methods = ["dsn", "dsn+normative", "dsn per-video", "per-video+norm.", "score only", "uniform", "random"]
    res: dict[str, list[list[float]]] = {m: [] for m in methods}
    t1 = time.perf_counter()
    for i, v in enumerate(test_v):
        shots = shots_of(v)
        t = len(v["scores"])
        score = v["scores"].numpy()
        refs = v["user_summary"]

        def pick(importance: np.ndarray, shots: np.ndarray = shots) -> dict[str, np.ndarray]:
            return {val: select_shots(importance, shots, args.budget, value=val)[0] for val in VALUES}

        p = dsn.importance(v["features"]).numpy()
        res["dsn"].append(fscores(pick(p), refs))
        pn = dsn_n.importance(v["features"]).numpy()
        res["dsn+normative"].append(fscores(pick(minmax(pn) + args.normative_weight * score), refs))
        pol, _ = fit_policy(v["features"], steps=args.per_video_steps, seed=args.seed + i, hidden=args.hidden,
                            target_rate=args.budget)
        with torch.no_grad():
            pv = pol(v["features"])[0].numpy()
        res["dsn per-video"].append(fscores(pick(pv), refs))
        pol, _ = fit_policy(v["features"], v["scores"], steps=args.per_video_steps, seed=args.seed + i,
                            hidden=args.hidden, target_rate=args.budget, normative_weight=args.normative_weight)
        with torch.no_grad():
            pvn = pol(v["features"])[0].numpy()
        res["per-video+norm."].append(fscores(pick(minmax(pvn) + args.normative_weight * score), refs))
        res["score only"].append(fscores(pick(score), refs))
        lengths = shots[:, 1] - shots[:, 0]
        k = max(1, int(round(len(shots) * lengths.mean() / max(1.0, args.budget * t))))
        uni = np.zeros(t)
        for j in range(0, len(shots), k):
            uni[shots[j, 0] : shots[j, 1]] = 1.0
        res["uniform"].append(fscores(pick(uni), refs))
        rnd = []
        for s in range(5):
            r = np.random.default_rng(1000 * i + s)
            rnd.append(fscores(pick(np.repeat(r.uniform(size=len(shots)), lengths)), refs))
        res["random"].append(list(np.mean(rnd, axis=0)))
    eval_s = time.perf_counter() - t1

    keys = [f"{k}_{val}" for val in VALUES for k in ("f_max", "f_avg")]
    table = {m: dict(zip(keys, np.mean(np.array(v), axis=0).tolist())) for m, v in res.items()}
    print(f"\nsynthetic summarisation: {args.n_train} training / {args.n_test} test videos, budget "
          f"{args.budget:.0%}, KTS shots + knapsack; F-score vs 5 reference users "
          f"(max over users = SumMe, mean = TVSum)")
    hdr = f"{'method':<16} {'mean-value knapsack':>21} {'sum-value knapsack':>21}"
    print(hdr)
    print(f"{'':<16} {'F max':>10} {'F avg':>10} {'F max':>10} {'F avg':>10}")
    print("-" * len(hdr))
    for m in methods:
        t = table[m]
        print(f"{m:<16} {t['f_max_mean']:>10.3f} {t['f_avg_mean']:>10.3f} {t['f_max_sum']:>10.3f} {t['f_avg_sum']:>10.3f}")
    print(f"training {train_s:.0f} s ({args.epochs} epochs x 2 models), evaluation {eval_s:.0f} s; "
          f"final train reward dsn {dsn.train_reward:.3f}, dsn+normative {dsn_n.train_reward:.3f}")
    out = Path(args.out)
    save(out.stem, {"title": "DSN on synthetic videos with known important segments (F-score)",
                    "settings": vars(args), "table": table,
                    "per_video": {m: [list(x) for x in v] for m, v in res.items()}, "per_video_columns": keys,
                    "train_seconds": train_s, "eval_seconds": eval_s}, out.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
