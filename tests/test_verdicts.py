"""The verdict logic on hand-made run tables: which runs belong to a claim, each kind of
check giving confirmed, contradicted, inconclusive and not run, and the power statement,
with p-values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ntm_repro.claims import LedgerError, _claim
from ntm_repro.report import verdicts
from ntm_repro.report.stats import fisher_greater, mann_whitney


def claim(experiment: str, *checks: dict, seeds: str = "0-4", **extra) -> object:
    entry = {"id": "X1", "source": "s", "claim": "c", "paper": "p", "statistic": "s", "deviations": [],
             "experiment": f"{experiment} seed={seeds}", "test": list(checks), **extra}
    return _claim(entry, "test.yaml")


def runs_table(groups: dict[str, dict], budget: float = 1000.0) -> pd.DataFrame:
    """One row per run: ``groups`` maps a model name to {"values": [...], "overrides": {...}}."""
    rows = []
    for model, spec in groups.items():
        for seed, value in enumerate(spec["values"]):
            rows.append({
                "run": f"{model}_s{seed}", "model": model, "seed": seed, "value": value, "budget": budget,
                "status": spec.get("status", "completed"),
                "overrides": {"model": model, "seed": str(seed), **spec.get("overrides", {})},
                "choices": {"model": model, "experiment": spec.get("experiment")},
                "config": spec.get("config", {}),
            })
    return pd.DataFrame(rows)


def decide(claim_, runs: pd.DataFrame, column: str, generalisation: pd.DataFrame | None = None):
    run_stats = runs[["run"]].assign(**{column: runs["value"]})
    return verdicts.decide(claim_, runs, run_stats, generalisation if generalisation is not None else pd.DataFrame())


SEQUENCES = {"compare": ["a", "b"], "statistic": "sequences_to_converge"}


def test_compare_confirms_contradicts_or_is_inconclusive():
    c = claim("model=a,b", SEQUENCES)
    # 5 against 5 fully separated: one-sided exact p = 1/252
    fast, slow = [100, 200, 300, 400, 500], [600, 700, 800, 900, 1000]
    found = decide(c, runs_table({"a": {"values": fast}, "b": {"values": slow}}), "sequences_to_converge")
    assert found.verdict == "confirmed"
    assert f"one-sided p {1 / 252:.3g}" in found.ours[0] and "a median 300 (n=5, 5 got there) vs b 800 (n=5, 5 got there)" in found.ours[0]
    found = decide(c, runs_table({"a": {"values": slow}, "b": {"values": fast}}), "sequences_to_converge")
    assert found.verdict == "contradicted"
    mixed = decide(c, runs_table({"a": {"values": [100, 600, 300, 900, 500]}, "b": {"values": [200, 700, 800, 400, 1000]}}),
                   "sequences_to_converge")
    assert mixed.verdict == "inconclusive" and mixed.power[0]


def test_differ_confirms_either_direction_and_never_contradicts():
    """5 against 5 fully separated: two-sided exact p = 2/252 either way; interleaved
    (U = 6 of 25, one-sided 28/252): two-sided 56/252, inconclusive, not contradicted."""
    c = claim("model=a,b", {"differ": ["a", "b"], "statistic": "final_bit_errors"})
    low, high = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
    for x, y in ((low, high), (high, low)):
        found = decide(c, runs_table({"a": {"values": x}, "b": {"values": y}}), "final_bit_errors")
        assert found.verdict == "confirmed" and f"two-sided p {2 / 252:.3g} (Holm {2 / 252:.3g})" in found.ours[0]
    found = decide(c, runs_table({"a": {"values": [1, 2, 3, 7, 8]}, "b": {"values": [4, 5, 6, 9, 10]}}), "final_bit_errors")
    assert found.verdict == "inconclusive" and f"two-sided p {56 / 252:.3g}" in found.ours[0] and found.power[0]
    assert "differ, two-sided Mann-Whitney" in c.rule


def test_a_run_that_never_converged_ranks_last():
    c = claim("model=a,b", SEQUENCES)
    never = [math.nan] * 5  # per_run's sequences_to_converge of runs that did not converge
    found = decide(c, runs_table({"a": {"values": [1, 2, 3, 4, 5]}, "b": {"values": never}}), "sequences_to_converge")
    assert found.verdict == "confirmed" and "b never (n=5, 0 got there)" in found.ours[0]
    neither = decide(c, runs_table({"a": {"values": never}, "b": {"values": never}}), "sequences_to_converge")
    assert neither.verdict == "inconclusive" and "neither ever got there" in neither.ours[0]


def test_holm_over_the_claims_comparisons():
    """Two comparisons each at one-sided p = 4/252 (U = 2 of 25): alone confirmed, but
    Holm doubles the smaller to 0.032 and the claim still holds; three at p = 7/252 each
    (0.028): Holm's first is 0.083, so inconclusive."""
    a, b = [1, 2, 3, 7, 8], [4, 5, 6, 9, 10]  # U = 6 (7 > 4, 5, 6 and 8 > 4, 5, 6): splits with U <= 6: 28 of 252
    assert mann_whitney(a, b, alternative="less")[1] == pytest.approx(28 / 252)
    a, b = [1, 2, 3, 4, 7], [5, 6, 8, 9, 10]  # U = 2 (7 > 5, 6)
    p = mann_whitney(a, b, alternative="less")[1]
    assert p == pytest.approx(4 / 252)
    two = claim("model=a,b,c", {"compare": ["a", "b"], "statistic": "final_cost_bits"},
                {"compare": ["a", "c"], "statistic": "final_cost_bits"})
    found = decide(two, runs_table({"a": {"values": a}, "b": {"values": b}, "c": {"values": b}}), "final_cost_bits")
    assert found.verdict == "confirmed" and f"Holm {2 * p:.3g}" in found.ours[0]
    a, b = [1, 2, 3, 5, 7], [4, 6, 8, 9, 10]  # U = 3: 5 > 4, 7 > 4, 6
    p = mann_whitney(a, b, alternative="less")[1]
    assert p == pytest.approx(7 / 252)
    three = claim("model=a,b,c,d", *({"compare": ["a", other], "statistic": "final_cost_bits"} for other in "bcd"))
    found = decide(three, runs_table({"a": {"values": a}, **{m: {"values": b} for m in "bcd"}}), "final_cost_bits")
    assert found.verdict == "inconclusive" and f"Holm {3 * p:.3g}" in found.ours[0]


def test_converged_counts_use_fishers_exact_test():
    c = claim("model=a,b", {"compare": ["a", "b"], "statistic": "converged"})
    # b 5/5 against a 0/5: p = 1/252; the other way round contradicts
    found = decide(c, runs_table({"a": {"values": [0] * 5}, "b": {"values": [1] * 5}}), "converged")
    assert found.verdict == "confirmed" and "a 0/5 vs b 5/5 converged" in found.ours[0]
    assert fisher_greater(5, 5, 0, 5) == pytest.approx(1 / 252)
    assert decide(c, runs_table({"a": {"values": [1] * 5}, "b": {"values": [0] * 5}}), "converged").verdict == "contradicted"
    # 4/5 against 1/5: P(X >= 4) = (C(5,4) C(5,1) + 1) / 252 = 26/252
    found = decide(c, runs_table({"a": {"values": [1, 0, 0, 0, 0]}, "b": {"values": [1, 1, 1, 1, 0]}}), "converged")
    assert found.verdict == "inconclusive" and f"one-sided p {26 / 252:.3g}" in found.ours[0]


def test_power_of_fishers_test_is_the_count_it_needed():
    c = claim("model=a,b", {"compare": ["a", "b"], "statistic": "converged"})
    # against 0 of 5: 4 of 5 gives (C(4,4) C(6,1)) / 252 = 6/252 < 0.05, 3 of 5 gives 21/252 > 0.05
    found = decide(c, runs_table({"a": {"values": [0] * 5}, "b": {"values": [1, 1, 0, 0, 0]}}), "converged")
    assert found.verdict == "inconclusive" and found.power == ["it needed 4 of 5 converged against 0 of 5"]
    # against 2 of 5 even 5 of 5 gives C(7,5) / 252 = 21/252: no outcome could have done it
    found = decide(c, runs_table({"a": {"values": [1, 1, 0, 0, 0]}, "b": {"values": [1, 1, 0, 0, 0]}}), "converged")
    assert found.power == ["no outcome of 5 against 5 runs reaches Holm p < 0.05 (2 of 5 converged)"]


def test_power_of_mann_whitney_is_the_smallest_shift_it_detects():
    """x = 10..50, y = 15..55 (U = 10, p = 0.35): one-sided p < 0.05 needs U <= 4 of 25
    (12/252 = 0.048; U = 5 gives 19/252). Shifting x down by just over 5 leaves U = 6; by
    just over 15, U = 3."""
    c = claim("model=a,b", {"compare": ["a", "b"], "statistic": "final_cost_bits"})
    x, y = [10, 20, 30, 40, 50], [15, 25, 35, 45, 55]
    found = decide(c, runs_table({"a": {"values": x}, "b": {"values": y}}), "final_cost_bits")
    assert found.verdict == "inconclusive"
    assert found.power == ["it would have detected the first group lower by more than 15"]
    # three runs each: the best split gives p = 1/20, never below 0.05; four each gives 1/70
    found = decide(c, runs_table({"a": {"values": x[:3]}, "b": {"values": y[:3]}}), "final_cost_bits")
    assert found.power == ["no outcome of 3 against 3 runs reaches Holm p < 0.05; 4 runs each needed"]


def test_share_checks_count_runs_meeting_a_threshold():
    check = {"share": "a", "statistic": "generalisation.bit_errors@50", "below": 1, "confirmed_at": 0.8,
             "contradicted_at": 0.4}
    c = claim("model=a", check)
    runs = runs_table({"a": {"values": [0] * 5}})
    levels = pd.DataFrame({"run": np.repeat(runs["run"], 2), "level": [30, 50] * 5, "cost_bits": 0.0,
                           "bit_errors": [9, 0.5, 9, 0.2, 9, 3.0, 9, 0.0, 9, 0.9]})
    found = decide(c, runs, "converged", levels)
    assert found.verdict == "confirmed" and "a: 4 of 5 runs with bit errors per sequence at test level 50 below 1" in found.ours[0]
    levels.loc[levels["level"] == 50, "bit_errors"] = [0.5, 2, 3, 4, 5]
    assert decide(c, runs, "converged", levels).verdict == "contradicted"  # 1 of 5: 20% <= 40%
    levels.loc[levels["level"] == 50, "bit_errors"] = [0.5, 0.5, 0.5, 4, 5]
    found = decide(c, runs, "converged", levels)
    assert found.verdict == "inconclusive" and "95% interval" in found.ours[0]
    levels.loc[levels["level"] == 50, "bit_errors"] = [0.5, 0.5, 0.5, math.nan, math.nan]
    found = decide(c, runs, "converged", levels)  # runs without a value are neither for nor against
    assert found.verdict == "confirmed" and "a: 3 of 3 runs" in found.ours[0] and "2 without a value" in found.ours[0]
    levels.loc[levels["level"] == 50, "bit_errors"] = [0.5, 4, math.nan, math.nan, math.nan]
    found = decide(c, runs, "converged", levels)  # two runs with a value say nothing
    assert found.verdict == "inconclusive" and found.ours[0] == "not counted: a: 2 run(s) with a value, fewer than 3, 3 without a value"
    found = decide(c, runs, "converged", levels[levels["level"] == 30])  # no run was tested at 50
    assert found.verdict == "inconclusive" and "0 run(s) with a value" in found.ours[0]


def test_within_checks_the_median_and_says_what_no_value_means():
    check = {"within": "a", "statistic": "spike_interval", "low": 500, "high": 2000, "if_none": "contradicted"}
    c = claim("model=a", check)
    assert decide(c, runs_table({"a": {"values": [800, 1200, 5000]}}), "spike_interval").verdict == "confirmed"
    assert decide(c, runs_table({"a": {"values": [8000, 1200, 5000]}}), "spike_interval").verdict == "contradicted"
    found = decide(c, runs_table({"a": {"values": [math.nan] * 3}}), "spike_interval")
    assert found.verdict == "contradicted" and "no run of 3 has a value" in found.ours[0]


def test_a_group_without_runs_is_not_run_and_cannot_confirm():
    c = claim("model=a,b,c", SEQUENCES, {"compare": ["a", "c"], "statistic": "sequences_to_converge"})
    found = decide(c, runs_table({"a": {"values": [1, 2, 3, 4, 5]}, "b": {"values": [6, 7, 8, 9, 10]}}),
                   "sequences_to_converge")
    assert found.verdict == "inconclusive" and found.ours[1] == "not run: no runs of c"
    only = claim("model=a,c", {"compare": ["a", "c"], "statistic": "sequences_to_converge"})
    assert decide(only, runs_table({"a": {"values": [1, 2]}}), "sequences_to_converge").verdict == "not run"
    assert verdicts.combine(["confirmed", "contradicted"]) == "contradicted"


def test_runs_belong_to_a_claim_by_the_values_of_its_overrides():
    c = claim("experiment=p/x model=a,b optimizer.lr=1e-3 model.shifts=[0,1]", SEQUENCES, seeds="0-2")
    same = {"experiment": "p/x", "overrides": {"optimizer.lr": "0.001", "model.shifts": "[0, 1]"}}
    table = runs_table({
        "a": {"values": [1, 2, 3], **same},
        "b": {"values": [4, 5], **same},
        "c": {"values": [1], **same},  # a model the claim does not name
    })
    table.loc[len(table)] = {**table.iloc[0].to_dict(), "run": "no_preset", "choices": {"model": "a", "experiment": None}}
    matched = verdicts.match(c, table)
    assert sorted(matched.tags) == ["a_s0", "a_s1", "a_s2", "b_s0", "b_s1"]
    assert matched.tags["b_s0"] == ("p/x", "b", "1e-3", "[0,1]")
    assert matched.deviations == ["runs per configuration below the ledger's 3 seeds (p/x b 1e-3 [0,1]: 2)"]
    # a claim without a preset takes only runs without one
    bare = claim("model=a", {"within": "a", "statistic": "spike_interval"})
    assert list(verdicts.match(bare, table).tags) == ["no_preset"]


def test_an_override_the_claim_does_not_name_is_a_deviation_or_an_ablation_left_out():
    c = claim("model=a,b", SEQUENCES, seeds="0-1")
    everywhere = runs_table({m: {"values": [1, 2], "overrides": {"train.val_every": "100"}} for m in "ab"}, budget=300)
    matched = verdicts.match(claim("model=a,b train.sequences=40000", SEQUENCES, seeds="0-1"), everywhere)
    assert matched.deviations == ["every run sets train.val_every=100", "budget 300 sequences, the ledger's 40,000"]
    ablation = runs_table({"a": {"values": [1, 2]}, "b": {"values": [3, 4]}})
    extra = runs_table({"a": {"values": [5, 6], "overrides": {"model.topology.mixing": "fixed"}}})
    extra["run"] = ["ablation_s0", "ablation_s1"]
    matched = verdicts.match(c, pd.concat([ablation, extra], ignore_index=True))
    assert sorted(matched.tags) == ["a_s0", "a_s1", "b_s0", "b_s1"]
    assert matched.deviations == ["2 run(s) setting model.topology.mixing (fixed) left out"]
    # runs that all set two unnamed keys, the first differently: all left out at the first key
    two = runs_table({"a": {"values": [1, 2]}})
    two["overrides"] = [{**o, "model.memory.init": init, "optimizer": "adam"} for o, init in zip(two["overrides"], ["constant", "random"])]
    matched = verdicts.match(c, two)
    assert matched.tags == {} and matched.deviations == ["2 run(s) setting model.memory.init (constant, random) left out"]
    # settings that change how a run is executed, not what it learns, are no deviation
    quiet = runs_table({m: {"values": [1, 2], "overrides": {"threads": "2", "model.engine": "reference"}} for m in "ab"})
    assert verdicts.match(c, quiet).deviations == []


def test_a_claim_without_a_machine_rule_is_listed_as_not_decided():
    entry = {"id": "X2", "source": "s", "claim": "c", "paper": "p", "statistic": "s", "deviations": [],
             "experiment": "model=a seed=0-1", "rule": "prose only"}
    found = verdicts.decide(_claim(entry, "t.yaml"), runs_table({"a": {"values": [1, 2]}}), pd.DataFrame(), pd.DataFrame())
    assert found.verdict == "not decided" and found.claim.rule == "prose only"


@pytest.mark.parametrize(
    "check, message",
    [
        ({"compare": ["a", "b"], "statistic": "speed"}, "unknown statistic 'speed'"),
        ({"compare": ["a", "z"], "statistic": "converged"}, "group 'z': z is no value of the experiment"),
        ({"compare": ["a"], "statistic": "converged"}, "compare takes two groups, \\[lower, higher\\] for compare"),
        ({"differ": ["a", "b"], "statistic": "converged"}, "differ compares values of runs"),
        ({"share": "a", "statistic": "converged"}, "share takes below: or above:"),
        ({"share": "a", "statistic": "converged", "below": "x"}, "must be numbers"),
        ({"statistic": "converged"}, "a check needs one of compare, differ, share, within"),
        ({"within": "a", "statistic": "spike_interval", "if_none": "maybe"}, "if_none must be one of"),
    ],
)
def test_a_malformed_check_is_refused_by_name(check, message):
    with pytest.raises(LedgerError, match=message):
        claim("model=a,b", check)


def test_a_share_among_converged_runs_counts_only_those():
    check = {"share": "a", "statistic": "trace.write_moves_one", "above": 0.9, "confirmed_at": 1.0,
             "contradicted_at": 0.0, "among": "converged"}
    c = claim("model=a", check)
    runs = runs_table({"a": {"values": [1.0, 0.95, 0.1, 0.2]}})
    run_stats = runs[["run"]].assign(**{"trace.write_moves_one": runs["value"], "converged": [1.0, 1.0, 0.0, 0.0]})
    found = verdicts.decide(c, runs, run_stats, pd.DataFrame())  # every value present: 2 runs are counted
    assert found.verdict == "confirmed" and found.ours[0].startswith("confirmed: a: 2 of 2 converged runs with")
    run_stats["converged"] = 0.0
    found = verdicts.decide(c, runs, run_stats, pd.DataFrame())
    assert found.verdict == "not run" and found.ours[0] == "not run: a: no converged runs"
    assert "among its converged runs" in c.rule


def test_spread_is_the_coefficient_of_variation_of_converged_runs_and_skips_small_groups():
    checks = [{"spread": m, "statistic": "sequences_to_converge", "among": "converged", "below": 0.25, "above": 0.5} for m in "ab"]
    c = claim("model=a,b", *checks)

    def found(a: list[float], b: list[float]):
        runs = runs_table({"a": {"values": a}, "b": {"values": b}})
        run_stats = runs[["run"]].assign(sequences_to_converge=runs["value"], converged=np.isfinite(runs["value"]).astype(float))
        return verdicts.decide(c, runs, run_stats, pd.DataFrame())

    never = math.inf
    # a: 100, 200, 300 -> mean 200, sample sd 100, cv 0.5 (not above 0.5); b: two converged runs, not counted
    mixed = found([100, 200, 300, never], [1000, 1000, never])
    assert mixed.ours == ["inconclusive: a: coefficient of variation 0.50 over 3 converged runs (mean 200, sd 100)",
                          "not counted: b: 2 converged run(s) with a value, fewer than 3"]
    assert mixed.verdict == "inconclusive"
    # a: 90, 100, 110 -> sd 10, cv 0.1; b still not counted: confirmed on a alone
    assert found([90, 100, 110, never], [1000, 1000, never]).verdict == "confirmed"
    # b: 10, 100, 190 -> sd 90, cv 0.9: contradicted whatever a says
    assert found([90, 100, 110], [10, 100, 190]).verdict == "contradicted"
    # no group counted: nothing to say
    assert found([100, never, never], [100, never]).verdict == "inconclusive"
    assert "fewer than 3 runs with a value - not counted" in c.rule


def test_only_finished_runs_count_and_the_others_are_named():
    c = claim("model=a,b", SEQUENCES, seeds="0-1")
    table = runs_table({"a": {"values": [1, 2]}, "b": {"values": [3, 4]}})
    table.loc[len(table)] = {**table.iloc[0].to_dict(), "run": "a_running", "status": "running"}
    table.loc[len(table)] = {**table.iloc[0].to_dict(), "run": "a_failed", "status": "failed"}
    table.loc[len(table)] = {**table.iloc[0].to_dict(), "run": "a_diverged", "status": "diverged"}
    matched = verdicts.match(c, table)
    assert sorted(matched.tags) == ["a_diverged", "a_s0", "a_s1", "b_s0", "b_s1"]  # a diverged run has an outcome
    assert matched.deviations == ["2 run(s) without an outcome left out (1 running, 1 failed)"]
    running = runs_table({"a": {"values": [1, 2], "status": "running"}})
    found = verdicts.decide(c, running, running[["run"]].assign(sequences_to_converge=1.0), pd.DataFrame())
    assert found.verdict == "not run" and found.ours == ["none of its 2 runs has finished"]


def test_power_when_only_ties_stand_between_the_result_and_the_threshold():
    """x = 1, 2, 3, 3, 3 against y = 3, 3, 3, 4, 5: with the ties at 3, U = 4.5 and the exact
    one-sided p is 20/252 = 0.079; any shift of x down breaks the ties its way: U = 0, p = 1/252."""
    c = claim("model=a,b", {"compare": ["a", "b"], "statistic": "spikes_after_reached"})
    x, y = [1, 2, 3, 3, 3], [3, 3, 3, 4, 5]
    assert mann_whitney(x, y, alternative="less")[:2] == (4.5, pytest.approx(20 / 252))
    assert mann_whitney(np.array(x) - 1e-6, y, alternative="less")[:2] == (0.0, pytest.approx(1 / 252))
    found = decide(c, runs_table({"a": {"values": x}, "b": {"values": y}}), "spikes_after_reached")
    assert found.verdict == "inconclusive"
    assert found.power == ["at the threshold: any shift of the first group down reaches Holm p < 0.05 (ties between the groups decide)"]


def test_groups_may_split_the_runs_by_whether_they_converged():
    c = claim("model=a", {"compare": ["converged", "unconverged"], "statistic": "trace.weight_entropy"}, seeds="0-5")
    runs = runs_table({"a": {"values": [0.1, 0.2, 0.15, 0.9, 0.8, 0.95]}})
    run_stats = runs[["run"]].assign(**{"trace.weight_entropy": runs["value"], "converged": [True, True, True, False, False, False]})
    found = verdicts.decide(c, runs, run_stats, pd.DataFrame())
    # 3 against 3 fully separated: one-sided exact p = 1/20
    assert "converged median 0.15 (n=3) vs unconverged 0.9 (n=3)" in found.ours[0] and f"one-sided p {1 / 20:.3g}" in found.ours[0]
    assert found.verdict == "inconclusive"  # 0.05 is not below 0.05
    every = run_stats.assign(converged=True)
    found = verdicts.decide(c, runs, every, pd.DataFrame())
    assert found.verdict == "inconclusive" and found.ours[0] == "inconclusive: no unconverged runs among the 6"


def test_a_share_of_the_unconverged_runs_counts_only_those():
    """N6's "go uniform": the share of failed runs whose attention is diffuse; converged runs'
    sharp attention must not dilute it, and failures with sharp attention count against it."""
    c = claim("model=a", {"share": "unconverged", "statistic": "trace.weight_entropy", "above": 0.5,
                          "confirmed_at": 0.8, "contradicted_at": 0.4}, seeds="0-5")
    runs = runs_table({"a": {"values": [0.01, 0.02, 0.03, 0.9, 0.7, 0.6]}})
    run_stats = runs[["run"]].assign(**{"trace.weight_entropy": runs["value"], "converged": [True] * 3 + [False] * 3})
    found = verdicts.decide(c, runs, run_stats, pd.DataFrame())
    assert found.verdict == "confirmed" and "3 of 3 runs" in found.ours[0]
    sharp = run_stats.assign(**{"trace.weight_entropy": [0.9, 0.8, 0.7, 0.9, 0.04, 0.02]})  # two failures sharp
    found = verdicts.decide(c, runs, sharp, pd.DataFrame())
    assert found.verdict == "contradicted" and "1 of 3 runs" in found.ours[0]


def test_weighting_entropy_by_hand():
    from ntm_repro.report.traces import normalised_entropy

    assert normalised_entropy(np.full((3, 4), 0.25)) == pytest.approx(1.0)
    assert normalised_entropy(np.eye(4)) == pytest.approx(0.0, abs=1e-12)
    assert normalised_entropy(np.array([[0.5, 0.5, 0.0, 0.0]])) == pytest.approx(0.5)  # ln 2 / ln 4
    assert math.isnan(normalised_entropy(np.empty((0, 4))))


def test_no_budget_deviation_when_no_run_is_left():
    c = claim("model=a train.sequences=40000", {"within": "a", "statistic": "spike_interval"}, seeds="0-3")
    table = runs_table({"a": {"values": [1, 2, 3, 4]}}, budget=300)
    table["overrides"] = [{**o, "model.memory.locations": str(n)} for o, n in zip(table["overrides"], (32, 32, 128, 256))]
    table.loc[3, "status"] = "interrupted"
    matched = verdicts.match(c, table)  # the interrupted run is not counted, the others set what the claim does not name
    assert not matched.tags and not any(d.startswith("budget") for d in matched.deviations)
