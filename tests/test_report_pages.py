"""The report drawn in-process from hand-made run folders that use every kind of page but
attention traces (the end-to-end test draws real ones): variants, a diverged run, the
n-gram optimum, item levels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from test_report_read import SEQUENCES, make_run

from ntm_repro.report.pdf import write_report
from ntm_repro.report.read import read_runs
from ntm_repro.report.stats import Criteria


def test_every_kind_of_page(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(2):
        make_run(runs, f"ntm_s{seed}", seed=seed, choices={"controller": "lstm"}, budget=10_000,
                 bit_errors=[40, 5, 0.05, 0.0, 0.01, 0.0, 0.0, 0.02, 0.0, 0.0, 0.0])  # held over its last 5 points
        make_run(runs, f"ff_s{seed}", seed=seed, overrides=("controller=feedforward",), choices={"controller": "feedforward"},
                 bit_errors=np.full(len(SEQUENCES), 3.0))
    make_run(runs, "ff_s2", seed=2, status="diverged", bit_errors=[40, np.nan], overrides=("controller=feedforward",),
             choices={"controller": "feedforward"})
    make_run(runs, "ngrams_s0", model="lstm", task="ngrams", optimum=True, levels=(200,), choices={"controller": "lstm"})
    make_run(runs, "recall_s0", task="recall", level_name="items", levels=(6, 10, 20), choices={"controller": "lstm"})
    make_run(runs, "recall_lstm_s0", model="lstm", task="recall", level_name="items", levels=(6, 10, 20),
             choices={"controller": "lstm"})  # neither recall model reaches the criterion
    reading = read_runs([str(runs)])
    assert set(reading.runs["label"]) == {"ntm (controller=lstm)", "ntm (controller=feedforward)", "lstm (controller=lstm)"}

    writer = write_report(reading, Criteria(), tmp_path / "out", "all", [str(runs)])

    pngs = sorted(p.name for p in writer.folder.glob("*.png"))
    assert pngs == [
        "01_overview_1.png",
        "02_convergence.png",
        "03_seeds_below.png",
        "04_training_loss_copy.png",
        "05_training_loss_ngrams.png",
        "06_training_loss_recall.png",
        "07_generalisation.png",
        "08_optimum.png",
        "09_tables_1.png",
    ]
    assert writer.pages == 9 and writer.pdf_path.stat().st_size > 0
    summary = pd.read_csv(writer.folder / "summary.csv").set_index(["task", "label"])
    assert summary.loc[("copy", "ntm (controller=lstm)"), ["runs", "converged"]].tolist() == [2, 2]
    assert summary.loc[("copy", "ntm (controller=feedforward)"), ["runs", "converged", "final_runs"]].tolist() == [3, 0, 2]
    pair, never = pd.read_csv(writer.folder / "comparisons.csv", keep_default_na=False).to_dict("records")
    assert (pair["n_first"], pair["n_second"]) == (3, 2) or (pair["n_first"], pair["n_second"]) == (2, 3)
    assert pair["note"] == "" and pair["p_holm"] == pair["p"]  # the only comparison with a p-value
    assert (never["task"], never["note"], never["p"], never["p_holm"]) == ("recall", "neither converged: no comparison", "", "")
    per_seed = pd.read_csv(writer.folder / "generalisation.csv")
    assert per_seed.columns.tolist() == ["task", "model", "seed", "outcome", "level", "cost_bits", "bit_errors"]
    assert len(per_seed) == 5 * 3 + 1 + 2 * 3  # copy: 5 runs x 3 levels; n-grams: 1; recall: 2 x 3
    outcomes = per_seed.drop_duplicates(["model", "seed", "task"]).groupby("model")["outcome"].agg(set).to_dict()
    assert outcomes == {
        "ntm (controller=lstm)": {"converged", "never reached"},  # copy: converged; recall: never reached
        "ntm (controller=feedforward)": {"never reached", "diverged"},
        "lstm (controller=lstm)": {"never reached"},
    }
    issues = pd.read_csv(writer.folder / "issues.csv")
    assert issues[["run", "handling"]].values.tolist() == [["ff_s2", "not converged"]]


def test_parameter_table_puts_ours_beside_the_papers_for_preset_runs():
    import pandas as pd

    from ntm_repro.report.pages import parameter_table

    runs = pd.DataFrame(
        [
            {"task": "copy", "label": "ntm", "num_parameters": 62736, "config": {"paper": {"table": 2, "parameters": 67561}}},
            {"task": "copy", "label": "ntm", "num_parameters": 62736, "config": {"paper": {"table": 2, "parameters": 67561}}},
            {"task": "copy", "label": "lstm", "num_parameters": 1000, "config": {}},  # not a preset: no row
        ]
    )
    table = parameter_table(runs)
    assert table.to_dict("records") == [
        {"task": "copy", "model": "ntm", "paper table": 2, "paper": "67,561", "ours": "62,736", "difference": "-4,825"}
    ]
    assert parameter_table(runs.iloc[2:]).empty
