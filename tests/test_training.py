"""In-process training runs on tiny configs: the run folder, determinism, divergence."""

import gc
import json

import pandas as pd
import pytest
import torch
import torch._dynamo

from ntm_repro.errors import ConfigError
from ntm_repro.models.factory import build_model
from ntm_repro.training.instantiate import build_task
from ntm_repro.training.run import collector_frozen, train
from ntm_repro.training.trainable import trainable_model


def test_run_folder_contract(compose_cfg, tmp_path):
    summary = train(compose_cfg(), tmp_path)
    assert summary["status"] == "completed"
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary, default=str))
    assert summary["sequences_seen"] == 96 and summary["steps"] == 12
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "last.ckpt").exists()
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert set(metrics.split) == {"train", "val"}
    assert metrics.loc[metrics.split == "val", "sequences"].tolist() == [0, 32, 64, 96]
    assert metrics.loc[metrics.split == "train", "sequences"].tolist() == [16, 32, 48, 64, 80, 96]
    general = pd.read_csv(tmp_path / "generalisation.csv")
    assert general.level.tolist() == [2, 6]
    assert general.in_training_range.tolist() == [True, False]
    assert (general.bit_errors >= 0).all() and (general.cost_bits > 0).all()


def test_training_freezes_the_collector_and_releases_it_even_on_failure(compose_cfg, tmp_path, monkeypatch):
    frozen = []
    monkeypatch.setattr("pytorch_lightning.Trainer.fit", lambda *args, **kwargs: frozen.append(gc.get_freeze_count()))
    train(compose_cfg(), tmp_path)
    assert frozen and frozen[0] > 10_000  # the model, config and modules were frozen during fit
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), collector_frozen():
        assert gc.get_freeze_count() > 0
        raise RuntimeError
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("model", ["ntm", "lstm"])
def test_same_seed_same_loss_curve(compose_cfg, tmp_path, model):
    curves = []
    for name in ("a", "b"):
        train(compose_cfg(f"model={model}", "seed=3"), tmp_path / name)
        curves.append(pd.read_csv(tmp_path / name / "metrics.csv").drop(columns="time_s"))
    pd.testing.assert_frame_equal(curves[0], curves[1])


def test_different_seeds_differ(compose_cfg, tmp_path):
    costs = []
    for seed in (0, 1):
        train(compose_cfg(f"seed={seed}"), tmp_path / str(seed))
        costs.append(pd.read_csv(tmp_path / str(seed) / "metrics.csv").cost_bits.tolist())
    assert costs[0] != costs[1]


def test_non_finite_loss_stops_as_diverged_keeping_metrics(compose_cfg, tmp_path):
    summary = train(compose_cfg("optimizer.lr=1e30", "train.sequences=400"), tmp_path)
    assert summary["status"] == "diverged"
    assert "non-finite loss" in summary["reason"]
    assert summary["sequences_seen"] < 400
    assert len(pd.read_csv(tmp_path / "metrics.csv")) >= 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.memory.locations=0", "model.memory.locations=0: must be a positive integer"),
        ("controller.size=-3", "controller.size=-3: must be a positive integer"),
        ("model.shifts=[-20,0,20]", "wider than the memory"),
        ("task.min_length=5", "task.min_length=5 > task.max_length=4: the range is empty"),
        ("train.batch_size=0", "train.batch_size=0: must be a positive integer"),
        ("model.memory.init=zeros", "model.memory.init='zeros': unknown; choose one of constant, learned, random"),
    ],
)
def test_bad_config_fails_before_training_with_one_line(compose_cfg, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as caught:
        train(compose_cfg(override), tmp_path)
    assert "\n" not in str(caught.value)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and message in summary["reason"]


def test_impossible_optimizer_setting_fails_before_training(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match="optimizer settings rejected by torch.optim.Adam: Invalid learning rate: -1"):
        train(compose_cfg("optimizer=adam", "optimizer.lr=-1"), tmp_path)


def test_logger_none_writes_no_metrics_but_keeps_the_summary(compose_cfg, tmp_path):
    summary = train(compose_cfg("logger=none"), tmp_path)
    assert summary["status"] == "completed" and "val/bit_errors" in summary["final"]
    assert not (tmp_path / "metrics.csv").exists()
    assert (tmp_path / "generalisation.csv").exists()


def test_recall_and_structured_models_train(compose_cfg, tmp_path):
    cfg = compose_cfg("task=recall", "model=ntm3", "task.test_items=[3,7]", "train.sequences=32", tiny=False)
    cfg.train.batch_size, cfg.train.val_batch_size, cfg.train.test_batch_size = 8, 2, 2
    summary = train(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["level_name"] == "items"
    assert pd.read_csv(tmp_path / "generalisation.csv").level.tolist() == [3, 7]


def test_curve_ends_where_training_ends(compose_cfg, tmp_path):
    """A budget that is not a multiple of the logging intervals still logs its last steps."""
    train(compose_cfg("train.sequences=40"), tmp_path)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics.loc[metrics.split == "train", "sequences"].tolist() == [16, 32, 40]
    assert metrics.loc[metrics.split == "val", "sequences"].tolist() == [0, 32, 40]


def test_a_run_stopped_early_is_not_completed(compose_cfg, tmp_path):
    summary = train(compose_cfg("+trainer.max_epochs=1", "+trainer.limit_train_batches=3"), tmp_path)
    assert summary["status"] == "interrupted" and "stopped after 3 of 12 steps" in summary["reason"]
    assert not (tmp_path / "generalisation.csv").exists()


def test_a_folder_whose_run_failed_before_training_is_written_afresh(compose_cfg, tmp_path):
    """Nothing trained there, so nothing to lose: the rerun replaces its files (a completed
    run's folder is refused: tests/test_faults.py)."""
    with pytest.raises(ConfigError):
        train(compose_cfg("train.batch_size=0"), tmp_path)
    (tmp_path / "metrics.csv").write_text("step,sequences,time_s,split,cost_bits,bit_errors\n0,0,0,val,1,1\n")
    assert train(compose_cfg(), tmp_path)["status"] == "completed"
    assert pd.read_csv(tmp_path / "metrics.csv").step.tolist().count(0) == 1
    with pytest.raises(ConfigError, match="already holds a completed run; add resume=true"):
        train(compose_cfg(), tmp_path)


def test_trainer_problems_fail_before_training(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match="trainer settings rejected by pytorch_lightning.Trainer: No supported gpu"):
        train(compose_cfg("trainer.accelerator=gpu"), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


def test_compiled_time_step_trains_like_the_eager_one(compose_cfg, tmp_path):
    """train.compile=true gives the same run as eager up to float rounding."""
    curves = {}
    for compiled in (False, True):
        folder = tmp_path / str(compiled)
        summary = train(compose_cfg("model.engine=reference", f"train.compile={str(compiled).lower()}", "train.sequences=48"), folder)
        assert summary["status"] == "completed"
        curves[compiled] = pd.read_csv(folder / "metrics.csv")
    pd.testing.assert_series_equal(curves[True].cost_bits, curves[False].cost_bits, rtol=1e-3)


def test_compile_is_for_ntm_models_only(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match="train.compile=true: only NTM models"):
        train(compose_cfg("model=lstm", "train.compile=true"), tmp_path)


def test_compile_without_a_cpp_compiler_is_one_line(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr("ntm_repro.training.trainable.shutil.which", lambda name: None)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"needs a C\+\+ compiler on the CPU .*set train.compile=false"):
        train(compose_cfg("model.engine=reference", "train.compile=true"), tmp_path)


def compiled_model(cfg):
    """The config's task and its NTM on the reference engine, a population of one with the
    time step compiled."""
    cfg.model.engine = "reference"  # train.compile is the reference's; the fused engine is compiled code already
    task = build_task(cfg.task)
    return task, trainable_model([build_model(cfg.model, cfg.controller, task.input_size, task.output_size)], compiled=True)


def test_each_compiled_model_gets_a_fresh_recompile_budget(compose_cfg):
    """The jobs of a sweep (e.g. model=ntm,ntm1,ntm2) run one after another in one process:
    without a reset, the compiled entries of earlier models (first and later steps, train
    and eval, per batch size) use up Dynamo's recompile limit and later models silently run
    eagerly. Here hitting the limit raises instead."""
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=2):  # first, later steps
        for name in ("ntm", "ntm1"):
            task, model = compiled_model(compose_cfg(f"model={name}"))
            inputs = task.episode(2, task.parse_level("3"), torch.Generator().manual_seed(0)).inputs
            model(inputs.unsqueeze(0)).sum().backward()


@pytest.mark.parametrize("batch", [1, 3])
def test_a_compiled_step_is_not_recompiled_for_new_lengths(compose_cfg, batch):
    """x_t must have the same strides at every sequence length (a slice of a batch-major
    (B, T, I) input would not): lengths 1-8, training and evaluation, within 4 entries."""
    task, model = compiled_model(compose_cfg())
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=4):  # first/later x train/eval
        for length in range(1, 9):
            inputs = torch.rand(1, batch, length, task.input_size)
            model(inputs).sum().backward()
            with torch.no_grad():
                model(inputs)


def test_fast_dev_run_is_a_completed_debug_run(tmp_path, compose_cfg):
    summary = train(compose_cfg("+trainer.fast_dev_run=2"), tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert summary["reason"] == "trainer.fast_dev_run: a debug run of 2 of 12 steps"


def test_more_than_one_device_is_refused_in_one_line(tmp_path, compose_cfg):
    with pytest.raises(ConfigError, match=r"^trainer.devices=2: one device per run is supported; run jobs in parallel"):
        train(compose_cfg("trainer.devices=2"), tmp_path)
