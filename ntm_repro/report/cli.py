"""``ntm-repro-report``: read run folders (a sweep, several sweeps, single runs) and write
``DIR/NAME.pdf`` with its figures as PNG and its tables as CSV in ``DIR/NAME/``.

    ntm-repro-report multirun/2026-01-01_12-00-00
    ntm-repro-report multirun/sweep_a multirun/sweep_b --name structured --out reports
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ntm_repro.errors import ConfigError
from ntm_repro.report.read import NoRuns, read_runs
from ntm_repro.report.stats import Criteria


FORMATS = ("pdf", "png", "html")


def _fail(message: str, code: int) -> None:
    print(f"ntm-repro-report: error: {message}", file=sys.stderr)
    sys.exit(code)


def _positive(kind: type = float):
    """An argparse type: a number of ``kind`` that must be above 0."""

    def positive(text: str) -> int | float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text}: must be positive")
        return value

    positive.__name__ = kind.__name__  # argparse's message for a non-number: "invalid float value"
    return positive


def _formats(text: str) -> tuple[str, ...]:
    """An argparse type: a comma-separated list of report formats."""
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [part for part in chosen if part not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more of {', '.join(FORMATS)}, e.g. pdf,html")
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Criteria()
    parser = argparse.ArgumentParser(
        prog="ntm-repro-report",
        description="Read run folders (a sweep, several sweeps, single runs) and write DIR/NAME.pdf, "
        "with its figures as PNG and its tables as CSV in DIR/NAME/.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="sweep or run folders (searched recursively)")
    parser.add_argument("--name", help="report name (default: the first path's folder name)")
    parser.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR", help="output folder (default: reports)")
    parser.add_argument(
        "--criterion", type=_positive(), default=defaults.bit_errors,
        help="converged: validation bit errors per sequence below this over the window (default: %(default)s)",
    )
    parser.add_argument(
        "--window", type=_positive(), default=defaults.window,
        help="converged: below the criterion at every validation point of this last fraction of the "
        "training budget (default: %(default)s)",
    )
    parser.add_argument(
        "--min-points", type=_positive(int), default=defaults.min_points,
        help="converged: judged on the last this many validation points when the window holds fewer "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--spike-bits", type=_positive(), default=defaults.spike_bits,
        help="loss spike: training cost above the preceding median by more than this many bits per sequence "
        "(and 5 scaled MADs) (default: %(default)s)",
    )
    parser.add_argument(
        "--spike-window", type=_positive(int), default=defaults.spike_window,
        help="loss spike: training points before each point that its median and MAD come from (default: %(default)s)",
    )
    parser.add_argument(
        "--collapse", nargs=2, type=_positive(), default=[defaults.collapse_reached, defaults.collapse_above],
        metavar=("REACHED", "ABOVE"),
        help="collapse: validation bit errors back above ABOVE after first reaching below REACHED (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="bootstrap seed (default: %(default)s)")
    parser.add_argument(
        "--format", type=_formats, default=("pdf", "png"), metavar="LIST",
        help="what to write, comma-separated: pdf (NAME.pdf), png (each page in NAME/), html (NAME.html, one "
        "self-contained file) (default: pdf,png; the tables are always written as CSV)",
    )
    parser.add_argument(
        "--note", action="append", default=[], metavar="TEXT",
        help="a line for the first page, shown as the report maker's (e.g. the commit of runs whose summaries could "
        "not record one); repeatable",
    )
    parser.add_argument(
        "--archive", action="store_true",
        help="also write the runs behind the report (no checkpoints) as DIR/NAME/runs.tar.xz, which ntm-repro-report "
        "reads like a sweep folder: commit it to make the report again, or join it with later runs",
    )
    parser.add_argument(
        "--wandb", action="store_true",
        help="also log the report and its tables to W&B, a run in the sweep's group (the first path's folder name); "
        "offline unless WANDB_MODE=online, its files in <first path>/wandb/",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        reading = read_runs(args.paths)
    except NoRuns as error:
        _fail(str(error), 2)
    from ntm_repro.report.pdf import write_report  # matplotlib and seaborn load only when there is something to draw

    name = args.name or Path(args.paths[0]).resolve().name
    criteria = Criteria(
        bit_errors=args.criterion, window=args.window, min_points=args.min_points,
        spike_bits=args.spike_bits, spike_window=args.spike_window,
        collapse_reached=args.collapse[0], collapse_above=args.collapse[1], seed=args.seed,
    )
    try:
        writer = write_report(reading, criteria, args.out, name, args.paths, tuple(args.note), args.format)
    except OSError as error:  # e.g. an output folder that cannot be written
        _fail(str(error), 1)
    skipped = int((reading.issues["handling"] == "skipped").sum())
    files, rest = writer.written()
    print(f"{', '.join(files)}: {writer.pages} pages from {len(reading.runs)} runs ({skipped} skipped); {rest}")
    if args.archive:
        from ntm_repro.report.archive import ARCHIVE, write_archive

        try:
            path = write_archive(reading.folders, writer.folder / ARCHIVE)
        except (OSError, ValueError) as error:
            _fail(f"--archive: {error}", 1)
        print(f"{path}: the {len(reading.folders)} run folders behind it, {path.stat().st_size / 1e6:.1f} MB")
    if args.wandb:
        from ntm_repro.report.to_wandb import log_report

        first = Path(args.paths[0]).resolve()
        try:
            print(log_report(name, [Path(f) for f in files if Path(f).is_file()], sorted(writer.folder.glob("*.csv")), first.name, first))
        except ConfigError as error:
            _fail(str(error), 2)


if __name__ == "__main__":
    main()
