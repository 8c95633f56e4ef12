"""The paper-shaped figures' data, worked by hand: seeds below the criterion against
sequences, the locations a trace uses, trace levels in order, and our points beside a
claim's numbers from the paper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ntm_repro.claims import _claim
from ntm_repro.report.figures import used_locations
from ntm_repro.report.traces import level_order, r_squared, trace_statistics
from ntm_repro.report import stats
from ntm_repro.report.paper_figures import overlay_points
from ntm_repro.report.stats import share_below
from ntm_repro.report.verdicts import Verdict


def val_rows(run: str, errors: list[float], label: str = "ntm") -> pd.DataFrame:
    return pd.DataFrame({"task": "copy", "label": label, "run": run, "sequences": [1000 * (i + 1) for i in range(len(errors))],
                         "bit_errors": errors})


def test_share_below_counts_seeds_at_each_point_and_those_holding_from_there():
    val = pd.concat([
        val_rows("a", [5, 0, 0, 0]),  # below from 2,000 on
        val_rows("b", [0, 5, 0, 5]),  # below at 1,000 and 3,000, never holding
        val_rows("c", [5, 5]),  # stopped at 2,000: its last point carried forward
    ])
    shares = share_below(val, criterion=0.1).set_index("sequences")
    assert shares["below"].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1 / 3])
    assert shares["holding"].tolist() == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3])
    assert set(shares["runs"]) == {3}


def test_used_locations_are_the_shortest_arc_holding_every_weighted_one_padded():
    write = np.zeros((4, 1, 32))
    write[:, 0, 5] = 1.0
    read = np.zeros((4, 1, 32))
    read[1, 0, 9] = 0.5
    read[2, 0, 20] = 0.005  # below USED_WEIGHT: not in use
    assert used_locations({"write_weights": write, "read_weights": read}).tolist() == list(range(3, 12))
    read[3, 0, 30] = 0.5  # heads that wrapped: 30 .. 31, 0 .. 9 is the short way round
    assert used_locations({"write_weights": write, "read_weights": read}).tolist() == [28, 29, 30, 31, *range(0, 12)]
    read[0, 0, ::4] = 0.5  # in use all round (no gap wider than the padding): every location
    assert used_locations({"write_weights": write, "read_weights": read}).tolist() == list(range(32))
    assert used_locations({"inputs": np.zeros((3, 2))}).tolist() == []  # an LSTM: no heads


def test_trace_levels_in_order():
    names = ["length_120.npz", "length_20.npz", "length_10.npz"]
    assert sorted(names, key=level_order) == ["length_10.npz", "length_20.npz", "length_120.npz"]
    assert level_order("attention/length_x_repeats_10x20.npz") == (10, 20)


def test_overlay_points_take_the_claims_runs_of_each_group_in_the_figure():
    entry = {"id": "G1", "source": "s", "claim": "c", "paper": "p", "statistic": "s", "deviations": [],
             "experiment": "experiment=a,b seed=0-1", "rule": "r",
             "figure": {"title": "t", "points": [{"group": "a", "x": 100, "y": 4.8}, {"group": "b", "x": 100, "y": 0.1}]}}
    claim = _claim(entry, "t.yaml")
    tags = {"a0": ("a",), "b0": ("b",)}
    verdict = Verdict(claim, "inconclusive", [], [], [], 2, tags)
    metrics = pd.concat([val_rows("a0", [3, 2]), val_rows("b0", [1, 0], label="lstm"), val_rows("other", [9, 9])])
    metrics = metrics.assign(split="val", cost_bits=metrics["bit_errors"] * 2)
    ((claim_id, figure, ours),) = overlay_points([verdict], metrics, pd.DataFrame())
    assert claim_id == "G1" and figure["title"] == "t"
    assert ours.sort_values(["run", "x"])[["run", "group", "x", "y"]].values.tolist() == [
        ["a0", "a", 1000, 6], ["a0", "a", 2000, 4], ["b0", "b", 1000, 2], ["b0", "b", 2000, 0]]
    # at test levels instead
    claim = _claim({**entry, "figure": {**entry["figure"], "x": "level"}}, "t.yaml")
    levels = pd.DataFrame({"run": ["a0", "a0", "b0"], "label": "ntm", "level": ["6", "10", "6"], "cost_bits": [0.5, 2.0, 30.0]})
    ((_, _, ours),) = overlay_points([Verdict(claim, "", [], [], [], 2, tags)], metrics, levels)
    assert ours[["run", "x", "y"]].values.tolist() == [["a0", 6, 0.5], ["a0", 10, 2.0], ["b0", 6, 30.0]]


def one_hot(locations: list[int], size: int) -> np.ndarray:
    weights = np.zeros((len(locations), 1, size))
    weights[np.arange(len(locations)), 0, locations] = 1.0
    return weights


def test_the_copy_algorithm_read_off_a_trace(tmp_path):
    """Length 4 on 8 locations: writes 6, 7, 0, 1 (wrapping), the delimiter, reads 6, 7, 0, 1;
    the write head idle (spread evenly) while the read head works does not blunt its focus."""
    mask = np.array([False] * 5 + [True] * 4)
    write = one_hot([6, 7, 0, 1, 2, 2, 2, 2, 2], 8)
    write[5:] = 1 / 8
    read = one_hot([0, 0, 0, 0, 0, 6, 7, 0, 1], 8)
    path = tmp_path / "length_4.npz"
    np.savez(path, inputs=np.zeros((9, 10)), mask=mask, write_weights=write, read_weights=read, task="copy")
    stats = trace_statistics(str(path))
    assert stats["write_moves_one"] == 1.0 and stats["read_moves_one"] == 1.0
    assert stats["read_starts_at_write_start"] == 1.0 and stats["max_weight"] == 1.0
    assert np.isnan(stats["write_priority_r2"])  # not priority sort
    assert stats["weight_entropy"] == pytest.approx(0.0, abs=1e-12)  # the idle write steps do not count
    uniform = read.copy()
    uniform[5:] = 1 / 8  # Nielsen's failure mode for the read head: 4 sharp writes, 4 uniform reads
    np.savez(path, inputs=np.zeros((9, 10)), mask=mask, write_weights=write, read_weights=uniform, task="copy")
    assert trace_statistics(str(path))["weight_entropy"] == pytest.approx(0.5)
    read = one_hot([0, 0, 0, 0, 0, 3, 3, 4, 6], 8) * 0.5  # reads elsewhere, one step of three moves by one; weights 0.5
    np.savez(path, inputs=np.zeros((9, 10)), mask=mask, write_weights=write, read_weights=read, task="copy")
    stats = trace_statistics(str(path))
    assert stats["read_moves_one"] == pytest.approx(1 / 3) and stats["read_starts_at_write_start"] == 0.0
    assert stats["max_weight"] == pytest.approx(0.75)
    np.savez(path, inputs=np.zeros((9, 10)), mask=mask, outputs=np.zeros((9, 8)), task="copy")  # an LSTM
    assert all(np.isnan(v) for v in trace_statistics(str(path)).values())


def test_priority_sort_writes_against_priority_unwrap_the_circle(tmp_path):
    """Five vectors written at 30, 31, 0, 1, 2 of 32 locations by rising priority: a line once
    the circle is cut at its largest gap (R^2 = 1); shuffled locations fit worse."""
    priorities = np.array([-0.8, -0.4, 0.0, 0.4, 0.8])
    inputs = np.zeros((5 + 1 + 3, 10))
    inputs[:5, -2] = priorities
    inputs[5, -1] = 1.0
    mask = np.array([False] * 6 + [True] * 3)
    path = tmp_path / "vectors_5.npz"

    def r2(locations):
        write = one_hot(locations + [0] * 4, 32)
        np.savez(path, inputs=inputs, mask=mask, write_weights=write, read_weights=write, task="priority_sort")
        return trace_statistics(str(path))["write_priority_r2"]

    assert r2([30, 31, 0, 1, 2]) == pytest.approx(1.0)
    assert r2([1, 31, 2, 30, 0]) == pytest.approx(r_squared(priorities, np.array([3, 1, 4, 0, 2])))
    assert r2([1, 31, 2, 30, 0]) < 0.5


def test_along_trends_are_spearman_correlations_with_sequences_trained():
    along = pd.DataFrame({
        "run": ["a"] * 6 + ["b"] * 2,
        "sequences_trained": [10, 10, 20, 20, 30, 30, 10, 20],
        "level": [50, 120] * 3 + [50, 50],
        "cost_bits": [9, 9, 5, 9, 1, 9, 1, 2],
        "bit_errors": [4, 3, 2, 3, 0, 4, 1, 2],
    })
    trends = stats.along_trends(along).set_index("run")
    assert trends.loc["a", "along.bit_errors@50"] == pytest.approx(-1.0)  # falls steadily
    assert np.isnan(trends.loc["a", "along.cost_bits@120"])  # constant
    # bit errors 3, 3, 4 against 10, 20, 30: midranks 1.5, 1.5, 3 -> correlation 0.866
    assert trends.loc["a", "along.bit_errors@120"] == pytest.approx(np.sqrt(3) / 2)
    assert np.isnan(trends.loc["b", "along.bit_errors@50"])  # two points: no trend
    assert stats.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(1 - 6 * 2 / (4 * 15))
