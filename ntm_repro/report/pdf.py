"""The report on disk: every page into one PDF, as a PNG beside it and into one
self-contained HTML file (as asked by ``formats``), tables as CSV."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from ntm_repro.claims import load_ledger
from ntm_repro.report import figures, pages, paper_figures, stats, traces, verdicts
from ntm_repro.report.read import Reading


HTML_TABLES = ("verdicts", "summary", "comparisons")  # shown under the pages of the HTML report


class ReportWriter:
    """``out/name.pdf``, ``out/name/NN_<page>.png``, ``out/name.html`` (each if asked) and
    ``out/name/<table>.csv``."""

    def __init__(self, out_dir: Path, name: str, formats: tuple[str, ...] = ("pdf", "png")):
        self.name, self.formats = name, formats
        self.pdf_path, self.html_path = out_dir / f"{name}.pdf", out_dir / f"{name}.html"
        self.folder = out_dir / name
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in [*self.folder.glob("*.png"), *self.folder.glob("*.csv")]:
            stale.unlink()  # pages and tables of an earlier report of the same name
        metadata = {"Title": f"ntm-repro report: {name}", "Creator": "ntm-repro-report"}
        self._pdf = PdfPages(self.pdf_path, metadata=metadata) if "pdf" in formats else None
        self._images: list[bytes] = []  # the pages as PNG, for the HTML file
        self.pages = 0

    def page(self, stem: str, fig: Figure) -> None:
        self.pages += 1
        if self._pdf is not None:
            fig.savefig(self._pdf, format="pdf")
        else:
            fig.draw_without_rendering()  # the layout the PDF would have had
        fig.set_layout_engine("none")  # laid out once: the PNG keeps the PDF page's layout
        image = io.BytesIO()
        fig.savefig(image, format="png")
        plt.close(fig)
        if "png" in self.formats:
            safe = re.sub(r"[^A-Za-z0-9.=-]+", "_", stem)[:80]  # numbered, so still unique when cut short
            (self.folder / f"{self.pages:02d}_{safe}.png").write_bytes(image.getvalue())
        if "html" in self.formats:
            self._images.append(image.getvalue())

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()

    def write_html(self, tables: dict[str, pd.DataFrame]) -> None:
        """One self-contained page: every report page as an embedded image, then the
        verdict, summary and comparison tables as text."""
        images = "\n".join(
            f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="page {i}">'
            for i, png in enumerate(self._images, 1)
        )
        shown = "\n".join(f"<h2>{stem}</h2>\n{tables[stem].to_html(index=False, na_rep='-')}"
                           for stem in HTML_TABLES if stem in tables and len(tables[stem].columns))
        title = html.escape(f"ntm-repro report: {self.name}")
        self.html_path.write_text(
            f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n"
            "<style>body{font-family:sans-serif;max-width:1200px;margin:auto} img{width:100%;border:1px solid #ccc;"
            "margin:8px 0} table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ccc;padding:3px}"
            f"</style></head>\n<body><h1>{title}</h1>\n{images}\n{shown}\n</body></html>\n"
        )

    def written(self) -> tuple[list[str], str]:
        """The files this report wrote, and where its PNG pages and CSV tables are."""
        files = [str(path) for path, kind in ((self.pdf_path, "pdf"), (self.html_path, "html")) if kind in self.formats]
        return files or [f"{self.folder}/"], f"{'pages as PNG and ' if 'png' in self.formats else ''}tables as CSV in {self.folder}/"


def write_report(
    reading: Reading, criteria: stats.Criteria, out_dir: Path, name: str, paths: list[str], notes: tuple[str, ...] = (),
    formats: tuple[str, ...] = ("pdf", "png"),
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
    writer = ReportWriter(out_dir, name, formats)
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
            *paper_figures.outputs_along_figures(reading.runs, converged),
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
    if "html" in formats:
        writer.write_html(tables)
    return writer
