"""The report on disk: every page into one PDF and as a PNG beside it, tables as CSV."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from ntm_repro.claims import load_ledger
from ntm_repro.report import figures, pages, paper_figures, stats, traces, verdicts
from ntm_repro.report.read import Reading


class ReportWriter:
    """``out/name.pdf``, and ``out/name/NN_<page>.png`` and ``out/name/<table>.csv``."""

    def __init__(self, out_dir: Path, name: str):
        self.pdf_path = out_dir / f"{name}.pdf"
        self.folder = out_dir / name
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in [*self.folder.glob("*.png"), *self.folder.glob("*.csv")]:
            stale.unlink()  # pages and tables of an earlier report of the same name
        metadata = {"Title": f"ntm-repro report: {name}", "Creator": "ntm-repro-report"}
        self._pdf = PdfPages(self.pdf_path, metadata=metadata)
        self.pages = 0

    def page(self, stem: str, fig: Figure) -> None:
        self.pages += 1
        fig.savefig(self._pdf, format="pdf")
        fig.set_layout_engine("none")  # laid out once: the PNG keeps the PDF page's layout
        safe = re.sub(r"[^A-Za-z0-9.=-]+", "_", stem)[:80]  # numbered, so still unique when cut short
        fig.savefig(self.folder / f"{self.pages:02d}_{safe}.png")
        plt.close(fig)

    def close(self) -> None:
        self._pdf.close()


def write_report(
    reading: Reading, criteria: stats.Criteria, out_dir: Path, name: str, paths: list[str], notes: tuple[str, ...] = ()
) -> ReportWriter:
    """Compute the statistics and write every page; returns the writer (paths, page count)."""
    figures.use_report_style()
    run_stats = (stats.per_run(reading.runs, reading.metrics, criteria)
                 .merge(traces.per_run_traces(reading.runs), on="run", how="left")
                 .merge(stats.along_trends(reading.along), on="run", how="left"))
    groups = stats.per_group(run_stats)
    pairs = stats.comparisons(run_stats, seed=criteria.seed)
    converged = set(run_stats.loc[run_stats["converged"], "run"])
    memory = stats.structured_memory(reading.runs, reading.metrics, run_stats)
    colours = figures.palette(sorted(reading.runs["label"].unique()))
    found = verdicts.verdicts(load_ledger(), reading.runs, run_stats, reading.generalisation)
    verdict_table = verdicts.verdict_table(found)
    writer = ReportWriter(out_dir, name)
    try:
        if found:
            blocks, shown = pages.verdict_blocks(verdict_table, {v.claim.id: v.claim.rule for v in found}, reading, name, notes)
            for index, fig in enumerate(pages.flow(blocks)):
                writer.page(f"verdicts_{index + 1}", fig)
            verdict_table["page"] = [page + 1 for page in shown.row_pages]
        for index, fig in enumerate(pages.flow(pages.overview(reading, criteria, name, paths, notes))):
            writer.page(f"overview_{index + 1}", fig)
        overlays = paper_figures.overlay_points(found, reading.metrics, reading.generalisation)
        level_name = figures.LEVEL_AXES.get(str(reading.runs["level_name"].iloc[0]), "test level")
        for stem, fig in [
            *paper_figures.overlay_figures(overlays, colours, level_name),
            *figures.convergence_figures(reading.metrics, criteria.bit_errors, colours),
            *paper_figures.holding_figures(reading.metrics, criteria.bit_errors, colours),
            *paper_figures.training_loss_figures(reading.metrics, run_stats, colours),
            *figures.generalisation_figures(reading.generalisation, reading.runs, criteria.bit_errors, colours, converged),
            *paper_figures.along_figures(reading.along, converged, colours),
            *figures.optimum_figures(reading.metrics, colours),
            *figures.attention_figures(reading.runs),
            *paper_figures.outputs_figures(reading.runs, converged),
            *paper_figures.priority_figures(reading.runs, converged, colours),
        ]:
            writer.page(stem, fig)
        for index, fig in enumerate(pages.flow(pages.tables(groups, pairs, criteria, reading.runs, memory))):
            writer.page(f"tables_{index + 1}", fig)
    finally:
        writer.close()
    tables = {
        "runs": run_stats,
        "summary": groups,
        "comparisons": pairs,
        "generalisation": stats.per_seed_generalisation(reading.generalisation, run_stats),
        "memory": memory,
        "issues": reading.issues,
        "verdicts": verdict_table if found else pd.DataFrame(),
    }
    for stem, frame in tables.items():
        if len(frame.columns):  # a table the report does not have (e.g. memory without structured runs): no file
            frame.to_csv(writer.folder / f"{stem}.csv", index=False)
    return writer
