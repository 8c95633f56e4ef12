"""Checkpoints, resume and faults: a killed run resumed with resume=true ends exactly where an
uninterrupted one does; SIGTERM leaves a checkpoint; finished runs are skipped."""

import csv
import json
import shutil
import signal
import subprocess
import time

import pytest
import torch

from conftest import TINY

from ntm_repro.errors import ConfigError
from ntm_repro.training.resume import differing_keys, plan_resume
from ntm_repro.training.run import train

NTM_REPRO = shutil.which("ntm-repro")
LONGER = [*TINY, "train.sequences=1600", "train.checkpoint_every=64", "train.val_every=64"]


def start(run_dir, *extra):
    return subprocess.Popen([NTM_REPRO, *LONGER, *extra, f"hydra.run.dir={run_dir}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(process, run_dir, timeout=300):
    deadline = time.monotonic() + timeout
    while not (run_dir / "last.ckpt").exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)


def metric_rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.skipif(NTM_REPRO is None, reason="ntm-repro is not installed")
def test_a_run_killed_and_resumed_ends_like_an_uninterrupted_one(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert subprocess.run([NTM_REPRO, *LONGER, f"hydra.run.dir={whole}"], capture_output=True, timeout=600).returncode == 0
    process = start(killed)
    wait_for_checkpoint(process, killed)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert summary(killed)["status"] == "running"  # killed: nothing could record it
    resumed = subprocess.run([NTM_REPRO, *LONGER, "resume=true", f"hydra.run.dir={killed}"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    after = summary(killed)
    assert after["status"] == "completed" and 0 < after["resumed_from_sequences"] < 1600
    assert after["final"] == summary(whole)["final"]
    assert metric_rows(killed) == metric_rows(whole)  # the same curve, no row lost or repeated


@pytest.mark.skipif(NTM_REPRO is None, reason="ntm-repro is not installed")
def test_a_killed_population_resumes_together_and_ends_like_an_uninterrupted_one(tmp_path):
    sweep = [NTM_REPRO, "-m", *LONGER, "seed=0,1"]  # one population (the default for -m)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert subprocess.run([*sweep, f"hydra.sweep.dir={whole}"], capture_output=True, timeout=600).returncode == 0
    process = subprocess.Popen([*sweep, f"hydra.sweep.dir={killed}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = [killed / "0_ntm_copy_s0", killed / "1_ntm_copy_s1"]
    for run in runs:
        wait_for_checkpoint(process, run)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    resumed = subprocess.run([*sweep, "resume=true", f"hydra.sweep.dir={killed}"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for run in runs:
        after = summary(run)
        assert after["status"] == "completed" and 0 < after["resumed_from_sequences"] < 1600
        assert after["trained_with_seeds"] == [0, 1]  # continued together
        assert after["final"] == summary(whole / run.name)["final"]
        assert metric_rows(run) == metric_rows(whole / run.name)
    assert not (runs[0] / "population_resume.ckpt").exists()


@pytest.mark.skipif(NTM_REPRO is None, reason="ntm-repro is not installed")
def test_sigterm_leaves_a_checkpoint_and_status_interrupted(tmp_path):
    process = start(tmp_path)
    wait_for_checkpoint(process, tmp_path)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    stopped = summary(tmp_path)
    assert stopped["status"] == "interrupted" and "SIGTERM" in stopped["reason"], err
    assert stopped["sequences_seen"] < 1600 and (tmp_path / "last.ckpt").exists()


def test_finished_runs_are_skipped_and_other_configs_refused(compose_cfg, tmp_path):
    first = train(compose_cfg(), tmp_path)
    again = train(compose_cfg("resume=true", "threads=2"), tmp_path)  # threads may change
    assert again["skipped"] and again["final"] == first["final"]
    with pytest.raises(ConfigError, match=r"holds a run of another config \(it differs at optimizer.lr\)"):
        train(compose_cfg("resume=true", "optimizer.lr=0.01"), tmp_path)


def test_an_unreadable_checkpoint_is_one_line(compose_cfg, tmp_path):
    cfg = compose_cfg("+trainer.max_epochs=1", "+trainer.limit_train_batches=3")
    assert train(cfg, tmp_path)["status"] == "interrupted"
    (tmp_path / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="last.ckpt is unreadable; delete it to restart this run from scratch"):
        plan_resume(compose_cfg("+trainer.max_epochs=1", "+trainer.limit_train_batches=3", "resume=true"), tmp_path)


def test_differing_keys_ignores_resume_and_threads():
    old = {"seed": 0, "threads": 1, "resume": False, "train": {"sequences": 10, "batch_size": 2}}
    new = {"seed": 0, "threads": 4, "resume": True, "train": {"sequences": 20, "batch_size": 2}, "extra": 1}
    assert differing_keys(old, new) == ["extra", "train.sequences"]


def test_checkpoints_hold_the_logging_interval_and_the_next_batch(compose_cfg, tmp_path):
    """Stopped after 3 of 12 steps: the next batch to draw is batch 3 (not whatever Lightning
    prefetched); the interval's sums are saved with its 3 steps, not logged (a run stopped
    early leaves its interval open for the resumed run to close where an uninterrupted one
    would)."""
    train(compose_cfg("+trainer.max_epochs=1", "+trainer.limit_train_batches=3", "train.log_every=32"), tmp_path)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["interval"]["steps"] == 3 and checkpoint["interval"]["validated_at"] == 0
    assert all(cost > 0 for cost in checkpoint["interval"]["cost"])
    assert checkpoint["EpisodeDataModule"] == {"next_batch": 3}
