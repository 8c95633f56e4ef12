"""The rest of Graves et al. (2014): every task trains from its defaults, the n-gram floor is
logged, the settings tables' parameter counts, and tasks that do not fit the memory."""

import csv
import shutil
import subprocess

import pytest
import torch

from ntm_repro.errors import ConfigError
from ntm_repro.models.factory import build_model, count_parameters
from ntm_repro.params import graves_presets, parameter_table
from ntm_repro.training.run import train

SMALL = [
    "train.sequences=16",
    "train.batch_size=4",
    "train.log_every=8",
    "train.val_every=8",
    "train.val_batch_size=2",
    "train.test_batch_size=2",
    "++model.memory.locations=24",
    "++model.memory.width=6",
    "controller.size=12",
]

TABLE_3 = {"copy": (1352969, 10, 9), "repeat_copy": (5312007, 8, 7), "recall": (1344518, 8, 6), "ngrams": (331905, 1, 1)}


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("task", ["repeat_copy", "ngrams", "priority_sort"])
def test_each_task_trains_from_its_default_settings(compose_cfg, tmp_path, task):
    summary = train(compose_cfg(f"task={task}", *SMALL, tiny=False), tmp_path)
    assert summary["status"] == "completed", summary["reason"]
    levels = [row["level"] for row in read_rows(tmp_path / "generalisation.csv")]
    assert levels == {"repeat_copy": ["10x20", "20x10"], "ngrams": ["200"], "priority_sort": ["20"]}[task]


def test_ngram_runs_log_the_optimal_cost_beside_the_models(compose_cfg, tmp_path):
    train(compose_cfg("task=ngrams", *SMALL, tiny=False), tmp_path)
    rows = read_rows(tmp_path / "metrics.csv")
    assert {row["split"] for row in rows} == {"train", "val"}
    for row in rows:
        model, floor = float(row["cost_bits"]), float(row["optimal_cost_bits"])
        assert 50 < floor < 200  # about 133 per 200-bit sequence on average; 2-8 sequences here
        assert model > floor  # an untrained model is far above the floor
    (test_row,) = read_rows(tmp_path / "generalisation.csv")
    assert float(test_row["optimal_cost_bits"]) > 100


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=recall", "task.max_items=30", "++model.memory.locations=24"],
         "task.max_items: training episodes store up to 30 items but model.memory.locations=24"),
        (["task=priority_sort", "++model.memory.locations=16"], "task.max_vectors: training episodes store up to 20 items"),
    ],
)
def test_tasks_that_do_not_fit_the_memory_fail_before_training(compose_cfg, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(compose_cfg(*SMALL, *overrides, tiny=False), tmp_path)


def test_every_table_row_has_a_preset():
    assert len(graves_presets()) == 15


@pytest.mark.parametrize("row", [name for name in graves_presets() if name.endswith("_ff_ntm")])
def test_graves_feedforward_rows_build_tanh_controllers(compose_cfg, row):
    """The paper names no activation; sigmoid hidden units left the copy row on a plateau for
    100k+ sequences (reports/graves_copy_ff_activation.pdf), so the FF-NTM rows take tanh."""
    cfg = compose_cfg(f"experiment=graves/{row}", tiny=False)
    model = build_model(cfg.model, cfg.controller, 10, 9)
    assert model.controller.activation is torch.tanh


@pytest.mark.parametrize("task", sorted(TABLE_3))
def test_graves_deep_lstm_gives_table_3_exactly(compose_cfg, task):
    paper, inputs, outputs = TABLE_3[task]
    cfg = compose_cfg(f"experiment=graves/{task}_lstm", tiny=False)
    assert count_parameters(build_model(cfg.model, cfg.controller, inputs, outputs)) == paper
    # the closed form of SPEC.md: sum_l [4H(in_l + H + 1) + 2H] + (3H + 1) O
    h = cfg.controller.size
    widths = [inputs, inputs + h, inputs + h]
    assert sum(4 * h * (w + h + 1) + 2 * h for w in widths) + (3 * h + 1) * outputs == paper


def test_parameter_table_puts_ours_beside_the_papers():
    everything = parameter_table().set_index("preset")
    ift6135 = everything[everything["claim"] == "I1"]
    assert ift6135["paper"].to_dict() == {"ift6135/lstm": 45208, "ift6135/lstm_ntm": 62860, "ift6135/mlp_ntm": 13260}
    assert (ift6135["ours"] == ift6135["paper"]).all()  # the answer's counts, in pytorch-ntm's layout
    table = everything[everything["claim"] == "G10"]
    assert len(table) == 15 and set(table["table"].astype(int)) == {1, 2, 3}
    assert (table["difference"] == table["ours"] - table["paper"]).all()
    lstm = table[table["table"] == 3]
    matched = lstm[lstm["task"] != "priority_sort"]
    assert (matched["ours_at_paper_widths"] == matched["paper"]).all()
    assert lstm.loc["graves/priority_sort_lstm", "ours_at_paper_widths"] == 348424  # the digit swap
    ntm_rows = table[table["table"] < 3]
    assert ntm_rows["ours_at_paper_widths"].isna().all() and (ntm_rows["difference"] != 0).all()


@pytest.mark.skipif(shutil.which("ntm-repro-params") is None, reason="ntm-repro-params is not installed")
def test_params_command_prints_and_writes_the_table(tmp_path):
    result = subprocess.run(["ntm-repro-params", "--csv", str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1352969" in result.stdout and "priority_sort" in result.stdout
    assert len(read_rows(tmp_path / "p.csv")) == 18  # Graves' 15 rows and IFT6135's 3
