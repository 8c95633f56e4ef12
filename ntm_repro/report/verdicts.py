"""Verdicts on the ledger's claims (``ntm_repro/ledger``) from the runs a report read: which
runs belong to a claim's experiment, each check's statistic and test, the verdict, and the
power an inconclusive check had."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import yaml

from ntm_repro.claims import (ALONG, ALPHA, GENERALISATION, OUTCOMES, PAIRED, SIZE_KEYS, MIN_RUNS_WITH_VALUE, TRACE, Check, Claim, per_level,
                              statistic_title)
from ntm_repro.report.read import is_science, resolved_value
from ntm_repro.training.run_folder import FINISHED
from ntm_repro.report.stats import bootstrap_median_difference, fisher_greater, holm, mann_whitney

NEVER = ("sequences_to_converge", "first_reached")  # missing means never: counted as inf
PRESET, NO_PRESET = "experiment", "none"  # a claim that names no preset is run without one
NOT_RUN = "not run"
NOT_COUNTED = "not counted"  # a check without enough runs to say anything, left out of the verdict
NOT_DECIDED = "not decided"  # runs exist but the claim's rule is prose only


def _normal(value: object) -> object:
    """A value as parsed YAML with numbers as floats, so "1e-3", "0.001" and 0.001 are one
    value and "[0,1]" equals "[0, 1]"."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if isinstance(value, list):
        return [_normal(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


@dataclass
class Matched:
    """A claim's runs: ``tags`` maps each run to the experiment's values it has (in the
    order of the experiment's keys); what the runs do differently from the ledger's
    experiment is in ``deviations``."""

    tags: dict[str, tuple[str, ...]]
    deviations: list[str]
    unfinished: int = 0  # runs of the experiment without an outcome yet, not in ``tags``


def match(claim: Claim, runs: pd.DataFrame) -> Matched:
    """The runs of ``claim``'s experiment: each of its overrides (seed and train.sequences
    aside) has one of the listed values, and no preset unless it names one; only runs that
    finished (completed or diverged) count, the others are named. A science override the
    experiment does not name is a deviation when every matching run sets it alike;
    otherwise the runs setting it are left out (an ablation beside the experiment's own
    runs), saying so. Budgets and seeds short of the ledger's are deviations too."""
    sweep = {key: values for key, values in claim.sweep.items() if key not in SIZE_KEYS}
    sweep.setdefault(PRESET, (NO_PRESET,))
    tags: dict[str, tuple[str, ...]] = {}
    chosen = []
    for index, run in runs.iterrows():
        found = []
        for key, values in sweep.items():
            mine = _normal(resolved_value(run, key))
            found += [value for value in values if _normal(value) == mine][:1]
        if len(found) == len(sweep):
            tags[run["run"]] = tuple(found)
            chosen.append(index)
    matched = runs.loc[chosen]
    deviations: list[str] = []
    unfinished = matched[~matched["status"].isin(FINISHED)]  # running, interrupted, failed: no outcome yet
    if len(unfinished):
        statuses = ", ".join(f"{n} {status}" for status, n in unfinished["status"].value_counts().items())
        deviations.append(f"{len(unfinished)} run(s) without an outcome left out ({statuses})")
        matched = matched.drop(unfinished.index)
        for name in unfinished["run"]:
            tags.pop(name)
    if matched.empty:
        return Matched(tags=tags, deviations=deviations, unfinished=len(unfinished))
    extra = sorted({key for overrides in matched["overrides"] for key in overrides
                    if key not in sweep and key not in SIZE_KEYS and is_science(key)})
    for key in extra:
        if matched.empty:  # every run left out by an earlier key: none is the claim's
            break
        setting = matched[[key in overrides for overrides in matched["overrides"]]]
        values = sorted({resolved_value(run, key) for _, run in matched.iterrows()})
        if len(setting) == len(matched) and len(values) == 1:
            deviations.append(f"every run sets {key}={values[0]}")
            continue
        set_to = ", ".join(sorted({overrides[key] for overrides in setting["overrides"]}))
        deviations.append(f"{len(setting)} run(s) setting {key} ({set_to}) left out")
        matched = matched.drop(setting.index)
        for name in setting["run"]:
            tags.pop(name, None)
    budgets = ", ".join(f"{b:,}" for b in sorted(set(matched["budget"].dropna().astype(int))))
    ledger_budget = claim.sweep.get("train.sequences", (None,))[0]
    if ledger_budget is not None and budgets and budgets != f"{int(float(ledger_budget)):,}":  # no runs left: nothing to say
        deviations.append(f"budget {budgets} sequences, the ledger's {int(float(ledger_budget)):,}")
    elif ledger_budget is None and any("train.sequences" in overrides for overrides in matched["overrides"]):
        deviations.append(f"budget {budgets} sequences, set on the command line (the ledger keeps the preset's)")
    if claim.seeds:
        counts = pd.Series(list(tags.values())).value_counts()
        short = [f"{' '.join(v for v in group if v != NO_PRESET)}: {n}" for group, n in counts.items() if n < claim.seeds]
        if short:
            deviations.append(f"runs per configuration below the ledger's {claim.seeds} seeds ({'; '.join(short)})")
    return Matched(tags=tags, deviations=deviations, unfinished=len(unfinished))


def statistic(name: str, run_stats: pd.DataFrame, generalisation: pd.DataFrame) -> pd.Series:
    """Each run's value of a check's statistic (run -> float; converged as 0/1; a run that
    never converged or reached inf; a run without the value NaN)."""
    if name not in run_stats and name.startswith((TRACE, ALONG)):  # no run of the report has one
        return pd.Series(np.nan, index=run_stats["run"])
    parsed = per_level(name)
    if parsed is not None and parsed[0] == GENERALISATION:
        _, metric, level = parsed
        rows = generalisation[generalisation["level"].astype(str) == level] if len(generalisation) else generalisation
        by_run = rows.groupby("run")[metric].mean() if len(rows) else pd.Series(dtype=float)
        return run_stats["run"].map(by_run).set_axis(run_stats["run"]).astype(float)
    values = run_stats.set_index("run")[name].astype(float)
    return values.fillna(np.inf) if name in NEVER else values


def members(group: str, tags: dict[str, tuple[str, ...]]) -> list[str]:
    """The runs of a group: those whose tags include every word of its name."""
    words = set(group.split())
    return [run for run, found in tags.items() if words <= set(found)]


@dataclass
class Outcome:
    """One check's result: its verdict, what we measured, and (when inconclusive) the power."""

    verdict: str
    ours: str
    power: str = ""
    p_claim: float = math.nan  # compare: the one-sided p of the claimed direction
    p_opposite: float = math.nan
    samples: tuple[np.ndarray, np.ndarray] | None = None  # compare: the two groups' values tested


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "never" if value > 0 else "-inf"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def _fisher_power(x: np.ndarray, y: np.ndarray, family: int) -> str:
    """The fewest converged runs of the higher group that would have reached the threshold
    against the lower group's count."""
    lower_k, higher_n = int(x.sum()), len(y)
    for needed in range(int(y.sum()), higher_n + 1):
        if fisher_greater(needed, higher_n, lower_k, len(x)) * family < ALPHA:
            return f"it needed {needed} of {higher_n} converged against {lower_k} of {len(x)}"
    return f"no outcome of {higher_n} against {len(x)} runs reaches Holm p < {ALPHA:g} ({lower_k} of {len(x)} converged)"


def _fewest_runs(family: int) -> int:
    """The fewest runs per group for which complete separation reaches Holm p < ALPHA."""
    return next(k for k in range(1, 100) if family / math.comb(2 * k, k) < ALPHA)


def _mann_whitney_power(x: np.ndarray, y: np.ndarray, family: int) -> str:
    """The smallest shift down of the lower group's finite values that would have reached
    Holm p < ALPHA (one-sided), or why none could."""
    if family / math.comb(len(x) + len(y), len(x)) >= ALPHA:
        return (f"no outcome of {len(x)} against {len(y)} runs reaches Holm p < {ALPHA:g}; "
                f"{_fewest_runs(family)} runs each needed")
    finite = x[np.isfinite(x)]
    # the ranks change only where a shifted value passes one of the other group's: just past each difference
    differences = sorted({0.0, *(float(a - b) for a in finite for b in y[np.isfinite(y)] if a - b > 0)})
    past = 1e-9 * (max(1.0, float(np.abs(finite).max())) if len(finite) else 1.0)

    def reaches(shift: float) -> bool:
        return mann_whitney(np.where(np.isfinite(x), x - shift - past, x), y, alternative="less")[1] * family < ALPHA

    first, last = 0, len(differences)  # binary search: a larger shift only lowers p
    while first < last:
        middle = (first + last) // 2
        first, last = (first, middle) if reaches(differences[middle]) else (middle + 1, last)
    if first == len(differences):
        never = int(np.isinf(x).sum())
        return f"no shift of the first group's values reaches Holm p < {ALPHA:g} ({never} of its {len(x)} runs never got there)"
    if first == 0:  # the ties between the groups alone stood between the result and the threshold
        return f"at the threshold: any shift of the first group down reaches Holm p < {ALPHA:g} (ties between the groups decide)"
    return f"it would have detected the first group lower by more than {_number(differences[first])}"


def _compare(check: Check, values: pd.Series, tags: dict[str, tuple[str, ...]]) -> Outcome:
    lower, higher = check.groups
    runs = {group: values.reindex(members(group, tags)) for group in check.groups}
    missing = [group for group, found in runs.items() if found.empty]
    if missing and all(set(group.split()) & set(OUTCOMES) for group in missing):  # the runs exist, none turned out so
        return Outcome("inconclusive", f"no {' and no '.join(missing)} runs among the {len(tags)}",
                       power=f"needs runs of {' and '.join(missing)}")
    if missing:
        return Outcome(NOT_RUN, f"no runs of {' and '.join(missing)}")
    empty = [group for group, found in runs.items() if found.isna().all()]
    if empty:
        return Outcome("inconclusive", f"{lower} vs {higher}: no run of {' and '.join(empty)} has a value",
                       power=f"{statistic_title(check.on)}: no value to compare")
    x, y = (runs[group].dropna().to_numpy() for group in check.groups)
    if check.on == "converged":
        ours = f"{lower} {int(x.sum())}/{len(x)} vs {higher} {int(y.sum())}/{len(y)} converged"
        return Outcome("", ours, p_claim=fisher_greater(int(y.sum()), len(y), int(x.sum()), len(x)),
                       p_opposite=fisher_greater(int(x.sum()), len(x), int(y.sum()), len(y)), samples=(x, y))
    def counted(values: np.ndarray) -> str:
        reached = f", {int(np.isfinite(values).sum())} got there" if check.on in NEVER else ""
        return f"(n={len(values)}{reached})"

    ours = f"{lower} median {_number(np.median(x))} {counted(x)} vs {higher} {_number(np.median(y))} {counted(y)}"
    if not (np.isfinite(x).any() or np.isfinite(y).any()):
        return Outcome("inconclusive", ours + ": neither ever got there", power="no run of either to compare")
    difference, low, high = bootstrap_median_difference(x, y)
    ours += f", difference {_number(difference)} [95% CI {_number(low)}, {_number(high)}]"
    return Outcome("", ours, p_claim=mann_whitney(x, y, alternative="less")[1],
                   p_opposite=mann_whitney(x, y, alternative="greater")[1], samples=(x, y))


def _too_few(group: str, known: pd.Series, of: str, without: str = "") -> Outcome | None:
    """Not counted: a share or spread over fewer than :data:`MIN_RUNS_WITH_VALUE` runs with a value."""
    if len(known) >= MIN_RUNS_WITH_VALUE:
        return None
    return Outcome(NOT_COUNTED, f"{group}: {len(known)} {of}run(s) with a value, fewer than {MIN_RUNS_WITH_VALUE}{without}")


def _share(check: Check, values: pd.Series, tags: dict[str, tuple[str, ...]]) -> Outcome:
    group = check.groups[0]
    runs = values.reindex(members(group, tags))
    if not len(runs):
        return Outcome(NOT_RUN, f"{group}: no {'converged ' if check.among else ''}runs")
    of = "converged " if check.among else ""
    known = runs.dropna()  # a level not tested, a trend over constant values: no evidence either way
    without = f", {len(runs) - len(known)} without a value" if len(known) < len(runs) else ""
    if without and (too_few := _too_few(group, known, of, without)):
        return too_few
    meets = known < check.below if check.below is not None else known > check.above
    k, n = int(meets.sum()), len(known)
    low, high = _wilson(k, n)
    ours = f"{group}: {k} of {n} {of}{check.runs_meeting()} ({k / n:.0%}; 95% interval {low:.0%}-{high:.0%}){without}"
    verdict = ("confirmed" if k / n >= check.confirmed_at else "contradicted" if k / n <= check.contradicted_at
               else "inconclusive")
    return Outcome(verdict, ours, power=f"{n} runs: the share is known to {low:.0%}-{high:.0%}")


def _within(check: Check, values: pd.Series, tags: dict[str, tuple[str, ...]]) -> Outcome:
    group = check.groups[0]
    runs = values.reindex(members(group, tags))
    if not len(runs):
        return Outcome(NOT_RUN, f"{group}: no runs")
    known = runs.dropna()
    if known.empty:
        return Outcome(check.if_none, f"{group}: no run of {len(runs)} has a value")
    median = float(known.median())
    ours = f"{group}: median {_number(median)} [range {_number(known.min())}, {_number(known.max())}], {len(known)} of {len(runs)} runs"
    inside = check.low <= median <= check.high
    return Outcome("confirmed" if inside else "contradicted", ours)


def _spread(check: Check, values: pd.Series, tags: dict[str, tuple[str, ...]]) -> Outcome:
    group = check.groups[0]
    runs = values.reindex(members(group, tags))
    known = runs[np.isfinite(runs.astype(float))]  # a run that never got there has no value to spread
    of = "converged " if check.among else ""
    if too_few := _too_few(group, known, of):
        return too_few
    mean, sd = float(known.mean()), float(known.std(ddof=1))
    cv = sd / mean
    ours = f"{group}: coefficient of variation {cv:.2f} over {len(known)} {of}runs (mean {_number(mean)}, sd {_number(sd)})"
    return Outcome("confirmed" if cv < check.below else "contradicted" if cv > check.above else "inconclusive", ours)


DECIDE = {"compare": _compare, "differ": _compare, "share": _share, "within": _within, "spread": _spread}


def _two_sided(outcome: Outcome) -> float:
    return min(1.0, 2 * min(outcome.p_claim, outcome.p_opposite))


def _settle_comparisons(outcomes: list[Outcome], checks: tuple[Check, ...]) -> None:
    """Holm over the claim's comparisons, each direction its own family: the claimed
    direction below ALPHA confirms, the opposite contradicts, else inconclusive (a
    ``differ`` check: its two-sided p in the claimed family; never contradicted)."""
    tested = [i for i, (o, c) in enumerate(zip(outcomes, checks)) if c.kind in PAIRED and not o.verdict]
    if not tested:
        return
    two_sided = [checks[i].kind == "differ" for i in tested]
    claimed = holm(np.array([_two_sided(outcomes[i]) if both else outcomes[i].p_claim for i, both in zip(tested, two_sided)]))
    opposite = holm(np.array([1.0 if both else outcomes[i].p_opposite for i, both in zip(tested, two_sided)]))
    for i, both, p, q in zip(tested, two_sided, claimed, opposite):
        outcome = outcomes[i]
        if both:
            outcome.ours += f"; two-sided p {_two_sided(outcome):.3g} (Holm {p:.3g})"
        else:
            outcome.ours += f"; one-sided p {outcome.p_claim:.3g} (Holm {p:.3g}), opposite p {outcome.p_opposite:.3g}"
        outcome.verdict = "confirmed" if p < ALPHA else "contradicted" if q < ALPHA else "inconclusive"


def _power(check: Check, outcome: Outcome, family: int) -> str:
    """What an inconclusive comparison could have detected, on the values it tested."""
    if outcome.samples is None or outcome.verdict != "inconclusive":
        return outcome.power
    x, y = outcome.samples
    if check.kind == "differ":  # a two-sided test: either direction at half the level
        return _mann_whitney_power(x, y, 2 * family)
    return _fisher_power(x, y, family) if check.on == "converged" else _mann_whitney_power(x, y, family)


@dataclass
class Verdict:
    """A claim decided on a report's runs: one line of the verdict page."""

    claim: Claim
    verdict: str
    ours: list[str]
    power: list[str]
    deviations: list[str]
    runs: int
    tags: dict[str, tuple[str, ...]]  # the claim's runs and their values of its experiment


def combine(verdicts: list[str]) -> str:
    """Every check confirmed: confirmed; one contradicted: contradicted; nothing run: not
    run; else inconclusive. Checks not counted (a spread over too few runs) are left out."""
    verdicts = [v for v in verdicts if v != NOT_COUNTED]
    if "contradicted" in verdicts:
        return "contradicted"
    if verdicts and all(v == "confirmed" for v in verdicts):
        return "confirmed"
    return NOT_RUN if verdicts and all(v == NOT_RUN for v in verdicts) else "inconclusive"


def decide(claim: Claim, runs: pd.DataFrame, run_stats: pd.DataFrame, generalisation: pd.DataFrame) -> Verdict | None:
    """The verdict on ``claim`` from the runs of its experiment among ``runs``; None when
    none of them is one of its runs (or the claim is settled by no experiment)."""
    if not claim.experiment:
        return None
    matched = match(claim, runs)
    deviations = list(claim.deviations) + matched.deviations
    if not matched.tags:
        if not matched.unfinished:
            return None
        return Verdict(claim, NOT_RUN, [f"none of its {matched.unfinished} runs has finished"], [""], deviations, 0, {})
    if not claim.checks:
        return Verdict(claim, NOT_DECIDED, [f"{len(matched.tags)} runs; the rule is not computed by ntm-repro yet"],
                       [""], deviations, len(matched.tags), matched.tags)
    if claim.unchecked:
        deviations.append(f"not checked by the rule: {claim.unchecked}")
    values = {check.on: statistic(check.on, run_stats, generalisation) for check in claim.checks}
    by_outcome = any(set(group.split()) & set(OUTCOMES) for check in claim.checks for group in check.groups)
    converged = statistic("converged", run_stats, generalisation) if by_outcome or any(c.among for c in claim.checks) else None
    counted = [{run: tags for run, tags in matched.tags.items() if not check.among or converged.get(run) == 1}
               for check in claim.checks]  # each check's runs: all, or the converged ones
    if converged is not None:  # groups may name the runs that did or did not converge
        counted = [{run: (*tags, OUTCOMES[int(converged.get(run) != 1)]) for run, tags in runs.items()} for runs in counted]
    outcomes = [DECIDE[check.kind](check, values[check.on], runs) for check, runs in zip(claim.checks, counted)]
    _settle_comparisons(outcomes, claim.checks)
    family = sum(check.kind in PAIRED for check in claim.checks)
    power = [_power(check, outcome, family) for check, outcome in zip(claim.checks, outcomes)]
    return Verdict(
        claim, combine([o.verdict for o in outcomes]), [f"{o.verdict}: {o.ours}" for o in outcomes],
        power, deviations, len(matched.tags), matched.tags,
    )


def verdicts(ledger: list[Claim], runs: pd.DataFrame, run_stats: pd.DataFrame, generalisation: pd.DataFrame) -> list[Verdict]:
    """A verdict for every claim of ``ledger`` that some of ``runs`` belong to."""
    found = (decide(claim, runs, run_stats, generalisation) for claim in ledger)
    return [verdict for verdict in found if verdict is not None]


def numbered(parts: list[str]) -> str:
    """One line per check: "(1) a (3) c" (empty parts left out, numbers kept), or the one
    part as it is."""
    if len(parts) == 1:
        return parts[0]
    return " ".join(f"({i}) {part}" for i, part in enumerate(parts, 1) if part)


def verdict_table(found: list[Verdict]) -> pd.DataFrame:
    """The verdicts as a table (verdicts.csv, and the page's rows)."""
    return pd.DataFrame(
        {
            "id": [v.claim.id for v in found],
            "claim": [v.claim.claim for v in found],
            "paper": [v.claim.paper for v in found],
            "ours": [numbered(v.ours) for v in found],
            "verdict": [v.verdict for v in found],
            "power": [numbered(v.power) for v in found],
            "deviations": ["; ".join(v.deviations) or "none" for v in found],
            "runs": [v.runs for v in found],
        },
        columns=["id", "claim", "paper", "ours", "verdict", "power", "deviations", "runs"],
    )
