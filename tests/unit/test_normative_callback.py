"""NormativeEvalCallback: RQI / AHI / CACI at test end, logged as scalars to every logger and
as tables + example images to loggers that take them (W&B's log_table / log_image)."""

from __future__ import annotations

import logging
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, Logger

from data_modules.synthetic import SyntheticEchoDataModule
from seqnrl.callbacks.normative_eval import NormativeEvalCallback
from seqnrl.models.baseline.module import FrameAutoEncoderModel
from seqnrl.models.st_transformer.module import STTransformerModel

torch.set_num_threads(1)

KEYS = ("rqi", "ssim", "mae", "perceptual", "ahi", "ahi_ratio", "fd_restored", "fd_unrestored", "fd_healthy",
        "conservation", "correction", "caci", "fidelity")  # fmt: skip


class MediaLogger(Logger):
    """A logger with W&B's media methods, recording what it is given."""

    def __init__(self):
        super().__init__()
        self.metrics: dict[str, float] = {}
        self.tables: dict[str, tuple[list, list]] = {}
        self.images: dict[str, tuple[list, dict]] = {}

    name = property(lambda self: "media")
    version = property(lambda self: 0)

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_table(self, key, columns=None, data=None, dataframe=None, step=None):
        self.tables[key] = (columns, data)

    def log_image(self, key, images, step=None, **kwargs):
        self.images[key] = (images, kwargs)


def _dm() -> SyntheticEchoDataModule:
    return SyntheticEchoDataModule(n_train=2, n_val=2, n_test=6, n_frames=8, clip_len=8, image_size=16,
                                   batch_size=4, samples_per_video=1, anomaly_fraction=0.5)  # fmt: skip


def _trainer(tmp_path, loggers, callbacks) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=1, logger=loggers,
                      callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path)  # fmt: skip


def test_callback_logs_scalars_tables_and_images(tmp_path):
    model = STTransformerModel(image_size=16, clip_len=8, patch_size=4, dim=16, depth=1, heads=2, decoder_dim=16,
                               bank_size=8, bank_clips=2)  # fmt: skip
    media, csv = MediaLogger(), CSVLogger(tmp_path, name="csv")
    cb = NormativeEvalCallback(
        max_clips=3, n_reference=2, n_images=2, output_dir=str(tmp_path / "ne")
    )
    dm = _dm()
    trainer = _trainer(tmp_path, [media, csv], [cb])
    trainer.fit(model, datamodule=dm)
    out = trainer.test(model, datamodule=dm, verbose=False)[0]
    res = cb.results
    assert res is not None and res["features"] == "embed_frames"
    assert res["ahi_pathological"] == "abnormal test videos" and res["ahi_reference_clips"] == 2
    for k in KEYS:
        assert math.isfinite(res["metrics"][k]), k
        assert out[f"test/normative/{k}"] == pytest.approx(res["metrics"][k], rel=1e-5, abs=1e-6)
        assert f"test/normative/{k}" in media.metrics  # scalars reach every logger
    assert 0.0 <= res["metrics"]["conservation"] <= 1.0 and res["metrics"]["mae"] > 0
    gap = res["metrics"][
        "ahi_gap"
    ]  # NaN (and then not logged) when the features miss the anomalies
    assert ("test/normative/ahi_gap" in out) == math.isfinite(gap)
    # one row per kept window: 3 normal videos (RQI, injected CACI), 3 abnormal ones (AHI)
    cols, data = media.tables["test/normative/rqi_table"]
    assert len(data) == 3 and cols[0] == "clip" and "ssim" in cols
    assert len(media.tables["test/normative/caci_table"][1]) == 3
    ahi_rows = media.tables["test/normative/ahi_table"][1]
    assert len(ahi_rows) == 3 and all("_" in r[0] for r in ahi_rows)  # abnormal video ids
    imgs, kw = media.images["test/normative/examples"]
    assert len(imgs) == 2 and imgs[0].shape == (16, 64) and imgs[0].dtype.name == "uint8"
    assert len(kw["caption"]) == 2
    assert (tmp_path / "ne" / "normative_eval.json").is_file()
    csv_text = "".join(p.read_text() for p in (tmp_path / "csv").rglob("metrics.csv"))
    assert "test/normative/caci" in csv_text  # a plain logger gets the scalars only


def test_callback_skips_models_that_cannot_restore(tmp_path, caplog):
    media = MediaLogger()
    cb = NormativeEvalCallback(max_clips=2)
    dm = _dm()
    trainer = _trainer(tmp_path, [media], [cb])
    model = FrameAutoEncoderModel(width=4, depth=2, latent=8)
    trainer.fit(model, datamodule=dm)
    with caplog.at_level(logging.INFO, logger="seqnrl.callbacks.normative_eval"):
        out = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert (
        cb.results is None
        and not media.tables
        and not any(k.startswith("test/normative") for k in out)
    )
    assert "cannot restore" in caplog.text


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match="max_clips"):
        NormativeEvalCallback(max_clips=1)
    with pytest.raises(ValueError, match="artefacts"):
        NormativeEvalCallback(artefacts=("fog",))
