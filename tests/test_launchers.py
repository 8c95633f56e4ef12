"""Sweeps through Hydra launchers: joblib (local processes), submitit (local, and the SLURM
preset ``hydra/launcher=slurm_cpu``, composed and rendered into an sbatch script: there is
no SLURM here)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
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
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_with_hydra("hydra/launcher=slurm_cpu", "hydra.launcher.partition=short")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "short"  # the command line overrides the preset
    assert launcher.cpus_per_task in (1, 2) and launcher.mem_gb >= 1 and launcher.timeout_min >= 60
    assert launcher.array_parallelism >= 1 and launcher.tasks_per_node == 1
    assert cfg.threads == launcher.cpus_per_task  # one torch thread per job, one CPU per job


def test_slurm_preset_renders_an_sbatch_script(tmp_path, monkeypatch):
    """The real launcher's launch() up to submission, with a stand-in ``srun`` on PATH and
    submission itself replaced: the preset's keys reach sbatch as SLURM options."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import submitit
    from submitit.slurm.slurm import _make_sbatch_string

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    cfg = compose_with_hydra("hydra/launcher=slurm_cpu", "seed=0")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    submitted = {}

    def fake_map_array(executor, fn, *iterables):
        submitted["jobs"] = len(iterables[0])
        submitted["parameters"] = dict(executor._executor.parameters)
        submitted["sbatch"] = _make_sbatch_string(
            command="python -m submitit.core._submit", folder=executor.folder, map_count=len(iterables[0]),
            **executor._executor.parameters,
        )
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    assert launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0) == []
    script = submitted["sbatch"]
    assert submitted["jobs"] == 2
    assert submitted["parameters"]["array_parallelism"] == cfg.hydra.launcher.array_parallelism
    for option in ("--partition=cpu", "--cpus-per-task=1", f"--mem={cfg.hydra.launcher.mem_gb}GB",
                   f"--time={cfg.hydra.launcher.timeout_min}", "--array=0-1%2", "--ntasks-per-node=1"):
        assert f"#SBATCH {option}\n" in script, script
    assert ".submitit" in script
