"""End to end: the installed ``ntm-repro`` command in a subprocess, outside the checkout."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY


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
    # the job's log holds what the console said, with times (it was empty when the project printed)
    (outcome,) = [line for line in result.stderr.splitlines() if line.startswith(f"{run}: completed")]
    assert sorted(p.name for p in run.glob("*.log")) == ["ntm-repro.log"]
    log = (run / "ntm-repro.log").read_text().splitlines()
    assert log[0].endswith("training seed 0") and log[-1].endswith(outcome)


def test_sweep_over_models_and_a_seed_range(tmp_path):
    result = run_cli(tmp_path, "-m", "model=ntm,lstm", "seed=0-2", *TINY, "train.sequences=64")
    assert result.returncode == 0, result.stderr
    (sweep,) = [p for p in (tmp_path / "multirun").iterdir() if p.name != "single"]
    runs = summaries(sweep)
    assert len(runs) == 6
    assert all(r["status"] == "completed" and r["sequences_seen"] == 64 for r in runs)
    assert sorted((r["model"], r["seed"]) for r in runs) == sorted((m, s) for m in ("ntm", "lstm") for s in range(3))
    for run in (p for p in sweep.iterdir() if (p / "summary.json").is_file()):  # each run's log ends with its own outcome
        assert (run / "ntm-repro.log").read_text().splitlines()[-1].endswith(f"{run}: completed" + result.stderr.split(f"{run}: completed")[1].splitlines()[0])


def test_unknown_group_option_is_one_line_before_any_work(tmp_path):
    result = run_cli(tmp_path, "model=transformer")
    assert result.returncode == 2
    options = "lstm, ntm, ntm1, ntm2, ntm3, ntm_2heads"
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


def test_a_population_sweep_then_its_report(tmp_path):
    """Each model's seeds trained as one population (the default for -m; two at once, in
    worker processes): a run folder per seed, as jobs trained alone write, and the report
    reads them."""
    result = run_cli(tmp_path, "-m", "model=ntm,lstm", "seed=0-2", *TINY, "train.sequences=64",
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
        (["-m", "seed=0,1", "hydra.launcher.jobs=0"], "ntm-repro: error: hydra.launcher.jobs=0: give a positive number"),
        (["x=["], "ntm-repro: error: x=[: Hydra cannot parse this override"),
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
    assert result.stderr.strip().splitlines()[-1] == (
        "ntm-repro: error: sweep: 1 of 2 runs completed; not completed: 1_ntm_copy_s0 (failed); rerun the same command "
        "with resume=true to continue them; ntm-repro-report sweep reports what there is")


@pytest.mark.parametrize("models", ["ntm,lstm", "lstm,ntm"])
def test_a_key_one_job_lacks_is_refused_before_any_job_whatever_its_order(tmp_path, models):
    """model.heads exists for the NTM, not for the LSTM baseline: whichever job comes first,
    the sweep stops in one line before anything trains."""
    result = run_cli(tmp_path, "-m", f"model={models}", "model.heads=2", *TINY, "hydra.sweep.dir=sweep")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ntm-repro: error:")]
    assert errors == ["ntm-repro: error: model.heads=2: no such key in this config; (a new key needs a leading +)"], result.stderr
    assert not list(tmp_path.glob("sweep/*/summary.json"))


def test_a_users_model_in_config_dir_trains_and_another_primary_config_composes(tmp_path):
    """--config-dir adds the user's own YAML to the search path: a model of theirs trains;
    -cn picks their primary config, built on the package's."""
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "tiny_ntm.yaml").write_text(
        "defaults:\n  - ntm\n  - _self_\nname: tiny_ntm\nmemory: {locations: 16, width: 6}\n")
    (tmp_path / "mine" / "short.yaml").write_text("defaults:\n  - config\n  - _self_\ntrain:\n  sequences: 32\n")
    result = run_cli(tmp_path, "--config-dir", "mine", "model=tiny_ntm", *TINY, "train.sequences=32", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"] == "tiny_ntm" and summary["sequences_seen"] == 32
    shown = run_cli(tmp_path, "--config-dir", "mine", "-cn", "short", "--cfg", "job")
    assert shown.returncode == 0, shown.stderr
    assert "sequences: 32" in shown.stdout and "name: ntm" in shown.stdout


def test_hydras_informational_flags_work(tmp_path):
    completion = run_cli(tmp_path, "-sc", "install=bash")
    assert completion.returncode == 0 and "hydra_bash_completion ntm-repro" in completion.stdout, completion.stderr
    info = run_cli(tmp_path, "--info", "searchpath")
    assert info.returncode == 0 and "pkg://ntm_repro.conf" in info.stdout, info.stderr
    info = run_cli(tmp_path, "--info", "plugins")
    assert info.returncode == 0 and "Launcher" in info.stdout, info.stderr


def test_hydra_mode_multirun_sweeps_and_a_job_reruns_from_its_pickle(tmp_path):
    result = run_cli(tmp_path, "hydra.mode=MULTIRUN", "seed=0-1", *TINY, "train.sequences=32", "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr
    first = tmp_path / "sweep" / "0_ntm_copy_s0"
    assert [r["seed"] for r in summaries(tmp_path / "sweep")] == [0, 1]
    before = curve(first)
    pickle = str(first / ".hydra" / "config.pickle")
    refused = run_cli(tmp_path, "--experimental-rerun", pickle)  # into a folder that holds a completed run
    assert refused.returncode == 2 and "already holds a completed run" in refused.stderr
    for name in ("metrics.csv", "summary.json", "last.ckpt"):
        (first / name).unlink()
    rerun = run_cli(tmp_path, "--experimental-rerun", pickle)
    assert rerun.returncode == 0, rerun.stderr
    assert curve(first) == before  # the same job, trained again to the same curve


def curve(run: Path) -> list[dict]:
    """metrics.csv without its wall-clock column."""
    return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(open(run / "metrics.csv"))]


def test_a_range_on_a_key_not_declared_for_ranges_is_one_value_not_a_sweep(tmp_path):
    result = run_cli(tmp_path, "-m", "train.sequences=1000-2000", *TINY[1:], "hydra.sweep.dir=sweep")
    assert result.returncode == 1
    assert len(list((tmp_path / "sweep").glob("*/summary.json"))) == 1  # one job, not 1,001
    assert "ntm-repro: error: train.sequences='1000-2000': must be a positive integer" in result.stderr


def test_version_is_the_projects_and_python_dash_m_is_the_command():
    from ntm_repro import __version__

    for command in ([NTM_REPRO, "--version"], [sys.executable, "-m", "ntm_repro", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stdout == f"ntm-repro {__version__}\n", result.stderr


def test_the_progress_bar_switches_off_from_the_config(tmp_path):
    shown = run_cli(tmp_path, *TINY, "hydra.run.dir=on")
    quiet = run_cli(tmp_path, *TINY, "trainer.enable_progress_bar=false", "hydra.run.dir=off")
    assert shown.returncode == quiet.returncode == 0, quiet.stderr
    assert "seq/s" in shown.stderr and "seq/s" not in quiet.stderr + quiet.stdout
    assert "off: completed" in quiet.stdout + quiet.stderr  # the outcome line still ends the run


def test_help_names_the_app_and_lists_presets_without_base_files(compose_cfg):
    from ntm_repro.cli_help import presets

    result = subprocess.run([NTM_REPRO, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: ntm-repro ")
    assert "powered by Hydra" not in result.stdout and "graves/copy_lstm_ntm" in result.stdout
    groups = presets()
    assert "graves/shared" not in groups["experiment"] and "graves/graves_lstm" not in groups["experiment"]
    assert {"model", "task", "experiment", "callbacks", "logger"} <= set(groups)
    for group, options in groups.items():  # every preset listed can be chosen
        for option in options:
            compose_cfg(f"{group}={option}", tiny=False)
    hydra_help = subprocess.run([NTM_REPRO, "--hydra-help"], capture_output=True, text=True, timeout=120)
    assert hydra_help.returncode == 0 and "--cfg" in hydra_help.stdout


def test_a_preset_whose_extra_is_missing_is_one_line_naming_it(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(  # as if `pip install -e .` without [optuna]
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'optuna' or name.startswith('hydra_plugins.hydra_optuna_sweeper'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([NTM_REPRO, "-m", "hydra/sweeper=optuna_lr", *TINY], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "ntm-repro: error: hydra/sweeper=optuna_lr: needs the optuna extra; install it with pip install -e '.[optuna]'"


def test_wandb_without_its_extra_is_one_line_naming_it(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(  # as if `pip install -e .` without [wandb]
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'wandb' or name.startswith('wandb.'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([NTM_REPRO, "logger=csv_wandb", *TINY], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "ntm-repro: error: logger=csv_wandb: needs the wandb extra; install it with pip install -e '.[wandb]'"
