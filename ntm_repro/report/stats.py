"""Convergence, loss spikes, final metrics and between-model comparisons: pure functions
on the frames of :mod:`ntm_repro.report.read`."""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from ntm_repro.report.read import NOT_CONVERGED

MAX_EXACT_SPLITS = 200_000  # beyond this many splits, Mann-Whitney uses the normal approximation
BOOTSTRAP_RESAMPLES = 10_000
MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normal noise
SPIKE_MADS = 5  # a spike exceeds the preceding median by more than this many (scaled) MADs
OUTCOMES = ("converged", "not confirmed", "reached, not held", "never reached", *NOT_CONVERGED)
NO_COMPARISON = "neither converged: no comparison"


@dataclass(frozen=True)
class Criteria:
    """The convergence criterion and window, the loss-spike threshold and the bootstrap
    seed, all stated on the report's first page."""

    bit_errors: float = 0.1
    window: float = 0.1  # fraction of the training budget at its end that must stay below
    min_points: int = 5  # validation points judged at least
    spike_bits: float = 1.0  # bits per sequence a spike exceeds the preceding median by, at least
    spike_window: int = 50  # training points the median and MAD of a spike's baseline come from
    collapse_reached: float = 1.0  # a collapse: validation bit errors back above collapse_above ...
    collapse_above: float = 10.0  # ... after the run first reached below collapse_reached
    seed: int = 0

    def options(self) -> str:
        return (
            f"--criterion {self.bit_errors:g} --window {self.window:g} --min-points {self.min_points} "
            f"--spike-bits {self.spike_bits:g} --spike-window {self.spike_window} "
            f"--collapse {self.collapse_reached:g} {self.collapse_above:g} --seed {self.seed}"
        )

    def convergence_rule(self) -> str:
        return (
            f"Converged: validation bit errors per sequence below {self.bit_errors:g} at every validation point "
            f"of the last {self.window * 100:g}% of the run's training budget (train.sequences; the last sequences "
            f"logged if its config lacks it), or at its last {self.min_points} validation points if that window "
            "holds fewer. Not confirmed: below at the end but held only from a point inside that window, or the "
            "run stopped before its window began. Reached, not held: below at some point but not at the end. "
            "Never reached. Diverged and failed runs are never converged. First reached: sequences at the first "
            "point below; held from (sequences to converge): at the first point from which every later point is "
            "below."
        )

    def spike_rule(self) -> str:
        return (
            "Loss spikes, in every run: on the training log (a row every train.log_every sequences), a point whose "
            f"cost exceeds the median of the {self.spike_window} training points before it by more than "
            f"max({self.spike_bits:g} bit, {SPIKE_MADS} x {MAD_SCALE} x their median absolute deviation); "
            f"consecutive such points are one spike (the first {self.spike_window} points cannot be one), so "
            "counts compare across models in absolute terms."
        )

    def collapse_rule(self) -> str:
        return (
            f"Collapses, in every run: on the validation points, each return above {self.collapse_above:g} bit errors "
            f"per sequence after the run first reached below {self.collapse_reached:g} (consecutive points above are "
            "one collapse), so a run that learned the task and lost it counts, whatever its end."
        )

    def describe(self) -> list[str]:
        return [
            self.convergence_rule() + " Runs still running (or killed) are judged on the points logged so far. "
            "Sequences to converge: median and range over the converged runs.",
            self.spike_rule(),
            self.collapse_rule(),
            "Final validation metrics: the last validation point of each run that did not diverge or fail "
            "(median and interquartile range).",
            "Model comparison within a task: sequences to converge, every run of both models, a run that did not "
            "converge counted as never converging (ranked last, tied with the other such runs); no comparison "
            "when neither model converged in any run. Two-sided "
            f"Mann-Whitney U, exact permutation p-value when there are at most {MAX_EXACT_SPLITS:,} ways to split "
            "the runs, else the normal approximation with tie and continuity corrections; Holm's step-down "
            "adjustment of the p-values over all comparisons in the report; 95% percentile interval "
            f"of the difference of medians (first - second) from {BOOTSTRAP_RESAMPLES:,} bootstrap resamples "
            f"(seed {self.seed}), inf - inf counted as 0.",
        ]


def held_to_the_end(below: np.ndarray) -> np.ndarray:
    """For each point (in order): whether it and every later point is below."""
    return np.logical_and.accumulate(np.asarray(below, dtype=bool)[::-1])[::-1]


def held_from(sequences: np.ndarray, bit_errors: np.ndarray, threshold: float) -> float:
    """Sequences seen at the first validation point from which bit errors stay below
    ``threshold`` to the end (points in order); NaN if the last point is not below it."""
    held = held_to_the_end(np.asarray(bit_errors, dtype=float) < threshold)
    return float(np.asarray(sequences)[held.argmax()]) if held.any() else math.nan


def share_below(val: pd.DataFrame, criterion: float) -> pd.DataFrame:
    """Per task, model (label) and validation point: the share of the model's runs below
    ``criterion`` at that point, and the share holding below it from there to the end (the
    runs' last logged point carried forward, so a run that stopped early still counts)."""
    rows = []
    for (task, label), group in val.groupby(["task", "label"], sort=False):
        grid = np.sort(group["sequences"].unique())
        below = np.zeros(len(grid))
        holding = np.zeros(len(grid))
        runs = group.sort_values("sequences").groupby("run")
        for _, run in runs:
            seqs, ok = run["sequences"].to_numpy(), (run["bit_errors"] < criterion).to_numpy()
            at = np.searchsorted(seqs, grid, side="right") - 1  # the run's latest point at or before each grid point
            known = at >= 0
            below[known] += ok[at[known]]
            holding[known] += held_to_the_end(ok)[at[known]]
        count = runs.ngroups
        rows += [{"task": task, "label": label, "sequences": s, "below": b / count, "holding": h / count, "runs": count}
                 for s, b, h in zip(grid, below, holding)]
    return pd.DataFrame(rows)


def first_reached(sequences: np.ndarray, bit_errors: np.ndarray, threshold: float) -> float:
    """Sequences seen at the first validation point below ``threshold`` (NaN if none)."""
    below = np.asarray(bit_errors, dtype=float) < threshold
    return float(np.asarray(sequences)[below.argmax()]) if below.any() else math.nan


def outcome(sequences: np.ndarray, bit_errors: np.ndarray, budget: float, criteria: Criteria) -> str:
    """The windowed convergence rule (points in order): "converged" if every point with
    sequences >= (1 - window) x budget (the last ``min_points`` points if fewer) is below
    the criterion; "not confirmed" if below at the end but not over all of that, or if the
    run stopped before its window began; "reached, not held" if below at some point but
    not at the end; else "never reached". A NaN budget is the last point's sequences."""
    seqs = np.asarray(sequences, dtype=float)
    below = np.asarray(bit_errors, dtype=float) < criteria.bit_errors
    if not below.any():
        return "never reached"
    if not below[-1]:
        return "reached, not held"
    start = (1 - criteria.window) * (seqs[-1] if math.isnan(budget) else budget)
    if seqs[-1] < start:
        return "not confirmed"
    first = min(int(np.argmax(seqs >= start)), max(len(seqs) - criteria.min_points, 0))
    return "converged" if below[first:].all() else "not confirmed"


def _baselines(costs: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The median and the median absolute deviation of the ``window`` points before each
    point from point ``window`` on (NaN costs left out; NaN where all of them are)."""
    before = sliding_window_view(costs, window)[:-1]  # row i: the window points before point window + i
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a baseline of NaN only: no spike
        median = np.nanmedian(before, axis=1)
        return median, np.nanmedian(np.abs(before - median[:, None]), axis=1)


def _spikes_and_levels(costs: np.ndarray, window: int, bits: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`spike_points`, and the loss level (the median of the ``window`` points before)
    of each point from point ``window`` on (empty for a log of no more than ``window`` points)."""
    costs = np.asarray(costs, dtype=float)
    flags = np.zeros(len(costs), dtype=bool)
    if len(costs) <= window:
        return flags, np.empty(0)
    median, mad = _baselines(costs, window)
    flags[window:] = costs[window:] - median > np.maximum(bits, SPIKE_MADS * MAD_SCALE * mad)
    return flags, median


def spike_points(costs: np.ndarray, window: int, bits: float) -> np.ndarray:
    """Whether each training point's cost exceeds the median of the ``window`` points
    before it by more than max(``bits``, 5 x 1.4826 x their MAD); the first ``window``
    points never do (NaN costs are never spike points and are left out of baselines)."""
    return _spikes_and_levels(costs, window, bits)[0]


def spike_rate_ratio(costs: np.ndarray, window: int, bits: float) -> float:
    """Zhang et al. 4.2's "outliers come more often as the loss falls", within one run: its
    spike rate (spike starts, :func:`spike_starts`, per training point) while its loss level
    (the median of the ``window`` points before) is in the lower half of its range (below
    the midpoint of the smallest and largest level) over the rate in the upper half. Above
    1: spikes come more often at the lower loss; inf: none in the upper half; NaN without
    spikes or without a range to split."""
    flags, level = _spikes_and_levels(costs, window, bits)
    starts = _run_starts(flags)[window:]
    if not starts.any():
        return math.nan
    low = level < (np.nanmax(level) + np.nanmin(level)) / 2
    high = ~low & ~np.isnan(level)
    if not (low.any() and high.any()):
        return math.nan
    rate_low, rate_high = starts[low].mean(), starts[high].mean()
    return float(rate_low / rate_high) if rate_high else math.inf


def _run_starts(flags: np.ndarray) -> np.ndarray:
    """The first point of each maximal run of consecutive true flags."""
    return flags & ~np.concatenate([[False], flags[:-1]])


def spike_starts(sequences: np.ndarray, costs: np.ndarray, window: int, bits: float) -> tuple[int, ...]:
    """Sequences at the start of each spike: each maximal run of consecutive spike points
    (:func:`spike_points`) counted once."""
    return tuple(int(s) for s in np.asarray(sequences)[_run_starts(spike_points(costs, window, bits))])


def collapses(bit_errors: np.ndarray, reached: float, above: float) -> int:
    """Returns above ``above`` after the first point below ``reached`` (points in order):
    each maximal run of consecutive points above counts once."""
    errors = np.asarray(bit_errors, dtype=float)
    learned = np.logical_or.accumulate(errors < reached)
    return int(_run_starts((errors > above) & learned).sum())


def _points(metrics: pd.DataFrame, split: str) -> dict[str, pd.DataFrame]:
    """Each run's rows of ``split``, in order of sequences."""
    return dict(tuple(metrics[metrics["split"] == split].sort_values(["run", "sequences"]).groupby("run")))


def per_run(runs: pd.DataFrame, metrics: pd.DataFrame, criteria: Criteria) -> pd.DataFrame:
    """One row per run: outcome (its status if diverged or failed), converged, sequences to
    converge, first reached, held from, loss spikes (all; those from first reached on, NaN
    if never reached; the median interval between their starts, NaN if fewer than two),
    collapses, final validation cost and bit errors, the last sequences logged."""
    val, train, empty = _points(metrics, "val"), _points(metrics, "train"), metrics.iloc[:0]
    rows = []
    for run in runs.itertuples():
        points = val.get(run.run, empty)
        seqs, errors, costs = (points[c].to_numpy(dtype=float) for c in ("sequences", "bit_errors", "cost_bits"))
        counted = run.status not in NOT_CONVERGED
        result = outcome(seqs, errors, float(run.budget), criteria) if counted else run.status
        held = held_from(seqs, errors, criteria.bit_errors)
        log = train.get(run.run, empty)
        spikes = spike_starts(log["sequences"], log["cost_bits"], criteria.spike_window, criteria.spike_bits)
        reached = first_reached(seqs, errors, criteria.bit_errors)
        rows.append(
            {
                "task": run.task,
                "label": run.label,
                "model": run.model,
                "variant": run.variant,
                "seed": run.seed,
                "run": run.run,
                "status": run.status,
                "outcome": result,
                "converged": result == "converged",
                "sequences_to_converge": held if result == "converged" else math.nan,
                "first_reached": reached,
                "held_from": held,
                "spikes": len(spikes),
                "spike_sequences": spikes,
                "spikes_after_reached": math.nan if math.isnan(reached) else sum(s >= reached for s in spikes),
                "spike_interval": float(np.median(np.diff(spikes))) if len(spikes) > 1 else math.nan,
                "spike_rate_ratio": spike_rate_ratio(log["cost_bits"], criteria.spike_window, criteria.spike_bits),
                "collapses": collapses(errors, criteria.collapse_reached, criteria.collapse_above),
                "final_cost_bits": costs[-1] if counted and len(costs) else math.nan,
                "final_bit_errors": errors[-1] if counted and len(errors) else math.nan,
                "last_sequences": seqs[-1] if len(seqs) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def per_seed_generalisation(generalisation: pd.DataFrame, run_stats: pd.DataFrame) -> pd.DataFrame:
    """One row per run and test level: task, model (label), seed, the run's outcome, level,
    cost and bit errors."""
    outcomes = run_stats[["run", "outcome"]]
    table = generalisation.drop(columns="model").rename(columns={"label": "model"}).merge(outcomes, on="run")
    return table[["task", "model", "seed", "outcome", "level", "cost_bits", "bit_errors"]]


MIX_PREFIX = "mix_"  # training-log columns mix_<block>_a, mix_<block>_b of a structured memory


def structured_memory(runs: pd.DataFrame, metrics: pd.DataFrame, run_stats: pd.DataFrame) -> pd.DataFrame:
    """Per task and model whose runs log mixing coefficients (NTM1-3): runs, converged,
    each coefficient at the end of training (median [min, max] over runs) and the largest
    |M| at the end of the traced episodes (median [min, max])."""
    mixing = [c for c in metrics.columns if c.startswith(MIX_PREFIX)]
    if not mixing:
        return pd.DataFrame()
    train = metrics[(metrics["split"] == "train")].dropna(subset=mixing, how="all")
    final = train.sort_values("sequences").groupby("run")[mixing].last()
    table = run_stats[["task", "label", "run", "converged"]].merge(runs[["run", "memory_max"]], on="run")
    table = table.merge(final, left_on="run", right_index=True)
    rows = []
    for (task, label), group in table.groupby(["task", "label"], sort=False):
        row = {"task": task, "label": label, "runs": len(group), "converged": int(group["converged"].sum())}
        for column in [*mixing, "memory_max"]:
            if group[column].notna().any():
                row |= dict(zip((f"{column}_{s}" for s in ("median", "min", "max")), _spread(group[column].dropna())))
        rows.append(row)
    return pd.DataFrame(rows)


def outcome_column(name: str) -> str:
    """An outcome as a column name: "reached, not held" -> "reached_not_held"."""
    return name.replace(",", "").replace(" ", "_")


def _quartiles(values: pd.Series) -> tuple[float, float, float]:
    finite = values.dropna()
    return tuple(finite.quantile([0.5, 0.25, 0.75])) if len(finite) else (math.nan,) * 3


def _spread(values: pd.Series) -> tuple[float, float, float]:
    """Median, min and max (NaN if empty)."""
    return (values.median(), values.min(), values.max()) if len(values) else (math.nan,) * 3


def per_group(run_stats: pd.DataFrame) -> pd.DataFrame:
    """One row per task and model (label): runs, runs of each outcome, held from (sequences
    to converge) and first reached over the converged runs (median, min, max), loss spikes
    and runs with any, collapses and runs with any, final metrics (median and quartiles)."""
    rows = []
    for (task, label), group in run_stats.groupby(["task", "label"], sort=False):
        converged = group[group["converged"]]
        row = {"task": task, "label": label, "runs": len(group)}
        row |= {outcome_column(name): int((group["outcome"] == name).sum()) for name in OUTCOMES}
        for column in ("held_from", "first_reached"):
            row |= dict(zip((f"{column}_{s}" for s in ("median", "min", "max")), _spread(converged[column])))
        row |= {
            "spikes": int(group["spikes"].sum()),
            "runs_with_spikes": int((group["spikes"] > 0).sum()),
            "collapses": int(group["collapses"].sum()),
            "runs_collapsed": int((group["collapses"] > 0).sum()),
            "final_runs": int(group["final_cost_bits"].notna().sum()),
        }
        for metric in ("cost_bits", "bit_errors"):
            median, q1, q3 = _quartiles(group[f"final_{metric}"])
            row |= {f"final_{metric}_median": median, f"final_{metric}_q1": q1, f"final_{metric}_q3": q3}
        rows.append(row)
    return pd.DataFrame(rows)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (midranks for ties); NaN with fewer than 3 points or a
    constant variable."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(midranks(x), midranks(y))[0, 1])


def along_trends(along: pd.DataFrame) -> pd.DataFrame:
    """One row per run with checkpoints evaluated along it: for each metric and test level,
    ``along.<metric>@<level>``, the Spearman correlation of the metric with sequences trained."""
    if along.empty:
        return pd.DataFrame(columns=["run"])
    rows = []
    for run, points in along.groupby("run", sort=False):
        row = {"run": run}
        for level, at in points.sort_values("sequences_trained").groupby(points["level"].astype(str), sort=False):
            for metric in ("cost_bits", "bit_errors"):
                row[f"along.{metric}@{level}"] = spearman(at["sequences_trained"], at[metric])
        rows.append(row)
    return pd.DataFrame(rows)


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


@functools.lru_cache(maxsize=8)
def _splits(n: int, k: int) -> np.ndarray:
    """Every choice of ``k`` of ``n`` positions, one per row (cached: tests repeat a size)."""
    return np.array(list(combinations(range(n), k)))




def mann_whitney(
    x: np.ndarray, y: np.ndarray, max_exact: int = MAX_EXACT_SPLITS, alternative: str = "two-sided"
) -> tuple[float, float, str]:
    """Mann-Whitney U test of ``x`` against ``y`` (values may be inf): (U of x, p-value,
    method). ``alternative``: "less" (x tends lower), "greater" or "two-sided". Exact over
    every split of the pooled runs (ties included) when there are at most ``max_exact``
    splits, else the normal approximation with tie and continuity corrections."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    ranks = midranks(np.concatenate([x, y]))
    offset, centre = n1 * (n1 + 1) / 2, n1 * n2 / 2
    u = ranks[:n1].sum() - offset
    if math.comb(n1 + n2, n1) <= max_exact:
        us = ranks[_splits(n1 + n2, n1)].sum(axis=1) - offset
        tail = {"two-sided": np.abs(us - centre) >= abs(u - centre) - 1e-9, "less": us <= u + 1e-9,
                "greater": us >= u - 1e-9}[alternative]
        return float(u), float(np.mean(tail)), "exact"
    n = n1 + n2
    _, ties = np.unique(ranks, return_counts=True)
    variance = n1 * n2 / 12 * ((n + 1) - (ties**3 - ties).sum() / (n * (n - 1)))
    if variance <= 0:
        return float(u), 1.0, "normal"
    if alternative == "two-sided":
        z = max(abs(u - centre) - 0.5, 0.0) / math.sqrt(variance)
        return float(u), min(1.0, math.erfc(z / math.sqrt(2))), "normal"
    sign = 1 if alternative == "less" else -1  # P(U <= u) or P(U >= u), continuity-corrected
    z = sign * (u - centre) + 0.5
    return float(u), min(1.0, 0.5 * math.erfc(-z / math.sqrt(variance) / math.sqrt(2))), "normal"


def fisher_greater(successes: int, runs: int, other_successes: int, other_runs: int) -> float:
    """One-sided Fisher exact test that the first group's rate of successes exceeds the
    other's: P(X >= successes), X hypergeometric (all successes spread over both groups)."""
    total, drawn = runs + other_runs, successes + other_successes
    denominator = math.comb(total, runs)
    top = min(runs, drawn)
    return min(1.0, sum(math.comb(drawn, k) * math.comb(total - drawn, runs - k) for k in range(successes, top + 1))
               / denominator)


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b, with inf - inf (neither converged) counted as no difference."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    both = np.isinf(a) & (a == b)
    return np.where(both, 0.0, a - np.where(both, 0.0, b))


def bootstrap_median_difference(
    x: np.ndarray, y: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95
) -> tuple[float, float, float]:
    """median(x) - median(y) and its percentile bootstrap interval (each group resampled
    with replacement, seeded); values may be inf."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    mx = np.median(rng.choice(x, (resamples, len(x))), axis=1)
    my = np.median(rng.choice(y, (resamples, len(y))), axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(_difference(mx, my), [tail, 1 - tail], method="inverted_cdf")
    return float(_difference(np.median(x), np.median(y))), float(low), float(high)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment over the p-values that are not NaN (the family): the
    i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) x p_(j)); NaN stays."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (len(order) - np.arange(len(order))) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def compare(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """Sequences to converge of two models (inf: did not converge): Mann-Whitney U, p and
    method, difference of medians and its bootstrap interval; all NaN, with a note, when
    neither model converged in any run."""
    if not (np.isfinite(x).any() or np.isfinite(y).any()):
        return dict.fromkeys(("u", "p", "median_difference", "ci_low", "ci_high"), math.nan) | {
            "method": "", "note": NO_COMPARISON,
        }
    u, p, method = mann_whitney(x, y)
    difference, low, high = bootstrap_median_difference(x, y, seed=seed)
    return {"u": u, "p": p, "method": method, "median_difference": difference, "ci_low": low, "ci_high": high,
            "note": ""}


def comparisons(run_stats: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every pair of models (labels) within a task: sequences to converge compared by
    :func:`compare`, with Holm-adjusted p-values over every comparison returned."""
    rows = []
    for task, runs in run_stats.groupby("task", sort=False):
        times = {
            label: group["sequences_to_converge"].fillna(np.inf).to_numpy()
            for label, group in runs.groupby("label", sort=False)
        }
        for first, second in combinations(times, 2):
            x, y = times[first], times[second]
            rows.append(
                {
                    "task": task,
                    "first": first,
                    "second": second,
                    "n_first": len(x),
                    "n_second": len(y),
                    "converged_first": int(np.isfinite(x).sum()),
                    "converged_second": int(np.isfinite(y).sum()),
                    **compare(x, y, seed=seed),
                }
            )
    pairs = pd.DataFrame(rows)
    if rows:
        pairs.insert(pairs.columns.get_loc("p") + 1, "p_holm", holm(pairs["p"]))
    return pairs
