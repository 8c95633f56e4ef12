"""The fault matrix: real signals to a real ``ntm-repro`` process, reruns into the same
folders, two writers at once, a closed terminal. Each case checks what the user sees (one
line, the exit code) and what the folder holds afterwards (status, checkpoint, the curve a
resumed run ends with, the provenance log).

``NTM_REPRO_SIGNAL_AT=STEP:SIGNAL`` makes the run send itself SIGNAL in the middle of
training step STEP (after the loss, before the update): the point where a Ctrl-C used to
checkpoint a step twice."""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import TINY

NTM_REPRO = shutil.which("ntm-repro")
pytestmark = pytest.mark.skipif(NTM_REPRO is None, reason="ntm-repro is not installed (pip install -e .)")
# 50 steps of 8 sequences, a checkpoint every 8 steps, a training row every 2
RUN = [*TINY, "train.sequences=400", "train.checkpoint_every=64", "train.val_every=64", "train.log_every=16"]


def ntm_repro(*args, env=None, **kwargs):
    return subprocess.run([NTM_REPRO, *args], capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL, **kwargs)


def with_signal_at(spec):
    return {**os.environ, "NTM_REPRO_SIGNAL_AT": spec}


def rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def provenance(run_dir):
    return [json.loads(line) for line in (run_dir / "provenance.jsonl").read_text().splitlines()]


def errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("ntm-repro: error:")]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run every resumed one must end like."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    result = ntm_repro(*RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.mark.parametrize("signame, code, by", [("SIGINT", 130, "Ctrl-C (SIGINT)"), ("SIGTERM", 143, "SIGTERM")])
def test_a_signal_mid_step_stops_in_one_line_and_resumes_to_the_uninterrupted_run(tmp_path, whole, signame, code, by):
    run_dir = tmp_path / "run"
    stopped = ntm_repro(*RUN, f"hydra.run.dir={run_dir}", env=with_signal_at(f"20:{signame}"))
    assert stopped.returncode == code, stopped.stderr
    assert "Traceback" not in stopped.stderr and "Error executing job" not in stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert last == (f"{run_dir}: interrupted (stopped by {by} at 168 sequences; rerun the same command with "
                    "resume=true to continue from last.ckpt)")  # step 20 completed: 21 steps x 8
    assert summary(run_dir)["status"] == "interrupted" and summary(run_dir)["steps"] == 21
    assert (run_dir / "last.ckpt").exists() and not (run_dir / ".lock").exists()
    resumed = ntm_repro(*RUN, f"hydra.run.dir={run_dir}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert summary(run_dir)["status"] == "completed" and summary(run_dir)["final"] == summary(whole)["final"]
    assert rows(run_dir) == rows(whole)  # no step counted twice, none lost
    assert [entry["outcome"] for entry in provenance(run_dir)] == ["started", "interrupted", "started", "completed"]


def test_ctrl_c_from_outside_with_the_terminal_gone(tmp_path, whole):
    """`ntm-repro ... | tee log`, then Ctrl-C: tee dies first, the progress bar's writes
    find a closed pipe; the run still records `interrupted`, not a BrokenPipeError."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen([NTM_REPRO, *RUN, "train.sequences=40000", f"hydra.run.dir={run_dir}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run_dir / "last.ckpt").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.stderr.close()  # the reading end of the pipe: gone
    time.sleep(1.5)  # long enough for the bar to write into the closed pipe
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    after = summary(run_dir)
    assert after["status"] == "interrupted" and "BrokenPipe" not in str(after["reason"]), after
    assert not (run_dir / ".lock").exists()


def test_a_second_writer_stops_at_once_naming_the_first(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([NTM_REPRO, *RUN, "train.sequences=40000", f"hydra.run.dir={run_dir}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "metrics.csv").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = ntm_repro(*RUN, f"hydra.run.dir={run_dir}", "resume=true")
        assert second.returncode == 2
        assert errors(second.stderr) == [
            f"ntm-repro: error: {run_dir} is being written by pid {first.pid} on {socket.gethostname()} since "
            f"{json.loads((run_dir / '.lock').read_text())['started']}; wait for it to end, or write to another folder "
            "(hydra.run.dir=PATH, hydra.sweep.dir=PATH for -m)"
        ], second.stderr
        assert first.poll() is None and summary(run_dir)["status"] == "running"  # the first goes on
        assert provenance(run_dir)[-1]["outcome"] == "started"  # the refused one wrote nothing there
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    assert summary(run_dir)["status"] == "interrupted"


def test_a_second_sweep_into_the_same_folder_stops_at_once(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *RUN, "hydra.launcher.jobs=1", f"hydra.sweep.dir={sweep}"]
    first = subprocess.Popen([NTM_REPRO, *args, "seed=0,1", "train.sequences=40000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (sweep / "0_ntm_copy_s0" / "metrics.csv").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = ntm_repro(*args, "seed=2,3")
        assert second.returncode == 2
        started = json.loads((sweep / ".lock").read_text())["started"]
        assert errors(second.stderr) == [
            f"ntm-repro: error: {sweep} is being written by pid {first.pid} on {socket.gethostname()} since {started}; "
            "wait for it to end, or write to another folder (hydra.run.dir=PATH, hydra.sweep.dir=PATH for -m)"
        ], second.stderr
        assert not (sweep / "2_ntm_copy_s2").exists() and first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    assert {summary(sweep / name)["status"] for name in ("0_ntm_copy_s0", "1_ntm_copy_s1")} == {"interrupted"}


def test_a_stale_lock_is_taken_over_and_said_so(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run_dir / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "yesterday"}))
    result = ntm_repro(*RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert f"{run_dir}: took over the stale lock of pid {dead.pid} on {socket.gethostname()} (since yesterday; that process is gone)" in result.stderr
    assert summary(run_dir)["status"] == "completed" and not (run_dir / ".lock").exists()


def test_a_finished_run_is_never_overwritten_without_resume(tmp_path, whole):
    run_dir = tmp_path / "run"
    shutil.copytree(whole, run_dir)
    before = (run_dir / "metrics.csv").read_text(), (run_dir / "summary.json").read_text()
    again = ntm_repro(*RUN, f"hydra.run.dir={run_dir}")
    assert again.returncode == 2
    assert errors(again.stderr) == [
        f"ntm-repro: error: {run_dir} already holds a completed run; add resume=true to skip it, or write to another "
        "folder (hydra.run.dir=PATH, hydra.sweep.dir=PATH for -m)"
    ], again.stderr
    assert ((run_dir / "metrics.csv").read_text(), (run_dir / "summary.json").read_text()) == before
    assert provenance(run_dir)[-1]["outcome"] == "refused"


def test_a_refused_resume_is_on_record_as_refused(tmp_path, whole):
    """Hydra rewrites .hydra/ before the run can refuse; the provenance log says what happened."""
    run_dir = tmp_path / "run"
    shutil.copytree(whole, run_dir)
    changed = ntm_repro(*RUN, "train.sequences=800", f"hydra.run.dir={run_dir}", "resume=true")
    assert changed.returncode == 2
    assert errors(changed.stderr)[0].startswith(f"ntm-repro: error: resume=true: {run_dir} holds a run of another config")
    assert "train.sequences=800" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # Hydra's record: rewritten
    last = provenance(run_dir)[-1]
    assert last["outcome"] == "refused" and "train.sequences=800" in last["argv"] and "another config" in last["reason"]


def test_an_interrupted_sweep_says_what_did_not_complete_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "model=ntm,lstm", "seed=0,1", *RUN, "hydra.launcher.jobs=1", f"hydra.sweep.dir={sweep}"]
    stopped = ntm_repro(*args, env=with_signal_at("10:SIGINT"))
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"{sweep}: 0 of 4 runs completed; not completed: 0_ntm_copy_s0 (interrupted), 1_ntm_copy_s1 (interrupted), "
        "2_lstm_copy_s0 (not started), 3_lstm_copy_s1 (not started); rerun the same command with resume=true to "
        f"continue them; ntm-repro-report {sweep} reports what there is"
    )
    resumed = ntm_repro(*args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert [summary(sweep / name)["status"] for name in ("0_ntm_copy_s0", "1_ntm_copy_s1", "2_lstm_copy_s0", "3_lstm_copy_s1")] == ["completed"] * 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["model.shifts=1"], "ntm-repro: error: model.shifts=1: give a list of distinct integer shifts, e.g. [-1, 0, 1]"),
        (["optimizer=rmsprop_graves", "optimizer.lr=nan"], "ntm-repro: error: optimizer settings rejected by ntm_repro.training.optim.GravesRMSprop: "),
    ],
)
def test_small_input_errors_are_one_line(tmp_path, args, message):
    result = ntm_repro(*TINY, *args, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 2
    assert len(errors(result.stderr)) == 1 and errors(result.stderr)[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "status, checkpoint, says",
    [("completed", True, "a completed run; add resume=true to skip it"), ("diverged", False, "a diverged run; add resume=true to skip it"),
     ("interrupted", True, "an interrupted run; add resume=true to continue it"),
     ("running", True, "an unfinished run (its process is gone); add resume=true to continue it"),
     ("failed", True, "a failed run; add resume=true to continue it"), (None, True, "a checkpointed run; add resume=true")],
)
def test_what_a_folder_holds_is_named_and_only_a_run_that_trained_nothing_is_free(tmp_path, status, checkpoint, says):
    from ntm_repro.errors import ConfigError
    from ntm_repro.training.run_folder import check_free

    if status:
        (tmp_path / "summary.json").write_text(json.dumps({"status": status}))
    if checkpoint:
        (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path} already holds {says}")):
        check_free(tmp_path, resume=False)
    check_free(tmp_path, resume=True)  # resume decides what to do with it
    (tmp_path / "last.ckpt").unlink(missing_ok=True)
    (tmp_path / "summary.json").write_text(json.dumps({"status": "failed"}))
    check_free(tmp_path, resume=False)  # failed before training: nothing to lose
