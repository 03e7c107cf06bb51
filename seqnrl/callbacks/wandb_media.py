"""Media for Weights & Biases runs: score timelines, example clips and generated clips.

Added to every ``seqnrl`` CLI run; it does nothing unless one of the trainer's loggers is a
:class:`~pytorch_lightning.loggers.WandbLogger` (so CSV-only runs and runs without W&B
installed are untouched). After each validation (every ``every_n_epochs`` epochs, never in
the sanity check) and after a test it logs, from rank 0:

* ``<split>/score_timeline``: the score-over-time plot (calibrated score where the model is
  calibrated, labelled anomalous frames shaded) of the first ``n_videos`` evaluation videos,
  as images (:func:`seqnrl.viz.plot_score_timeline`);
* ``<split>/example_clip``: the first evaluation clip as a ``wandb.Video`` with a bar under
  the frames whose length is that frame's score;
* ``<split>/generated_clip``: for generative models (a ``sample`` method, e.g. the video
  diffusion model), one clip sampled with a fixed seed, as a ``wandb.Video``.

Videos are written as MP4 with seqnrl's own writer and handed to W&B as files, so no extra
encoder package (moviepy) is needed. Works offline (``WANDB_MODE=offline``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from seqnrl import batch as B

log = logging.getLogger(__name__)


def _wandb_loggers(trainer: pl.Trainer) -> list[Any]:
    try:
        from pytorch_lightning.loggers import WandbLogger
    except ImportError:  # pragma: no cover - wandb extra missing
        return []
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def score_bar_video(clip: torch.Tensor, scores: np.ndarray) -> torch.Tensor:
    """``(C, T, H, W)`` in [0, 1] -> uint8 RGB ``(3, T, H + h_bar, W)`` with a bar under each
    frame: its length is the frame's score clipped to [0, 1] (red), NaN draws no bar."""
    c, t, h, w = clip.shape
    x = clip.detach().float().cpu().clamp(0, 1)
    if c == 1:
        x = x.expand(3, t, h, w)
    bar_h = max(2, h // 8)
    bar = torch.zeros(3, t, bar_h, w)
    for i in range(t):
        s = float(scores[i]) if i < len(scores) else float("nan")
        if np.isfinite(s):
            n = int(round(np.clip(s, 0.0, 1.0) * w))
            bar[0, i, :, :n] = 1.0
    return (torch.cat([x, bar], dim=2) * 255).round().to(torch.uint8)


class WandbMediaCallback(pl.Callback):
    """Log score timelines, an example clip and (generative models) a generated clip to W&B.

    Args:
        n_videos: evaluation videos whose score timeline is logged.
        every_n_epochs: log after every n-th validation epoch (tests always log).
        fps: frame rate of the logged videos.
        sample_steps: sampler steps for the generated clip.
    """

    def __init__(self, n_videos: int = 2, every_n_epochs: int = 1, fps: float = 8.0, sample_steps: int = 10):
        self.n_videos = int(n_videos)
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.fps = float(fps)
        self.sample_steps = int(sample_steps)
        self._clip: dict[str, tuple[torch.Tensor, str, np.ndarray]] = {}

    # -- keep the first evaluation clip of the epoch ---------------------------------------
    def _keep(self, trainer: pl.Trainer, split: str, batch: Any, batch_idx: int) -> None:
        if batch_idx != 0 or not trainer.is_global_zero or not _wandb_loggers(trainer):
            return
        if not isinstance(batch, dict) or B.VIDEO not in batch:
            return
        vid = batch[B.VIDEO_ID][0] if B.VIDEO_ID in batch else "clip"
        fi = batch[B.FRAME_INDEX][0].cpu().numpy() if B.FRAME_INDEX in batch else np.arange(batch[B.VIDEO].shape[2])
        self._clip[split] = (batch[B.VIDEO][0].detach().cpu(), str(vid), fi)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._keep(trainer, "val", batch, batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._keep(trainer, "test", batch, batch_idx)

    # -- log at the end of evaluation ------------------------------------------------------
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._log(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, pl_module, "test")

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        loggers = _wandb_loggers(trainer)
        if not loggers or not trainer.is_global_zero:
            return
        try:
            media = self._media(pl_module, split)
        except Exception as e:  # noqa: BLE001 - media must never break a training run
            log.warning("W&B media for %s skipped: %s: %s", split, type(e).__name__, e)
            return
        if not media:
            return
        import wandb

        with tempfile.TemporaryDirectory(prefix="seqnrl-media-") as tmp:
            payload: dict[str, Any] = {}
            for key, kind, items in media:
                files = []
                for name, writer, caption in items:
                    path = Path(tmp) / name
                    writer(path)
                    files.append(wandb.Image(str(path), caption=caption) if kind == "image"
                                 else wandb.Video(str(path), caption=caption, format="mp4"))
                payload[key] = files
            for lg in loggers:
                lg.experiment.log({**payload, "trainer/global_step": trainer.global_step})

    def _media(self, pl_module: pl.LightningModule, split: str) -> list[tuple[str, str, list]]:
        from seqnrl.io.write import write_video
        from seqnrl.viz import plot_score_timeline

        out: list[tuple[str, str, list]] = []
        results = dict(getattr(pl_module, "last_results", {}) or {})
        calibrate = getattr(pl_module, "calibrate", None)
        fitted = bool(getattr(getattr(pl_module, "calibrator", None), "fitted", False))

        def shown(vs) -> tuple[np.ndarray, str]:
            if fitted and callable(calibrate):
                return calibrate(vs)["calibrated"], "calibrated anomaly score"
            return np.asarray(vs.scores, dtype=float), "raw anomaly score"

        plots = []
        for vid, vs in list(results.items())[: self.n_videos]:
            scores, ylabel = shown(vs)
            labels = vs.labels if (np.asarray(vs.labels) >= 0).any() else None

            def write_plot(path, vs=vs, scores=scores, ylabel=ylabel, labels=labels, vid=vid):
                plot_score_timeline(path, vs.times, scores, labels=labels, title=f"{split}: {vid}", ylabel=ylabel)

            plots.append((f"{split}_timeline_{len(plots)}.png", write_plot, vid))
        if plots:
            out.append((f"{split}/score_timeline", "image", plots))

        if split in self._clip:
            clip, vid, fi = self._clip.pop(split)
            scores = np.full(clip.shape[1], np.nan)
            if vid in results:
                full, _ = shown(results[vid])
                fi = np.asarray(fi[: clip.shape[1]], dtype=np.int64)
                ok = (fi >= 0) & (fi < len(full))
                scores[: len(fi)][ok] = full[fi[ok]]
            video = score_bar_video(clip, scores)
            out.append((f"{split}/example_clip", "video",
                        [("example.mp4", lambda p, v=video: write_video(p, v, self.fps), f"{vid} (bar: frame score)")]))

        sample = getattr(pl_module, "sample", None)
        if callable(sample) and split == "val":
            with torch.no_grad():
                gen = sample(1, steps=self.sample_steps, seed=0)
            gen = gen[0] if gen.ndim == 5 else gen
            out.append((f"{split}/generated_clip", "video",
                        [("generated.mp4", lambda p, v=gen: write_video(p, v.float().clamp(0, 1), self.fps),
                          f"sampled, {self.sample_steps} steps, seed 0")]))
        return out
