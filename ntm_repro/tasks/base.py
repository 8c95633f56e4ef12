"""What every task provides: batched episodes ``(inputs, targets, mask)`` drawn from a
``torch.Generator``, its training levels (lengths or item counts) and its test levels."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

from ntm_repro.errors import ConfigError, positive


class Episode(NamedTuple):
    """``inputs`` (B, T, I) and ``targets`` (B, T, O) in {0, 1}; ``mask`` (B, T) is 1 on the
    time steps whose outputs are scored."""

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor


class Task:
    """Base class: subclasses set the sizes and :meth:`episode`, and may override the hooks
    below (validation levels, level labels, what must fit in memory, reference metrics)."""

    name: str
    level_name: str  # what a level counts, e.g. "length" or "items"
    input_size: int
    output_size: int
    #: the config key that bounds :meth:`items_to_store` (named in the memory-capacity error)
    capacity_key: str = ""
    #: names of the task-specific metrics of :meth:`reference_metrics` (extra metrics.csv columns)
    extra_metrics: tuple[str, ...] = ()
    #: output channels scored apart as well: name -> [start, stop), logged as ``<name>_bit_errors``
    #: (bit errors per sequence on those channels) in validation and generalisation
    scored_apart: dict[str, tuple[int, int]] = {}

    @property
    def evaluated_metrics(self) -> tuple[str, ...]:
        """Every metric an evaluation logs beyond cost and bit errors."""
        return (*self.extra_metrics, *(f"{name}_bit_errors" for name in self.scored_apart))

    def __init__(self, train_levels: Sequence[Any], test_levels: Sequence[Any]):
        if not train_levels:
            raise ConfigError(f"task {self.name}: the training range is empty")
        self.train_levels = list(train_levels)
        self.test_levels = list(test_levels)

    def episode(self, batch_size: int, level: Any, generator: torch.Generator) -> Episode:
        raise NotImplementedError

    @property
    def validation_levels(self) -> list[Any]:
        """The levels of the held-out validation set: the whole training range by default."""
        return self.train_levels

    @property
    def trace_levels(self) -> list[Any]:
        """The levels whose episode is traced at the end of training (outputs against targets,
        as in Graves et al. Figs. 4-5): every test level, or the longest trained one."""
        return list(self.test_levels) if self.test_levels else [self.train_levels[-1]]

    @property
    def trace_level(self) -> Any:
        """The level whose attention the report draws (Graves et al. Fig. 6): the first traced."""
        return self.trace_levels[0]

    def level_label(self, level: Any) -> Any:
        """How ``level`` is written in generalisation.csv."""
        return level

    def parse_level(self, text: str) -> Any:
        """A level from the command line: an integer, or ``AxB`` where the task's levels
        are pairs (repeat copy); a ConfigError for anything else."""
        pair = isinstance(self.train_levels[0], tuple)
        try:
            numbers = tuple(int(part) for part in str(text).lower().split("x"))
        except ValueError:
            numbers = ()
        if len(numbers) != (2 if pair else 1) or min(numbers) < 1:
            example = "10x20" if pair else "10"
            raise ConfigError(f"level {text!r}: task {self.name} counts its levels in {self.level_name}; give e.g. {example}")
        return numbers if pair else numbers[0]

    def items_to_store(self, level: Any) -> int | None:
        """How many things an episode of ``level`` asks the memory to hold (one location
        each at least), or None when the task stores no items."""
        return None

    def reference_metrics(self, episode: Episode) -> dict[str, float]:
        """Task-specific figures for ``episode`` (means per sequence), logged beside the
        model's metrics under the names of :attr:`extra_metrics`."""
        return {}

    def sample(self, batch_size: int, generator: torch.Generator) -> Episode:
        """A training batch: one level drawn uniformly from the training range, shared by the batch."""
        pick = int(torch.randint(len(self.train_levels), (1,), generator=generator))
        return self.episode(batch_size, self.train_levels[pick], generator)


def int_range(low: Any, high: Any, low_key: str, high_key: str) -> list[int]:
    """The inclusive range ``low..high``, or a ConfigError when it is empty or not positive."""
    low, high = positive(low, low_key), positive(high, high_key)
    if low > high:
        raise ConfigError(f"{low_key}={low} > {high_key}={high}: the range is empty; set {low_key} <= {high_key}")
    return list(range(low, high + 1))
