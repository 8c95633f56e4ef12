"""The two metrics of the NTM paper, per sequence, on the scored (masked) steps only:
cost in bits (binary cross-entropy in base 2, summed over output bits) and bit errors
(outputs thresholded at 0.5)."""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
from pytorch_lightning.plugins.precision import Precision
from torch.nn import functional as F

from ntm_repro.tasks.base import Episode

LN2 = math.log(2.0)


def cost_nats(logits: torch.Tensor, episode: Episode) -> torch.Tensor:
    """Cross-entropy of sigmoid outputs in nats, summed over scored bits, mean over sequences:
    the training loss."""
    weight = episode.mask.unsqueeze(-1)
    return F.binary_cross_entropy_with_logits(logits, episode.targets, weight=weight, reduction="sum") / logits.shape[0]


def bit_errors(logits: torch.Tensor, episode: Episode, channels: tuple[int, int] | None = None) -> torch.Tensor:
    """Scored output bits on the wrong side of 0.5, mean over sequences (sigmoid(x) > 0.5 iff x > 0);
    of the output channels [start, stop) of ``channels`` alone if given."""
    wrong = (logits > 0) != (episode.targets > 0.5)
    if channels is not None:
        wrong = wrong[..., channels[0] : channels[1]]
    return (wrong * episode.mask.unsqueeze(-1)).sum() / logits.shape[0]


#: A task's figures for an episode beside the model's (e.g. the n-gram optimal cost).
Reference = Callable[[Episode], "dict[str, float]"]

#: Sequence-steps (sequences x steps x seeds) one evaluation forward pass takes at most: the
#: fused engine keeps every step's memory (2 x N x W floats per sequence-step, 20 kB at
#: 128 x 20), so 1,000 n-gram sequences of 200 steps for 5 seeds at once would need 20 GB;
#: at this bound about 0.7 GB. Held-out sets this small (copy's, recall's) run in one pass.
EVAL_SEQUENCE_STEPS = 2**15


def row_chunks(sequences: int, steps: int, seeds: int, budget: int = EVAL_SEQUENCE_STEPS) -> list[slice]:
    """The batch rows of an evaluation forward pass, in order, each slice at most ``budget``
    sequence-steps over the ``seeds`` (one sequence at the least)."""
    rows = max(1, budget // max(1, steps * seeds))
    return [slice(start, min(start + rows, sequences)) for start in range(0, sequences, rows)]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, episodes: list[Episode], reference: Reference | None = None, precision: Precision | None = None,
    scored_apart: dict[str, tuple[int, int]] | None = None,
) -> list[dict[str, float]]:
    """Mean cost in bits and bit errors per sequence over ``episodes``, without autograd,
    and the mean of every ``reference`` figure: one dict per seed of the population
    ``model`` (:class:`~ntm_repro.models.population.Population`), every seed on the same
    episodes; under ``precision`` (the trainer's ``trainer.precision`` plugin, as in
    training: inputs converted, autocast where it is mixed); ``<name>_bit_errors`` for every
    channel range of ``scored_apart`` (a task's :attr:`~ntm_repro.tasks.base.Task.scored_apart`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    seeds = model.seeds
    totals = [{"cost_bits": 0.0, "bit_errors": 0.0} for _ in range(seeds)]
    sequences = 0
    for episode in episodes:
        extra = reference(episode) if reference else {}
        episode = Episode(*(tensor.to(device) for tensor in episode))
        if precision is not None:
            episode = precision.convert_input(episode)
        size, steps = episode.inputs.shape[:2]
        for seed_totals in totals:  # the task's own figures, of the whole episode
            for name, value in extra.items():
                seed_totals[name] = seed_totals.get(name, 0.0) + value * size
        for rows in row_chunks(size, steps, seeds, EVAL_SEQUENCE_STEPS):
            part = Episode(*(tensor[rows] for tensor in episode))
            with precision.forward_context() if precision is not None else contextlib.nullcontext():
                per_seed = model(part.inputs.expand(seeds, *part.inputs.shape)).unbind(0)
            for logits, seed_totals in zip(per_seed, totals):
                figures = {"cost_bits": float(cost_nats(logits, part)) / LN2, "bit_errors": float(bit_errors(logits, part))}
                figures.update({f"{name}_bit_errors": float(bit_errors(logits, part, channels)) for name, channels in (scored_apart or {}).items()})
                for name, value in figures.items():
                    seed_totals[name] = seed_totals.get(name, 0.0) + value * logits.shape[0]
        sequences += size
    model.train(was_training)
    return [{name: total / sequences for name, total in seed_totals.items()} for seed_totals in totals]
