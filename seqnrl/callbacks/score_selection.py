"""``ScoreSelection``: post-fit choice of score settings inside ``seqnrl fit``.

At the end of fitting, :func:`seqnrl.scoring.selection.select_score_settings` scores the data
module's normal validation clips and pseudo-anomalies made from them under every setting of
``grid``, keeps the best, re-fits the calibration, and the checkpoint the user gets
(``last.ckpt`` of every ``ModelCheckpoint``, the file ``seqnrl score`` reads) is written
again with the choice and its record (``seqnrl.post_fit``). Epoch checkpoints keep the
settings they were trained with.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from seqnrl.scoring.selection import select_score_settings, validation_clips

log = logging.getLogger(__name__)


class ScoreSelection(Callback):
    """Args:
    grid: ``{score setting: candidate values}`` (settings the model lists in ``score_settings``),
        or a list of settings to try (settings that move together).
    copies: pseudo-anomalous copies per validation clip.
    seed: seed of the pseudo-anomalies.
    pseudo: their kind, ``"speedup"`` (motion, e.g. Ped2) or ``"b_lines"`` (lung ultrasound).
    """

    def __init__(
        self, grid: dict[str, list[Any]] | list[dict[str, Any]], copies: int = 4, seed: int = 0, pseudo: str = "speedup"
    ):
        super().__init__()
        self.grid = {k: list(v) for k, v in grid.items()} if isinstance(grid, dict) else [dict(c) for c in grid]
        self.copies = int(copies)
        self.seed = int(seed)
        self.pseudo = pseudo

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.interrupted:
            return
        clips = validation_clips(trainer.datamodule)
        was_training = pl_module.training
        record = select_score_settings(pl_module.eval(), clips, self.grid, self.copies, self.seed, self.pseudo)
        pl_module.train(was_training)
        pl_module.post_fit = record
        for cb in trainer.checkpoint_callbacks:
            path = getattr(cb, "last_model_path", "") if isinstance(cb, ModelCheckpoint) else ""
            if path:
                # written beside and moved into place: a reader never sees half a checkpoint
                tmp = f"{path}.selecting"
                trainer.save_checkpoint(tmp, weights_only=False)  # a full checkpoint, like ModelCheckpoint
                if trainer.is_global_zero:
                    os.replace(tmp, path)
                trainer.strategy.barrier("score_selection")
                log.info("score selection %s saved in %s", record["chosen"], path)
