"""Shared helpers of the benchmark scripts: output folder, JSON writing, table printing."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqnrl.io.atomic import write_json
from seqnrl.tracking import git_commit

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def environment() -> dict[str, Any]:
    return {
        "git_commit": git_commit(REPO),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def quiet_run(threads: int) -> None:
    """Torch CPU threads for a benchmark, warnings off, Lightning's loggers at ERROR."""
    import logging
    import warnings

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


RESULTS_DIR = REPO / "docs" / "results"  # tracked: what the README's results are built from
FIGURES_DIR = REPO / "docs" / "figures"
PUBLISHED_KEYS = ("benchmark", "title", "description", "table", "tables", "references", "references_text",
                  "figures", "command", "environment")


def publish(result: dict[str, Any], results_dir: Path = RESULTS_DIR, figures_dir: Path = FIGURES_DIR) -> Path:
    """Write the small, tracked copy of a benchmark result that ``scripts/make_results.py``
    builds the README from: the table, its text, command and environment, and its figures
    copied to ``docs/figures/`` (per-frame arrays, checkpoints and videos stay in
    ``bench_out/``). The latest run replaces the previous one; move a superseded run you want
    to keep to ``docs/results_history.md``."""
    import shutil

    slim = {k: result[k] for k in PUBLISHED_KEYS if k in result}
    figs = []
    for fig in slim.get("figures", []):
        src = Path(fig)
        if src.is_file():
            figures_dir.mkdir(parents=True, exist_ok=True)
            dst = figures_dir / src.name
            if src.resolve() != dst.resolve():
                shutil.copy2(src, dst)
            figs.append(str(dst.relative_to(REPO)) if dst.is_relative_to(REPO) else str(dst))
    slim["figures"] = figs
    path = results_dir / f"{result.get('publish_as', result['benchmark'])}.json"
    write_json(path, slim)
    return path


def save(name: str, result: dict[str, Any], out_dir: str | Path = REPO / "bench_out", publish_copy: bool = True) -> Path:
    """Write the full result to ``<out_dir>/<name>.json`` and, when it has a table and is
    written to the default place (and ``publish_copy``), its published copy to
    ``docs/results/<name>.json``."""
    cmd = "python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(REPO)) if Path(sys.argv[0]).is_file() else sys.argv[0], *sys.argv[1:]])
    result = {"benchmark": name, "command": result.pop("command", cmd), **result, "environment": environment()}
    path = Path(out_dir) / f"{name}.json"
    write_json(path, result)
    print(f"\nwrote {path}")
    if publish_copy and result.get("table") and Path(out_dir).resolve() == (REPO / "bench_out").resolve():
        print(f"published {publish(result)} (run python scripts/make_results.py to update the README)")
    return path


def table(rows: list[dict[str, Any]], cols: list[str] | None = None) -> str:
    cols = cols or list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    w = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in cols}
    lines = [" | ".join(c.ljust(w[c]) for c in cols), "-+-".join("-" * w[c] for c in cols)]
    lines += [" | ".join(fmt(r.get(c, "")).ljust(w[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


def load_model_config(path: str | Path, overrides: dict[str, Any] | None = None):
    """Instantiate a model from a LightningCLI-style YAML (``class_path`` + ``init_args``)."""
    import importlib

    import yaml

    cfg = yaml.safe_load(Path(path).read_text())
    cfg = cfg.get("model", cfg)
    mod, _, cls = cfg["class_path"].rpartition(".")
    kwargs = {**(cfg.get("init_args") or {}), **(overrides or {})}
    return getattr(importlib.import_module(mod), cls)(**kwargs)


def train_and_test(model, dm, max_minutes: float, max_epochs: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Fit on normal training data (calibrating on validation), test, and time both."""
    import pytorch_lightning as pl

    pl.seed_everything(seed, workers=True, verbose=False)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=max_epochs, max_time={"minutes": max_minutes},
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.test(model, datamodule=dm, verbose=False)
    test_s = time.perf_counter() - t0
    n_frames = sum(v.n_frames for v in model.last_results.values())
    return {
        "metrics": dict(model.last_metrics),
        "train_minutes": train_s / 60,
        "epochs": trainer.current_epoch,
        "test_seconds": test_s,
        "frames_scored": n_frames,
        "frames_per_second": n_frames / max(test_s, 1e-9),
        "per_video": {k: {"video_score_top10": float(np.sort(v.scores[np.isfinite(v.scores)])[-max(1, len(v.scores) // 10):].mean()),
                          "label": v.label} for k, v in model.last_results.items()},
    }


def curve_epochs(n: int) -> list[int]:
    """Epochs on a learning curve: 1, 2, 4, 8, ... and the last ``n`` (each costs a test pass)."""
    out, e = {n}, 1
    while e < n:
        out.add(e)
        e *= 2
    return sorted(out)


SEQNRL = [sys.executable, "-m", "seqnrl.cli"]


def fit_child(config: str | Path, run_dir: Path, epochs: int, threads: int, seed: int | None = None) -> float:
    """``seqnrl fit --config CONFIG`` as a child process, as a user runs it, with its outputs
    (logs, checkpoints: the config's single ModelCheckpoint) moved into a fresh ``run_dir``;
    returns the minutes it took."""
    import os
    import shutil
    import subprocess

    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [*SEQNRL, "fit", "--config", str(config), "--trainer.max_epochs", str(epochs),
           *(["--seed_everything", str(seed)] if seed is not None else []),
           "--trainer.default_root_dir", str(run_dir), "--trainer.logger.init_args.save_dir", str(run_dir),
           "--trainer.enable_progress_bar", "false", "--trainer.callbacks.init_args.dirpath", str(run_dir / "checkpoints")]
    print("$ seqnrl " + " ".join(cmd[3:]), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, check=True)
    return (time.time() - t0) / 60


def auroc3(scores, labels) -> float:
    """Binary AUROC (torchmetrics, via seqnrl.metrics.anomaly) rounded to 3 decimals."""
    from seqnrl.metrics.anomaly import auroc

    return round(auroc(np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)), 3)
