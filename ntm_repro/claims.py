"""``ntm-repro-claims``: the claims ledger (``ntm_repro/ledger/*.yaml``, one entry per claim
of ``shared/CLAIMS.md``; data beside the code, not in ``conf/``, where Hydra would offer it as
a config group) and the command that runs each claim's experiment.

    ntm-repro-claims               # every claim: id, source, the claim, its command
    ntm-repro-claims G1 Z7         # just those, with the paper's numbers, statistic, rule, deviations

An entry holds ``id``, ``source``, ``claim``, ``paper`` (the paper's numbers), how it is
settled (``experiment``: the overrides of ``ntm-repro -m``, as on a command line; or ``command``: another command;
or ``not_run``: why not), ``statistic``, ``rule`` (the decision rule) and ``deviations``
(from the paper's setting).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from importlib import resources

import yaml

SOURCES = ("graves", "zhang", "nielsen", "ift6135")  # ledger/<source>.yaml, in this order
REQUIRED = ("id", "source", "claim", "paper", "statistic", "rule", "deviations")
SETTLED_BY = ("experiment", "command", "not_run")


class LedgerError(ValueError):
    """A ledger entry that is missing a field or says how it is settled in no way, or two."""


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    claim: str
    paper: str
    statistic: str
    rule: str
    deviations: tuple[str, ...] = ()
    experiment: tuple[str, ...] = ()
    command_line: str | None = None
    not_run: str | None = None
    file: str = field(default="", compare=False)

    @property
    def command(self) -> str | None:
        """The command that runs the claim's experiment, or None when it is not run."""
        if self.experiment:
            return " ".join(["ntm-repro", "-m", *(shlex.quote(str(o)) for o in self.experiment)])
        return self.command_line


def _claim(entry: dict, file: str) -> Claim:
    name = f"{file}: {entry.get('id', '<no id>')}"
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise LedgerError(f"{name}: missing {', '.join(missing)}")
    settled = [key for key in SETTLED_BY if entry.get(key)]
    if len(settled) != 1:
        raise LedgerError(f"{name}: give exactly one of {', '.join(SETTLED_BY)} (found {', '.join(settled) or 'none'})")
    return Claim(
        id=str(entry["id"]), source=str(entry["source"]), claim=str(entry["claim"]), paper=str(entry["paper"]),
        statistic=str(entry["statistic"]), rule=str(entry["rule"]), deviations=tuple(map(str, entry["deviations"] or ())),
        experiment=tuple(shlex.split(entry.get("experiment") or "")), command_line=entry.get("command"),
        not_run=entry.get("not_run"), file=file,
    )


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
    args = parser.parse_args(argv)
    ledger = load_ledger()
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
