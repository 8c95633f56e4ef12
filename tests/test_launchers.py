"""Sweeps through Hydra launchers: joblib and submitit's local launcher (each seed alone, a
process each), and ntm-repro's populations launcher handing populations to submitit: locally,
and through the SLURM preset ``hydra/launcher=slurm_cpu``, rendered into an sbatch script
(there is no SLURM here)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conftest import TINY

NTM_REPRO = shutil.which("ntm-repro")
needs_cli = pytest.mark.skipif(NTM_REPRO is None, reason="ntm-repro is not installed (pip install -e .)")
SHORT = [*TINY, "train.sequences=16", "train.log_every=8", "train.val_every=16"]


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NTM_REPRO, *args], cwd=cwd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def sweep_summaries(cwd: Path) -> list[dict]:
    (sweep,) = [p for p in (cwd / "multirun").iterdir() if p.name != "single"]
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]


@needs_cli
def test_joblib_sweep_runs_jobs_in_parallel_processes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    result = run_cli(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0-3", *SHORT)
    # The exit code is not checked: failures of jobs run in other processes are read from summary.json.
    runs = sweep_summaries(tmp_path)
    (sweep,) = [p for p in (tmp_path / "multirun").iterdir() if p.name != "single"]
    launcher = OmegaConf.load(sweep / "multirun.yaml").hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2, result.stdout + result.stderr
    assert sorted(r["seed"] for r in runs) == [0, 1, 2, 3]
    assert all(r["status"] == "completed" for r in runs), runs


@needs_cli
def test_submitit_local_sweep_completes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run_cli(tmp_path, "-m", "hydra/launcher=submitit_local", "seed=0,1", *SHORT)
    assert result.returncode == 0, result.stderr
    runs = sweep_summaries(tmp_path)
    assert sorted(r["seed"] for r in runs) == [0, 1]
    assert all(r["status"] == "completed" for r in runs), runs
    (sweep,) = [p for p in (tmp_path / "multirun").iterdir() if p.name != "single"]
    assert len([p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]) == 2  # one submitit job per run


def compose_with_hydra(*overrides: str):
    with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_slurm_preset_composes():
    cfg = compose_with_hydra("hydra/launcher=slurm_cpu", "hydra.launcher.submitit.slurm_partition=short")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.ntm_repro.PopulationLauncher"
    params = launcher.submitit
    assert params.cluster == "slurm" and params.slurm_partition == "short"  # the command line overrides the preset
    assert params.cpus_per_task in (1, 2) and params.mem_gb >= 1 and params.timeout_min >= 60
    assert launcher.jobs >= 1 and params.tasks_per_node == 1
    assert cfg.threads == params.cpus_per_task  # one torch thread per population, one CPU per task


def test_slurm_preset_sends_one_array_task_per_population(tmp_path, monkeypatch, compose_cfg):
    """The launcher's submission with a stand-in ``srun`` on PATH and submission itself
    replaced: 2 models x 3 seeds are 2 array tasks, each given one population's configs and
    run folders, and the preset's keys reach sbatch as SLURM options."""
    import submitit
    from submitit.slurm.slurm import _make_sbatch_string

    from ntm_repro.launcher import populations, train_all, train_population

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    preset = compose_with_hydra("hydra/launcher=slurm_cpu").hydra.launcher
    submitted = {}

    def fake_map_array(executor, fn, *iterables):
        submitted["fn"], submitted["args"] = fn, iterables
        submitted["parameters"] = dict(executor._executor.parameters)
        submitted["sbatch"] = _make_sbatch_string(
            command="python -m submitit.core._submit", folder=executor.folder, map_count=len(iterables[0]),
            **executor._executor.parameters,
        )
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    runs = [(compose_cfg(f"model={m}", f"seed={s}"), tmp_path / f"{m}_s{s}") for m in ("ntm", "lstm") for s in range(3)]
    params = OmegaConf.to_container(preset.submitit)
    assert list(train_all(populations(runs), preset.jobs, train_population, params, tmp_path)) == []
    cfgs, dirs = submitted["args"]
    assert submitted["fn"] is train_population and len(cfgs) == len(dirs) == 2
    assert [[c.seed for c in population] for population in cfgs] == [[0, 1, 2], [0, 1, 2]]
    assert [d.name for d in dirs[1]] == ["lstm_s0", "lstm_s1", "lstm_s2"]
    script = submitted["sbatch"]
    for option in ("--partition=cpu", "--cpus-per-task=1", f"--mem={preset.submitit.mem_gb}GB",
                   f"--time={preset.submitit.timeout_min}", f"--array=0-1%{min(2, preset.jobs)}", "--ntasks-per-node=1"):
        assert f"#SBATCH {option}\n" in script, script
    assert ".submitit" in script


@needs_cli
def test_populations_through_submitit_locally(tmp_path):
    """hydra/launcher=populations_submitit_local: the SLURM path without a cluster, each
    population a submitit job of its own."""
    result = run_cli(tmp_path, "-m", "hydra/launcher=populations_submitit_local", "model=ntm,lstm", "seed=0,1", *SHORT)
    assert result.returncode == 0, result.stderr
    runs = sweep_summaries(tmp_path)
    assert sorted((r["model"], r["seed"]) for r in runs) == [("lstm", 0), ("lstm", 1), ("ntm", 0), ("ntm", 1)]
    assert all(r["status"] == "completed" and r["trained_with_seeds"] == [0, 1] for r in runs), runs
    (sweep,) = [p for p in (tmp_path / "multirun").iterdir() if p.name != "single"]
    assert len([p for p in (sweep / ".submitit").iterdir() if p.name[0].isdigit()]) == 2  # one submitit job per population


@needs_cli
def test_optuna_trials_minimise_each_runs_final_validation_bit_errors(tmp_path):
    """hydra/sweeper=optuna_lr with two trials: each job returns its run's objective (the
    final validation bit errors), so Optuna's best value is the better run's."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "optuna"
    result = subprocess.run(
        [NTM_REPRO, "-m", "hydra/sweeper=optuna_lr", "hydra.sweeper.n_trials=2", *TINY, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    finals = [json.loads(p.read_text())["final"]["val/bit_errors"] for p in sweep.glob("*/summary.json")]
    assert len(finals) == 2
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(finals))
    assert set(best["best_params"]) == {"optimizer.lr"}  # controller.size, set on the command line (TINY), is fixed


@needs_cli
def test_an_objective_that_is_no_final_metric_is_one_line(tmp_path):
    result = subprocess.run([NTM_REPRO, *TINY, "objective=val/accuracy"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == ("ntm-repro: error: objective=val/accuracy: not a final metric of this run; "
                                     "choose one of val/bit_errors, val/cost_bits, train/bit_errors, train/cost_bits")


def test_submitting_without_the_slurm_extra_is_one_line_naming_it(monkeypatch, tmp_path):
    from ntm_repro.errors import ConfigError
    from ntm_repro.launcher import _submit

    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    with pytest.raises(ConfigError, match=r"needs the slurm extra; install it with pip install -e '\.\[slurm\]'$"):
        list(_submit([], 1, print, {"cluster": "slurm"}, tmp_path))
