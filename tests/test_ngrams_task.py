"""Dynamic n-grams generator and its optimal Bayesian estimator (Graves et al. 2014, 4.4)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm_repro.errors import ConfigError
from ntm_repro.tasks.ngrams import NGramTask, beta_half, optimal_cost_bits


def sequential_cost(bits: list[int], context: int) -> float:
    """The estimator bit by bit: P(1 | N1, N0) = (N1 + 1/2) / (N1 + N0 + 1)."""
    counts: dict[tuple, list[int]] = {}
    cost = float(context)  # fair coin flips first
    for t in range(context, len(bits)):
        n0, n1 = counts.setdefault(tuple(bits[t - context : t]), [0, 0])
        p_one = (n1 + 0.5) / (n0 + n1 + 1)
        cost -= math.log2(p_one if bits[t] else 1 - p_one)
        counts[tuple(bits[t - context : t])][bits[t]] += 1
    return cost


def test_optimal_cost_by_hand():
    # context 1, bits 0 1 1 0 1: 1 (coin) + 1 (ctx 0 fresh) + 1 (ctx 1 fresh)
    # + 2 (ctx 1 after a one: P(0) = 1 - 1.5/2) + log2(4/3) (ctx 0 after a one: P(1) = 1.5/2)
    expected = 1 + 1 + 1 + 2 + math.log2(4 / 3)
    assert optimal_cost_bits(torch.tensor([[0, 1, 1, 0, 1]]), 1).item() == pytest.approx(expected)
    assert sequential_cost([0, 1, 1, 0, 1], 1) == pytest.approx(expected)


@settings(max_examples=30, deadline=None)
@given(bits=st.lists(st.integers(0, 1), min_size=4, max_size=60), context=st.integers(1, 3))
def test_closed_form_matches_the_sequential_estimator(bits, context):
    if len(bits) <= context:
        return
    assert optimal_cost_bits(torch.tensor([bits]), context).item() == pytest.approx(sequential_cost(bits, context))


def test_episode_layout():
    task = NGramTask(context=2, length=8, test_lengths=[8])
    episode = task.episode(3, 8, torch.Generator().manual_seed(0))
    assert episode.inputs.shape == (3, 8, 1) and episode.targets.shape == (3, 8, 1)
    assert episode.mask.sum().item() == 24  # every bit scored
    assert torch.equal(episode.inputs[:, 1:], episode.targets[:, :-1])  # input is the previous bit
    assert episode.inputs[:, 0].abs().sum() == 0


def test_each_sequence_gets_its_own_table():
    """With one table per sequence, a context's frequency of ones differs between sequences
    far beyond sampling noise; with one shared table it would not."""
    task = NGramTask(context=1, length=2001, test_lengths=[2001])
    bits = task.bits(200, 2001, torch.Generator().manual_seed(0)).double()
    after_zero = ((bits[:, 1:] == 1) & (bits[:, :-1] == 0)).sum(1) / (bits[:, :-1] == 0).sum(1).clamp(min=1)
    # Beta(1/2, 1/2) has variance 1/8: the spread across sequences must be of that order
    assert after_zero.std().item() > 0.25


def test_beta_half_has_the_arcsine_moments():
    x = beta_half((200000,), torch.Generator().manual_seed(0))
    assert x.mean().item() == pytest.approx(0.5, abs=0.005)
    assert x.var().item() == pytest.approx(1 / 8, abs=0.002)
    assert ((x < 0.1).double().mean().item()) == pytest.approx(2 / math.pi * math.asin(math.sqrt(0.1)), abs=0.005)


def test_optimal_cost_is_near_the_papers_floor():
    """About 133 bits per 200-bit sequence in the paper's figure."""
    task = NGramTask()
    episode = task.episode(2000, 200, torch.Generator().manual_seed(1))
    assert 128 < task.reference_metrics(episode)["optimal_cost_bits"] < 138


@pytest.mark.parametrize(
    "kwargs, message",
    [({"length": 5}, "sequence length 5 <= task.context=5"), ({"context": 0}, "task.context"), ({"context": 20}, "at most 16")],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        NGramTask(**kwargs)
