"""Priority sort generator (Graves et al. 2014, 4.5)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm_repro.errors import ConfigError
from ntm_repro.tasks.priority_sort import PrioritySortTask


def test_layout_and_order_by_hand():
    task = PrioritySortTask(bits=3, min_vectors=4, max_vectors=4, outputs=2, test_vectors=[4])
    assert (task.input_size, task.output_size) == (5, 3)
    inputs, targets, mask = (t[0] for t in task.episode(1, 4, torch.Generator().manual_seed(3)))
    assert inputs.shape == (7, 5) and mask.tolist() == [0.0] * 5 + [1.0] * 2
    priorities = inputs[:4, 3]
    assert inputs[4].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0] and inputs[5:].abs().sum() == 0
    first, second = priorities.argsort(descending=True)[:2].tolist()
    assert torch.equal(targets[5], inputs[first, :3]) and torch.equal(targets[6], inputs[second, :3])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_target_is_whole_rows_ordered_by_priority(seed):
    task = PrioritySortTask()
    episode = task.episode(4, 20, torch.Generator().manual_seed(seed))
    for inputs, targets, mask in zip(*episode):
        rows, priorities = inputs[:20, : task.bits], inputs[:20, task.bits]
        assert priorities.min() >= -1 and priorities.max() <= 1
        scored = targets[mask == 1]
        assert scored.shape == (16, task.bits)
        # each output row is an input row, and their priorities fall, taken from the top 16
        chosen = []
        for row in scored:
            candidates = [i for i in range(20) if torch.equal(rows[i], row) and i not in chosen]
            best = max(candidates, key=lambda i: priorities[i].item())
            chosen.append(best)
        chosen_priorities = priorities[chosen]
        assert torch.all(chosen_priorities[:-1] >= chosen_priorities[1:])
        assert chosen_priorities.min() >= priorities.sort(descending=True).values[15]


def test_not_sorted_column_by_column():
    """Sorting each bit column on its own (a known bug) would give monotone columns; whole
    rows keep their mixed bit patterns."""
    task = PrioritySortTask()
    episode = task.episode(64, 20, torch.Generator().manual_seed(0))
    scored = episode.targets[:, -16:]
    monotone = (scored[:, 1:] <= scored[:, :-1]).all(1) | (scored[:, 1:] >= scored[:, :-1]).all(1)
    assert monotone.float().mean() < 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"outputs": 21}, "task.outputs=21: more vectors than an episode of 20 gives"),
        ({"test_vectors": [10]}, "task.outputs=16: more vectors than an episode of 10 gives"),
        ({"min_vectors": 0}, "task.min_vectors"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PrioritySortTask(**kwargs)
