#!/usr/bin/env python
"""Throughput and memory of the summarisation pipeline on 1-minute and 10-minute recordings.

    python scripts/bench/summarise_throughput.py [--lus ../shared/data/lus] [--minutes 1 10]
        [--size 320] [--rate 25] [--ckpt model.ckpt] [--work bench_out/throughput_work]

The recordings are built from the lung-ultrasound clips: clips of pat1..pat3 are decoded at
``--rate`` fps and ``--size`` px and encoded one after another (H.264, streamed) into a
1-minute recording; longer recordings loop that file by stream copy (no re-encoding).
Every measurement runs in its own subprocess, in this run, on the same files:

* ``decode``: plain PyAV decoding of every frame to an RGB array (``thread_type=AUTO``),
  the floor any video consumer pays;
* ``io``: :func:`seqnrl.io.iter_frames` at the analysis rate doing nothing else (the
  floor of any pipeline reading through ``seqnrl.io``);
* ``summarise``: :func:`seqnrl.summarise.summarise_recording` with all outputs written.

Each length is measured ``--repeats`` times (decode, io, summarise in turn); reported are
medians: frames/s (source frames), x real time, the median of the per-round ratios to plain
decoding, and the peak RSS of each subprocess (largest over the rounds) (``VmHWM`` from ``/proc/self/status``, cross-checked with
``getrusage(RUSAGE_CHILDREN)``). Targets: >= 20x real time, >= 0.5x decode speed,
RSS(10 min) <= 1.2 x RSS(1 min). Writes ``bench_out/summarise_throughput.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.bench._common import save  # noqa: E402
from seqnrl.io.video import iter_frames, probe_video  # noqa: E402
from seqnrl.io.write import write_video_stream  # noqa: E402

DECODE_CHILD = r"""
import json, sys, time, av
t0 = time.perf_counter(); n = 0
with av.open(sys.argv[1]) as c:
    s = c.streams.video[0]; s.thread_type = "AUTO"
    for f in c.decode(s):
        f.to_ndarray(format="rgb24"); n += 1
dt = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"frames": n, "seconds": dt, "vmhwm_kb": int(hwm)}))
"""

IO_CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
from seqnrl.io.video import iter_frames
t0 = time.perf_counter(); n = 0
for _ in iter_frames(sys.argv[1], fps=float(sys.argv[2])):
    n += 1
dt = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"frames": n, "seconds": dt, "vmhwm_kb": int(hwm)}))
"""

SUMMARISE_CHILD = r"""
import json, sys, time
t_start = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[4]))
from seqnrl.summarise import SummariseConfig, summarise_recording, load_normative_checkpoint
cfg = SummariseConfig(**json.loads(sys.argv[3]))
model = load_normative_checkpoint(sys.argv[5]) if sys.argv[5] else None
t0 = time.perf_counter()
an, sel, rec = summarise_recording(sys.argv[1], sys.argv[2], cfg, model)
dt = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": dt, "seconds_with_startup": time.perf_counter() - t_start,
                  "analysed_frames": an.n_frames, "vmhwm_kb": int(hwm), "timings": rec["timings"],
                  "n_segments": rec["n_segments"], "summary_s": rec["summary_s"]}))
"""


def build_base(lus: Path, out: Path, seconds: float, rate: float, size: int) -> Path:
    """Concatenate pat1..pat3 zone clips (looping them) into ``seconds`` of video."""
    if out.exists():
        return out
    with open(lus / "manifest.csv", newline="") as f:
        clips = [lus / "videos" / r["file"] for r in csv.DictReader(f) if r["patient"] in ("pat1", "pat2", "pat3")]
    if not clips:
        raise SystemExit(f"no pat1..pat3 clips in {lus}/manifest.csv")
    n_target = int(round(seconds * rate))

    def frames():
        n = 0
        while True:
            for c in clips:
                for _, fr in iter_frames(c, fps=rate, size=size):
                    yield np.ascontiguousarray(fr.permute(1, 2, 0).numpy())
                    n += 1
                    if n >= n_target:
                        return

    out.parent.mkdir(parents=True, exist_ok=True)
    write_video_stream(out, frames(), rate, (size, size), crf=23)
    return out


def loop_file(src: Path, out: Path, times: int) -> Path:
    """``times`` copies of ``src`` one after another, by packet copy (no re-encoding)."""
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp.mp4")
    with av.open(str(src)) as probe:
        s = probe.streams.video[0]
        span = None
        for p in probe.demux(s):
            if p.pts is not None and p.duration:
                end = p.pts + p.duration
                span = end if span is None else max(span, end)
    with av.open(str(tmp), "w") as dst:
        with av.open(str(src)) as first:
            ostream = dst.add_stream_from_template(first.streams.video[0])
        for k in range(times):
            with av.open(str(src)) as c:
                istream = c.streams.video[0]
                for p in c.demux(istream):
                    if p.dts is None:
                        continue
                    p.pts += k * span
                    p.dts += k * span
                    p.stream = ostream
                    dst.mux(p)
    os.replace(tmp, out)
    return out


def child(code: str, *args: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"child failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res["ru_maxrss_children_kb"] = after if after > before else None  # only meaningful when it grew
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lus", default=str(REPO.parent / "shared" / "data" / "lus"))
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    ap.add_argument("--rate", type=float, default=25.0, help="frame rate of the built recordings")
    ap.add_argument("--size", type=int, default=320, help="frame side of the built recordings")
    ap.add_argument("--fps", type=float, default=10.0, help="analysis rate of the pipeline")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the pipeline (FFmpeg decodes with its own threads)")
    ap.add_argument("--ckpt", default="", help="normative checkpoint (default: fallback features)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="decode / io / summarise runs in turn, this many times; medians are reported and the "
                    "ratio to decode is the median of the per-round ratios (robust to a busy machine)")
    ap.add_argument("--work", default=str(REPO / "bench_out" / "throughput_work"))
    ap.add_argument("--out", default=str(REPO / "bench_out" / "summarise_throughput.json"))
    args = ap.parse_args(argv)

    work = Path(args.work)
    t0 = time.perf_counter()
    base = build_base(Path(args.lus), work / f"rec_1min_{args.size}px_{args.rate:g}fps.mp4", 60.0, args.rate, args.size)
    build_s = time.perf_counter() - t0
    cfg = {"fps": args.fps}
    rows = []
    for minutes in args.minutes:
        k = int(round(minutes))
        path = base if k == 1 else loop_file(base, work / f"rec_{k}min_{args.size}px_{args.rate:g}fps.mp4", k)
        info = probe_video(path)
        out_dir = work / f"out_{k}min"
        rounds = []
        for _ in range(max(1, args.repeats)):  # in turn, so a busy spell hits all three alike
            d = child(DECODE_CHILD, str(path))
            i = child(IO_CHILD, str(path), str(args.fps), str(args.threads))
            s_ = child(SUMMARISE_CHILD, str(path), str(out_dir), json.dumps(cfg), str(args.threads), args.ckpt)
            rounds.append((d, i, s_))
        ratios = [d["seconds"] / s_["seconds"] for d, _, s_ in rounds]
        mid = sorted(range(len(rounds)), key=lambda j: rounds[j][2]["seconds"])[len(rounds) // 2]
        dec = dict(rounds[mid][0], seconds=float(np.median([d["seconds"] for d, _, _ in rounds])))
        io_only = dict(rounds[mid][1], seconds=float(np.median([i["seconds"] for _, i, _ in rounds])))
        summ = dict(rounds[mid][2], seconds=float(np.median([s_["seconds"] for _, _, s_ in rounds])),
                    vmhwm_kb=max(s_["vmhwm_kb"] for _, _, s_ in rounds))
        fps_dec = dec["frames"] / dec["seconds"]
        fps_sum = dec["frames"] / summ["seconds"]
        rows.append({
            "minutes": minutes,
            "file": str(path),
            "duration_s": info.duration,
            "source_frames": dec["frames"],
            "size": [info.height, info.width],
            "decode_fps": fps_dec,
            "decode_x_realtime": info.duration / dec["seconds"],
            "decode_rss_mb": dec["vmhwm_kb"] / 1024,
            "io_iter_frames_s": io_only["seconds"],
            "io_ratio_to_decode": dec["seconds"] / io_only["seconds"],
            "summarise_s": summ["seconds"],
            "summarise_s_with_startup": summ["seconds_with_startup"],
            "summarise_fps": fps_sum,
            "x_realtime": info.duration / summ["seconds"],
            "ratio_to_decode": float(np.median(ratios)),
            "ratio_to_decode_rounds": ratios,
            "summarise_s_rounds": [s_["seconds"] for _, _, s_ in rounds],
            "decode_s_rounds": [d["seconds"] for d, _, _ in rounds],
            "rss_mb": summ["vmhwm_kb"] / 1024,
            "ru_maxrss_children_mb": (summ["ru_maxrss_children_kb"] or 0) / 1024 or None,
            "stage_timings": summ["timings"],
            "n_segments": summ["n_segments"],
            "summary_s": summ["summary_s"],
        })
    by_min = {r["minutes"]: r for r in rows}
    rss_ratio = by_min[10]["rss_mb"] / by_min[1]["rss_mb"] if 1 in by_min and 10 in by_min else None
    targets = {
        "x_realtime>=20": all(r["x_realtime"] >= 20 for r in rows),
        "ratio_to_decode>=0.5": all(r["ratio_to_decode"] >= 0.5 for r in rows),
        "rss_10min<=1.2*rss_1min": None if rss_ratio is None else rss_ratio <= 1.2,
    }
    print(f"\nsummarise throughput ({args.size}x{args.size} @ {args.rate:g} fps source, analysis {args.fps:g} fps, "
          f"{'checkpoint ' + args.ckpt if args.ckpt else 'fallback features'}, {args.threads} threads)")
    hdr = (f"{'length':>7} {'frames':>7} {'decode fps':>10} {'io fps':>7} {'summ. fps':>9} {'x realtime':>10} "
           f"{'/decode':>7} {'RSS MB':>7} {'dec RSS':>7}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['minutes']:>5g} m {r['source_frames']:>7d} {r['decode_fps']:>10.0f} "
              f"{r['source_frames'] / r['io_iter_frames_s']:>7.0f} {r['summarise_fps']:>9.0f} "
              f"{r['x_realtime']:>10.1f} {r['ratio_to_decode']:>7.2f} {r['rss_mb']:>7.0f} {r['decode_rss_mb']:>7.0f}")
    if rss_ratio is not None:
        print(f"RSS(10 min) / RSS(1 min) = {rss_ratio:.3f}")
    print("targets:", ", ".join(f"{k}: {'met' if v else 'MISSED' if v is not None else 'n/a'}" for k, v in targets.items()))
    out = Path(args.out)
    table = [{"length": f"{r['minutes']:g} min", "frames/s": r["summarise_fps"], "x real time": r["x_realtime"],
              "ratio to decode": r["ratio_to_decode"], "decode frames/s": r["decode_fps"], "peak RSS MB": r["rss_mb"]}
             for r in rows]
    save(out.stem, {
        "title": "Summarisation throughput and memory (targets: >= 20x real time, >= 0.5x decode, RSS ratio <= 1.2)",
        "description": f"{args.size}x{args.size} H.264 at {args.rate:g} fps built from the LUS clips; analysis at "
        f"{args.fps:g} fps; {'checkpoint ' + args.ckpt if args.ckpt else 'fallback features'}; all outputs written. "
        f"RSS(10 min) / RSS(1 min) = {rss_ratio if rss_ratio is None else round(rss_ratio, 3)}; targets: "
        + ", ".join(f"{k} {'met' if v else 'MISSED' if v is not None else 'n/a'}" for k, v in targets.items()),
        "table": table,
        "settings": vars(args),
        "build_seconds": build_s,
        "rows": rows,
        "rss_ratio_10_to_1": rss_ratio,
        "targets": targets,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "av": av.__version__,
                    "load_avg_at_end": os.getloadavg()},
        "notes": "x realtime and fps exclude interpreter start-up (summarise_s_with_startup includes it); "
                 "decode = PyAV decode + to_ndarray(rgb24) of every frame, thread_type AUTO; "
                 "io = seqnrl.io.iter_frames at the analysis rate, nothing else; fps columns count source frames.",
    }, out.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())

