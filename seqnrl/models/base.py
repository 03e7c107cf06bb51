"""Base LightningModule of every normative model: training loop glue, per-frame scoring over
overlapping windows, calibration on normal validation data (buffers in the checkpoint),
anomaly metrics and prediction outputs. Subclasses provide :meth:`losses` and :meth:`score_frames`.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from seqnrl import batch as B
from seqnrl.data.input_spec import InputSpec
from seqnrl.errors import ConfigError
from seqnrl.metrics.anomaly import frame_metrics
from seqnrl.scoring.aggregate import FrameScoreAccumulator, VideoScores, video_score
from seqnrl.scoring.calibration import ScoreCalibrator
from seqnrl.scoring.input_profile import InputProfile, frame_statistics
from seqnrl.scoring.windows import WindowScorer, model_signals

log = logging.getLogger(__name__)

CKPT_KEY = "seqnrl"
FORMAT_VERSION = 2  # 2: typed input spec (format 1 had an untyped data_spec, converted on load)


def world_size() -> int:
    """Number of processes of the initialised ``torch.distributed`` group (1 without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` in a single process). A collective:
    every process must call it."""
    n = world_size()
    if n == 1:
        return [obj]
    out: list[Any] = [None] * n
    torch.distributed.all_gather_object(out, obj)
    return out


def gather_accumulator(acc: FrameScoreAccumulator) -> FrameScoreAccumulator:
    """Merge accumulators of all processes (no-op without torch.distributed)."""
    if world_size() == 1:
        return acc
    merged = FrameScoreAccumulator()
    for st in all_gather_objects(acc.state()):
        merged.merge_state(st)
    return merged


def gather_scorer(scorer: WindowScorer) -> WindowScorer:
    """The scorer with the windows of every process (no-op without torch.distributed)."""
    if world_size() == 1:
        return scorer
    scorer.acc = gather_accumulator(scorer.acc)
    counts: dict[str, int] = {}
    for part in all_gather_objects(scorer.n_windows):
        for vid, n in part.items():
            counts[vid] = counts.get(vid, 0) + n
    scorer.n_windows = counts
    return scorer


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (strings, numbers), the same in every process and run
    (unlike ``hash()``, which Python salts per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def step_salt(module: pl.LightningModule) -> tuple[int, int, int]:
    """``(seed, epoch, global step)`` of a training step: the same in every process of a DDP
    run and in a single-process run with the same global batch, restored on resume."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0)), int(module.current_epoch), int(module.global_step)


def sample_seeds(batch: B.Batch, *salt: Any) -> list[int] | None:
    """One seed per sample from its identity (``video_id`` and first frame) and ``salt``, or
    ``None`` when the batch carries no video ids.

    Random draws made per sample from these seeds (training masks, frame pairs, episodes) do
    not depend on which process, batch or batch position the sample lands in, so a DDP run
    with ``R`` processes of batch ``B`` draws what one process of batch ``R B`` draws.
    """
    ids = batch.get(B.VIDEO_ID)
    if ids is None:
        return None
    start = batch.get(B.START_FRAME)
    if start is None and isinstance(batch.get(B.FRAME_INDEX), torch.Tensor):
        start = batch[B.FRAME_INDEX][:, 0]
    if isinstance(start, torch.Tensor):
        start = start.reshape(-1).tolist()
    first = [float(x) for x in start] if start is not None and len(start) == len(ids) else [0.0] * len(ids)
    return [stable_seed(*salt, str(v), f) for v, f in zip(ids, first)]


def sample_generators(batch: B.Batch, *salt: Any) -> list[torch.Generator] | None:
    """CPU generators seeded by :func:`sample_seeds` (``None`` without video ids)."""
    seeds = sample_seeds(batch, *salt)
    return None if seeds is None else [torch.Generator().manual_seed(s) for s in seeds]


class NormativeModule(pl.LightningModule):
    """Shared behaviour of normative models.

    Args:
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        smooth_sigma: Gaussian temporal smoothing of frame scores (frames; 0 = none).
        target_fpr: false-positive rate on normal validation frames that sets the threshold.
        video_top_fraction: video score = mean of this top fraction of frame scores.
        input_spec: what the model's input looks like (:class:`~seqnrl.data.input_spec.InputSpec`);
            linked from the data module by ``seqnrl fit``, taken from the trainer's data module
            at fit start otherwise, and saved in the checkpoint. Subclasses accept it (and any
            other base setting) through ``**kwargs``.
    """

    #: hyper-parameters that only change how outputs become a score: the ones post-fit
    #: selection (:mod:`seqnrl.scoring.selection`) may choose after training
    score_settings: tuple[str, ...] = ()

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        smooth_sigma: float = 0.0,
        target_fpr: float = 0.05,
        video_top_fraction: float = 0.1,
        input_spec: InputSpec | None = None,
    ):
        super().__init__()
        # the base settings, whatever a subclass declares itself (see save_hyperparameters)
        self._base_settings = {"lr": lr, "weight_decay": weight_decay, "smooth_sigma": smooth_sigma,
                               "target_fpr": target_fpr, "video_top_fraction": video_top_fraction}  # fmt: skip
        if isinstance(input_spec, dict):
            input_spec = InputSpec.from_dict(input_spec)
        self.input_spec: InputSpec | None = input_spec
        self.calibrator = ScoreCalibrator(target_fpr=target_fpr)
        self.input_profile = InputProfile()  # what normal inputs looked like (OOD warnings)
        self._acc: dict[str, WindowScorer] = {}
        self._profile_stats: list[np.ndarray] = []
        self.last_results: dict[str, VideoScores] = {}
        self.last_metrics: dict[str, float] = {}
        self.post_fit: dict[str, Any] | None = None  # record of post-fit score selection

    def save_hyperparameters(self, *args: Any, ignore: Any = None, frame: Any = None, logger: bool = True) -> None:
        """Lightning's, plus the base settings a subclass takes through ``**kwargs`` and so
        does not name: every model's hparams hold all five, with the values in force."""
        if not args and frame is None:
            frame = inspect.currentframe().f_back
        super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)
        for k, v in self._base_settings.items():
            self._hparams.setdefault(k, v)
            self._hparams_initial.setdefault(k, v)

    # -- to implement ---------------------------------------------------------------------
    def losses(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        """Training objective terms; must contain ``loss``."""
        raise NotImplementedError

    def score_frames(self, batch: B.Batch) -> torch.Tensor | dict[str, torch.Tensor]:
        """Raw per-frame anomaly scores ``(B, T)`` (higher = more anomalous), or a dict with
        key ``score`` and extra per-frame signals ``(B, T)``."""
        raise NotImplementedError

    # -- training -------------------------------------------------------------------------
    def training_step(self, batch: B.Batch, batch_idx: int) -> torch.Tensor:
        terms = self.losses(batch)
        bs = B.batch_size(batch)
        for k, v in terms.items():
            self.log(f"train/{k}", v, prog_bar=k == "loss", batch_size=bs, sync_dist=False)
        return terms["loss"]

    def on_train_epoch_start(self) -> None:
        # randomness of an epoch (masks, noise, dropout) depends only on (seed, epoch, rank),
        # so a run resumed from an epoch checkpoint repeats the uninterrupted run
        # (seeded directly: seed_everything would rewrite PL_GLOBAL_SEED and drift)
        base = int(os.environ.get("PL_GLOBAL_SEED", 0))
        rank = self.trainer.global_rank if self._trainer is not None else 0
        seed = (base + 1_000 * self.current_epoch + 97 * rank) % (2**31)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def warmup_cosine(self, opt: torch.optim.Optimizer, warmup_steps: int) -> dict[str, Any]:
        """Linear warm-up over ``warmup_steps``, then cosine decay to 10 % over the planned
        steps (constant when the total is unknown); stepped every batch."""
        warm = max(1, warmup_steps)
        total = None
        if self._trainer is not None:
            est = self.trainer.estimated_stepping_batches
            total = int(est) if est is not None and math.isfinite(est) else None

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if total is None or total <= warm:
                return 1.0
            prog = min(1.0, (step - warm) / (total - warm))
            return 0.1 + 0.45 * (1.0 + math.cos(math.pi * prog))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # -- evaluation -----------------------------------------------------------------------
    def _score_batch(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        return model_signals(self, batch)

    def _accumulate(self, split: str, batch: B.Batch, scored: dict[str, torch.Tensor]) -> None:
        self._acc.setdefault(split, WindowScorer(self)).add(batch, scored)

    def _eval_step(self, split: str, batch: B.Batch) -> None:
        bs = B.batch_size(batch)
        with torch.no_grad():
            terms = self.losses(batch)
            scored = self._score_batch(batch)
        for k, v in terms.items():
            self.log(f"{split}/{k}", v, batch_size=bs, sync_dist=True)
        self._accumulate(split, batch, scored)
        if split == "val" and B.VIDEO in batch:
            self._collect_profile(batch)

    def _collect_profile(self, batch: B.Batch) -> None:
        """Brightness / contrast of the normal validation frames (the ones calibration uses)."""
        v = batch[B.VIDEO]
        fi, fl, lab = batch[B.FRAME_INDEX], batch[B.FRAME_LABEL], batch[B.LABEL]
        keep = (fi >= 0) & (fl != 1) & (lab != 1)[:, None]  # (B, T)
        if keep.any():
            stats = frame_statistics(v).reshape(v.shape[0], v.shape[2], -1)
            self._profile_stats.append(stats[keep.cpu().numpy()])

    def validation_step(self, batch: B.Batch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: B.Batch, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_validation_epoch_start(self) -> None:
        self._acc["val"] = WindowScorer(self)
        self._profile_stats = []

    def on_test_epoch_start(self) -> None:
        self._acc["test"] = WindowScorer(self)

    def on_validation_epoch_end(self) -> None:
        results = gather_scorer(self._acc.pop("val", WindowScorer(self))).videos()
        stats = [s for part in all_gather_objects(self._profile_stats) for s in part]
        self._profile_stats = []
        if self.trainer is not None and self.trainer.sanity_checking:
            return
        if stats:
            self.input_profile.fit(np.concatenate(stats))
        self.fit_calibration(results)
        self._log_metrics("val", results)

    def on_test_epoch_end(self) -> None:
        results = gather_scorer(self._acc.pop("test", WindowScorer(self))).videos()
        if not self.calibrator.fitted:
            log.warning("calibration not fitted (no validation run): fitting on normal test frames")
            self.fit_calibration(results)
        self._log_metrics("test", results)

    @staticmethod
    def normal_frames(results: dict[str, VideoScores]) -> np.ndarray:
        """Scores of frames known to be normal: labelled 0 in videos not labelled abnormal.
        Where nothing is labelled, every frame of every video counts as normal."""
        known = [vs.scores[(vs.labels == 0)] for vs in results.values() if vs.label != 1]
        pool = np.concatenate(known) if known else np.array([])
        if pool.size < 2:
            pool = np.concatenate([vs.scores for vs in results.values() if vs.label in (0, -1)] or [np.array([])])
        return pool[np.isfinite(pool)]

    def fit_calibration(self, results: dict[str, VideoScores]) -> None:
        normal = self.normal_frames(results)
        if normal.size >= 2:
            self.calibrator.fit(normal)
        else:
            log.warning("no normal validation frames: calibration left unchanged")

    def calibrate(self, vs: VideoScores) -> dict[str, np.ndarray]:
        """``calibrated``, ``z``, ``p_value`` and ``above_threshold`` per frame
        (:meth:`ScoreCalibrator.frame_outputs`; NaN before calibration)."""
        return self.calibrator.frame_outputs(vs.scores)

    def _log_metrics(self, split: str, results: dict[str, VideoScores]) -> None:
        self.last_results = results
        if not results:
            return
        cal = {k: self.calibrate(v)["calibrated"] if self.calibrator.fitted else v.scores for k, v in results.items()}
        m = frame_metrics(
            {k: v.scores for k, v in results.items()},
            {k: v.labels for k, v in results.items()},
            video_labels={k: v.label for k, v in results.items()},
            video_scores={k: video_score(cal[k], self.hparams.video_top_fraction) for k in results},
        )
        self.last_metrics = m
        for k, v in m.items():
            if math.isfinite(v):
                self.log(f"{split}/{k}", v, sync_dist=False, rank_zero_only=True)

    # -- prediction -----------------------------------------------------------------------
    def predict_step(self, batch: B.Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        scored = self._score_batch(batch)
        keep = (B.VIDEO_ID, B.FRAME_INDEX, B.FRAME_LABEL, B.N_FRAMES, B.FPS, B.SOURCE, B.LABEL)
        out = {k: batch[k] for k in keep}
        out["scores"] = {k: v.detach().cpu() for k, v in scored.items()}
        return out

    # -- checkpoint -----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        dm_spec = getattr(dm, "input_spec", None) if dm is not None else None
        if isinstance(dm_spec, InputSpec):
            if self.input_spec is not None and self.input_spec != dm_spec:
                raise ConfigError(
                    f"{type(self).__name__} was built for {self.input_spec} but is fitted on "
                    f"{type(dm).__name__} giving {dm_spec}"
                )
            self.input_spec = dm_spec
        if self.input_spec is not None:
            self.input_spec.check_model(dict(self.hparams), type(self).__name__)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CKPT_KEY] = {
            "format_version": FORMAT_VERSION,
            "model_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "input_spec": self.input_spec.to_dict() if self.input_spec is not None else None,
            "post_fit": self.post_fit,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get(CKPT_KEY) or {}
        self.post_fit = info.get("post_fit")
        if info.get("input_spec") is not None:
            self.input_spec = InputSpec.from_dict(info["input_spec"], where="checkpoint")
        elif info.get("data_spec"):
            # format 1: an untyped dict copied off the data module; converted once, here
            self.input_spec = InputSpec.from_legacy(info["data_spec"], checkpoint.get("hyper_parameters"))
            log.info("format-%s checkpoint: its data_spec was converted to %s", info.get("format_version", 1), self.input_spec)
