"""Repeat copy (Graves et al. 2014, section 4.2).

A level is a pair (L, R): L random binary vectors of ``bits`` bits, to be emitted R times.
Input channels: the bits (0..bits-1), a delimiter (``bits``) and the repeat count
(``bits + 1``). Layout, L + 1 + R L + 1 steps:

    L vector steps; one step with the delimiter and the count on its own channel; then
    R L + 1 blank steps on which the target is the sequence repeated R times followed by
    the end marker, a 1 on its own output channel (``bits``).

All R L + 1 output steps are scored on every output channel (the end channel is 0 while
copying, the bits are 0 at the end marker); the bit channels and the end channel are also
scored apart (``copy_bit_errors``, ``marker_bit_errors``): the paper's NTM copies beyond the
trained repeats but mispredicts the end marker there. The count is normalised to mean 0 and variance
1 over the training range of repeats (uniform on ``min_repeats..max_repeats``), as in the
paper, so a test count beyond the range is a value the network never saw. A batch shares
one (L, R), drawn uniformly from the training grid (U{1..10} x U{1..10} in the paper).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ntm_repro.errors import ConfigError, positive
from ntm_repro.tasks.base import Episode, Task, int_range


class RepeatCopyTask(Task):
    name = "repeat_copy"
    level_name = "length x repeats"
    capacity_key = "task.max_length"

    def __init__(
        self,
        bits: int = 8,
        min_length: int = 1,
        max_length: int = 10,
        min_repeats: int = 1,
        max_repeats: int = 10,
        test_levels: Sequence[Sequence[int]] = ((10, 20), (20, 10)),
    ):
        self.bits = positive(bits, "task.bits")
        self.input_size = self.bits + 2
        self.output_size = self.bits + 1
        # the copied bits and the end marker's channel, each also scored apart (Fig. 9)
        self.scored_apart = {"copy": (0, self.bits), "marker": (self.bits, self.bits + 1)}
        self.lengths = int_range(min_length, max_length, "task.min_length", "task.max_length")
        self.repeats = int_range(min_repeats, max_repeats, "task.min_repeats", "task.max_repeats")
        n = len(self.repeats)
        self.repeat_mean = (self.repeats[0] + self.repeats[-1]) / 2
        self.repeat_std = math.sqrt((n * n - 1) / 12) or 1.0  # a single count: centre it only
        tests = []
        for level in test_levels:
            if len(level) != 2:
                raise ConfigError(f"task.test_levels entry {list(level)}: give [length, repeats] pairs, e.g. [[10, 20], [20, 10]]")
            tests.append((positive(level[0], "task.test_levels length"), positive(level[1], "task.test_levels repeats")))
        super().__init__([(length, r) for length in self.lengths for r in self.repeats], tests)

    @property
    def validation_levels(self) -> list[tuple[int, int]]:
        """One pair per length, the repeats stepped by 3 (a permutation when the count of
        repeats is not a multiple of 3): every length and, for the paper's 10 x 10 grid,
        every count once, at a tenth of the grid's cost."""
        n = len(self.repeats)
        return [(length, self.repeats[(3 * i) % n]) for i, length in enumerate(self.lengths)]

    def level_label(self, level: tuple[int, int]) -> str:
        return f"{level[0]}x{level[1]}"

    def items_to_store(self, level: tuple[int, int]) -> int:
        return level[0]

    def normalised_repeats(self, repeats: int) -> float:
        """The count as given to the network: (R - mean) / std over the training range."""
        return (repeats - self.repeat_mean) / self.repeat_std

    def episode(self, batch_size: int, level: tuple[int, int], generator: torch.Generator) -> Episode:
        length, repeats = level
        outputs = repeats * length + 1
        steps = length + 1 + outputs
        seq = torch.randint(0, 2, (batch_size, length, self.bits), generator=generator).float()
        inputs = torch.zeros(batch_size, steps, self.input_size)
        inputs[:, :length, : self.bits] = seq
        inputs[:, length, self.bits] = 1.0
        inputs[:, length, self.bits + 1] = self.normalised_repeats(repeats)
        targets = torch.zeros(batch_size, steps, self.output_size)
        targets[:, length + 1 : steps - 1, : self.bits] = seq.repeat(1, repeats, 1)
        targets[:, -1, self.bits] = 1.0
        mask = torch.zeros(batch_size, steps)
        mask[:, length + 1 :] = 1.0
        return Episode(inputs, targets, mask)
