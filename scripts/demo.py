#!/usr/bin/env python
"""The last stage of ``make demo``: summarise, then print what the demo measured.

    python scripts/demo.py [--run-dir runs/demo] [--out outputs/demo] [--lus-clip FILE]
                           [--no-lus] [--publish]

``make demo`` runs ``seqnrl fit`` and ``seqnrl predict`` with ``configs/demo.yaml`` first
(the normative spatiotemporal transformer on synthetic echo; per-frame calibrated scores of
the held-out test recordings in ``outputs/demo/scores/``). This script then

1. writes one held-out synthetic echo recording (10 s, a seed the model never saw, an
   acoustic-dropout episode in seconds 4-6) to ``outputs/demo/recordings/`` and summarises it
   with the trained checkpoint, and summarises one real lung-ultrasound clip from
   ``../shared/data/lus`` with the fallback features (the demo model knows synthetic echo,
   not lung ultrasound; see ``docs/intake.md``), both through
   ``scripts/summarise_recordings.py`` exactly as a user would call it;
2. prints a short table (frame and video AUROC of the held-out recordings, the alarm
   threshold at the model's target false-positive rate and the false-positive rate it
   actually gives on the held-out *normal* recordings, where the outputs are) and the list of
   files to open; writes the same as ``outputs/demo/demo_report.json``.

``--publish`` also writes ``docs/results/demo.json`` and the timeline figure to
``docs/figures/`` (what the README's quick start shows; maintainers only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LUS = REPO.parent / "shared" / "data" / "lus" / "videos" / "Pneu_prospective_file3.mp4"
RECORDING_SEED = 990_001  # not a seed of the demo's data module (train/val/test use 0..~300k)
DROPOUT_SPAN_S = (4.0, 6.0)


def write_recording(out: Path, seconds: float = 10.0, fps: float = 30.0, size: int = 64) -> tuple[Path, dict]:
    from seqnrl.data.synthetic_echo import make_echo
    from seqnrl.io.write import write_video

    n = int(round(seconds * fps))
    span = (int(DROPOUT_SPAN_S[0] * fps), int(DROPOUT_SPAN_S[1] * fps))
    clip = make_echo(RECORDING_SEED, n_frames=n, size=size, fps=fps, anomaly="dropout", anomaly_span=span)
    path = out / "recordings" / "synthetic_echo_dropout.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, clip.video, fps)
    return path, {"anomaly": "dropout", "span_s": list(DROPOUT_SPAN_S), "seconds": seconds, "fps": fps}


def summarise(inputs: list[Path], out: Path, ckpt: Path | None, fps: float | None = None) -> int:
    cmd = [sys.executable, str(REPO / "scripts" / "summarise_recordings.py"), *map(str, inputs), "--out", str(out),
           "--overwrite", *(["--fps", f"{fps:g}"] if fps else [])]
    if ckpt is not None:
        cmd += ["--ckpt", str(ckpt)]
    print("$ " + " ".join(Path(c).name if c == sys.executable else c for c in cmd), flush=True)
    return subprocess.run(cmd).returncode


def score_report(scores_dir: Path) -> dict:
    """Metrics of the held-out recordings from ``seqnrl predict``'s ``scores_summary.json`` and
    the false-positive rate of the checkpoint's threshold on its normal recordings."""
    summary = json.loads((scores_dir / "scores_summary.json").read_text())
    m = summary["metrics"]
    videos = [v for v in summary["inputs"] if not v.get("from_earlier_run")]
    normal = [v for v in videos if v["label"] == 0]
    above = sum(v["frames_above_threshold"] or 0 for v in normal)
    total = sum(v["n_frames"] for v in normal)
    return {
        "n_recordings": len(videos),
        "n_abnormal": sum(v["label"] == 1 for v in videos),
        "frame_auroc": m.get("frame_auroc_micro"),
        "frame_auroc_macro": m.get("frame_auroc_macro"),
        "video_auroc": m.get("video_auroc"),
        "target_fpr": summary["calibration"]["target_fpr"],
        "threshold_calibrated": summary["calibration"]["threshold_calibrated"],
        "threshold_raw": summary["calibration"]["threshold_raw"],
        "fpr_on_normal_recordings": above / total if total else None,
    }


def summary_report(folder: Path) -> dict | None:
    f = folder / "summary.json"
    if not f.is_file():
        return None
    s = json.loads(f.read_text())
    return {k: s.get(k) for k in ("duration_s", "summary_s", "summary_fraction", "n_segments")
            if k in s} | {"folder": str(folder)}


def covered(summary_json: Path, span_s: list[float]) -> float | None:
    """Share of the known anomalous span that the summary's segments cover."""
    if not summary_json.is_file():
        return None
    segs = json.loads(summary_json.read_text()).get("segments") or []
    a, b = span_s
    cov = 0.0
    for s in segs:  # the summariser's segments: {"start_s", "end_s", ...}
        cov += max(0.0, min(s["end_s"], b) - max(s["start_s"], a))
    return cov / (b - a)


def table(rows: list[tuple[str, str]]) -> str:
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(w)}  {v}" for k, v in rows)


def fmt(v, spec=".3f") -> str:
    return "–" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/demo")
    ap.add_argument("--out", default="outputs/demo")
    ap.add_argument("--lus-clip", default=str(DEFAULT_LUS))
    ap.add_argument("--no-lus", action="store_true", help="skip the real lung-ultrasound clip")
    ap.add_argument("--publish", action="store_true", help="write docs/results/demo.json (maintainers)")
    a = ap.parse_args(argv)
    out, run = Path(a.out), Path(a.run_dir)
    ckpt = run / "checkpoints" / "best.ckpt"
    scores = out / "scores"
    for need, what in ((ckpt, "seqnrl fit --config configs/demo.yaml"),
                       (scores / "scores_summary.json", "seqnrl predict --config configs/demo.yaml --ckpt_path " + str(ckpt))):
        if not need.is_file():
            print(f"demo: {need} is missing: run `{what}` first (make demo runs every step)", file=sys.stderr)
            return 2

    print("\n[demo 3/3] summaries: a held-out synthetic echo recording (with the checkpoint) and a real "
          "lung-ultrasound clip (fallback features)", flush=True)
    rec, rec_info = write_recording(out)
    summaries = out / "summaries"
    # the demo model was trained at the generator's 30 fps (configs/demo.yaml resamples nothing)
    rc = summarise([rec], summaries, ckpt, fps=rec_info["fps"])
    lus = Path(a.lus_clip)
    lus_rc = None
    if not a.no_lus:
        if lus.is_file():
            lus_rc = summarise([lus], summaries, None)
        else:
            print(f"demo: {lus} not found (../shared/data beside the checkout); the LUS summary is skipped")

    rep = score_report(scores)
    syn = summary_report(summaries / rec.stem)
    lus_rep = summary_report(summaries / lus.stem) if lus_rc is not None else None
    cov = covered(summaries / rec.stem / "summary.json", rec_info["span_s"])
    report = {"scores": rep, "synthetic_recording": {**rec_info, "summary": syn, "anomalous_span_covered": cov},
              "lus_clip": {"file": lus.name, "summary": lus_rep} if lus_rep else None,
              "checkpoint": str(ckpt), "outputs": str(out)}
    from seqnrl.io.atomic import write_json

    write_json(out / "demo_report.json", report)
    rows = [
        ("held-out synthetic recordings", f"{rep['n_recordings']} ({rep['n_abnormal']} with an anomaly)"),
        ("frame AUROC (pooled, global scale)", fmt(rep["frame_auroc"])),
        ("video AUROC", fmt(rep["video_auroc"])),
        ("alarm threshold (calibrated)", f"{fmt(rep['threshold_calibrated'])} for a {rep['target_fpr']:.0%} false-positive target"),
        ("false-positive rate on held-out normals", fmt(rep["fpr_on_normal_recordings"])),
        ("synthetic summary", f"{fmt((syn or {}).get('summary_s'), '.1f')} s of {fmt((syn or {}).get('duration_s'), '.1f')} s; "
                              f"dropout episode covered {fmt(cov, '.0%')}"),
    ]
    if lus_rep:
        rows.append(("LUS clip summary", f"{lus.name}: {fmt(lus_rep.get('summary_s'), '.1f')} s of "
                                         f"{fmt(lus_rep.get('duration_s'), '.1f')} s (fallback features)"))
    print("\nseqnrl demo: normative spatiotemporal transformer on synthetic echo\n" + table(rows))
    opens = [scores / "summary.json", scores / "echo_test_000.png", summaries / "index.md",
             summaries / rec.stem, *([summaries / lus.stem] if lus_rep else []), out / "demo_report.json"]
    print("\nopen these files:\n" + "\n".join(f"  {p}" for p in opens if p.exists()))
    if a.publish:
        publish(report, rows)
    return 0 if rc == 0 and lus_rc in (None, 0) else 1


def publish(report: dict, rows: list[tuple[str, str]]) -> None:
    sys.path.insert(0, str(REPO))
    from scripts.bench._common import FIGURES_DIR, RESULTS_DIR, environment
    from seqnrl.io.atomic import write_json

    timeline = Path(report["synthetic_recording"]["summary"]["folder"]) / "timeline.png"
    figs = []
    if timeline.is_file():  # calibrated score of the 10-s recording and the frames its summary kept
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy2(timeline, FIGURES_DIR / "demo_timeline.png")
        figs.append("docs/figures/demo_timeline.png")
    write_json(RESULTS_DIR / "demo.json", {
        "benchmark": "demo", "title": "make demo",
        "table": [{"": k, "value": v} for k, v in rows], "figures": figs, "report": report,
        "command": "make demo", "environment": environment(),
    })


if __name__ == "__main__":
    sys.exit(main())
