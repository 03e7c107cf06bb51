"""Post-fit score selection as a library step: chosen on validation pseudo-anomalies inside
``fit``, written into the checkpoint the user gets, limited to settings that only change the
score."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from data_modules.synthetic import SyntheticEchoDataModule
from seqnrl import batch as B
from seqnrl.callbacks.score_selection import ScoreSelection
from seqnrl.errors import ConfigError
from seqnrl.models.base import NormativeModule
from seqnrl.scoring.pseudo_anomalies import b_line_copies
from seqnrl.scoring.selection import apply_settings, pseudo_anomaly_set, select_score_settings


class MotionEnergy(NormativeModule):
    """Score = ``sign`` x frame-difference energy (a learned offset keeps an optimiser busy):
    with ``sign=-1`` faster motion scores lower, so the pseudo-anomalies rank backwards."""

    score_settings = ("sign",)

    def __init__(self, sign: float = -1.0, **kwargs):
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["input_spec"])
        self.offset = torch.nn.Parameter(torch.zeros(()))

    def score_frames(self, batch: B.Batch) -> torch.Tensor:
        v = batch[B.VIDEO]
        d = (v[:, :, 1:] - v[:, :, :-1]).abs().mean(dim=(1, 3, 4))
        d = torch.cat([d[:, :1], d], dim=1)
        return self.hparams.sign * d + 0 * self.offset

    def losses(self, batch: B.Batch) -> dict[str, torch.Tensor]:
        return {"loss": (self.offset - 1.0) ** 2}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _dm():
    return SyntheticEchoDataModule(n_train=2, n_val=2, n_test=1, n_frames=48, clip_len=8, image_size=32,
                                   batch_size=2, samples_per_video=1)  # fmt: skip


def test_selection_inside_fit_is_saved_in_the_last_checkpoint(tmp_path):
    model = MotionEnergy(sign=-1.0)
    ck = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True, enable_version_counter=False)
    sel = ScoreSelection(grid={"sign": [-1.0, 1.0]}, copies=2, seed=0)
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
               enable_model_summary=False, callbacks=[ck, sel]).fit(model, datamodule=_dm())  # fmt: skip
    assert model.hparams.sign == 1.0 and model.post_fit["changed"] is True
    rows = {r["sign"]: r["val_pseudo_auroc"] for r in model.post_fit["rows"]}
    assert rows[1.0] > 0.5 > rows[-1.0]  # the sped-up spans have more motion
    raw = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["sign"] == 1.0
    assert raw["seqnrl"]["post_fit"]["chosen"] == {"sign": 1.0}
    # the calibration was re-fitted under the chosen setting: normal frames mostly below threshold
    assert model.calibrator.fitted and float(model.calibrator.threshold) > 0


def test_ties_keep_the_configured_setting_and_only_score_settings_change():
    model = MotionEnergy(sign=1.0)
    model.input_spec = _dm().input_spec
    clips = {"a": torch.rand(1, 40, 16, 16)}
    rec = select_score_settings(model, clips, {"sign": [2.0, 1.0]}, copies=2)  # same ranking: a tie
    assert rec["chosen"] == {"sign": 1.0} and rec["changed"] is False
    with pytest.raises(ConfigError, match="not score settings"):
        apply_settings(model, {"lr": 1.0})


def test_pseudo_anomaly_kinds():
    clip = (torch.rand(1, 30, 64, 64) * 120).to(torch.uint8)
    videos, labels = pseudo_anomaly_set({"c": clip}, copies=2, seed=3, kind="speedup")
    assert set(videos) == {"c", "c_speedup0", "c_speedup1"} and labels["c"].sum() == 0
    assert all(labels[k].sum() > 0 for k in ("c_speedup0", "c_speedup1"))
    (bl, lab), = b_line_copies(clip, 1, np.random.default_rng(0))
    assert lab.all() and bl.dtype == torch.uint8 and (bl.int() - clip.int()).clamp(min=0).sum() > 0
    with pytest.raises(ConfigError, match="kind"):
        pseudo_anomaly_set({"c": clip}, 1, 0, kind="nope")


def test_a_list_of_settings_that_move_together():
    from seqnrl.scoring.selection import candidates, validation_clips

    dm = _dm()
    model = MotionEnergy(sign=-1.0)
    model.input_spec = dm.input_spec
    rec = select_score_settings(model, validation_clips(dm), [{"sign": -1.0}, {"sign": 1.0}], copies=2)
    assert rec["chosen"] == {"sign": 1.0} and rec["settings"] == ["sign"] and len(rec["rows"]) == 2
    assert candidates({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    with pytest.raises(ConfigError, match="same settings"):
        candidates([{"a": 1}, {"b": 2}])
