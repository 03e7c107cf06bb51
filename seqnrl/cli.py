"""The ``seqnrl`` command: LightningCLI with fit / validate / test / predict.

Model and data are chosen by class path (``--model``, ``--data`` or YAML files in
``configs/``); with neither given, the baseline normative model trains on synthetic echo.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

DEFAULT_MODEL = "seqnrl.models.baseline.module.FrameAutoEncoderModel"
DEFAULT_DATA = "data_modules.synthetic.SyntheticEchoDataModule"


class SeqNRLCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}, "data": {"class_path": DEFAULT_DATA}})


def main(args: list[str] | None = None) -> SeqNRLCLI:
    return SeqNRLCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    main()
