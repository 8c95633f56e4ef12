"""Associative recall generator (Graves et al. 2014, 4.3)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm_repro.errors import ConfigError
from ntm_repro.tasks.recall import RecallTask


def decode(task: RecallTask, inputs: torch.Tensor):
    """Read an episode back: the items (as tuples of bit rows) and the query item."""
    span = task.item_length + 1
    item_starts = (inputs[:, task.bits] == 1).nonzero().flatten().tolist()
    query_marks = (inputs[:, task.bits + 1] == 1).nonzero().flatten().tolist()
    items = [inputs[s + 1 : s + span, : task.bits] for s in item_starts]
    query = inputs[query_marks[0] + 1 : query_marks[1], : task.bits]
    return item_starts, query_marks, items, query


def test_layout_by_hand():
    # bits 2, items of 2 vectors, 3 items: [d v v] x 3, q v v q, blank blank -> T = 9 + 4 + 2 = 15
    task = RecallTask(bits=2, item_length=2, min_items=3, max_items=3)
    assert (task.input_size, task.output_size) == (4, 2)
    episode = task.episode(1, 3, torch.Generator().manual_seed(1))
    inputs, targets, mask = episode.inputs[0], episode.targets[0], episode.mask[0]
    assert inputs.shape == (15, 4) and targets.shape == (15, 2)
    assert (inputs[:, 2] == 1).nonzero().flatten().tolist() == [0, 3, 6]  # item delimiters
    assert (inputs[:, 3] == 1).nonzero().flatten().tolist() == [9, 12]  # query delimiters
    assert inputs[13:].abs().sum() == 0  # blank answer steps
    assert mask.tolist() == [0.0] * 13 + [1.0] * 2
    assert targets[:13].abs().sum() == 0
    # delimiter steps carry no bits
    assert inputs[[0, 3, 6, 9, 12], :2].abs().sum() == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), items=st.integers(2, 20))
def test_target_is_the_item_after_the_query(seed, items):
    task = RecallTask()
    episode = task.episode(4, items, torch.Generator().manual_seed(seed))
    for b in range(4):
        starts, marks, decoded, query = decode(task, episode.inputs[b])
        assert len(starts) == items and len(marks) == 2
        matches = [j for j in range(items - 1) if torch.equal(decoded[j], query)]
        assert matches, "the query is one of the items that has a successor"
        target = episode.targets[b][episode.mask[b] == 1]
        assert any(torch.equal(decoded[j + 1], target) for j in matches)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_training_counts_stay_in_range_and_reach_both_ends(seed):
    task = RecallTask()
    generator = torch.Generator().manual_seed(seed)
    counts = set()
    for _ in range(120):
        episode = task.sample(1, generator)
        starts = (episode.inputs[0, :, task.bits] == 1).nonzero().numel()
        counts.add(starts)
    assert counts <= set(range(2, 7))
    assert counts == set(range(2, 7))  # 2 and 6 both drawn (no off-by-one at the maximum)


def test_query_position_is_uniform_over_items_with_a_successor():
    task = RecallTask()
    episode = task.episode(3000, 4, torch.Generator().manual_seed(0))
    counts = [0] * 4
    for b in range(3000):
        _, _, items, query = decode(task, episode.inputs[b])
        matches = [j for j, item in enumerate(items) if torch.equal(item, query)]
        counts[matches[0]] += 1  # 18 random bits: a second, coincidental match is negligible
    assert counts[3] == 0  # the last item has no successor and is never the query
    assert all(abs(c - 1000) < 150 for c in counts[:3])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_items": 1}, "task.min_items=1: recall needs at least 2 items"),
        ({"min_items": 5, "max_items": 3}, "task.min_items=5 > task.max_items=3: the range is empty"),
        ({"test_items": [1, 6]}, "task.test_items=[1, 6]: every count must be at least 2"),
        ({"bits": 0}, "task.bits=0: must be a positive integer"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RecallTask(**kwargs)
