"""``ntm-repro-params``: the settings tables of Graves et al. (2014), Tables 1-3, and the
IFT6135 answer's three models, with our parameter count for every row beside the paper's
(claims G10 and I1: ``reports/parameters.csv`` decides them in ``reports/README.md``).

Every ``experiment=graves/<task>_<ff_ntm|lstm_ntm|lstm>`` and ``experiment=ift6135/<model>``
preset is composed and its model built (never trained) for our task layout. LSTM rows also
give the count at the (input, output) widths that SPEC.md found to fit the paper; NTM rows
have no such widths (no standard NTM layout reproduces Tables 1 and 2), so their difference
is reported as is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_module

from ntm_repro.models.factory import build_model, count_parameters
from ntm_repro.presets import presets
from ntm_repro.training.instantiate import build_task

KINDS = {"ff_ntm": "NTM, feedforward controller", "mlp_ntm": "NTM, feedforward controller", "lstm_ntm": "NTM, LSTM controller",
         "lstm": "LSTM"}
TASK_ORDER = ("copy", "repeat_copy", "recall", "ngrams", "priority_sort")
#: the claim each source's counts decide
CLAIMS = {"graves": "G10", "ift6135": "I1"}


def _presets(source: str) -> set[str]:
    """The experiment presets of one source (``graves``, ``ift6135``), by name."""
    return {name.split("/", 1)[1] for name in presets()["experiment"] if name.startswith(f"{source}/")}


def graves_presets() -> list[str]:
    """Names of the preset rows under ``conf/experiment/graves`` in the paper's order."""
    names = _presets("graves")
    rows = [f"{task}_{kind}" for kind in ("ff_ntm", "lstm_ntm", "lstm") for task in TASK_ORDER]
    return [name for name in rows if name in names]


def counted_presets() -> list[str]:
    """``<source>/<name>`` of every preset with a paper's count: Graves' rows, then IFT6135's."""
    return [f"graves/{name}" for name in graves_presets()] + [f"ift6135/{name}" for name in sorted(_presets("ift6135"))]


def parameter_table() -> pd.DataFrame:
    """One row per preset: the paper's count, ours for our task layout and the difference,
    and for LSTM rows ours at the paper's widths."""
    rows = []
    with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
        for preset in counted_presets():
            source, name = preset.split("/")
            cfg = compose("config", overrides=[f"experiment={preset}"])
            task = build_task(cfg.task)
            ours = count_parameters(build_model(cfg.model, cfg.controller, task.input_size, task.output_size))
            paper = int(cfg.paper.parameters)
            row = {
                "preset": preset,
                "claim": CLAIMS[source],
                "table": cfg.paper.get("table", ""),
                "task": cfg.task.name,
                "model": KINDS[name.removeprefix(f"{cfg.task.name}_")],
                "widths": f"{task.input_size}, {task.output_size}",
                "paper": paper,
                "ours": ours,
                "difference": ours - paper,
                "paper_widths": "",
                "ours_at_paper_widths": None,
            }
            if "widths" in cfg.paper:
                inputs, outputs = cfg.paper.widths
                at_widths = count_parameters(build_model(cfg.model, cfg.controller, inputs, outputs))
                row.update(paper_widths=f"{inputs}, {outputs}", ours_at_paper_widths=at_widths)
            rows.append(row)
    table = pd.DataFrame(rows)
    table["ours_at_paper_widths"] = table["ours_at_paper_widths"].astype("Int64")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ntm-repro-params", description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=None, help="also write the table as CSV to this path")
    args = parser.parse_args(argv)
    table = parameter_table()
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.drop(columns=["claim"]).to_string(index=False, na_rep=""))
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
