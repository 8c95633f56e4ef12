"""The report's statistics on hand-made frames, checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ntm_repro.report.stats import (
    NO_COMPARISON,
    Criteria,
    bootstrap_median_difference,
    comparisons,
    holm,
    mann_whitney,
    midranks,
    per_group,
    per_run,
    per_seed_generalisation,
)

VAL = np.arange(0, 1001, 100)  # 11 validation points; a budget of 1,000: the window (>= 900) holds 2, so the last 5 count
BELOW = 0.01


def errors(below_at: list[int], length: int = len(VAL)) -> list[float]:
    """Validation bit errors: below the criterion at the given point indices, 3.0 elsewhere."""
    return [BELOW if i in below_at else 3.0 for i in range(length)]


# run -> (model, status, validation bit errors, outcome, first reached, held from)
RUNS = {
    "a": ("ntm", "completed", errors([1, *range(3, 11)]), "converged", 100, 300),  # dipped at 100, held from 300
    "b": ("ntm", "completed", errors(range(5, 11)), "converged", 500, 500),
    "c": ("ntm", "diverged", errors(range(1, 11)), "diverged", 100, 100),  # its metrics never count
    "g": ("ntm", "completed", errors([]), "never reached", math.nan, math.nan),
    "d": ("lstm", "completed", errors([9, 10]), "not confirmed", 900, 900),  # the old rule: converged at 900
    "e": ("lstm", "completed", errors(range(4, 9)), "reached, not held", 400, math.nan),
    "f": ("lstm", "running", errors(range(3, 6), length=6), "not confirmed", 300, 300),  # stopped before its window
    "h": ("lstm", "completed", errors(range(4, 11)), "converged", 400, 400),
}


def frames():
    """Two models on one task: ntm converges in 2 of 4 runs (one diverged, one never
    reached), lstm in 1 of 4; the training log of run a has one spike at 1,775 sequences."""
    runs = pd.DataFrame(
        [{"run": run, "model": model, "status": status, "seed": i} for i, (run, (model, status, *_)) in enumerate(RUNS.items())]
    ).assign(task="copy", variant="", budget=1000.0, label=lambda f: f["model"])
    val = pd.concat(
        pd.DataFrame({"run": run, "split": "val", "sequences": VAL[: len(e)], "bit_errors": e, "cost_bits": np.add(e, 0.1)})
        for run, (_, _, e, *_) in RUNS.items()
    )
    log = np.arange(1, 81) * 25  # 80 points: more than the spike window of 50
    train = pd.concat(
        pd.DataFrame({"run": run, "split": "train", "sequences": log, "bit_errors": 99.0,
                      "cost_bits": np.where((log == 1775) & (run == "a"), 60.0, 50.0)})
        for run in RUNS
    )
    return runs, pd.concat([val, train])


def test_per_run_and_per_group():
    runs, metrics = frames()
    stats = per_run(runs, metrics, Criteria()).set_index("run")
    expected = pd.DataFrame(
        {run: {"outcome": o, "first_reached": first, "held_from": held} for run, (*_, o, first, held) in RUNS.items()}
    ).T
    assert stats["outcome"].to_dict() == expected["outcome"].to_dict()
    for column in ("first_reached", "held_from"):
        assert stats[column].to_dict() == pytest.approx(expected[column].astype(float).to_dict(), nan_ok=True), column
    assert stats["converged"].to_dict() == {run: o == "converged" for run, o in expected["outcome"].items()}
    assert stats["sequences_to_converge"].to_dict() == pytest.approx(
        {"a": 300, "b": 500, "c": math.nan, "g": math.nan, "d": math.nan, "e": math.nan, "f": math.nan, "h": 400},
        nan_ok=True,
    )
    assert math.isnan(stats.loc["c", "final_bit_errors"])  # diverged: no final metrics
    assert stats.loc["a", ["spikes", "spike_sequences"]].tolist() == [1, (1775,)]  # from the training rows
    assert (stats.drop(index="a")["spikes"] == 0).all()
    groups = per_group(stats.reset_index()).set_index("label")
    counts = ["runs", "converged", "not_confirmed", "reached_not_held", "never_reached", "diverged", "failed"]
    assert groups.loc["ntm", counts].tolist() == [4, 2, 0, 0, 1, 1, 0]
    assert groups.loc["lstm", counts].tolist() == [4, 1, 2, 1, 0, 0, 0]
    assert groups.loc["ntm", ["held_from_median", "held_from_min", "held_from_max"]].tolist() == [400, 300, 500]
    assert groups.loc["ntm", ["first_reached_median", "first_reached_min", "first_reached_max"]].tolist() == [300, 100, 500]
    assert groups.loc["ntm", ["spikes", "runs_with_spikes", "final_runs"]].tolist() == [1, 1, 3]
    assert groups.loc["lstm", "final_bit_errors_median"] == pytest.approx(BELOW)  # of 0.01, 0.01, 3.0, 0.01
    assert (stats["collapses"] == 0).all()  # 3 bit errors is no collapse at the default 10
    # counting returns above 2 instead: run a (below at 100, 3.0 at 200, then held) and run e
    # (below 400-800, 3.0 after) collapsed once; c (diverged) was never above
    strict = per_run(runs, metrics, Criteria(collapse_above=2.0)).set_index("run")
    assert strict["collapses"].to_dict() == {"a": 1, "b": 0, "c": 0, "g": 0, "d": 0, "e": 1, "f": 0, "h": 0}
    strict_groups = per_group(strict.reset_index()).set_index("label")
    assert strict_groups.loc["ntm", ["collapses", "runs_collapsed"]].tolist() == [1, 1]
    assert strict_groups.loc["lstm", ["collapses", "runs_collapsed"]].tolist() == [1, 1]


def test_per_seed_generalisation_carries_each_runs_outcome():
    runs, metrics = frames()
    stats = per_run(runs, metrics, Criteria())
    levels = pd.DataFrame({"run": ["a", "a", "d"], "task": "copy", "model": ["ntm", "ntm", "lstm"],
                           "label": ["ntm (x)", "ntm (x)", "lstm"], "seed": [0, 0, 4], "level": [10, 20, 10],
                           "in_training_range": True, "cost_bits": [1.0, 2.0, 3.0], "bit_errors": [0.0, 0.5, 1.0]})
    table = per_seed_generalisation(levels, stats)
    assert table.columns.tolist() == ["task", "model", "seed", "outcome", "level", "cost_bits", "bit_errors"]
    assert table[["model", "seed", "outcome", "level"]].values.tolist() == [
        ["ntm (x)", 0, "converged", 10], ["ntm (x)", 0, "converged", 20], ["lstm", 4, "not confirmed", 10]
    ]


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
    assert (row["first"], row["second"], row["n_first"], row["n_second"]) == ("ntm", "lstm", 4, 4)
    assert (row["converged_first"], row["converged_second"]) == (2, 1)
    # ntm [300, 500, inf, inf] vs lstm [400, inf, inf, inf]: midranks 1, 3, 6, 6 -> U = 16 - 10 = 6
    assert row["u"] == 6.0 and row["method"] == "exact" and row["note"] == ""
    assert row["median_difference"] == 0.0  # both medians inf (the mean of 500 and inf; inf): inf - inf counted as 0
    assert row["p_holm"] == row["p"]  # a family of one


def test_holm_matches_a_hand_computed_example():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(1 x 0.04, 0.06)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01, math.nan, 0.04, 0.03]) == pytest.approx([0.03, math.nan, 0.06, 0.06], nan_ok=True)  # NaN: not tested
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]  # capped at 1, and never below a smaller p's
    assert holm([]).tolist() == []


def test_no_comparison_when_neither_group_converged():
    def group(task: str, label: str, times: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"task": task, "label": label, "sequences_to_converge": times})

    run_stats = pd.concat([
        group("copy", "ntm", [math.nan] * 3), group("copy", "lstm", [math.nan] * 2),
        group("recall", "ntm", [1.0, 2.0, 3.0]), group("recall", "lstm", [4.0, 5.0, 6.0]),
    ])
    never, tested = comparisons(run_stats).to_dict("records")
    assert (never["n_first"], never["n_second"], never["converged_first"], never["converged_second"]) == (3, 2, 0, 0)
    assert all(math.isnan(never[k]) for k in ("u", "p", "p_holm", "median_difference", "ci_low", "ci_high"))
    assert never["note"] == NO_COMPARISON == "neither converged: no comparison"
    # the family is the one comparison with a p-value: complete separation of 3 vs 3, p = 2 / 20
    assert (tested["note"], tested["p"], tested["p_holm"]) == ("", pytest.approx(0.1), pytest.approx(0.1))


def test_structured_memory_reports_the_last_mixing_coefficients_and_memory_magnitude(tmp_path):
    """NTM1 runs x, y log mix_Mh_a/b every training row; the table takes each run's last
    row (x: a = 0.6, y: a = 0.8 -> median 0.7 [0.6, 0.8]) and the memory of the trace."""
    from ntm_repro.report.read import trace_memory_max
    from ntm_repro.report.stats import structured_memory

    for run, value in (("x", -3.0), ("y", 5.0)):
        np.savez(tmp_path / f"{run}.npz", memory=np.array([[0.5, value], [1.0, 2.0]]))
    runs = pd.DataFrame({"run": ["x", "y", "z"], "memory_max": [trace_memory_max((str(tmp_path / f"{r}.npz"),)) for r in "xy"] + [math.nan]})
    assert runs["memory_max"].tolist()[:2] == [3.0, 5.0]
    assert math.isnan(trace_memory_max(()))
    # several traces (e.g. ntm-repro-eval --levels): the largest of them, in any order
    np.savez(tmp_path / "lstm.npz", reads=np.zeros(2))
    traces = [str(tmp_path / name) for name in ("x.npz", "y.npz", "lstm.npz")]
    assert trace_memory_max(tuple(traces)) == trace_memory_max(tuple(traces[::-1])) == 5.0
    assert math.isnan(trace_memory_max((traces[2],)))
    rows = [("x", 25, 0.5, 0.5), ("x", 50, 0.6, 0.4), ("y", 25, 0.9, 0.1), ("y", 50, 0.8, 0.2)]
    metrics = pd.DataFrame(rows, columns=["run", "sequences", "mix_Mh_a", "mix_Mh_b"]).assign(split="train")
    metrics = pd.concat([metrics, pd.DataFrame({"run": ["x", "z"], "sequences": [50, 50], "split": "val"})])
    run_stats = pd.DataFrame({"run": ["x", "y", "z"], "task": "copy", "label": ["ntm1", "ntm1", "ntm"], "converged": [True, False, True]})
    (row,) = structured_memory(runs, metrics, run_stats).to_dict("records")
    assert (row["label"], row["runs"], row["converged"]) == ("ntm1", 2, 1)  # z logs no mixing: not in the table
    assert (row["mix_Mh_a_median"], row["mix_Mh_a_min"], row["mix_Mh_a_max"]) == pytest.approx((0.7, 0.6, 0.8))
    assert (row["mix_Mh_b_median"], row["memory_max_median"], row["memory_max_max"]) == pytest.approx((0.3, 4.0, 5.0))
    assert structured_memory(runs, metrics.drop(columns=["mix_Mh_a", "mix_Mh_b"]), run_stats).empty
