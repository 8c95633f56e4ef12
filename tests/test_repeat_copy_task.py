"""Repeat copy generator (Graves et al. 2014, 4.2)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm_repro.errors import ConfigError
from ntm_repro.tasks.repeat_copy import RepeatCopyTask


def test_layout_by_hand():
    # bits 2, L = 2, R = 3: 2 vector steps, 1 delimiter+count step, 3 * 2 + 1 output steps -> 10
    task = RepeatCopyTask(bits=2, min_length=1, max_length=2, min_repeats=1, max_repeats=3)
    assert (task.input_size, task.output_size) == (4, 3)
    inputs, targets, mask = (t[0] for t in task.episode(1, (2, 3), torch.Generator().manual_seed(0)))
    assert inputs.shape == (10, 4) and targets.shape == (10, 3)
    seq = inputs[:2, :2]
    assert inputs[:2, 2:].abs().sum() == 0  # no delimiter or count during the sequence
    assert inputs[2].tolist()[:3] == [0.0, 0.0, 1.0]
    # repeats U{1..3}: mean 2, variance (3^2 - 1) / 12 = 2/3 -> R = 3 is (3 - 2) / sqrt(2/3)
    assert inputs[2, 3].item() == pytest.approx(1 / math.sqrt(2 / 3))
    assert inputs[3:].abs().sum() == 0  # blank while answering
    assert mask.tolist() == [0.0] * 3 + [1.0] * 7
    assert torch.equal(targets[3:9, :2], torch.cat([seq, seq, seq]))
    assert targets[3:9, 2].abs().sum() == 0  # end channel silent while copying
    assert targets[9].tolist() == [0.0, 0.0, 1.0]  # then the end marker alone
    assert targets[:3].abs().sum() == 0


def test_count_is_normalised_over_the_training_range():
    task = RepeatCopyTask()  # U{1..10}: mean 5.5, variance 99 / 12
    values = torch.tensor([task.normalised_repeats(r) for r in range(1, 11)], dtype=torch.float64)
    assert values.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert values.var(unbiased=False).item() == pytest.approx(1.0)
    assert task.normalised_repeats(20) == pytest.approx((20 - 5.5) / math.sqrt(99 / 12))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), length=st.integers(1, 12), repeats=st.integers(1, 21))
def test_target_is_the_input_repeated_exactly_r_times_then_the_end_marker(seed, length, repeats):
    task = RepeatCopyTask()
    episode = task.episode(3, (length, repeats), torch.Generator().manual_seed(seed))
    for inputs, targets, mask in zip(*episode):
        scored = targets[mask == 1]
        assert scored.shape[0] == repeats * length + 1
        seq = inputs[:length, : task.bits]
        assert torch.equal(scored[:-1, : task.bits], seq.repeat(repeats, 1))
        assert scored[:-1, task.bits].sum() == 0 and scored[-1].tolist() == [0.0] * task.bits + [1.0]


def test_training_draws_cover_the_grid_and_validation_spans_it():
    task = RepeatCopyTask()
    assert len(task.train_levels) == 100 and task.test_levels == [(10, 20), (20, 10)]
    generator = torch.Generator().manual_seed(0)
    seen = {task.sample(1, generator).mask.sum().item() for _ in range(300)}
    assert max(seen) == 10 * 10 + 1 and min(seen) == 2  # both corners of U{1..10}^2 drawn
    val = task.validation_levels
    assert sorted(length for length, _ in val) == list(range(1, 11))
    assert sorted(r for _, r in val) == list(range(1, 11))
    assert task.level_label((10, 20)) == "10x20"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_repeats": 5, "max_repeats": 2}, "task.min_repeats=5 > task.max_repeats=2"),
        ({"test_levels": [[10]]}, "give [length, repeats] pairs"),
        ({"test_levels": [[10, 0]]}, "task.test_levels repeats"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RepeatCopyTask(**kwargs)


def test_the_bits_and_the_end_marker_are_also_scored_apart(compose_cfg, tmp_path):
    import csv

    from ntm_repro.training.run import train

    task = RepeatCopyTask(bits=8)
    assert task.scored_apart == {"copy": (0, 8), "marker": (8, 9)} and task.output_size == 9
    from conftest import TINY

    small = [override for override in TINY if not override.startswith("task.")]
    train(compose_cfg(*small, "task=repeat_copy", "task.max_length=3", "task.max_repeats=3", "task.test_levels=[[2,3],[3,12]]",
                      tiny=False), tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "generalisation.csv")))
    assert [row["level"] for row in rows] == ["2x3", "3x12"]
    for row in rows:  # the two parts make the whole, and the marker is one bit per sequence at most
        assert float(row["copy_bit_errors"]) + float(row["marker_bit_errors"]) == pytest.approx(float(row["bit_errors"]))
        assert 0 <= float(row["marker_bit_errors"]) <= 1
    val = [row for row in csv.DictReader(open(tmp_path / "metrics.csv")) if row["split"] == "val"]
    assert val and all(float(r["copy_bit_errors"]) + float(r["marker_bit_errors"]) == pytest.approx(float(r["bit_errors"])) for r in val)
