"""The windowed convergence rule, loss spikes and collapses, on hand-made logs with outcomes worked
out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntm_repro.report.stats import (
    Criteria, collapses, first_reached, held_from, outcome, spike_points, spike_rate_ratio, spike_starts,
)

CRITERIA = Criteria()  # criterion 0.1, window 0.1, min_points 5
EVERY_1000 = np.arange(1, 21) * 1000.0  # 20 validation points, the last at the budget of 20,000
EVERY_200 = np.arange(1, 51) * 200.0  # 50 points to 10,000: its last 10% (>= 9,000) holds 6 of them
LOG = np.arange(1, 801) * 25  # a training log every 25 sequences, 800 points


def below_from(sequences: np.ndarray, start: float, before: float = 3.0) -> np.ndarray:
    """Bit errors ``before`` until ``start``, 0.01 from there on."""
    return np.where(sequences >= start, 0.01, before)


def test_held_from_and_first_reached():
    seqs = np.array([0, 100, 200, 300, 400])
    assert held_from(seqs, [40, 0.05, 0.01, 0.0, 0.02], 0.1) == 100
    assert held_from(seqs, [40, 0.05, 3.0, 0.0, 0.02], 0.1) == 300  # dipped, rose, then held
    assert math.isnan(held_from(seqs, [40, 0.05, 0.01, 0.0, 0.5], 0.1))  # rose at the end
    assert math.isnan(held_from(seqs, [40, 0.05, np.nan], 0.1))  # NaN (diverged) is not below
    assert math.isnan(held_from([], [], 0.1))
    assert first_reached(seqs, [40, 0.05, 3.0, 0.0, 0.5], 0.1) == 100
    assert math.isnan(first_reached(seqs, [40] * 5, 0.1))


def test_below_only_at_the_last_two_of_twenty_points_is_not_confirmed():
    # The old rule (below from some point to the end) called this run converged at 19,000;
    # the window (18,000..20,000: 3 points, so the last 5, 16,000..20,000) is not all below.
    errors = below_from(EVERY_1000, 19_000)
    assert outcome(EVERY_1000, errors, 20_000, CRITERIA) == "not confirmed"
    assert held_from(EVERY_1000, errors, 0.1) == first_reached(EVERY_1000, errors, 0.1) == 19_000


def test_below_over_the_last_tenth_is_converged():
    errors = below_from(EVERY_200, 8_000)
    errors[(EVERY_200 >= 3_000) & (EVERY_200 <= 3_400)] = 0.05  # an early dip below, then back up
    assert outcome(EVERY_200, errors, 10_000, CRITERIA) == "converged"
    assert held_from(EVERY_200, errors, 0.1) == 8_000
    assert first_reached(EVERY_200, errors, 0.1) == 3_000


def test_held_only_from_inside_a_window_of_enough_points_is_not_confirmed():
    # the window 9,000..10,000 holds 6 points: the first (9,000) is above, though the last 5 are below
    assert outcome(EVERY_200, below_from(EVERY_200, 9_200), 10_000, CRITERIA) == "not confirmed"
    assert outcome(EVERY_200, below_from(EVERY_200, 9_000), 10_000, CRITERIA) == "converged"


def test_below_early_then_back_up_is_reached_not_held():
    errors = below_from(EVERY_1000, 5_000)
    errors[EVERY_1000 >= 12_000] = 2.0
    assert outcome(EVERY_1000, errors, 20_000, CRITERIA) == "reached, not held"
    assert first_reached(EVERY_1000, errors, 0.1) == 5_000 and math.isnan(held_from(EVERY_1000, errors, 0.1))
    assert outcome(EVERY_1000, np.full(20, 3.0), 20_000, CRITERIA) == "never reached"


def test_a_window_with_fewer_than_min_points_uses_the_last_min_points():
    # 18,000..20,000 holds 3 points: the last 5 (16,000..20,000) are judged instead
    assert outcome(EVERY_1000, below_from(EVERY_1000, 16_000), 20_000, CRITERIA) == "converged"
    assert outcome(EVERY_1000, below_from(EVERY_1000, 17_000), 20_000, CRITERIA) == "not confirmed"
    assert outcome(EVERY_1000, below_from(EVERY_1000, 18_000), 20_000, Criteria(min_points=3)) == "converged"
    few = EVERY_1000[:3]  # fewer points than min_points in all: every point judged
    assert outcome(few, [0.01] * 3, 3_000, CRITERIA) == "converged"
    assert outcome(few, [3.0, 0.01, 0.01], 3_000, CRITERIA) == "not confirmed"


def test_a_run_stopped_before_its_window_is_not_confirmed():
    seqs, errors = EVERY_1000[:10], below_from(EVERY_1000[:10], 2_000)  # stopped at 10,000 of 20,000
    assert outcome(seqs, errors, 20_000, CRITERIA) == "not confirmed"
    # no budget in the config: the last sequences logged (10,000) stand in, the last 5 points judged
    assert outcome(seqs, errors, math.nan, CRITERIA) == "converged"


def test_a_flat_noisy_log_has_no_spike_and_one_excursion_is_one_spike():
    window = CRITERIA.spike_window  # the default, 50: noise alone gives ~0.1 false spikes per 1,600 points
    noise = np.random.default_rng(0).normal(0, 9, len(LOG))
    costs = 80 + noise  # a model that never learns: noise only
    assert spike_starts(LOG, costs, window, 1.0) == ()
    costs[300:303] += 100  # three consecutive points far above: one spike, from the first of them
    assert spike_starts(LOG, costs, window, 1.0) == (LOG[300],) == (7_525,)
    assert spike_points(costs, window, 1.0)[300:303].all()


def test_noise_alone_rarely_makes_a_spike_at_the_default_window():
    """200 noise-only logs of 1,600 points (a 40,000-sequence run logged every 25): at
    most a fifth have any spike (measured: 10% at window 50, 64% at window 20)."""
    logs = 80 + np.random.default_rng(2).normal(0, 9, (200, 1_600))
    with_spike = [bool(spike_starts(np.arange(1_600) * 25, log, CRITERIA.spike_window, 1.0)) for log in logs]
    assert np.mean(with_spike) <= 0.2


def test_two_separate_jumps_of_a_converged_run_are_two_spikes():
    costs = 0.01 + np.abs(np.random.default_rng(1).normal(0, 0.002, len(LOG)))
    costs[100] = costs[250] = costs[251] = 5.0  # MAD ~0.001: the 1-bit floor decides
    assert spike_starts(LOG, costs, 20, 1.0) == (LOG[100], LOG[250])
    assert spike_starts(LOG, costs, 20, 5.0) == ()  # 5 - 0.01 is not more than 5 bits above


def test_the_first_window_points_and_falling_costs_are_never_spikes():
    costs = np.full(40, 50.0)
    costs[19] = 500.0  # point 19 has only 19 points before it
    assert not spike_points(costs, 20, 1.0).any()
    costs[30] = 500.0
    assert spike_starts(np.arange(40), costs, 20, 1.0) == (30,)
    learning = np.concatenate([np.full(50, 80.0), np.full(50, 2.0)])  # a sudden drop is not a spike
    assert spike_starts(np.arange(100), learning, 20, 1.0) == ()
    assert spike_starts(np.arange(10), np.full(10, 1.0), 20, 1.0) == ()  # too short a log to judge


@pytest.mark.parametrize("window", [4, 20])
def test_the_baseline_is_the_preceding_window(window):
    # a step from 10 to 20 bits: point 60 + k has k points at 20 before it, so the median of
    # the window before it is 10 (and its MAD 0) while k < window / 2: that many spike points
    # in a row, one spike; once half the window is at 20 the step is the new baseline
    costs = np.concatenate([np.full(60, 10.0), np.full(40, 20.0)])
    flags = spike_points(costs, window, 1.0)
    assert np.flatnonzero(flags).tolist() == list(range(60, 60 + window // 2))
    assert spike_starts(np.arange(100), costs, window, 1.0) == (60,)
    assert spike_starts(np.arange(100), costs, window, 10.0) == ()  # 10 bits above is not more than 10


def test_spike_rate_ratio_is_the_rate_at_the_lower_half_of_the_loss_range_over_the_upper():
    # 200 points at 20 bits, then 200 at 2 (window 20, no noise: the 1-bit floor decides).
    # Levels (median of the 20 points before) of points 20-399: 20 for 20-209, 11 at 210
    # (10 and 10), 2 for 211-399. The range's midpoint is (2 + 20) / 2 = 11: the lower half
    # is points 211-399 (189 points), the upper 20-210 (191)
    costs = np.concatenate([np.full(200, 20.0), np.full(200, 2.0)])
    assert math.isnan(spike_rate_ratio(costs, 20, 1.0))  # no spike: no value
    costs[300] += 5.0
    assert spike_rate_ratio(costs, 20, 1.0) == math.inf  # none in the upper half
    costs[[100, 350]] += 5.0  # one spike at 20 bits, two at 2
    assert spike_starts(np.arange(400), costs, 20, 1.0) == (100, 300, 350)
    assert spike_rate_ratio(costs, 20, 1.0) == pytest.approx((2 / 189) / (1 / 191))
    costs[[301, 302]] += 5.0  # 300-302 in a row: still one spike, counted once
    assert spike_rate_ratio(costs, 20, 1.0) == pytest.approx((2 / 189) / (1 / 191))
    costs[209] += 5.0  # 7 bits against a level of 20 (9 of the 20 points before are at 2): no spike
    costs[[50, 150]] += 5.0  # two more at the higher level
    assert spike_rate_ratio(costs, 20, 1.0) == pytest.approx((2 / 189) / (3 / 191))
    flat = np.full(100, 5.0)
    flat[60] = 9.0
    assert math.isnan(spike_rate_ratio(flat, 20, 1.0))  # one level: no range to split


def test_collapses_count_each_fall_back_after_learning():
    """Returns above 10 bit errors after first reaching below 1, each excursion once."""
    assert collapses([40, 30, 12, 11, 40], 1.0, 10.0) == 0  # never learned: high is not a collapse
    assert collapses([40, 0.5, 20, 30, 0.2, 0.1], 1.0, 10.0) == 1  # two high points in a row: one
    assert collapses([40, 0.5, 20, 0.3, 35, 0.1, 11], 1.0, 10.0) == 3  # the last one unrecovered too
    assert collapses([40, 0.5, 9.9, 5, 0.1], 1.0, 10.0) == 0  # up, but not above 10
    assert collapses([40, 1.0, 20], 1.0, 10.0) == 0  # 1.0 is not below 1
    assert collapses([40, 0.9, np.nan, 20], 1.0, 10.0) == 1  # a NaN point neither learns nor collapses
    assert collapses([], 1.0, 10.0) == 0
