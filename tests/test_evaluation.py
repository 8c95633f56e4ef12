"""Evaluation of trained runs: generalisation rows, attention traces, ``ntm-repro-eval``."""

import csv
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ntm_repro.eval_cli import main
from ntm_repro.training.run import train

EVAL = shutil.which("ntm-repro-eval")


def rows(run_dir):
    with open(run_dir / "generalisation.csv") as f:
        return {row["level"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from hydra import compose, initialize_config_module

    from conftest import TINY

    folders = {}
    with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
        for model in ("ntm", "lstm"):
            folders[model] = tmp_path_factory.mktemp(model)
            assert train(compose("config", overrides=[*TINY, f"model={model}"]), folders[model])["status"] == "completed"
    return folders


def test_training_ends_with_a_trace_at_every_test_level(trained):
    assert sorted(p.name for p in (trained["ntm"] / "attention").iterdir()) == ["length_2.npz", "length_6.npz"]
    assert np.load(trained["lstm"] / "attention" / "length_6.npz")["outputs"].shape == (13, 8)
    trace = np.load(trained["ntm"] / "attention" / "length_2.npz")
    steps = 2 * 2 + 1
    assert trace["inputs"].shape == (steps, 9) and trace["targets"].shape == (steps, 8)
    assert trace["outputs"].shape == (steps, 8) and ((trace["outputs"] > 0) & (trace["outputs"] < 1)).all()
    assert trace["mask"].tolist() == [False] * 3 + [True] * 2
    assert trace["write_weights"].shape == (steps, 1, 16) and trace["read_weights"].shape == (steps, 1, 16)
    np.testing.assert_allclose(trace["write_weights"].sum(-1), 1.0, atol=1e-5)  # weightings sum to one
    assert trace["memory"].shape == (16, 6) and str(trace["task"]) == "copy"
    lstm = np.load(trained["lstm"] / "attention" / "length_2.npz")
    assert "write_weights" not in lstm and lstm["outputs"].shape == (steps, 8)


@pytest.mark.skipif(EVAL is None, reason="ntm-repro-eval is not installed")
def test_eval_reproduces_the_end_of_training_and_adds_levels(trained):
    run = trained["ntm"]
    before = rows(run)
    result = subprocess.run([EVAL, str(run), "--levels", "2", "9", "--trace", "9"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    after = rows(run)
    assert set(after) == {"2", "6", "9"}
    # copy's scored steps are the length, each 8 target bits
    assert [float(after[level]["scored_bits"]) for level in ("2", "6", "9")] == [16, 48, 72]
    # the checkpoint's model on the same held-out episodes gives the same figures
    assert float(after["2"]["cost_bits"]) == pytest.approx(float(before["2"]["cost_bits"]), rel=1e-6)
    assert after["6"] == before["6"]  # rows at other levels are kept as they were
    assert after["9"]["in_training_range"] == "False"
    assert np.load(run / "attention" / "length_9.npz")["write_weights"].shape == (19, 1, 16)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--levels", "ten"], "level 'ten': task copy counts its levels in length; give e.g. 10"),
        (["--levels", "3x2"], "level '3x2': task copy counts its levels in length"),
        (["--trace", "0"], "level '0'"),
    ],
)
def test_eval_bad_levels_are_one_line(trained, capsys, args, message):
    assert main([str(trained["lstm"]), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_eval_of_a_folder_without_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt is missing" in err and len(err.strip().splitlines()) == 1


def test_checkpoints_kept_along_the_run_evaluate_into_generalisation_along(tmp_path, capsys):
    """train.keep_checkpoints=32 with TINY (96 sequences, batch 8) keeps the model at 32, 64
    and 96 sequences; the last of them is the trained model, so its rows equal the
    end-of-training generalisation.csv on the same held-out episodes."""
    from hydra import compose, initialize_config_module

    from conftest import TINY

    with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, "train.keep_checkpoints=32"])
    assert train(cfg, tmp_path)["status"] == "completed"
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["sequences_32.ckpt", "sequences_64.ckpt", "sequences_96.ckpt"]
    assert main([str(tmp_path), "--along"]) == 0
    with open(tmp_path / "generalisation_along.csv") as f:
        along = list(csv.DictReader(f))
    assert [(row["sequences_trained"], row["level"]) for row in along] == [
        (n, level) for n in ("32", "64", "96") for level in ("2", "6")]
    final = rows(tmp_path)
    for row in along[-2:]:
        assert float(row["cost_bits"]) == pytest.approx(float(final[row["level"]]["cost_bits"]), rel=1e-6)
    assert along[0]["cost_bits"] != along[-2]["cost_bits"]  # the model at 32 sequences is another model
    # each kept checkpoint traced on the same episode of the first level; the last is the trained model
    traces = {n: np.load(tmp_path / "attention_along" / f"sequences_{n}.npz") for n in (32, 64, 96)}
    final_trace = np.load(tmp_path / "attention" / "length_2.npz")
    for trace in traces.values():
        np.testing.assert_array_equal(trace["targets"], final_trace["targets"])
    np.testing.assert_allclose(traces[96]["outputs"], final_trace["outputs"], rtol=1e-5)
    assert not np.allclose(traces[32]["outputs"], traces[96]["outputs"])
    # the report reads them: a page of generalisation along the run, each run's trend per level
    from ntm_repro.report.pdf import write_report
    from ntm_repro.report.read import read_runs
    from ntm_repro.report.stats import Criteria

    reading = read_runs([str(tmp_path)])
    assert len(reading.along) == 6 and set(reading.along["label"]) == {"ntm"}
    writer = write_report(reading, Criteria(), tmp_path / "report", "along", [str(tmp_path)])
    assert any(p.name.endswith("_along_copy.png") for p in writer.folder.iterdir())
    assert any(p.name.endswith("_outputs_along_copy.png") for p in writer.folder.iterdir())
    assert [Path(p).name for p in reading.runs.loc[0, "attention_along"]] == [f"sequences_{n}.npz" for n in (32, 64, 96)]
    from ntm_repro.report.archive import write_archive

    with tarfile.open(write_archive([tmp_path], tmp_path / "runs.tar.xz")) as tar:
        assert sum("/attention_along/sequences_" in name for name in tar.getnames()) == 3
    with open(writer.folder / "runs.csv") as f:
        (run,) = csv.DictReader(f)
    errors = [float(row["bit_errors"]) for row in along if row["level"] == "6"]
    assert "along.bit_errors@6" in run and (float(run["along.bit_errors@6"]) < 0) == (errors[-1] < errors[0])
    with pytest.raises(SystemExit):  # argparse: --along and --trace are one or the other
        main([str(tmp_path), "--along", "--trace", "2"])
    assert "give one of them" in capsys.readouterr().err


def test_along_without_kept_checkpoints_is_one_line(trained, capsys):
    assert main([str(trained["lstm"]), "--along"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoints kept in checkpoints/ (train with train.keep_checkpoints=N)" in err
    assert len(err.strip().splitlines()) == 1
