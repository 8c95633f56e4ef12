"""Convergence, loss outliers, final metrics and between-model comparisons: pure functions
on the frames of :mod:`ntm_repro.report.read`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from ntm_repro.report.read import NOT_CONVERGED

MAX_EXACT_SPLITS = 200_000  # beyond this many splits, Mann-Whitney uses the normal approximation
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Criteria:
    """The convergence criterion, the outlier threshold and the bootstrap seed, all stated
    on the report's first page."""

    bit_errors: float = 0.1
    outlier_factor: float = 10.0
    seed: int = 0

    def options(self) -> str:
        return f"--criterion {self.bit_errors:g} --outlier-factor {self.outlier_factor:g} --seed {self.seed}"

    def describe(self) -> list[str]:
        return [
            f"Converged: validation bit errors per sequence below {self.bit_errors:g} at a logged point and at every "
            "later validation point to the end of the run. Diverged and failed runs count as not converged; runs "
            "still running (or killed) are judged on the points logged so far. Sequences to converge: sequences "
            "seen at the first such point (median and range over the converged runs).",
            f"Loss outliers: once a run first reaches {self.bit_errors:g} bit errors per sequence (held or not), the "
            f"later validation points whose cost exceeds {self.outlier_factor:g} x the median cost of the "
            "validation points from then on.",
            "Final validation metrics: the last validation point of each run that did not diverge or fail "
            "(median and interquartile range).",
            "Model comparison within a task: sequences to converge, every run of both models, a run that did not "
            "converge counted as never converging (ranked last, tied with the other such runs). Two-sided "
            f"Mann-Whitney U, exact permutation p-value when there are at most {MAX_EXACT_SPLITS:,} ways to split "
            "the runs, else the normal approximation with tie and continuity corrections; 95% percentile interval "
            f"of the difference of medians (first - second) from {BOOTSTRAP_RESAMPLES:,} bootstrap resamples "
            f"(seed {self.seed}), inf - inf counted as 0.",
        ]


def converged_from(sequences: np.ndarray, bit_errors: np.ndarray, threshold: float) -> float:
    """Sequences seen at the first validation point from which bit errors stay below
    ``threshold`` to the end (points in order); NaN if the last point is not below it."""
    below = np.asarray(bit_errors, dtype=float) < threshold
    held = np.logical_and.accumulate(below[::-1])[::-1]
    return float(np.asarray(sequences)[held.argmax()]) if held.any() else math.nan


def first_below(sequences: np.ndarray, bit_errors: np.ndarray, threshold: float) -> float:
    """Sequences seen at the first validation point below ``threshold`` (NaN if none)."""
    below = np.asarray(bit_errors, dtype=float) < threshold
    return float(np.asarray(sequences)[below.argmax()]) if below.any() else math.nan


def outlier_count(costs: np.ndarray, bit_errors: np.ndarray, threshold: float, factor: float) -> int:
    """Validation points, from the first one below ``threshold`` bit errors on, whose cost
    exceeds ``factor`` x the median cost of those points."""
    below = np.asarray(bit_errors, dtype=float) < threshold
    if not below.any():
        return 0
    after = np.asarray(costs, dtype=float)[below.argmax():]
    return int((after > factor * np.nanmedian(after)).sum())


def per_run(runs: pd.DataFrame, metrics: pd.DataFrame, criteria: Criteria) -> pd.DataFrame:
    """One row per run: converged, sequences to converge, first below the criterion,
    outliers, final validation cost and bit errors, the last sequences logged."""
    val = metrics[metrics["split"] == "val"].sort_values(["run", "sequences"])
    by_run = dict(tuple(val.groupby("run")))
    rows = []
    for run in runs.itertuples():
        points = by_run.get(run.run, val.iloc[:0])
        seqs, errors, costs = (points[c].to_numpy(dtype=float) for c in ("sequences", "bit_errors", "cost_bits"))
        counted = run.status not in NOT_CONVERGED
        at = converged_from(seqs, errors, criteria.bit_errors) if counted else math.nan
        rows.append(
            {
                "task": run.task,
                "label": run.label,
                "model": run.model,
                "variant": run.variant,
                "seed": run.seed,
                "run": run.run,
                "status": run.status,
                "converged": not math.isnan(at),
                "sequences_to_converge": at,
                "first_below": first_below(seqs, errors, criteria.bit_errors),
                "outliers": outlier_count(costs, errors, criteria.bit_errors, criteria.outlier_factor),
                "final_cost_bits": costs[-1] if counted and len(costs) else math.nan,
                "final_bit_errors": errors[-1] if counted and len(errors) else math.nan,
                "last_sequences": seqs[-1] if len(seqs) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _quartiles(values: pd.Series) -> tuple[float, float, float]:
    finite = values.dropna()
    return tuple(finite.quantile([0.5, 0.25, 0.75])) if len(finite) else (math.nan,) * 3


def per_group(run_stats: pd.DataFrame) -> pd.DataFrame:
    """One row per task and model (label): runs, converged, sequences to converge (median,
    min, max over converged runs), outliers, final metrics (median and quartiles)."""
    rows = []
    for (task, label), group in run_stats.groupby(["task", "label"], sort=False):
        converged = group.loc[group["converged"], "sequences_to_converge"]
        reached = group["first_below"].notna() & ~group["converged"]
        row = {
            "task": task,
            "label": label,
            "runs": len(group),
            "converged": int(group["converged"].sum()),
            "reached_not_held": int(reached.sum()),
            "seq_to_converge_median": converged.median() if len(converged) else math.nan,
            "seq_to_converge_min": converged.min() if len(converged) else math.nan,
            "seq_to_converge_max": converged.max() if len(converged) else math.nan,
            "outliers": int(group["outliers"].sum()),
            "runs_with_outliers": int((group["outliers"] > 0).sum()),
            "final_runs": int(group["final_cost_bits"].notna().sum()),
        }
        for metric in ("cost_bits", "bit_errors"):
            median, q1, q3 = _quartiles(group[f"final_{metric}"])
            row |= {f"final_{metric}_median": median, f"final_{metric}_q1": q1, f"final_{metric}_q3": q3}
        rows.append(row)
    return pd.DataFrame(rows)


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


def mann_whitney(x: np.ndarray, y: np.ndarray, max_exact: int = MAX_EXACT_SPLITS) -> tuple[float, float, str]:
    """Two-sided Mann-Whitney U test of ``x`` against ``y`` (values may be inf):
    (U of x, p-value, method). Exact over every split of the pooled runs (ties included)
    when there are at most ``max_exact`` splits, else the normal approximation."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    ranks = midranks(np.concatenate([x, y]))
    offset, centre = n1 * (n1 + 1) / 2, n1 * n2 / 2
    u = ranks[:n1].sum() - offset
    if math.comb(n1 + n2, n1) <= max_exact:
        splits = np.array(list(combinations(range(n1 + n2), n1)))
        us = ranks[splits].sum(axis=1) - offset
        p = np.mean(np.abs(us - centre) >= abs(u - centre) - 1e-9)
        return float(u), float(p), "exact"
    n = n1 + n2
    _, ties = np.unique(ranks, return_counts=True)
    variance = n1 * n2 / 12 * ((n + 1) - (ties**3 - ties).sum() / (n * (n - 1)))
    if variance <= 0:
        return float(u), 1.0, "normal"
    z = max(abs(u - centre) - 0.5, 0.0) / math.sqrt(variance)
    return float(u), min(1.0, math.erfc(z / math.sqrt(2))), "normal"


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


def comparisons(run_stats: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every pair of models (labels) within a task: sequences to converge compared by
    Mann-Whitney U and a bootstrap interval of the difference of medians."""
    rows = []
    for task, runs in run_stats.groupby("task", sort=False):
        times = {
            label: group["sequences_to_converge"].fillna(np.inf).to_numpy()
            for label, group in runs.groupby("label", sort=False)
        }
        for first, second in combinations(times, 2):
            x, y = times[first], times[second]
            u, p, method = mann_whitney(x, y)
            difference, low, high = bootstrap_median_difference(x, y, seed=seed)
            rows.append(
                {
                    "task": task,
                    "first": first,
                    "second": second,
                    "n_first": len(x),
                    "n_second": len(y),
                    "converged_first": int(np.isfinite(x).sum()),
                    "converged_second": int(np.isfinite(y).sum()),
                    "u": u,
                    "p": p,
                    "method": method,
                    "median_difference": difference,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows)
