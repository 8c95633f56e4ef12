"""Dynamic n-grams (Graves et al. 2014, section 4.4).

Every sequence gets its own table of 2^c probabilities (c = ``context`` = 5: one per 5-bit
context), each drawn from Beta(1/2, 1/2). The first c bits are fair coin flips; bit t >= c
is 1 with the probability of the context formed by bits t-c..t-1. A level is the sequence
length T (200 in the paper). One input and one output channel, T steps: the input at step t
is bit t-1 (0 at t = 0) and the target is bit t, scored at every step, so the cost counts
all T bits.

The floor is the optimal Bayesian estimator, P(1 | N1, N0) = (N1 + 1/2) / (N1 + N0 + 1)
with the counts of the current context so far; the first c bits cost 1 bit each. Logged as
``optimal_cost_bits`` beside the model's cost (about 133 bits per 200-bit sequence).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ntm_repro.errors import ConfigError, positive
from ntm_repro.tasks.base import Episode, Task


def beta_half(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Beta(1/2, 1/2) samples: the arcsine law, whose CDF is (2/pi) arcsin(sqrt(x)), so
    sin^2(pi U / 2) with U uniform has exactly this law (and takes a ``generator``)."""
    return torch.sin(torch.rand(shape, generator=generator, dtype=torch.float64) * (math.pi / 2)) ** 2


def context_counts(bits: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts of ones N1 and of bits N over whole sequences, per context: (B, 2^c) each,
    for the bits t >= c of ``bits`` (B, T) in {0, 1}, the context of bit t being bits
    t-c..t-1 read as a binary number (the most recent bit lowest)."""
    bits = bits.long()
    batch, length = bits.shape
    powers = 2 ** torch.arange(context)  # bit t-1 -> 1, t-2 -> 2, ...
    windows = bits.unfold(1, context, 1)[:, : length - context]  # (B, T-c, c): bits t-c..t-1
    contexts = (windows.flip(-1) * powers).sum(-1)
    following = bits[:, context:].double()
    ones = torch.zeros(batch, 2**context, dtype=torch.float64).scatter_add_(1, contexts, following)
    totals = torch.zeros(batch, 2**context, dtype=torch.float64).scatter_add_(1, contexts, torch.ones_like(following))
    return ones, totals


def optimal_cost_bits(bits: torch.Tensor, context: int) -> torch.Tensor:
    """Cost in bits of the optimal Bayesian estimator on each sequence of ``bits`` (B, T),
    (B,). The sequential product of (N1 + 1/2)/(N + 1) over a context's bits does not depend
    on their order: it is the Krichevsky-Trofimov probability
    Gamma(N1 + 1/2) Gamma(N0 + 1/2) / (pi Gamma(N + 1)), so the cost is a sum over contexts."""
    ones, totals = context_counts(bits, context)
    zeros = totals - ones
    log_p = torch.lgamma(ones + 0.5) + torch.lgamma(zeros + 0.5) - math.log(math.pi) - torch.lgamma(totals + 1)
    return context - log_p.sum(-1) / math.log(2)


class NGramTask(Task):
    name = "ngrams"
    level_name = "length"
    extra_metrics = ("optimal_cost_bits",)

    def __init__(self, context: int = 5, length: int = 200, test_lengths: Sequence[int] = (200,)):
        self.context = positive(context, "task.context")
        if self.context > 16:
            raise ConfigError(f"task.context={self.context}: a table of 2^{self.context} probabilities per sequence is too large; use at most 16")
        self.input_size = self.output_size = 1
        lengths = [positive(length, "task.length")] + [positive(n, "task.test_lengths") for n in test_lengths]
        if min(lengths) <= self.context:
            raise ConfigError(f"sequence length {min(lengths)} <= task.context={self.context}: a sequence needs more bits than its context")
        super().__init__(lengths[:1], lengths[1:])

    def bits(self, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """(B, T) bits: c coin flips, then each bit drawn with its context's probability
        from the sequence's own table."""
        table = beta_half((batch_size, 2**self.context), generator)
        uniforms = torch.rand(batch_size, length, generator=generator, dtype=torch.float64)
        bits = torch.zeros(batch_size, length, dtype=torch.long)
        bits[:, : self.context] = (uniforms[:, : self.context] < 0.5).long()
        mask = 2**self.context - 1
        contexts = torch.zeros(batch_size, dtype=torch.long)
        for t in range(self.context):
            contexts = (contexts << 1) | bits[:, t]
        for t in range(self.context, length):
            bits[:, t] = (uniforms[:, t] < table.gather(1, contexts[:, None]).squeeze(1)).long()
            contexts = ((contexts << 1) | bits[:, t]) & mask
        return bits

    def episode(self, batch_size: int, level: int, generator: torch.Generator) -> Episode:
        bits = self.bits(batch_size, level, generator).float()
        inputs = torch.zeros(batch_size, level, 1)
        inputs[:, 1:, 0] = bits[:, :-1]
        return Episode(inputs, bits.unsqueeze(-1), torch.ones(batch_size, level))

    def reference_metrics(self, episode: Episode) -> dict[str, float]:
        """The optimal estimator's cost on the episode's sequences, mean per sequence."""
        bits = episode.targets[..., 0].cpu()
        return {"optimal_cost_bits": float(optimal_cost_bits(bits, self.context).mean())}
