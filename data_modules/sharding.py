"""Sharding of a data module's sampling order across processes (DDP).

Lightning replaces a custom sampler with its ``DistributedSamplerWrapper``, which *shuffles
the wrapped order again* (``shuffle=True`` for training, seeded by ``PL_GLOBAL_SEED``) and
pads evaluation loaders by repeating windows. Both break the equivalence with a single
process: the global batch of a step is no longer the single-process batch, and a repeated
window is averaged twice into its frames' scores. The data modules therefore hand Lightning
a :class:`ShardedSampler` (a ``DistributedSampler``, which Lightning leaves alone) that
deals the single-process order out round-robin: process ``r`` of ``R`` takes positions
``r, r + R, r + 2R, ...``. With a per-process batch of ``B``, step ``k`` of the ``R``
processes then covers positions ``k R B ... (k + 1) R B - 1``: exactly the batch of one
process with batch size ``R B``, so DDP's averaged gradient is the single-process gradient.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DistributedSampler, Sampler


class ShardedSampler(DistributedSampler):
    """Round-robin shard ``rank`` of ``num_replicas`` of an ordered sampler.

    Args:
        n: number of items of the wrapped order.
        base: the single-process sampler (anything iterable yielding ``n`` dataset keys,
            e.g. ``(index, seed)`` pairs; ``None`` = ``range(n)``). Its ``set_epoch`` is
            forwarded.
        num_replicas, rank: world size and this process's global rank.
        even: pad the order by wrapping around so that every process gets the same number
            of items (training: DDP needs the same number of steps on every process).
            Without it (evaluation) nothing is repeated and processes may differ by one
            item; only when there are fewer items than processes is the order wrapped, so
            that every process has at least one.
    """

    def __init__(self, n: int, base: Iterable[Any] | None = None, *, num_replicas: int, rank: int, even: bool = True):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} processes")
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.n, self.base, self.even = int(n), base, even

    def _size(self) -> int:
        if self.n == 0:
            return 0
        if self.even or self.n < self.num_replicas:
            return -(-self.n // self.num_replicas) * self.num_replicas
        return self.n

    def __len__(self) -> int:
        return len(range(self.rank, self._size(), self.num_replicas))

    def __iter__(self) -> Iterator[Any]:
        order = list(self.base) if self.base is not None else list(range(self.n))
        size = self._size()
        while order and len(order) < size:
            order += order[: size - len(order)]
        return iter(order[self.rank : size : self.num_replicas])

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)


def world_of(dm: pl.LightningDataModule) -> tuple[int, int]:
    """``(world_size, global_rank)`` of the trainer a data module is attached to (1, 0 without one)."""
    trainer = getattr(dm, "trainer", None)
    if trainer is None:
        return 1, 0
    return int(trainer.world_size), int(trainer.global_rank)


def shard(dm: pl.LightningDataModule, n: int, base: Sampler | None, train: bool) -> Sampler | None:
    """``base`` as is for one process, else the :class:`ShardedSampler` of this process."""
    world, rank = world_of(dm)
    if world <= 1:
        return base
    return ShardedSampler(n, base, num_replicas=world, rank=rank, even=train)
