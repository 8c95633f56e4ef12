"""The copy task (ntm_repro.tasks.copy): episode layout by hand, the length distribution,
determinism and config errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm_repro.errors import ConfigError
from ntm_repro.tasks.base import Episode
from ntm_repro.tasks.copy import CopyTask


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sizes():
    task = CopyTask(bits=8)
    assert task.input_size == 9  # 8 bits + the delimiter channel
    assert task.output_size == 8
    assert task.train_levels == list(range(1, 21))  # U{1..20} by default
    assert task.test_levels == [10, 20, 30, 50, 120]


def test_episode_layout_by_hand():
    # bits = 2, L = 2: 2L + 1 = 5 steps. With the drawn vectors s0 = [a, b], s1 = [c, d]:
    #   inputs          targets       mask
    #   t0: [a, b, 0]   [0, 0]        0
    #   t1: [c, d, 0]   [0, 0]        0
    #   t2: [0, 0, 1]   [0, 0]        0     <- delimiter at step L on channel `bits`
    #   t3: [0, 0, 0]   [a, b]        1
    #   t4: [0, 0, 0]   [c, d]        1
    task = CopyTask(bits=2, min_length=1, max_length=3)
    episode = task.episode(3, 2, gen(0))
    assert isinstance(episode, Episode)
    for b in range(3):
        (a, bb), (c, d) = episode.inputs[b, :2, :2].tolist()
        assert {a, bb, c, d} <= {0.0, 1.0}
        expected_inputs = torch.tensor([[a, bb, 0], [c, d, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])
        expected_targets = torch.tensor([[0, 0], [0, 0], [0, 0], [a, bb], [c, d]])
        assert torch.equal(episode.inputs[b], expected_inputs)
        assert torch.equal(episode.targets[b], expected_targets)
        assert torch.equal(episode.mask[b], torch.tensor([0.0, 0, 0, 1, 1]))


@pytest.mark.parametrize("bits,length", [(8, 1), (8, 5), (3, 7), (1, 4)])
def test_episode_layout_general(bits, length):
    task = CopyTask(bits=bits, min_length=1, max_length=10)
    batch = 4
    inputs, targets, mask = task.episode(batch, length, gen(length))
    steps = 2 * length + 1
    assert inputs.shape == (batch, steps, bits + 1)
    assert targets.shape == (batch, steps, bits)
    assert mask.shape == (batch, steps)
    # binary everywhere
    for tensor in (inputs, targets, mask):
        assert ((tensor == 0) | (tensor == 1)).all()
    # delimiter only at step L on channel `bits`
    delimiter = torch.zeros(batch, steps)
    delimiter[:, length] = 1
    assert torch.equal(inputs[..., bits], delimiter)
    # no input bits at or after the delimiter; nothing at all after it
    assert (inputs[:, length:, :bits] == 0).all()
    assert (inputs[:, length + 1 :] == 0).all()
    # targets are the input bits shifted by L + 1, zero before
    assert torch.equal(targets[:, length + 1 :], inputs[:, :length, :bits])
    assert (targets[:, : length + 1] == 0).all()
    # mask exactly on the L output steps
    assert torch.equal(mask, torch.cat([torch.zeros(batch, length + 1), torch.ones(batch, length)], 1))
    assert mask.sum().item() == batch * length


def test_episode_bits_are_not_constant():
    # 8 bits x 20 steps x 16 sequences: both values occur (the generator is used).
    inputs, _, _ = CopyTask().episode(16, 20, gen(1))
    bits = inputs[:, :20, :8]
    assert 0.3 < bits.mean().item() < 0.7


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    low=st.integers(1, 6),
    width=st.integers(0, 4),
)
def test_sample_lengths_within_range_and_all_reached(seed, low, width):
    high = low + width
    task = CopyTask(bits=2, min_length=low, max_length=high)
    generator = gen(seed)
    seen = set()
    for _ in range(150):  # at most 5 lengths: P(missing one) <= 5 * (4/5)^150 < 1e-13
        inputs, targets, mask = task.sample(1, generator)
        steps = inputs.shape[1]
        assert steps % 2 == 1
        length = (steps - 1) // 2
        assert low <= length <= high
        assert mask.sum().item() == length
        seen.add(length)
    assert seen == set(range(low, high + 1))


def test_sample_shares_one_length_per_batch():
    task = CopyTask(bits=3, min_length=1, max_length=20)
    inputs, _, mask = task.sample(8, gen(5))
    length = (inputs.shape[1] - 1) // 2
    assert (mask.sum(1) == length).all()
    assert (inputs[:, length, 3] == 1).all()


def test_same_seed_same_episode():
    task = CopyTask(bits=8, min_length=1, max_length=20)
    first, second = task.sample(4, gen(123)), task.sample(4, gen(123))
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # and the whole stream of episodes, not just the first
    g1, g2 = gen(7), gen(7)
    for _ in range(5):
        for a, b in zip(task.sample(2, g1), task.sample(2, g2)):
            assert torch.equal(a, b)


def test_different_seeds_differ():
    task = CopyTask(bits=8, min_length=10, max_length=10)
    assert not torch.equal(task.sample(4, gen(1)).inputs, task.sample(4, gen(2)).inputs)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"min_length": 5, "max_length": 4}, "task.min_length"),
        ({"min_length": 0, "max_length": 4}, "task.min_length"),
        ({"min_length": -1, "max_length": 4}, "task.min_length"),
        ({"min_length": 1, "max_length": 0}, "task.max_length"),
        ({"bits": 0}, "task.bits"),
        ({"test_lengths": [10, 0]}, "task.test_lengths"),
    ],
)
def test_bad_config_raises(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        CopyTask(**kwargs)


def test_empty_range_message_names_both_keys():
    with pytest.raises(ConfigError, match=r"task\.min_length=5 > task\.max_length=4"):
        CopyTask(min_length=5, max_length=4)
