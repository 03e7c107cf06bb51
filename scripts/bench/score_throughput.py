#!/usr/bin/env python
"""Cost of ``seqnrl score``: frames per second by stage on real clips, and time / memory by
input resolution.

    python scripts/bench/score_throughput.py --ckpt runs/demo/checkpoints/best.ckpt
        [--folder ../shared/data/lus/videos] [--threads 2] [--sizes 400 1000 2000 4000]

Part 1 (real clips, sector mask ``auto``, as ``seqnrl score`` runs them): for every clip,
the seconds spent decoding + converting to the model's input (``stream_windows``), detecting
the sector mask, and in the model; frames per second at the model's frame rate for each
stage and for all of them. Target (issue 21): >= 300 frames/s overall on 2 cores.

Part 2 (generated clips, 3 frames of a smooth pattern, H.264): one ``seqnrl score`` process
per native resolution; wall time and peak RSS of the whole process (GNU ``/usr/bin/time``;
a child forked from the benchmark would inherit its RSS high-water mark). Targets: a 4000x4000 clip within 2x the time per frame of a 400x400 one, and
peak RSS <= 1.5 GB for any input. Nothing here is chosen on data: it only measures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._common import REPO, SHARED_DATA, quiet_run, save, table  # noqa: E402


def stage_times(ckpt: str, folder: Path) -> list[dict]:
    from seqnrl import batch as B
    from seqnrl.intake.sector import apply_mask, resize_mask, sector_mask_for
    from seqnrl.io.video import probe_video, stream_windows
    from seqnrl.models.loading import load_model
    from seqnrl.score import MEDIA_SUFFIXES, ScoreConfig, preprocessing_from

    per_batch = ScoreConfig(out=Path(".")).batch_windows  # windows per forward pass, as seqnrl score
    model = load_model(ckpt)
    prep = preprocessing_from(model, None)
    rows = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES):
        info = probe_video(path)
        fps = prep.fps or info.fps
        t0 = time.perf_counter()
        mask = sector_mask_for(path, prep.sector_mask, cache=None)
        t_mask = time.perf_counter() - t0
        t_dec = t_model = 0.0
        n = 0
        model_mask = None
        it = stream_windows(path, prep.clip_len, prep.stride, fps=fps, size=prep.image_size, grayscale=prep.grayscale)
        done = False
        while not done:
            group = []
            t0 = time.perf_counter()
            while len(group) < per_batch:
                w = next(it, None)
                if w is None:
                    done = True
                    break
                group.append(w)
            t_dec += time.perf_counter() - t0
            if not group:
                break
            t0 = time.perf_counter()
            samples = []
            for w in group:
                frames = w.frames
                if mask.mask is not None:
                    model_mask = model_mask if model_mask is not None else resize_mask(mask.mask, tuple(frames.shape[-2:]))
                    frames = apply_mask(frames, model_mask)
                idx = torch.arange(w.start_index, w.start_index + frames.shape[1])
                samples.append(B.make_sample(frames, video_id="v", fps=fps, frame_index=idx))
                n = max(n, w.start_index + w.n_valid)
            with torch.no_grad():
                model.score_frames(B.collate(samples))
            t_model += time.perf_counter() - t0
        rows.append({"clip": path.name, "frames": n, "decode_s": t_dec, "mask_s": t_mask, "model_s": t_model})
    return rows


def resolution_rows(ckpt: str, sizes: list[int], threads: int) -> list[dict]:
    from seqnrl.io.write import write_video

    rows = []
    with tempfile.TemporaryDirectory() as d:
        for s in sizes:
            yy, xx = np.mgrid[0:s, 0:s]
            fr = np.stack([((np.sin(xx / (s / 20) + t) + np.cos(yy / (s / 27))) * 60 + 128).clip(0, 255).astype(np.uint8)
                           for t in range(3)])
            clip = write_video(Path(d) / f"c{s}.mp4", torch.from_numpy(fr)[None], 10.0)
            t0 = time.perf_counter()
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
            # one child per resolution, measured by GNU time: a child forked from this (large)
            # process inherits its RSS high-water mark, so wait4's ru_maxrss would report ours
            rss_file = Path(d) / f"rss{s}.txt"
            res = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), sys.executable, "-m", "seqnrl.cli",
                                  "score", str(clip), "--ckpt", ckpt, "--out", str(Path(d) / f"o{s}"), "--no-progress"],
                                 env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            rss = float(rss_file.read_text().split()[-1]) / 1024.0 if rss_file.is_file() else float("nan")
            rows.append({"resolution": f"{s}x{s}", "frames": 3, "wall_s": wall, "peak_rss_mb": rss,
                         "ok": res.returncode == 0})
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--folder", default=str(SHARED_DATA / "lus" / "videos"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 1000, 2000, 4000])
    ap.add_argument("--name", default="score_throughput")
    a = ap.parse_args(argv)
    quiet_run(a.threads)
    clips = stage_times(a.ckpt, Path(a.folder))
    tot = {k: sum(r[k] for r in clips) for k in ("frames", "decode_s", "mask_s", "model_s")}
    secs = tot["decode_s"] + tot["mask_s"] + tot["model_s"]
    stages = [
        {"stage": "decode + convert", "seconds": tot["decode_s"], "frames/s": tot["frames"] / tot["decode_s"]},
        {"stage": "sector mask (auto)", "seconds": tot["mask_s"], "frames/s": tot["frames"] / tot["mask_s"]},
        {"stage": "model", "seconds": tot["model_s"], "frames/s": tot["frames"] / tot["model_s"]},
        {"stage": "all (no output writing)", "seconds": secs, "frames/s": tot["frames"] / secs},
    ]
    print(f"{len(clips)} clips, {tot['frames']} frames at the model's rate\n" + table(stages))
    res_rows = resolution_rows(a.ckpt, a.sizes, a.threads)
    print("\n" + table(res_rows))
    result = {
        "title": "Scoring cost: frames per second by stage (real LUS clips) and by input resolution",
        "description": f"`seqnrl score` stages on {len(clips)} clips of {os.path.relpath(a.folder, REPO)} ({tot['frames']} frames at the "
                       f"model's rate, sector mask auto, checkpoint {Path(a.ckpt).name}); then one `seqnrl score` "
                       "process per resolution on a 3-frame H.264 clip (wall time includes start-up). Targets: >= 300 "
                       "frames/s overall; 4000x4000 within 2x the per-frame time of 400x400; peak RSS <= 1.5 GB.",
        "table": stages + [{"stage": f"resolution {r['resolution']}", "seconds": r["wall_s"],
                            "peak_rss_mb": r["peak_rss_mb"]} for r in res_rows],
        "clips": clips,
    }
    save(a.name, result)
    return result


if __name__ == "__main__":
    main()
