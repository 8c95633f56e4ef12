"""Text and table pages: what was run (the first page) and the summary tables, flowed onto
as many A4 pages as they need."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from datetime import datetime

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from ntm_repro.report.figures import PAGE
from ntm_repro.report.read import Reading
from ntm_repro.report.stats import Criteria

MARGIN = 0.45  # inches
POINT = 1 / 72  # inches
TABLE_FONT = 8.5
CELL_PAD = 4.0  # points each side of a cell's text
HEADER_WRAP = 16  # characters per line in a column title
_measure = TextToPath()


def _text_width(text: str, size: float, bold: bool = False) -> float:
    """Width in points of ``text`` (its longest line) in the default font (rendering
    at screen resolution can be up to 10% wider)."""
    font = FontProperties(size=size, weight="bold" if bold else "normal")
    return max(_measure.get_text_width_height_descent(line, font, ismath=False)[0] for line in text.split("\n"))


@dataclass
class Text:
    """Paragraphs, each wrapped to the page width."""

    paragraphs: list[str]
    size: float = 9.5
    weight: str = "normal"
    family: str = "sans-serif"
    space_before: float = 0.0  # inches

    def lines(self) -> list[str]:
        width = int((PAGE[0] - 2 * MARGIN) / (self.size * POINT * (0.6 if self.family == "monospace" else 0.53)))
        return [line for p in self.paragraphs for line in textwrap.wrap(p, width, subsequent_indent="    ") or [""]]

    def line_height(self) -> float:
        return self.size * POINT * 1.45


def _heading(text: str, size: float = 11) -> Text:
    return Text([text], size=size, weight="bold", space_before=0.12)


@dataclass
class Table:
    """A frame of strings, cells wrapped at ``wrap`` characters; split across pages by
    rows with the header repeated, its font shrunk if needed to fit the page width."""

    frame: pd.DataFrame
    wrap: int = 40
    row_pages: list[int] = field(default_factory=list)  # filled by flow: the page (0-based) each row is on

    def __post_init__(self) -> None:
        self.header = ["\n".join(textwrap.wrap(str(c), HEADER_WRAP)) for c in self.frame.columns]
        self.rows = [
            ["\n".join(textwrap.wrap(str(v), self.wrap)) for v in row] for row in self.frame.itertuples(index=False)
        ]
        widths = self.widths(TABLE_FONT)
        self.font = TABLE_FONT * min(1.0, (PAGE[0] - 2 * MARGIN) / POINT / sum(widths))

    def widths(self, size: float) -> list[float]:
        """Each column's width in points at font ``size``."""
        return [
            max([_text_width(title, size, bold=True)] + [_text_width(row[i], size) for row in self.rows]) * 1.1
            + 2 * CELL_PAD
            for i, title in enumerate(self.header)
        ]

    def height(self, row: list[str]) -> float:
        """A row's height in inches."""
        return (max(cell.count("\n") for cell in row) + 1) * self.font * POINT * 1.35 + 0.08


def _draw_table(fig: Figure, table: Table, rows: list[list[str]], top: float) -> float:
    """Draw ``rows`` of ``table`` under its header from ``top`` (inches from the page top);
    returns the height used."""
    heights = [table.height(table.header)] + [table.height(row) for row in rows]
    widths = [w * POINT for w in table.widths(table.font)]
    total = sum(heights)
    page_width, page_height = PAGE
    box = [MARGIN / page_width, 1 - (top + total) / page_height, sum(widths) / page_width, total / page_height]
    ax = fig.add_axes(box)
    ax.axis("off")
    drawn = ax.table(cellText=rows, colLabels=table.header, cellLoc="left", bbox=[0, 0, 1, 1])
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(table.font)
    for (row, column), cell in drawn.get_celld().items():
        cell.set_height(heights[row] / total)
        cell.set_width(widths[column] / sum(widths))
        cell.PAD = CELL_PAD * POINT / widths[column]
        cell.set_edgecolor("0.75")
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("0.92")
    return total


def flow(blocks: list[Text | Table]) -> list[Figure]:
    """Lay ``blocks`` out top to bottom, starting a new page when one is full."""
    bottom = PAGE[1] - MARGIN
    pages: list[Figure] = []
    top = math.inf

    def room(height: float) -> None:
        nonlocal top
        if top + height > bottom:
            pages.append(plt.figure(figsize=PAGE))
            top = MARGIN

    for block in blocks:
        if isinstance(block, Text):
            top += block.space_before
            for line in block.lines():
                room(block.line_height())
                pages[-1].text(MARGIN / PAGE[0], 1 - top / PAGE[1], line, va="top", size=block.size,
                               weight=block.weight, family=block.family)
                top += block.line_height()
            continue
        rows = block.rows
        while rows:
            room(block.height(block.header) + block.height(rows[0]))
            space, fitting = bottom - top - block.height(block.header), 1
            while fitting < len(rows) and sum(map(block.height, rows[: fitting + 1])) <= space:
                fitting += 1
            top += _draw_table(pages[-1], block, rows[:fitting], top) + 0.1
            block.row_pages += [len(pages) - 1] * fitting
            rows = rows[fitting:]
    return pages


def _format(value: float, spec: str = ".3g") -> str:
    """A number for a table: '-' if missing, ∞ for a median that never converged."""
    if pd.isna(value):
        return "-"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return format(value, spec)


def _ranges(frame: pd.DataFrame, centre: str, low: str, high: str, spec: str = ".3g") -> list[str]:
    """'centre [low, high]' from three columns of ``frame``; '-' where there is no centre."""
    return [
        "-" if pd.isna(c) else f"{_format(c, spec)} [{_format(lo, spec)}, {_format(hi, spec)}]"
        for c, lo, hi in frame[[centre, low, high]].itertuples(index=False)
    ]


def wall_time(runs: pd.DataFrame) -> str:
    """The wall time the runs took: the time during which at least one of them was training
    (the union of the runs' spans, each start to its end as the reader found them), as a
    sentence ("" when unknown). Runs of one sweep give its span; runs of parts made sessions
    apart, or a run stopped and resumed later, give the parts' spans added, not the time
    between them."""
    spans = sorted((start, end) for listed in runs["spans"] for start, end in listed if not (pd.isna(start) or pd.isna(end)))
    merged: list[list] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    if not merged:
        return ""
    seconds = sum(max((end - start).total_seconds(), 0.0) for start, end in merged)
    hours, minutes = divmod(round(seconds / 60), 60)
    last = merged[-1][1]  # the spans are disjoint and in order
    if len(merged) == 1:
        return (f"Wall time {hours} h {minutes:02d} min ({seconds:,.0f} s), from the first run's start to the last "
                f"run's end ({last:%Y-%m-%d %H:%M}).")
    return (f"Wall time {hours} h {minutes:02d} min ({seconds:,.0f} s) while any run was training, in {len(merged)} "
            f"separate spans, the first from {merged[0][0]:%Y-%m-%d %H:%M}, the last ending {last:%Y-%m-%d %H:%M}.")


def code(runs: pd.DataFrame) -> str:
    """The commits the runs were trained with, as a sentence."""
    commits = runs["commit"].fillna("unknown").value_counts()
    return "Code: " + ", ".join(f"commit {commit} ({count} runs)" for commit, count in commits.items()) + "."


VERDICT_COLUMNS = {"id": "claim", "claim": "the claim", "paper": "paper", "ours": "ours (per check)", "verdict": "verdict",
                   "power": "power (what the runs could detect)", "deviations": "deviations from the paper's setting"}


def verdict_blocks(table: pd.DataFrame, rules: dict[str, str], reading: Reading, name: str,
                   notes: tuple[str, ...] = ()) -> tuple[list[Text | Table], Table]:
    """The report's opening page(s): what made it, then a row per claim of the ledger whose
    experiment has runs here, then each claim's decision rule; returns the blocks and the
    table (whose ``row_pages`` flow fills in)."""
    shown = Table(table[list(VERDICT_COLUMNS)].rename(columns=VERDICT_COLUMNS), wrap=34)
    blocks: list[Text | Table] = [
        Text([f"ntm-repro report: {name}"], size=16, weight="bold"),
        Text([f"Verdicts on the claims of the papers whose experiments have runs among the {len(reading.runs)} read "
              "(the ledger: ntm-repro-claims). Made by:"]),
        Text(reading.commands or ["(no Hydra record found)"], size=8.5, family="monospace"),
        Text([line for line in (code(reading.runs), wall_time(reading.runs)) if line]
             + [f"Note by the report's maker: {note}" for note in notes]),
        shown,
        _heading("How each claim is decided"),
        Text([f"{claim}: {rule}" for claim, rule in rules.items()], size=8.5),
    ]
    return blocks, shown


def overview(reading: Reading, criteria: Criteria, name: str, paths: list[str], notes: tuple[str, ...] = ()) -> list[Text | Table]:
    """The first page: what was run, with what code, what was read and how it was judged;
    ``notes``: lines from whoever made the report (``--note``), shown as theirs."""
    runs, issues = reading.runs, reading.issues
    skipped = int((issues["handling"] == "skipped").sum())
    started = runs["started"].dropna()
    groups = runs.groupby(["task", "label"], sort=False).size()
    facts = [
        f"Made {datetime.now():%Y-%m-%d %H:%M} from {', '.join(paths)}. {reading.folders_found} run folder(s) found: "
        f"{len(runs)} read, {skipped} skipped.",
        f"Runs started {started.min():%Y-%m-%d %H:%M} to {started.max():%Y-%m-%d %H:%M}." if len(started) else "",
        wall_time(runs),
        code(runs),
        "Runs per task and model: " + "; ".join(f"{task} / {label}: {n}" for (task, label), n in groups.items()) + ".",
    ]
    if reading.varying:
        facts.append(
            f"Runs that differ in {', '.join(reading.varying)} (seed aside) are told apart by those overrides, "
            "in brackets after the model."
        )
    blocks: list[Text | Table] = [
        Text([f"ntm-repro report: {name}"], size=16, weight="bold"),
        Text([fact for fact in facts if fact]),
        *([Text([f"Note by the report's maker: {note}" for note in notes])] if notes else []),
        _heading("What was run (Hydra's record of each command line)"),
        Text(reading.commands or ["(no Hydra record found)"], size=8.5, family="monospace"),
        _heading("How runs are judged"),
        Text(criteria.describe() + [f"Set with {criteria.options()}."]),
        _heading(f"Runs skipped or read with a caveat ({len(issues)})"),
    ]
    if issues.empty:
        return blocks + [Text(["Every run folder was read without a caveat."])]
    return blocks + [Table(issues, wrap=90)]


def summary_table(groups: pd.DataFrame) -> pd.DataFrame:
    """Per task and model, as shown on the page."""
    return pd.DataFrame(
        {
            "task": groups["task"],
            "model": groups["label"],
            "converged / runs": [f"{c} / {n}" for c, n in zip(groups["converged"], groups["runs"])],
            "not confirmed": groups["not_confirmed"],
            "reached, not held": groups["reached_not_held"],
            "never reached": groups["never_reached"],
            "diverged or failed": groups["diverged"] + groups["failed"],
            "sequences to converge (held from), median [range]": _ranges(
                groups, "held_from_median", "held_from_min", "held_from_max", ",.0f"
            ),
            "first reached, converged runs, median [range]": _ranges(
                groups, "first_reached_median", "first_reached_min", "first_reached_max", ",.0f"
            ),
            "loss spikes (runs with any)": [f"{s} ({r})" for s, r in zip(groups["spikes"], groups["runs_with_spikes"])],
            "collapses (runs with any)": [f"{c} ({r})" for c, r in zip(groups["collapses"], groups["runs_collapsed"])],
            **{
                f"final val {title}, median [IQR]": _ranges(groups, *(f"final_{metric}_{q}" for q in ("median", "q1", "q3")))
                for metric, title in (("cost_bits", "cost (bits)"), ("bit_errors", "bit errors"))
            },
            "n final": groups["final_runs"],
        }
    )


def comparison_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairwise model comparisons within a task, as shown on the page: the note in place
    of the numbers where there is no comparison."""
    noted = pairs["note"].astype(bool)

    def shown(cells: list[str]) -> list[str]:
        return ["" if note else cell for cell, note in zip(cells, noted)]

    return pd.DataFrame(
        {
            "task": pairs["task"],
            "first": pairs["first"],
            "second": pairs["second"],
            "n (converged)": [
                f"{row.n_first} ({row.converged_first}) vs {row.n_second} ({row.converged_second})"
                for row in pairs.itertuples(index=False)
            ],
            "Mann-Whitney U": [note or f"{u:g}" for u, note in zip(pairs["u"], pairs["note"])],
            "p (method)": shown([f"{p:.3g} ({m})" for p, m in zip(pairs["p"], pairs["method"])]),
            "Holm p": shown([f"{p:.3g}" for p in pairs["p_holm"]]),
            "difference of medians [95% CI], sequences": shown(
                _ranges(pairs, "median_difference", "ci_low", "ci_high", ",.0f")
            ),
        }
    )


def memory_table(memory: pd.DataFrame) -> pd.DataFrame:
    """Structured memories: mixing coefficients and memory magnitude at the end, as shown."""
    columns = [c[: -len("_median")] for c in memory.columns if c.endswith("_median")]
    titles = {c: ("largest |M|, end of traced episodes" if c == "memory_max" else f"{c[4:]} at the end") for c in columns}
    return pd.DataFrame(
        {
            "task": memory["task"],
            "model": memory["label"],
            "converged / runs": [f"{c} / {n}" for c, n in zip(memory["converged"], memory["runs"])],
            **{f"{titles[c]}, median [range]": _ranges(memory, f"{c}_median", f"{c}_min", f"{c}_max") for c in columns},
        }
    )


def parameter_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and model run from a paper preset (its config records ``paper.parameters``):
    our parameter count beside the paper's (empty if no run came from a preset)."""
    rows = []
    for (task, label), group in runs.groupby(["task", "label"], sort=False):
        run = group.iloc[0]
        paper = run["config"].get("paper") if isinstance(run["config"], dict) else None
        if not isinstance(paper, dict) or run["num_parameters"] is None or pd.isna(run["num_parameters"]):
            continue
        ours, theirs = int(run["num_parameters"]), int(paper["parameters"])
        rows.append({"task": task, "model": label, "paper table": paper.get("table", ""), "paper": f"{theirs:,}",
                     "ours": f"{ours:,}", "difference": f"{ours - theirs:+,}"})
    return pd.DataFrame(rows)


def tables(
    groups: pd.DataFrame, pairs: pd.DataFrame, criteria: Criteria, runs: pd.DataFrame | None = None,
    memory: pd.DataFrame | None = None,
) -> list[Text | Table]:
    """The summary tables' blocks (the comparisons only if some task has two models, the
    parameter counts only if some runs came from a paper preset, the structured memories
    only if some runs mix memory blocks)."""
    blocks: list[Text | Table] = [
        _heading("Per task and model", size=13),
        Text([
            criteria.convergence_rule(),
            criteria.spike_rule() + " Spikes summed over the runs, runs with any in brackets.",
            "Final metrics over the n final runs that did not diverge or fail.",
        ]),
        Table(summary_table(groups)),
    ]
    if memory is not None and not memory.empty:
        blocks += [
            _heading("Structured memory: mixing and memory magnitude", size=13),
            Text(["Mixing block <- a * block + b * source (model.topology.mixing: convex a = sigmoid(theta), "
                  "b = 1 - a; free: a, b unconstrained), a and b from the last training row; largest |M|: the "
                  "largest absolute memory value after the last step of the episode traced at the end of training "
                  "(the first test level)."]),
            Table(memory_table(memory)),
        ]
    parameters = parameter_table(runs) if runs is not None else pd.DataFrame()
    if not parameters.empty:
        blocks += [
            _heading("Parameters: ours beside the paper's", size=13),
            Text(["Runs from a paper preset (experiment=graves/...): our count for our task layout and the paper's; "
                  "`ntm-repro-params` explains the differences row by row."]),
            Table(parameters),
        ]
    if pairs.empty:
        return blocks
    return blocks + [
        _heading("Comparisons of sequences to converge between models", size=13),
        Text([
            "Every run of each model (n), the converged ones in brackets; a run that did not converge counts as "
            "never converging (ranked last); no comparison when neither model converged in any run. Two-sided "
            "Mann-Whitney U (exact over all splits of the runs, or normal approximation); Holm p: Holm's step-down "
            "adjustment over all comparisons in the report; difference = first - second, with a seeded bootstrap "
            "95% interval; ∞ (-∞): the first's (second's) median run did not converge."
        ]),
        Table(comparison_table(pairs)),
    ]
