"""The report's statistics on hand-made frames, checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ntm_repro.report.stats import (
    Criteria,
    bootstrap_median_difference,
    comparisons,
    converged_from,
    first_below,
    mann_whitney,
    midranks,
    outlier_count,
    per_group,
    per_run,
)

SEQS = np.array([0, 100, 200, 300, 400])


def test_convergence_must_hold_to_the_end():
    assert converged_from(SEQS, [40, 0.05, 0.01, 0.0, 0.02], 0.1) == 100
    assert converged_from(SEQS, [40, 0.05, 3.0, 0.0, 0.02], 0.1) == 300  # dipped, rose, then held
    assert math.isnan(converged_from(SEQS, [40, 0.05, 0.01, 0.0, 0.5], 0.1))  # rose at the end
    assert math.isnan(converged_from(SEQS, [40, 0.05, np.nan], 0.1))  # NaN (diverged) is not below
    assert math.isnan(converged_from([], [], 0.1))
    assert first_below(SEQS, [40, 0.05, 3.0, 0.0, 0.5], 0.1) == 100


def test_outliers_count_points_far_above_the_median_after_first_reaching_the_criterion():
    errors = [40, 0.05, 30, 0.0, 0.0, 0.0]
    costs = [80, 0.1, 60, 0.1, 0.2, 0.1]  # from the first point below: median 0.1, one point above 10x
    assert outlier_count(costs, errors, 0.1, 10) == 1
    assert outlier_count(costs, errors, 0.1, 1000) == 0
    assert outlier_count(costs, [40] * 6, 0.1, 10) == 0  # never reached: nothing counted


def frames():
    """Two models on one task: ntm converges in 2 of 3 runs (one diverged), lstm in 1 of 2."""
    runs = pd.DataFrame(
        {
            "run": ["a", "b", "c", "d", "e"],
            "task": "copy",
            "model": ["ntm", "ntm", "ntm", "lstm", "lstm"],
            "variant": "",
            "seed": [0, 1, 2, 0, 1],
            "status": ["completed", "completed", "diverged", "completed", "running"],
        }
    ).assign(label=lambda f: f["model"])
    errors = {"a": [40, 0.05, 0.0], "b": [40, 5, 0.01], "c": [40, 0.01, 0.0], "d": [40, 30, 0.0], "e": [40, 0.05, 2.0]}
    metrics = pd.concat(
        pd.DataFrame({"run": run, "split": "val", "sequences": [0, 100, 200], "bit_errors": e, "cost_bits": np.add(e, 0.1)})
        for run, e in errors.items()
    )
    return runs, pd.concat([metrics, metrics.assign(split="train", bit_errors=99.0)])


def test_per_run_and_per_group():
    runs, metrics = frames()
    stats = per_run(runs, metrics, Criteria())
    assert stats.set_index("run")["sequences_to_converge"].to_dict() == pytest.approx(
        {"a": 100, "b": 200, "c": math.nan, "d": 200, "e": math.nan}, nan_ok=True
    )
    assert list(stats["converged"]) == [True, True, False, True, False]  # c diverged: not converged despite its metrics
    assert math.isnan(stats.set_index("run").loc["c", "final_bit_errors"])  # diverged: no final metrics
    groups = per_group(stats).set_index("label")
    assert groups.loc["ntm", ["runs", "converged", "reached_not_held", "final_runs"]].tolist() == [3, 2, 1, 2]
    assert groups.loc["ntm", ["seq_to_converge_median", "seq_to_converge_min", "seq_to_converge_max"]].tolist() == [150, 100, 200]
    assert groups.loc["lstm", ["converged", "reached_not_held"]].tolist() == [1, 1]
    assert groups.loc["lstm", "final_bit_errors_median"] == pytest.approx(1.0)  # of 0.0 and 2.0


def test_midranks_share_tied_ranks():
    assert midranks(np.array([3.0, 1.0, np.inf, 3.0, np.inf])).tolist() == [2.5, 1.0, 4.5, 2.5, 4.5]


def test_mann_whitney_exact_on_a_hand_checkable_case():
    # complete separation of 3 vs 3: U = 0, and 2 of the C(6,3) = 20 splits are as extreme
    assert mann_whitney([1, 2, 3], [4, 5, 6]) == (0.0, pytest.approx(0.1), "exact")
    # every run of both models never converged: no evidence of a difference
    assert mann_whitney([np.inf] * 2, [np.inf] * 3)[1] == 1.0
    # ties with the non-converged: ranks [1, 3, 3, 3], U = 1; every split is as far from 2 as this one
    assert mann_whitney([1, np.inf], [np.inf, np.inf]) == (1.0, 1.0, "exact")


def test_mann_whitney_normal_approximation():
    u, p, method = mann_whitney([1, 2, 3], [4, 5, 6], max_exact=0)
    z = (4.5 - 0.5) / math.sqrt(9 / 12 * 7)  # (|U - n1 n2 / 2| - continuity) / sd
    assert (u, method) == (0.0, "normal") and p == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert p == pytest.approx(0.0809, abs=1e-4)  # scipy.stats.mannwhitneyu(..., method="asymptotic")


def test_bootstrap_interval_of_the_difference_of_medians():
    assert bootstrap_median_difference([10, 10, 10], [4, 4, 4]) == (6.0, 6.0, 6.0)
    assert bootstrap_median_difference([np.inf] * 3, [4, 5, 6]) == (math.inf, math.inf, math.inf)
    difference, low, high = bootstrap_median_difference([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], seed=1)
    assert difference == 0 and low < 0 < high and low >= -4 and high <= 4
    assert bootstrap_median_difference([1, 5, 9], [2, 3, 4], seed=3) == bootstrap_median_difference([1, 5, 9], [2, 3, 4], seed=3)


def test_comparisons_rank_non_converged_runs_last():
    runs, metrics = frames()
    (row,) = comparisons(per_run(runs, metrics, Criteria())).to_dict("records")
    assert (row["first"], row["second"], row["n_first"], row["n_second"]) == ("ntm", "lstm", 3, 2)
    assert (row["converged_first"], row["converged_second"]) == (2, 1)
    # ntm [100, 200, inf] vs lstm [200, inf]: midranks [1, 2.5, 4.5] -> U = 8 - 6 = 2
    assert row["u"] == 2.0 and row["method"] == "exact"
    assert row["median_difference"] == -math.inf  # ntm's median 200, lstm's (200 + inf) / 2
