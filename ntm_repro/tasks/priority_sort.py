"""Priority sort (Graves et al. 2014, section 4.5).

A level is the number n of input vectors (20 in the paper). Input channels: the bits
(0..bits-1), the priority (``bits``) and a delimiter (``bits + 1``). Layout, n + 1 + k steps:

    n steps, each a random binary vector with its priority, drawn from U[-1, 1], on the
    priority channel; one delimiter step; then k = ``outputs`` (16) blank steps on which the
    target is scored.

The target is the k input vectors of highest priority, highest first: whole rows are
ordered by their priority (never each bit column on its own). The paper says only "sorted
by priority"; we chose highest first because the k highest are exactly the ones that start
the order (a lowest-first target would depend on the cut at rank k before its first
output), and because the paper's analysis has the NTM writing each vector to a location
set by its priority and reading the locations back in order.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ntm_repro.errors import ConfigError, positive
from ntm_repro.tasks.base import Episode, Task, int_range


class PrioritySortTask(Task):
    name = "priority_sort"
    level_name = "vectors"
    capacity_key = "task.max_vectors"

    def __init__(
        self,
        bits: int = 8,
        min_vectors: int = 20,
        max_vectors: int = 20,
        outputs: int = 16,
        test_vectors: Sequence[int] = (20,),
    ):
        self.bits = positive(bits, "task.bits")
        self.outputs = positive(outputs, "task.outputs")
        self.input_size = self.bits + 2
        self.output_size = self.bits
        levels = int_range(min_vectors, max_vectors, "task.min_vectors", "task.max_vectors")
        tests = [positive(n, "task.test_vectors") for n in test_vectors]
        fewest = min(levels + tests)
        if self.outputs > fewest:
            raise ConfigError(
                f"task.outputs={self.outputs}: more vectors than an episode of {fewest} gives; "
                f"set task.outputs <= {fewest} or raise task.min_vectors / task.test_vectors"
            )
        super().__init__(levels, tests)

    def items_to_store(self, level: int) -> int:
        return level

    def episode(self, batch_size: int, level: int, generator: torch.Generator) -> Episode:
        n, k, bits = level, self.outputs, self.bits
        steps = n + 1 + k
        vectors = torch.randint(0, 2, (batch_size, n, bits), generator=generator).float()
        priorities = torch.rand(batch_size, n, generator=generator) * 2 - 1
        order = priorities.argsort(dim=1, descending=True)[:, :k]
        inputs = torch.zeros(batch_size, steps, self.input_size)
        inputs[:, :n, :bits] = vectors
        inputs[:, :n, bits] = priorities
        inputs[:, n, bits + 1] = 1.0
        targets = torch.zeros(batch_size, steps, self.output_size)
        targets[:, n + 1 :] = vectors.gather(1, order.unsqueeze(-1).expand(-1, -1, bits))
        mask = torch.zeros(batch_size, steps)
        mask[:, n + 1 :] = 1.0
        return Episode(inputs, targets, mask)
