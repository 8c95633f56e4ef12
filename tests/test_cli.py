"""End to end: the installed ``ntm-repro`` command in a subprocess, outside the checkout."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY

from ntm_repro.cli_args import config_groups

NTM_REPRO = shutil.which("ntm-repro")
pytestmark = pytest.mark.skipif(NTM_REPRO is None, reason="ntm-repro is not installed (pip install -e .)")


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NTM_REPRO, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def summaries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/summary.json"))]


def test_single_run(tmp_path):
    result = run_cli(tmp_path, *TINY, "seed=0")
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "multirun" / "single").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["seed"] == 0
    for name in ("config.yaml", "metrics.csv", "generalisation.csv", "last.ckpt", ".hydra/overrides.yaml"):
        assert (run / name).exists(), name
    assert f"{run}: completed" in result.stderr


def test_sweep_over_models_and_a_seed_range(tmp_path):
    result = run_cli(tmp_path, "-m", "model=ntm,lstm", "seed=0-2", *TINY, "train.sequences=64")
    assert result.returncode == 0, result.stderr
    (sweep,) = [p for p in (tmp_path / "multirun").iterdir() if p.name != "single"]
    runs = summaries(sweep)
    assert len(runs) == 6
    assert all(r["status"] == "completed" and r["sequences_seen"] == 64 for r in runs)
    assert sorted((r["model"], r["seed"]) for r in runs) == sorted((m, s) for m in ("ntm", "lstm") for s in range(3))


def test_unknown_group_option_is_one_line_before_any_work(tmp_path):
    result = run_cli(tmp_path, "model=transformer")
    assert result.returncode == 2
    options = ", ".join(config_groups()["model"])
    assert result.stderr.strip().splitlines() == [
        f"ntm-repro: error: model=transformer: 'transformer' is not a model option; choose one of {options}"
    ]
    assert not (tmp_path / "multirun").exists()


def test_impossible_size_is_one_line_and_recorded(tmp_path):
    result = run_cli(tmp_path, *TINY, "controller.layers=0")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("ntm-repro: error:")]
    assert errors == ["ntm-repro: error: controller.layers=0: must be a positive integer"]
    assert "Traceback" not in result.stderr
    (run,) = (tmp_path / "multirun" / "single").iterdir()
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "ntm_repro.bench", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "sequences per second" in result.stdout


def test_headline_structured_sweep_on_recall(tmp_path):
    """ntm-repro -m model=ntm,ntm1,ntm2,ntm3 task=recall seed=0-4, shrunk: 20 completed runs."""
    small = ["train.sequences=8", "train.batch_size=4", "train.val_batch_size=1", "train.test_batch_size=1",
             "task.test_items=[3]", "++model.memory.locations=12", "++model.memory.width=5", "controller.size=8"]
    result = run_cli(tmp_path, "-m", "model=ntm,ntm1,ntm2,ntm3", "task=recall", "seed=0-4", *small)
    assert result.returncode == 0, result.stderr
    (sweep,) = [p for p in (tmp_path / "multirun").iterdir() if p.name != "single"]
    runs = summaries(sweep)
    assert len(runs) == 20 and all(r["status"] == "completed" and r["task"] == "recall" for r in runs)
    assert sorted((r["model"], r["seed"]) for r in runs) == sorted(
        (m, s) for m in ("ntm", "ntm1", "ntm2", "ntm3") for s in range(5)
    )


def test_a_seed_batch_sweep_then_its_report(tmp_path):
    """Each model's seeds trained as one batch (two groups at once, in worker processes):
    a run folder per seed, as a sweep without seed_batch writes, and the report reads them."""
    result = run_cli(tmp_path, "-m", "model=ntm,lstm", "seed=0-2", "seed_batch.enabled=true", *TINY, "train.sequences=64",
                     "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr
    runs = summaries(tmp_path / "sweep")
    assert sorted((r["model"], r["seed"]) for r in runs) == sorted((m, s) for m in ("ntm", "lstm") for s in range(3))
    assert all(r["status"] == "completed" and r["trained_with_seeds"] == [0, 1, 2] for r in runs)
    assert all((run / name).exists() for run in (tmp_path / "sweep").glob("*_s*") for name in ("metrics.csv", "last.ckpt", ".hydra"))
    report = subprocess.run([shutil.which("ntm-repro-report"), "sweep", "--out", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "out" / "sweep.pdf").stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["train.sequence=64"], "ntm-repro: error: train.sequence=64: no such key in this config; did you mean train.sequences?"),
        (["seed=0-2"], "ntm-repro: error: seed=0-2 is a sweep over 3 values; add -m to run them all"),
        (["+trainer.max_epoch=1", *TINY], "ntm-repro: error: trainer settings rejected by pytorch_lightning.Trainer: "),
        (["hydra.run.dir=blocker/run"], "ntm-repro: error: cannot write runs to "),
        (["-m", "seed=0,1", "hydra.sweep.dir=blocker/sweep"], "ntm-repro: error: cannot write runs to "),
        (["-m", "seed=0,1", "seed_batch.enabled=true", "hydra/launcher=joblib"],
         "ntm-repro: error: seed_batch.enabled=true trains the seed groups in the launching process; drop the hydra/launcher"),
        (["-m", "seed=0,1", "seed_batch.enabled=true", "seed_batch.jobs=0"], "ntm-repro: error: seed_batch.jobs=0: give a positive number"),
    ],
)
def test_typos_and_misuse_give_one_line(tmp_path, args, message):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    result = run_cli(tmp_path, *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("ntm-repro: error:")]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    """The second job's optimizer setting raises inside the job: it is recorded as failed
    with its reason, the other job completes, and the sweep ends listing the failure."""
    result = run_cli(tmp_path, "-m", "optimizer=adam", "optimizer.lr=0.001,-1", *TINY, "train.sequences=32", "hydra.sweep.dir=sweep")
    assert result.returncode == 1
    ok, bad = summaries(tmp_path / "sweep")
    assert ok["status"] == "completed"
    assert bad["status"] == "failed" and "Invalid learning rate: -1" in bad["reason"]
    assert result.stderr.strip().splitlines()[-1].startswith("ntm-repro: error: 1 run(s) did not complete")
