"""The copy task (Graves et al. 2014, section 4.1).

Input: L random binary vectors of ``bits`` bits on channels 0..bits-1, then a delimiter on
its own channel (index ``bits``), then L blank steps. Target: the L vectors, emitted after
the delimiter. Only the L output steps are scored. Episode length 2L + 1. A batch shares
one length L, drawn uniformly from ``min_length..max_length`` (U{1..20} in the paper).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ntm_repro.errors import positive
from ntm_repro.tasks.base import Episode, Task, int_range


class CopyTask(Task):
    name = "copy"
    level_name = "length"
    capacity_key = "task.max_length"

    def __init__(self, bits: int = 8, min_length: int = 1, max_length: int = 20, test_lengths: Sequence[int] = (10, 20, 30, 50, 120)):
        self.bits = positive(bits, "task.bits")
        self.input_size = self.bits + 1
        self.output_size = self.bits
        levels = int_range(min_length, max_length, "task.min_length", "task.max_length")
        super().__init__(levels, [positive(n, "task.test_lengths") for n in test_lengths])

    def items_to_store(self, level: int) -> int:
        return level

    def episode(self, batch_size: int, level: int, generator: torch.Generator) -> Episode:
        length = level
        steps = 2 * length + 1
        seq = torch.randint(0, 2, (batch_size, length, self.bits), generator=generator).float()
        inputs = torch.zeros(batch_size, steps, self.input_size)
        inputs[:, :length, : self.bits] = seq
        inputs[:, length, self.bits] = 1.0
        targets = torch.zeros(batch_size, steps, self.output_size)
        targets[:, length + 1 :] = seq
        mask = torch.zeros(batch_size, steps)
        mask[:, length + 1 :] = 1.0
        return Episode(inputs, targets, mask)
