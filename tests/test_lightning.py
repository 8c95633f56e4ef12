"""Lightning the way its users work: the held-out evaluation in ``trainer.callback_metrics``,
EarlyStopping and ModelCheckpoint from the ``callbacks`` group acting on it,
``SequenceLearner.load_from_checkpoint`` with ``trainer.validate`` / ``trainer.test``, and
``trainer.precision`` applied to evaluation."""

from __future__ import annotations

import csv

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import DoublePrecision, MixedPrecision

from ntm_repro.errors import ConfigError
from ntm_repro.training.build import build_setup
from ntm_repro.training.data import heldout
from ntm_repro.training.metrics import evaluate
from ntm_repro.training.module import SequenceLearner
from ntm_repro.training.run import train, train_seeds


def rows(path, split):
    with open(path) as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def quiet_trainer() -> pl.Trainer:
    return pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)


@pytest.mark.parametrize("seeds", [[0], [3, 5]])
def test_each_evaluation_reaches_callback_metrics(compose_cfg, tmp_path, seeds):
    cfgs, folders = [compose_cfg(f"seed={seed}") for seed in seeds], [tmp_path / str(seed) for seed in seeds]
    for folder in folders:
        folder.mkdir()
    setup = build_setup(cfgs, folders)
    setup.trainer.fit(setup.learner, datamodule=setup.datamodule)
    metrics = setup.trainer.callback_metrics
    last = setup.learner.last_metrics
    for name in ("val/bit_errors", "val/cost_bits"):
        assert float(metrics[name]) == pytest.approx(sum(seed[name] for seed in last) / len(seeds), rel=1e-6)
        if len(seeds) > 1:  # each seed's own, beside the mean
            for seed, values in zip(seeds, last):
                assert float(metrics[f"{name}/seed{seed}"]) == pytest.approx(values[name], rel=1e-6)


def test_early_stopping_stops_at_the_evaluation_that_meets_it(compose_cfg, tmp_path):
    # the threshold is met by the first evaluation after step 0 (32 sequences, step 4): a check
    # a step late, or metrics missing from callback_metrics (strict: an error), would show
    summary = train(compose_cfg("callbacks=early_stopping", "callbacks.early_stopping.stopping_threshold=1e9"), tmp_path)
    assert summary["status"] == "completed"
    assert summary["steps"] == 4 and summary["sequences_seen"] == 32
    assert "stopped early by EarlyStopping at 4 steps" in summary["reason"]
    assert [row["sequences"] for row in rows(tmp_path / "metrics.csv", "val")] == ["0", "32"]
    assert rows(tmp_path / "metrics.csv", "train")[-1]["sequences"] == "32"  # the interval closed where training ended
    assert (tmp_path / "generalisation.csv").is_file()


def test_early_stopping_patience_counts_evaluations(compose_cfg, tmp_path):
    # min_delta so large that no evaluation improves: stops after `patience` evaluations past the first
    summary = train(compose_cfg("callbacks=early_stopping", "callbacks.early_stopping.patience=1",
                                "callbacks.early_stopping.min_delta=1e9", "train.sequences=400"), tmp_path)
    # the evaluation before training is not a check (as Lightning's sanity check is not):
    # step 4 sets the best, step 8 has waited 1
    assert summary["status"] == "completed" and summary["steps"] == 8


def test_best_checkpoint_and_load_from_checkpoint_evaluate_as_the_run_did(compose_cfg, tmp_path):
    train(compose_cfg("callbacks=model_checkpoint"), tmp_path)
    (best,) = (tmp_path / "best").glob("*.ckpt")
    final = rows(tmp_path / "metrics.csv", "val")[-1]
    tested = {row["level"]: row for row in csv.DictReader(open(tmp_path / "generalisation.csv"))}
    for path in (tmp_path / "last.ckpt", best):
        learner = SequenceLearner.load_from_checkpoint(path)
        (validated,) = quiet_trainer().validate(learner, verbose=False)
        (test,) = quiet_trainer().test(learner, verbose=False)
        if path.name == "last.ckpt":  # the weights at the end: the run's last evaluation and its tests
            assert validated["val/bit_errors"] == pytest.approx(float(final["bit_errors"]), rel=1e-5)
            assert validated["val/cost_bits"] == pytest.approx(float(final["cost_bits"]), rel=1e-5)
            for level, row in tested.items():
                assert test[f"test/cost_bits@{level}"] == pytest.approx(float(row["cost_bits"]), rel=1e-5)
        best_val = min(float(row["bit_errors"]) for row in rows(tmp_path / "metrics.csv", "val") if row["sequences"] != "0")  # checked evaluations
        if path == best:
            assert validated["val/bit_errors"] == pytest.approx(best_val, rel=1e-5)


def test_a_seed_of_a_population_loads_as_itself(compose_cfg, tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    train_seeds([compose_cfg("seed=1"), compose_cfg("seed=2")], folders)
    for folder, seed in zip(folders, (1, 2)):
        learner = SequenceLearner.load_from_checkpoint(folder / "last.ckpt")
        assert learner.run_seeds == [seed]
        (validated,) = quiet_trainer().validate(learner, verbose=False)
        assert validated["val/cost_bits"] == pytest.approx(float(rows(folder / "metrics.csv", "val")[-1]["cost_bits"]), rel=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/loss"], "callbacks.early_stopping.monitor=val/loss: not an evaluated metric"),
        (["callbacks=model_checkpoint", "callbacks.model_checkpoint.monitor=train/cost_bits"], "not an evaluated metric"),
    ],
)
def test_a_monitor_that_is_never_evaluated_is_refused(compose_cfg, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(compose_cfg(*overrides), tmp_path)


def test_a_best_checkpoint_of_a_population_is_refused(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match="hydra/launcher=basic"):
        train_seeds([compose_cfg("callbacks=model_checkpoint", f"seed={seed}") for seed in (0, 1)], [tmp_path / "0", tmp_path / "1"])


def test_float64_training_evaluates_in_float64(compose_cfg, tmp_path):
    summary = train(compose_cfg("trainer.precision=64-true"), tmp_path)
    assert summary["status"] == "completed", summary["reason"]  # its evaluation fed float32 inputs to float64 weights


def test_evaluation_follows_the_precision_plugin(compose_cfg, tmp_path):
    setup = build_setup([compose_cfg()], [tmp_path])
    model, task = setup.model, setup.task
    episodes = heldout(task, task.validation_levels, 4)
    plain = evaluate(model, episodes)[0]["cost_bits"]
    assert evaluate(model, episodes, precision=MixedPrecision("bf16-mixed", "cpu"))[0]["cost_bits"] != plain  # under autocast
    model.double()
    assert evaluate(model, episodes, precision=DoublePrecision())[0]["cost_bits"] == pytest.approx(plain, rel=1e-4)
    with pytest.raises(RuntimeError):  # what it fixed: float32 episodes into float64 weights
        evaluate(model, episodes)
    assert torch.get_default_dtype() == torch.float32
