"""Associative recall (Graves et al. 2014, section 4.3).

An item is ``item_length`` (3) vectors of ``bits`` (6) bits. Input channels: the bits, an
item-delimiter channel (index ``bits``) and a query-delimiter channel (``bits + 1``).
Layout for k items, a batch sharing k, drawn uniformly from ``min_items..max_items``:

    [item delimiter, item vectors] x k, query delimiter, query vectors, query delimiter,
    then ``item_length`` blank steps on which the target is scored.

The query is item j (j uniform over 0..k-2, so that it has a successor) and the target is
item j + 1. Episode length (k + 1)(item_length + 1) + 1 + item_length.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ntm_repro.errors import ConfigError, positive
from ntm_repro.tasks.base import Episode, Task, int_range


class RecallTask(Task):
    name = "recall"
    level_name = "items"
    capacity_key = "task.max_items"

    def __init__(
        self,
        bits: int = 6,
        item_length: int = 3,
        min_items: int = 2,
        max_items: int = 6,
        test_items: Sequence[int] = (6, 10, 15, 20),
    ):
        self.bits = positive(bits, "task.bits")
        self.item_length = positive(item_length, "task.item_length")
        self.input_size = self.bits + 2
        self.output_size = self.bits
        levels = int_range(min_items, max_items, "task.min_items", "task.max_items")
        if levels[0] < 2:
            raise ConfigError(f"task.min_items={levels[0]}: recall needs at least 2 items (a query and its successor)")
        tests = [positive(n, "task.test_items") for n in test_items]
        if any(n < 2 for n in tests):
            raise ConfigError(f"task.test_items={tests}: every count must be at least 2")
        super().__init__(levels, tests)

    def items_to_store(self, level: int) -> int:
        return level

    def episode(self, batch_size: int, level: int, generator: torch.Generator) -> Episode:
        items, span, bits = level, self.item_length + 1, self.bits
        query_start = items * span
        steps = query_start + span + 1 + self.item_length
        vectors = torch.randint(0, 2, (batch_size, items, self.item_length, bits), generator=generator).float()
        query = torch.randint(0, items - 1, (batch_size,), generator=generator)
        rows = torch.arange(batch_size)

        inputs = torch.zeros(batch_size, steps, self.input_size)
        blocks = inputs[:, :query_start].view(batch_size, items, span, self.input_size)
        blocks[:, :, 0, bits] = 1.0
        blocks[:, :, 1:, :bits] = vectors
        inputs[:, query_start, bits + 1] = 1.0
        inputs[:, query_start + 1 : query_start + span, :bits] = vectors[rows, query]
        inputs[:, query_start + span, bits + 1] = 1.0

        targets = torch.zeros(batch_size, steps, self.output_size)
        targets[:, -self.item_length :] = vectors[rows, query + 1]
        mask = torch.zeros(batch_size, steps)
        mask[:, -self.item_length :] = 1.0
        return Episode(inputs, targets, mask)
