"""Episodes for Lightning: an endless training stream in which batch i of run seed s is
drawn from its own generator state, stream (TRAIN, s, i) of :mod:`ntm_repro.training.streams`,
so a resumed run sees exactly the batches an
uninterrupted one would (whatever Lightning prefetched before the checkpoint), and seeds
trained together (:mod:`ntm_repro.models.population`) see exactly the batches each would
alone; and fixed held-out sets for validation and tests, from streams that no training
batch of any seed uses."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from ntm_repro.tasks.base import Episode, Task
from ntm_repro.training.streams import MAX_FIELD, Purpose, seek, stream

#: Largest run seed (a field of the streams' keys).
MAX_SEED = MAX_FIELD


class EpisodeStream(IterableDataset):
    """Endless steps, starting at step ``start``: step i is a list with one batch
    ``task.sample(batch_size, generator)`` per run seed s, drawn from stream (TRAIN, s, i)."""

    def __init__(self, task: Task, batch_size: int, seeds: Sequence[int], start: int = 0):
        self.task, self.batch_size, self.seeds, self.start = task, batch_size, list(seeds), start

    def __iter__(self) -> Iterator[list[Episode]]:
        generator = torch.Generator()
        index = self.start
        while True:
            batches = []
            for seed in self.seeds:
                batches.append(self.task.sample(self.batch_size, seek(generator, Purpose.TRAIN, seed, index)))
            yield batches
            index += 1


class EpisodeDataModule(pl.LightningDataModule):
    def __init__(self, task: Task, batch_size: int, seeds: Sequence[int]):
        super().__init__()
        self.task, self.batch_size, self.seeds = task, batch_size, list(seeds)
        self.start = 0  # the first batch to draw: the global step a resumed run restarts at

    def train_dataloader(self) -> DataLoader:
        stream = EpisodeStream(self.task, self.batch_size, self.seeds, self.start)
        return DataLoader(stream, batch_size=None, num_workers=0)

    def state_dict(self) -> dict[str, Any]:
        """The batches trained on so far (not those Lightning has prefetched)."""
        return {"next_batch": self.trainer.global_step if self.trainer is not None else self.start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start = int(state["next_batch"])


#: salt of the held-out generator for tests (validation uses 0), so tests are new episodes
TEST_SALT = 1


def heldout(task: Task, levels: Sequence[Any], batch_size: int, salt: int = 0) -> list[Episode]:
    """One batch of ``batch_size`` episodes per level, from stream (HELDOUT, salt, 0): the
    same episodes for every run, so seeds and models are compared on identical data."""
    generator = stream(Purpose.HELDOUT, salt, 0)
    return [task.episode(batch_size, level, generator) for level in levels]


def generalisation_sets(task: Task, levels: Sequence[Any], per_level: int) -> list[Episode]:
    """The generalisation test's episodes, one batch of ``per_level`` per level: held-out
    episodes from the tests' own stream (:data:`TEST_SALT`), new beside the validation set
    and the same for every run."""
    return heldout(task, levels, per_level, salt=TEST_SALT)
