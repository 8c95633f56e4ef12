"""``ntm-repro-claims``: the claims ledger (``ntm_repro/ledger/*.yaml``, one entry per claim
of ``shared/CLAIMS.md``; data beside the code, not in ``conf/``, where Hydra would offer it as
a config group) and the command that runs each claim's experiment.

    ntm-repro-claims               # every claim: id, source, the claim, its command
    ntm-repro-claims G1 Z7         # just those, with the paper's numbers, statistic, rule, deviations
    ntm-repro-claims --index reports/   # reports/README.md: each claim's verdict and the report deciding it

An entry holds ``id``, ``source``, ``claim``, ``paper`` (the paper's numbers), how it is
settled (``experiment``: the overrides of ``ntm-repro -m``, as on a command line; or
``command``: another command; or ``not_run``: why not), ``statistic``, the decision rule
(``test``: a list of :class:`Check`, which ``ntm-repro-report`` decides, with ``unchecked``
naming what they leave out; or ``rule``: prose, for what no statistic computes yet) and
``deviations`` (from the paper's setting).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path
from dataclasses import dataclass, field
from importlib import resources

import yaml

SOURCES = ("graves", "zhang", "nielsen", "ift6135")  # ledger/<source>.yaml, in this order
REQUIRED = ("id", "source", "claim", "paper", "statistic", "deviations")
SETTLED_BY = ("experiment", "command", "not_run")
SIZE_KEYS = ("seed", "train.sequences")  # how much of an experiment was run, not which one
ALPHA = 0.05  # every decision rule's threshold
# The per-run statistics a check can name (computed in ntm_repro/report/verdicts.py), and
# generalisation.<cost_bits|bit_errors>@<level>: the run's value at that test level.
STATISTICS = {
    "converged": "converged (the report's windowed rule)",
    "sequences_to_converge": "sequences to converge (held from; a run that did not converge counts as never)",
    "first_reached": "sequences to first reach the criterion (never: counted as never)",
    "final_cost_bits": "final validation cost (bits per sequence)",
    "final_bit_errors": "final validation bit errors per sequence",
    "spikes_after_reached": "loss spikes (outliers) from first reaching the criterion on",
    "spike_interval": "sequences between loss spikes (each run's median)",
    "spike_rate_ratio": ("a run's loss-spike rate while its loss is in the lower half of its range, over the rate in the "
                         "upper half (1: unrelated to the loss level; inf: none in the upper half)"),
    "collapses": "collapses (validation errors back up after learning)",
}
TRACE = "trace."
TRACE_STATISTICS = {  # from the run's attention trace at its first test level (ntm_repro/report/traces.py)
    "write_moves_one": "share of input steps whose write (head 1's most weighted location) moves one location on",
    "read_moves_one": "share of scored steps whose read (head 1) moves one location on",
    "read_starts_at_write_start": "the first scored read within one location of the first write (1 yes, 0 no)",
    "max_weight": "the largest weight, averaged over the write head's input steps and the read head's scored steps (1: sharp)",
    "write_priority_r2": "R^2 of the write location (unwrapped) against the input's priority (priority sort)",
    "weight_entropy": "the entropy of head 1's write (input steps) and read (scored steps) weightings over log N, averaged (1: uniform)",
}
STATISTICS |= {TRACE + name: text for name, text in TRACE_STATISTICS.items()}
AMONG = ("converged",)  # a share check may count only the runs that converged
OUTCOMES = ("converged", "unconverged")  # words a check's group may add: the runs that did (not) converge
GENERALISATION = "generalisation."
ALONG = "along."  # along.<metric>@<level>: the trend over the checkpoints kept along the run
GENERALISATION_METRICS = ("cost_bits", "bit_errors", "copy_bit_errors", "marker_bit_errors")  # repeat copy's bits, its end channel
KINDS = ("compare", "differ", "share", "within", "spread")
MIN_RUNS_WITH_VALUE = 3  # a spread check, or a share check missing values, counts a group with at least this many runs with a value
PAIRED = ("compare", "differ")  # the kinds that take two groups
NUMBERS = ("below", "above", "confirmed_at", "contradicted_at", "low", "high")  # a check's thresholds
VERDICTS = ("confirmed", "contradicted", "inconclusive")


class LedgerError(ValueError):
    """A ledger entry that is missing a field, says how it is settled in no way or two, or
    holds a check that cannot be decided."""


def statistic_title(name: str) -> str:
    """A statistic's name in words (``generalisation.bit_errors@50`` -> "bit errors per
    sequence at test level 50")."""
    parsed = per_level(name)
    if parsed is None:
        return STATISTICS[name]
    prefix, metric, level = parsed
    what = {"cost_bits": "cost (bits per sequence)", "copy_bit_errors": "bit errors per sequence on the copied bits",
            "marker_bit_errors": "end-marker bit errors per sequence"}.get(metric, "bit errors per sequence")
    if prefix == ALONG:
        return (f"Spearman correlation of {what} at test level {level} with sequences trained, over the "
                "checkpoints kept along the run (below 0: falling)")
    return f"{what} at test level {level}"


def per_level(name: str) -> tuple[str, str, str] | None:
    """A statistic at a test level, ``<prefix><metric>@<level>`` (prefix generalisation. or
    along.), as (prefix, metric, level); None for any other name."""
    for prefix in (GENERALISATION, ALONG):
        if name.startswith(prefix) and "@" in name:
            metric, level = name[len(prefix):].split("@", 1)
            return prefix, metric, level
    return None


def _check_statistic(name: str) -> str | None:
    """Why ``name`` is not a statistic a check can use, or None."""
    if name in STATISTICS:
        return None
    parsed = per_level(name)
    if parsed is not None and parsed[1] in GENERALISATION_METRICS and parsed[2]:
        return None
    return (f"unknown statistic {name!r} (one of {', '.join(STATISTICS)}, or generalisation.<metric>@<level> or "
            f"along.<metric>@<level>, metric {' or '.join(GENERALISATION_METRICS)})")


@dataclass(frozen=True)
class Check:
    """One machine-decided part of a claim's rule, on a per-run statistic ``on`` (the
    ledger's ``statistic:``; see :data:`STATISTICS`):

    - compare: ``groups = (lower, higher)``, the claim that ``on`` is lower for the first
      (for ``converged``: that it converges in fewer runs); one-sided Mann-Whitney (Fisher's
      exact test for ``converged``), Holm-adjusted over the claim's comparisons.
    - differ: ``groups = (a, b)``, the claim that ``on`` differs between them, in no stated
      direction; two-sided Mann-Whitney, Holm-adjusted with the comparisons; confirmed or
      inconclusive, never contradicted.
    - share: the fraction of the group's runs whose ``on`` is below ``below`` (or above
      ``above``), of the runs that converged with ``among: converged``: confirmed at
      ``confirmed_at`` or more, contradicted at ``contradicted_at`` or less. A run without a
      value (a level it was not tested at, a trend over constant values) is named and left
      out, and when that leaves fewer than :data:`MIN_RUNS_WITH_VALUE` the check is not counted.
    - within: the median over the group's runs inside [low, high] confirmed, outside
      contradicted; ``if_none`` when no run has a value.
    - spread: the coefficient of variation (sample sd / mean) of ``on`` over the group's runs
      with a finite value (the converged ones with ``among: converged``): below ``below``
      confirmed, above ``above`` contradicted; a group with fewer than
      :data:`MIN_RUNS_WITH_VALUE` values is not counted (the other checks decide).

    A group is named by values of the experiment's overrides ("ntm2", "graves/copy_lstm",
    "ift6135/lstm_ntm adam"), and may add ``converged`` or ``unconverged`` (the runs that did
    or did not converge): a run belongs when it has every one."""

    kind: str
    on: str
    groups: tuple[str, ...]
    below: float | None = None
    above: float | None = None
    confirmed_at: float = 1.0
    contradicted_at: float = 0.0
    low: float = -math.inf
    high: float = math.inf
    if_none: str = "inconclusive"
    among: str | None = None  # share: count only the runs that converged

    def describe(self) -> str:
        what = statistic_title(self.on)
        if self.kind == "compare":
            lower, higher = self.groups
            opposite = f" (the opposite direction at Holm-adjusted p < {ALPHA:g}: contradicted)"
            if self.on == "converged":
                return (f"{higher} converges in more runs than {lower}: one-sided Fisher exact test, Holm-adjusted "
                        f"p < {ALPHA:g}{opposite}")
            return f"{what}: {lower} < {higher}, one-sided Mann-Whitney, Holm-adjusted p < {ALPHA:g}{opposite}"
        if self.kind == "differ":
            return (f"{what}: {self.groups[0]} and {self.groups[1]} differ, two-sided Mann-Whitney, Holm-adjusted p < {ALPHA:g} "
                    "(no direction claimed: never contradicted)")
        among = " among its converged runs" if self.among else ""
        if self.kind == "share":
            return (f"{self.groups[0]}: {self.runs_meeting()}{among} - confirmed at {self.confirmed_at:.0%} of runs or more, "
                    f"contradicted at {self.contradicted_at:.0%} or less; runs without a value left out (fewer than "
                    f"{MIN_RUNS_WITH_VALUE} left - not counted)")
        if self.kind == "spread":
            return (f"{self.groups[0]}: the coefficient of variation of {what}{among} below {self.below:g} - confirmed; "
                    f"above {self.above:g} - contradicted; fewer than {MIN_RUNS_WITH_VALUE} runs with a value - not counted")
        return (f"{self.groups[0]}: the median over runs of {what} within [{self.low:g}, {self.high:g}] - confirmed; "
                f"outside - contradicted; no run with a value - {self.if_none}")

    def runs_meeting(self) -> str:
        """A share check's condition in words ("runs that converged", "runs with ... below 1")."""
        if self.on == "converged":
            return "runs that converged" if self.above is not None else "runs that did not converge"
        condition = f"below {self.below:g}" if self.below is not None else f"above {self.above:g}"
        return f"runs with {statistic_title(self.on)} {condition}"


def _checks(entry: dict, name: str) -> tuple[Check, ...]:
    checks = []
    for raw in entry.get("test") or ():
        kind = [k for k in KINDS if k in raw]
        if len(kind) != 1 or "statistic" not in raw:
            raise LedgerError(f"{name}: a check needs one of {', '.join(KINDS)} and statistic: ({raw})")
        kind = kind[0]
        problem = _check_statistic(str(raw["statistic"]))
        if problem:
            raise LedgerError(f"{name}: {problem}")
        groups = tuple(map(str, raw[kind])) if kind in PAIRED else (str(raw[kind]),)
        if kind in PAIRED and len(groups) != 2:
            raise LedgerError(f"{name}: {kind} takes two groups, [lower, higher] for compare ({raw})")
        if kind == "differ" and raw["statistic"] == "converged":
            raise LedgerError(f"{name}: differ compares values of runs; for converged runs use compare ({raw})")
        if kind == "share" and (raw.get("below") is None) == (raw.get("above") is None):
            raise LedgerError(f"{name}: share takes below: or above: ({raw})")
        if kind == "spread" and (raw.get("below") is None or raw.get("above") is None):
            raise LedgerError(f"{name}: spread takes below: (confirmed under it) and above: (contradicted over it) ({raw})")
        if raw.get("if_none", "inconclusive") not in VERDICTS:
            raise LedgerError(f"{name}: if_none must be one of {', '.join(VERDICTS)}")
        try:
            fields = {key: float(raw[key]) for key in NUMBERS if key in raw}
        except (TypeError, ValueError):
            raise LedgerError(f"{name}: {', '.join(NUMBERS)} must be numbers ({raw})") from None
        fields |= {key: raw[key] for key in ("if_none", "among") if key in raw}
        if raw.get("among", AMONG[0]) not in AMONG:
            raise LedgerError(f"{name}: among: {' or '.join(AMONG)} ({raw})")
        checks.append(Check(kind=kind, on=str(raw["statistic"]), groups=groups, **fields))
    return tuple(checks)


FIGURE_AXES = {"x": ("sequences", "level"), "y": GENERALISATION_METRICS}


def _figure(figure: dict | None, name: str) -> dict | None:
    """A claim's ``figure``: title, x (sequences: validation points; level: test levels), y
    (cost_bits or bit_errors), optional ylabel and log_y, and ``points``: the paper's
    numbers as {group, x, y}."""
    if figure is None:
        return None
    for axis, allowed in FIGURE_AXES.items():
        if figure.get(axis, allowed[0]) not in allowed:
            raise LedgerError(f"{name}: figure {axis}: one of {', '.join(allowed)}")
    points = figure.get("points") or []
    if "title" not in figure or not points or any(set(p) != {"group", "x", "y"} for p in points):
        raise LedgerError(f"{name}: a figure needs a title and points of group, x and y")
    return figure


def sweep_items(value: str) -> list[str]:
    """A sweep value's items: split at commas outside brackets ("a,[1,2]" -> a, [1,2])."""
    out, depth, start = [], 0, 0
    for i, char in enumerate(value):
        depth += 1 if char in "[{" else -1 if char in "]}" else 0
        if char == "," and depth == 0:
            out.append(value[start:i])
            start = i + 1
    return out + [value[start:]]


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    claim: str
    paper: str
    statistic: str
    prose_rule: str | None = None
    deviations: tuple[str, ...] = ()
    experiment: tuple[str, ...] = ()
    command_line: str | None = None
    not_run: str | None = None
    checks: tuple[Check, ...] = ()
    unchecked: str | None = None
    figure: dict | None = field(default=None, compare=False)  # the paper's numbers to draw beside ours
    file: str = field(default="", compare=False)

    @property
    def command(self) -> str | None:
        """The command that runs the claim's experiment, or None when it is not run."""
        if self.experiment:
            return " ".join(["ntm-repro", "-m", *(shlex.quote(str(o)) for o in self.experiment)])
        return self.command_line

    @property
    def rule(self) -> str:
        """The decision rule in words: the checks' (each must hold to confirm; one contradicted
        contradicts), else the ledger's prose."""
        if not self.checks:
            return self.prose_rule or ""
        parts = " ".join(f"({i}) {check.describe()}" for i, check in enumerate(self.checks, 1)) if len(self.checks) > 1 \
            else self.checks[0].describe()
        rule = f"{parts}. Confirmed when every check is confirmed; contradicted when one is; otherwise inconclusive"
        return rule + (f". Not checked by the rule: {self.unchecked}" if self.unchecked else "")

    @property
    def sweep(self) -> dict[str, tuple[str, ...]]:
        """The experiment's overrides, key -> values (seed's range as written)."""
        pairs = (override.split("=", 1) for override in self.experiment)
        return {key: (value,) if key == "seed" else tuple(sweep_items(value)) for key, value in pairs}

    @property
    def seeds(self) -> int | None:
        """How many seeds the experiment asks for (``seed=0-4``: 5), None if it sets none."""
        value = self.sweep.get("seed", (None,))[0]
        if value is None:
            return None
        first, _, last = value.partition("-")
        return int(last) - int(first) + 1 if last else len(sweep_items(value))


def _claim(entry: dict, file: str) -> Claim:
    name = f"{file}: {entry.get('id', '<no id>')}"
    missing = [key for key in REQUIRED if key not in entry]
    if "rule" not in entry and "test" not in entry:
        missing.append("rule (or test)")
    if missing:
        raise LedgerError(f"{name}: missing {', '.join(missing)}")
    settled = [key for key in SETTLED_BY if entry.get(key)]
    if len(settled) != 1:
        raise LedgerError(f"{name}: give exactly one of {', '.join(SETTLED_BY)} (found {', '.join(settled) or 'none'})")
    claim = Claim(
        id=str(entry["id"]), source=str(entry["source"]), claim=str(entry["claim"]), paper=str(entry["paper"]),
        statistic=str(entry["statistic"]), prose_rule=entry.get("rule"),
        deviations=tuple(map(str, entry["deviations"] or ())),
        experiment=tuple(shlex.split(entry.get("experiment") or "")), command_line=entry.get("command"),
        not_run=entry.get("not_run"), checks=_checks(entry, name), unchecked=entry.get("unchecked"),
        figure=_figure(entry.get("figure"), name), file=file,
    )
    values = {value for key, listed in claim.sweep.items() if key not in SIZE_KEYS for value in listed}
    named = [group for check in claim.checks for group in check.groups]
    named += [str(point["group"]) for point in (claim.figure or {}).get("points", ())]
    for group in named:
        unknown = [word for word in group.split() if word not in values and word not in OUTCOMES]
        if unknown:
            raise LedgerError(f"{name}: group {group!r}: {', '.join(unknown)} is no value of the experiment")
    return claim


def load_ledger() -> list[Claim]:
    """Every claim of the package's ledger, in CLAIMS.md's order; a LedgerError names a
    malformed entry or a repeated id."""
    root = resources.files("ntm_repro").joinpath("ledger")
    claims: list[Claim] = []
    for source in SOURCES:
        file = f"ntm_repro/ledger/{source}.yaml"
        entries = yaml.safe_load(root.joinpath(f"{source}.yaml").read_text()) or []
        claims.extend(_claim(entry, file) for entry in entries)
    seen: set[str] = set()
    for claim in claims:
        if claim.id in seen:
            raise LedgerError(f"{claim.file}: {claim.id} appears twice")
        seen.add(claim.id)
    return claims


def describe(claim: Claim, full: bool) -> str:
    settled = claim.command or f"not run: {claim.not_run}"
    lines = [f"{claim.id}  {claim.source}", f"    {claim.claim}", f"    {settled}"]
    if full:
        lines += [f"    paper: {claim.paper}", f"    statistic: {claim.statistic}", f"    rule: {claim.rule}",
                  f"    deviations: {'; '.join(claim.deviations) or 'none'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ntm-repro-claims", description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="claim ids (default: all), e.g. G1 Z7")
    parser.add_argument("--index", type=Path, metavar="DIR",
                        help="write DIR/README.md: every claim's verdict and the report in DIR that decides it")
    args = parser.parse_args(argv)
    ledger = load_ledger()
    if args.index is not None:
        if not args.index.is_dir():
            print(f"ntm-repro-claims: error: --index {args.index}: no such folder (give the reports folder)", file=sys.stderr)
            return 2
        from ntm_repro.report.index import write_index  # the ledger alone needs no pandas

        print(f"{write_index(ledger, args.index)}: the verdicts of {len(ledger)} claims")
        return 0
    by_id = {claim.id: claim for claim in ledger}
    unknown = [i for i in args.ids if i not in by_id]
    if unknown:
        print(f"ntm-repro-claims: error: no claim {', '.join(unknown)}; the ids are {', '.join(by_id)}", file=sys.stderr)
        return 2
    chosen = [by_id[i] for i in args.ids] if args.ids else ledger
    print("\n".join(describe(claim, full=bool(args.ids)) for claim in chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
