"""Episodes for Lightning: an endless training stream from a seeded ``torch.Generator``
(its state is saved with checkpoints), and fixed held-out sets for validation and tests."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from ntm_repro.tasks.base import Episode, Task

#: Seed of the held-out sets: the same episodes for every run, so seeds and models are
#: compared on identical data; far from the small seeds that drive training streams.
HELDOUT_SEED = 2**40 + 20141020


class EpisodeStream(IterableDataset):
    """Endless batches ``task.sample(batch_size, generator)``."""

    def __init__(self, task: Task, batch_size: int, generator: torch.Generator):
        self.task, self.batch_size, self.generator = task, batch_size, generator

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.task.sample(self.batch_size, self.generator)


class EpisodeDataModule(pl.LightningDataModule):
    def __init__(self, task: Task, batch_size: int, seed: int):
        super().__init__()
        self.task, self.batch_size = task, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(EpisodeStream(self.task, self.batch_size, self.generator), batch_size=None, num_workers=0)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def heldout(task: Task, levels: Sequence[Any], batch_size: int, salt: int = 0) -> list[Episode]:
    """One batch of ``batch_size`` episodes per level, from a fixed generator."""
    generator = torch.Generator().manual_seed(HELDOUT_SEED + salt)
    return [task.episode(batch_size, level, generator) for level in levels]
