"""Deliberately broken DDP, for the mutation check in ``test_ddp_equivalence``.

``BreakGradientSync`` replaces DDP's gradient all-reduce with a no-op communication hook
(``DistributedDataParallel.register_comm_hook``): every process then steps on its own local
gradient, the bug a forgotten sync or a wrong sampler produces. The equivalence comparison
must fail on such a run; if it ever passes, its tolerances hide real bugs.
"""

import pytorch_lightning as pl
import torch
import torch.distributed as dist


def _local_only(state, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(bucket.buffer())  # the local gradient, not averaged with the other process
    return fut


class BreakGradientSync(pl.Callback):
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ddp = trainer.strategy.model
        if not isinstance(ddp, torch.nn.parallel.DistributedDataParallel):
            raise RuntimeError("BreakGradientSync needs a DDP run")
        ddp.register_comm_hook(None, _local_only)
