"""InputSpec: declared once, normalised, saved in the checkpoint, checked against the model."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from seqnrl.data.input_spec import InputSpec
from seqnrl.errors import CheckpointError, ConfigError


def test_normalised_on_construction_and_round_trips():
    a = InputSpec(clip_len=8, image_size=32)
    assert a.image_size == (32, 32) and a.stride == 4 and a.grayscale and a.fps is None
    assert a == InputSpec(clip_len=8, stride=4, image_size=[32, 32])  # the same spec, spelled otherwise
    assert InputSpec(clip_len=4, stride=9).stride == 4  # never beyond a window
    assert InputSpec.from_dict(a.to_dict()) == a
    with pytest.raises(ConfigError, match="unknown input-spec field"):
        InputSpec.from_dict({"clip_len": 8, "grey": True})
    for bad in ({"clip_len": 0}, {"fps": -1.0}, {"channels": 2}, {"normalisation": "imagenet"}):
        with pytest.raises(ConfigError):
            InputSpec(**bad)


def test_format_1_data_spec_conversion():
    spec = InputSpec.from_legacy({"clip_len": 8, "stride": 4, "fps": 5.0, "image_size": 32, "grayscale": False})
    assert spec == InputSpec(clip_len=8, stride=4, fps=5.0, image_size=32, channels=3, sector_mask="auto")
    # what the data_spec lacks comes from the hyper-parameters; no clip length at all is an error
    assert InputSpec.from_legacy({}, {"clip_len": 6, "in_channels": 1, "image_size": [16, 24]}).image_size == (16, 24)
    with pytest.raises(CheckpointError, match="clip_len"):
        InputSpec.from_legacy({}, {})


def test_model_and_data_must_agree(tmp_path):
    from data_modules.synthetic import SyntheticEchoDataModule
    from seqnrl.models.baseline.module import FrameAutoEncoderModel

    spec = InputSpec(clip_len=8, image_size=32, channels=1)
    spec.check_model({"image_size": 32, "in_channels": 1, "clip_len": 8}, "M")
    with pytest.raises(ConfigError, match="image_size"):
        spec.check_model({"image_size": 64}, "M")
    with pytest.raises(ConfigError, match="channels"):
        spec.check_model({"in_channels": 3}, "M")
    with pytest.raises(CheckpointError, match="no input spec"):
        InputSpec.of(FrameAutoEncoderModel())

    # a model built for one spec and fitted on a data module that gives another
    dm = SyntheticEchoDataModule(n_train=2, n_val=1, n_test=1, n_frames=16, clip_len=8, image_size=32,
                                 batch_size=2, samples_per_video=1)  # fmt: skip
    model = FrameAutoEncoderModel(width=4, depth=2, latent=4, input_spec=InputSpec(clip_len=16, image_size=32))
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    with pytest.raises(ConfigError, match="built for"):
        trainer.fit(model, datamodule=dm)
    # built without one: it takes the data module's, and saves it
    model = FrameAutoEncoderModel(width=4, depth=2, latent=4)
    pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0).fit(model, datamodule=dm)  # fmt: skip
    assert InputSpec.of(model) == dm.input_spec
    ck: dict = {}
    model.on_save_checkpoint(ck)
    assert ck["seqnrl"]["format_version"] == 2 and InputSpec.from_dict(ck["seqnrl"]["input_spec"]) == dm.input_spec
    torch.save(ck, tmp_path / "meta.pt")  # plain types: loads with weights_only=True
    assert torch.load(tmp_path / "meta.pt", weights_only=True)["seqnrl"]["input_spec"]["clip_len"] == 8
