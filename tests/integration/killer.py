"""Test helper: a callback that SIGKILLs its own process at the start of a given epoch."""

import os
import signal

from pytorch_lightning.callbacks import Callback


class KillAtEpoch(Callback):
    def __init__(self, epoch: int = 2):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
