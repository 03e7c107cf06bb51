"""The Lightning half of the ``seqnrl`` command: LightningCLI with fit / validate / test / predict.

Imported by :mod:`seqnrl.cli` only when a Lightning subcommand runs (``seqnrl --help`` and
``seqnrl score`` do not need it).

Model and data are chosen by class path (``--model``, ``--data`` or YAML files in
``configs/``); with neither given, the baseline normative model trains on synthetic echo.
Every run records its seed, the git commit of the code and the resolved config in each
logger (CSV ``hparams.yaml``, W&B run config) beside Lightning's ``config.yaml``; W&B runs
also get score timelines and example / generated clips
(:class:`seqnrl.callbacks.wandb_media.WandbMediaCallback`).
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from seqnrl.callbacks.wandb_media import WandbMediaCallback
from seqnrl.tracking import git_commit

DEFAULT_MODEL = "seqnrl.models.baseline.module.FrameAutoEncoderModel"
DEFAULT_DATA = "data_modules.synthetic.SyntheticEchoDataModule"


class RunMetadataCallback(SaveConfigCallback):
    """Save ``config.yaml`` and log seed, git commit and the resolved config to the loggers."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        cfg = self.config.as_dict()
        meta = {"seed": cfg.get("seed_everything"), "git_commit": git_commit(), "config": cfg}
        for logger in trainer.loggers:
            logger.log_hyperparams({"run": meta})


class SeqNRLCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}, "data": {"class_path": DEFAULT_DATA}})
        # the input is declared once, by the data; models that take it (every NormativeModule)
        # get it at instantiation and save it in their checkpoint
        parser.link_arguments("data.input_spec", "model.init_args.input_spec", apply_on="instantiate")


def build_cli(args: list[str] | None = None) -> SeqNRLCLI:
    """Run the LightningCLI (fit / validate / test / predict) and return it."""
    return SeqNRLCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_callback=RunMetadataCallback,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [WandbMediaCallback()]},
        args=args,
    )

