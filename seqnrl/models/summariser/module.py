"""Lightning module that trains the DSN policy with REINFORCE, and its feature dataset.

Training works on per-video feature tensors, not on pixels: a normative model (or the
fallback of :mod:`seqnrl.summarise`) turns a recording into features ``(T, D)`` and
calibrated anomaly scores ``(T,)`` once, and the policy learns on those. Items are dicts
with keys ``features`` ``(T, D)``, optional ``scores`` ``(T,)`` (calibrated anomaly score in
[0, 1]), ``relevance`` ``(T,)``, ``user_summary`` ``(U, T)`` (0/1 references, for
validation F-scores) and ``video_id``.

:func:`~seqnrl.models.summariser.net.fit_policy` runs the same objective without a Trainer, for the per-recording
(unsupervised, test-time) fit of :mod:`seqnrl.summarise`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from seqnrl.data.input_spec import InputSpec
from seqnrl.errors import SeqNRLError
from seqnrl.metrics.summary import evaluate_summary
from seqnrl.models.base import all_gather_objects, stable_seed, step_salt, world_size
from seqnrl.models.summariser.net import DSNPolicy, fit_policy
from seqnrl.models.summariser.rewards import (
    ReinforceSettings,
    RewardWeights,
    episode_objective,
    summary_rewards,
)
from seqnrl.shots import kts_shots, select_shots

__all__ = ["SummariserModule", "SummaryFeatureDataset", "collate_videos", "fit_policy", "load_feature_items"]

Item = dict[str, Any]
_TENSOR_KEYS = ("features", "scores", "relevance", "user_summary")


class SummaryFeatureDataset(Dataset):
    """Per-video feature tensors for summariser training.

    Args:
        source: a list of item dicts (in memory), a ``.pt`` file holding such a list or a
            ``{video_id: item}`` dict (loaded with ``weights_only=True``), or an ``.h5`` file in
            the DSN layout: one group per video with ``features`` and optional ``scores``,
            ``relevance``, ``user_summary`` (``gtscore`` is read as ``relevance`` if present
            and ``relevance`` is not).
    """

    def __init__(self, source: str | os.PathLike | Sequence[Item]):
        if isinstance(source, (str, os.PathLike)):
            self.items = load_feature_items(source)
        else:
            self.items = [_normalise_item(dict(it), i) for i, it in enumerate(source)]
        if not self.items:
            raise SeqNRLError("no videos in the summariser feature set", source if isinstance(source, (str, os.PathLike)) else None)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Item:
        return self.items[i]


def _normalise_item(it: Item, i: int) -> Item:
    if "features" not in it:
        raise KeyError(f"item {i} has no 'features'")
    out: Item = {"video_id": str(it.get("video_id", f"video{i}"))}
    for k in _TENSOR_KEYS:
        if it.get(k) is not None:
            out[k] = torch.as_tensor(np.asarray(it[k]), dtype=torch.float32)
    t = out["features"].shape[0]
    if out["features"].ndim != 2:
        raise ValueError(f"item {out['video_id']}: features must be (T, D), got {tuple(out['features'].shape)}")
    for k in ("scores", "relevance"):
        if k in out and out[k].shape != (t,):
            raise ValueError(f"item {out['video_id']}: {k} must be ({t},), got {tuple(out[k].shape)}")
    return out


def load_feature_items(path: str | os.PathLike) -> list[Item]:
    path = Path(path)
    if not path.is_file():
        raise SeqNRLError("no such feature file", path)
    try:
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            items = []
            with h5py.File(path, "r") as f:
                for vid in sorted(f.keys()):
                    g = f[vid]
                    it: Item = {"video_id": vid}
                    for k in _TENSOR_KEYS:
                        if k in g:
                            it[k] = np.asarray(g[k])
                    if "relevance" not in it and "gtscore" in g:
                        it["relevance"] = np.asarray(g["gtscore"])
                    items.append(it)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and "features" not in obj:
                items = [{"video_id": k, **v} for k, v in obj.items()]
            elif isinstance(obj, dict):
                items = [obj]
            else:
                items = list(obj)
        return [_normalise_item(it, i) for i, it in enumerate(items)]
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise SeqNRLError(f"cannot load summariser features: {e}", path) from e


def collate_videos(items: list[Item]) -> list[Item]:
    """Videos differ in length: a batch is the list of its items (DSN trains per video)."""
    return list(items)


class SummariserModule(pl.LightningModule):
    """DSN policy trained with REINFORCE on diversity + representativeness (+ normative,
    + relevance) rewards.

    Args:
        in_dim: feature dimension.
        hidden, num_layers: BiLSTM size.
        lr, weight_decay: Adam (DSN: 1e-5 and 1e-5 over 60 epochs; higher here for small data).
        n_episodes: Bernoulli episodes sampled per video and step (DSN: 5).
        target_rate: mean selection probability the length regulariser pulls towards.
        length_weight: weight of ``(mean p - target_rate)^2``.
        entropy_weight: entropy bonus (keeps exploring early on).
        diversity_weight, representativeness_weight: DSN rewards.
        normative_weight: weight of the mean calibrated anomaly score of selected frames.
        relevance_weight: weight of the mean relevance signal of selected frames.
        temporal_distance: DSN's lambda: pairs farther apart count as fully dissimilar.
        baseline_momentum: moving-average baseline ``b <- m b + (1 - m) mean R`` per video.
        budget: summary length for validation F-scores (fraction of frames).
        fscore_mode: ``"max"`` (SumMe) or ``"avg"`` (TVSum) over reference users.
        shot_seconds, fps: KTS granularity used in validation.
        shot_value: knapsack shot value in validation, ``"sum"`` or ``"mean"`` (DSN).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 128,
        num_layers: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        n_episodes: int = 5,
        target_rate: float = 0.15,
        length_weight: float = 1.0,
        entropy_weight: float = 0.0,
        diversity_weight: float = 1.0,
        representativeness_weight: float = 1.0,
        normative_weight: float = 0.0,
        relevance_weight: float = 0.0,
        temporal_distance: int = 20,
        baseline_momentum: float = 0.9,
        budget: float = 0.15,
        fscore_mode: str = "max",
        shot_seconds: float = 2.0,
        fps: float = 2.0,
        shot_value: str = "mean",
        input_spec: InputSpec | None = None,
    ):
        super().__init__()
        # a data module's input spec, linked by `seqnrl fit`: not used (features are the input)
        self.save_hyperparameters(ignore=["input_spec"])
        self.policy = DSNPolicy(in_dim, hidden, num_layers)
        self.baselines: dict[str, float] = {}
        self._updated: set[str] = set()  # baselines updated by this process this epoch

    @property
    def weights(self) -> RewardWeights:
        h = self.hparams
        return RewardWeights(h.diversity_weight, h.representativeness_weight, h.normative_weight, h.relevance_weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy(features)

    @property
    def settings(self) -> ReinforceSettings:
        return ReinforceSettings.from_hparams(**self.hparams)

    def video_objective(
        self, item: Item, key: str | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss and rewards of one video (episodes sampled from the current policy)."""
        probs = self.policy(item["features"].to(self.device))[0]
        key = key or item["video_id"]
        self._updated.add(key)
        return episode_objective(probs, item, self.settings, self.baselines, key, generator)

    def training_step(self, batch: list[Item], batch_idx: int) -> torch.Tensor:
        # episodes drawn per video from its id and the step, whichever process and batch it
        # lands in: DDP with R processes of batch B samples what one process of batch R B does
        salt = step_salt(self)
        per = [
            self.video_objective(it, generator=torch.Generator().manual_seed(stable_seed(*salt, it["video_id"])))
            for it in batch
        ]
        loss = torch.stack([p["loss"] for p in per]).mean()
        for k in per[0]:
            if k == "loss":
                continue
            self.log(f"train/{k}", torch.stack([p[k] for p in per]).mean(), batch_size=len(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _sync_baselines(self) -> None:
        """Share the reward baselines updated since the last call between processes (each
        video is seen by one process per epoch; a video seen by several, e.g. a padded one,
        keeps the value of the lowest rank), so every process and the checkpoint hold them
        all. A collective under DDP: called from hooks that run on every process, before
        validation (and so before a checkpoint is saved) and at the end of each epoch."""
        updated, self._updated = self._updated, set()
        if world_size() == 1:
            return
        parts = all_gather_objects({k: self.baselines[k] for k in updated if k in self.baselines})
        for part in reversed(parts):
            self.baselines.update(part)

    def on_validation_epoch_start(self) -> None:
        self._sync_baselines()

    def on_train_epoch_end(self) -> None:
        self._sync_baselines()

    @torch.no_grad()
    def importance(self, features: torch.Tensor) -> torch.Tensor:
        """Deterministic selection probabilities ``(T,)`` of one video."""
        return self.policy(features.to(self.device, self.dtype))[0].cpu()

    def validation_step(self, batch: list[Item], batch_idx: int) -> None:
        h = self.hparams
        for it in batch:
            probs = self.importance(it["features"])
            shots = kts_shots(it["features"].numpy(), fps=h.fps, shot_seconds=h.shot_seconds)
            mask, _ = select_shots(probs.numpy(), shots, h.budget, value=h.shot_value)
            rew = summary_rewards(
                it["features"], torch.as_tensor(mask, dtype=torch.float32)[None], self.weights,
                it.get("scores"), it.get("relevance"), h.temporal_distance,
            )
            self.log("val/reward", rew["total"].mean(), batch_size=1, sync_dist=True)
            if "user_summary" in it:
                f = evaluate_summary(mask, it["user_summary"].numpy(), h.fscore_mode)["f_score"]
                self.log("val/f_score", f, batch_size=1, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.policy.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["summariser_baselines"] = dict(self.baselines)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.baselines = dict(checkpoint.get("summariser_baselines", {}))
