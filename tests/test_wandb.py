"""W&B logging, offline (no account, no network): ``logger=csv_wandb`` and ``logger=wandb``.

The offline runs are read back from their transaction log (``run-<id>.wandb``): a
LevelDB-style log of ``wandb.proto.wandb_internal_pb2.Record`` messages, the file that
``wandb sync`` uploads."""

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY

wandb_internal_pb2 = pytest.importorskip("wandb.proto.wandb_internal_pb2")

NTM_REPRO = shutil.which("ntm-repro")
SHORT = [*TINY, "train.sequences=32", "train.log_every=16", "train.val_every=16"]


def wandb_free_env(tmp_path: Path) -> dict[str, str]:
    """The environment without any WANDB_* setting or API key, W&B's own folders and the
    netrc it reads credentials from moved under ``tmp_path``: nothing configured, nothing leaks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home = tmp_path / "wandb_home"
    env.update(
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_DATA_DIR=str(home / "data"),
        WANDB_ARTIFACT_DIR=str(home / "artifacts"),
        NETRC=str(home / "netrc"),  # does not exist: no credentials
    )
    return env


def use_wandb_free_env(tmp_path: Path, monkeypatch) -> None:
    """:func:`wandb_free_env` for this process, for the length of a test."""
    env = wandb_free_env(tmp_path)
    for key in [k for k in os.environ if k.startswith("WANDB_") and k not in env]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def read_records(path: Path) -> list:
    """The records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then
    32 KiB blocks of chunks, each with a 7-byte header (checksum, length, type: 1 full,
    2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    if len(data) < 7:  # not written yet
        return []
    assert data[:4] == b":W&B", data[:7]
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # still being written
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending + chunk))
            pending = b""
        elif kind in (2, 3):
            pending += chunk
    return records


def offline_run(run_folder: Path, wait_s: float = 0) -> dict:
    """What one offline W&B run recorded: run metadata, config, history rows, summary, exit
    code; waiting up to ``wait_s`` for the exit record (the log is written by W&B's service
    process, which may still be writing when ``finish()`` returns)."""
    deadline = time.monotonic() + wait_s
    while True:
        run = _read_offline_run(run_folder)
        if run["exit_code"] is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def _read_offline_run(run_folder: Path, log: Path | None = None) -> dict:
    if log is None:
        (log,) = run_folder.glob("wandb/offline-run-*/run-*.wandb")
    out = {"history": [], "summary": {}, "config": {}, "exit_code": None, "run": None}
    for record in read_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"].update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            out["config"].update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            out["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            out["summary"].update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
        elif kind == "artifact":
            out.setdefault("artifacts", []).append(record.artifact)
        out.setdefault("kinds", set()).add(kind)
    return out


@pytest.mark.skipif(NTM_REPRO is None, reason="ntm-repro is not installed (pip install -e .)")
@pytest.mark.parametrize("batched", [["hydra/launcher=basic"], []], ids=["jobs", "population"])
def test_sweep_logs_one_offline_run_per_job_grouped_by_sweep(tmp_path, batched):
    result = subprocess.run(
        [NTM_REPRO, "-m", "logger=csv_wandb", "seed=0,1", *SHORT, *batched],
        cwd=tmp_path, env=wandb_free_env(tmp_path), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "wandb:" not in result.stdout + result.stderr  # silent: no banners, no sync hints
    (sweep,) = [p for p in (tmp_path / "multirun").iterdir() if p.name != "single"]
    folders = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(folders) == 2
    run_ids, job_types = set(), set()
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["status"] == "completed"
        run = offline_run(folder)
        run_ids.add(run["run"].run_id)
        assert run["run"].run_group == sweep.name
        assert run["run"].display_name == f"ntm_copy_s{summary['seed']}"
        assert run["config"]["seed"] == summary["seed"] and run["config"]["model"]["name"] == "ntm"
        train = [row for row in run["history"] if "train/cost_bits" in row]
        val = [row for row in run["history"] if "val/bit_errors" in row]
        assert train and val and all("sequences" in row for row in train + val)
        assert val[-1]["sequences"] == 32 and val[-1]["val/bit_errors"] == pytest.approx(summary["final"]["val/bit_errors"])
        assert run["summary"]["status"] == "completed"
        assert run["summary"]["num_parameters"] == summary["num_parameters"]
        assert run["summary"]["final/val/cost_bits"] == pytest.approx(summary["final"]["val/cost_bits"])
        assert run["summary"]["generalisation/nrows"] == 2  # the test lengths [2, 6], as a table
        assert run["exit_code"] == 0
        metrics = pd.read_csv(folder / "metrics.csv")  # the CSV logger still writes its metrics
        assert set(metrics["split"]) == {"train", "val"} and metrics["sequences"].max() == 32
        job_types.add(run["run"].job_type)
        assert run["config"]["hydra_choices"]["model"] == "ntm" and "experiment" in run["config"]["hydra_choices"]
    assert len(run_ids) == 2  # each job its own W&B run
    (shared,) = job_types  # the seeds of one configuration share a job_type, as the report's label
    assert shared.startswith("ntm_copy ") and len(shared) <= 64 and "seed" not in shared


def test_train_called_directly_logs_without_hydra_and_without_csv(tmp_path, monkeypatch, compose_cfg):
    """``logger=wandb`` from ``train()`` (no Hydra job, so no sweep group): a W&B run named
    after the config, and no metrics.csv."""
    use_wandb_free_env(tmp_path, monkeypatch)
    from ntm_repro.training.run import train

    summary = train(compose_cfg("logger=wandb", *SHORT[len(TINY):], "seed=3"), tmp_path / "run")
    assert summary["status"] == "completed"
    assert not (tmp_path / "run" / "metrics.csv").exists()
    run = offline_run(tmp_path / "run", wait_s=20)  # finish() returns before wandb-core has written it all
    assert run["run"].run_group == "" and run["run"].display_name == "ntm_copy_s3"
    assert any("val/cost_bits" in row for row in run["history"]) and run["exit_code"] == 0


def test_online_without_login_fails_fast_with_one_line(tmp_path, monkeypatch):
    """No API key and no network: a one-line ConfigError naming the fix, never a login
    prompt (stdin is a terminal for a person) or a network time-out."""
    use_wandb_free_env(tmp_path, monkeypatch)
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    from ntm_repro.errors import ConfigError
    from ntm_repro.training.wandb_logger import WandbLogger

    start = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        WandbLogger(save_dir=str(tmp_path / "run"), mode="online")
    assert time.monotonic() - start < 10
    assert str(raised.value) == (
        "logger.wandb.mode=online needs `wandb login` (or WANDB_API_KEY) and network; "
        "use logger.wandb.mode=offline and `wandb sync` later"
    )


def test_unknown_mode_is_a_config_error_before_wandb_starts(tmp_path):
    from ntm_repro.errors import ConfigError
    from ntm_repro.training.wandb_logger import WandbLogger

    with pytest.raises(ConfigError, match=r"^logger.wandb.mode='offlne': unknown; choose one of offline, online, disabled$"):
        WandbLogger(save_dir=str(tmp_path), mode="offlne")


def test_wandb_is_not_imported_when_the_command_starts():
    code = "import sys, ntm_repro.cli; sys.exit('wandb' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_the_sweep_group_is_read_from_the_run_folder_outside_hydra(tmp_path):
    """A seed group trained in a worker process has no Hydra context: the group comes from
    the run folder's own Hydra record."""
    from ntm_repro.training.wandb_logger import sweep_group

    job = tmp_path / "my_sweep" / "0_ntm_copy_s0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    assert sweep_group(str(job)) == "my_sweep"
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: RUN\n")
    assert sweep_group(str(job)) is None
    assert sweep_group(str(tmp_path)) is None  # not a Hydra job folder


def test_job_type_is_the_configuration_without_the_seed_cut_to_wandbs_limit():
    from ntm_repro.training.wandb_logger import job_type

    config = {"model": {"name": "ntm1"}, "task": {"name": "copy"}}
    assert job_type(config, ["model=ntm1", "seed=3", "threads=2", "hydra.sweep.dir=x"]) == "ntm1_copy"
    short = job_type(config, ["seed=1", "optimizer.lr=1e-3", "experiment=structured/copy"])
    assert short == "ntm1_copy experiment=structured/copy optimizer.lr=1e-3"  # sorted, whatever the order typed
    long = [f"setting.number{i}=value{i}" for i in range(6)]
    cut = job_type(config, ["seed=0", *long])
    assert len(cut) == 64 and cut != job_type(config, ["seed=0", *long[:-1], "setting.number5=other"])
    assert job_type({}, ["seed=0"]) is None  # no model or task in the config: W&B's default


@pytest.mark.skipif(NTM_REPRO is None, reason="ntm-repro is not installed (pip install -e .)")
def test_resume_continues_the_same_wandb_run_and_a_completed_run_logs_its_checkpoint(tmp_path):
    command = [NTM_REPRO, "logger=wandb", *SHORT, "train.sequences=64", "train.checkpoint_every=8", f"hydra.run.dir={tmp_path / 'run'}"]
    env = wandb_free_env(tmp_path)
    stopped = subprocess.run(command, cwd=tmp_path, env={**env, "NTM_REPRO_SIGNAL_AT": "3:SIGINT"}, capture_output=True, text=True,
                             timeout=300, stdin=subprocess.DEVNULL)
    assert stopped.returncode == 130, stopped.stderr
    resumed = subprocess.run([*command, "resume=true"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr
    logs = sorted((tmp_path / "run").glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 2  # one offline log per attempt, `wandb sync` joins them: the same run id
    first, second = (_read_offline_run(tmp_path / "run", log) for log in logs)
    assert first["run"].run_id == second["run"].run_id == (tmp_path / "run" / "wandb_id").read_text()
    assert max(row.get("sequences", 0) for row in first["history"]) < 64 == max(row.get("sequences", 0) for row in second["history"])
    models = [[a for a in run.get("artifacts", []) if a.type == "model"] for run in (first, second)]  # tables are artifacts too
    assert not models[0]  # interrupted: no final checkpoint
    (artifact,) = models[1]
    assert "final" in artifact.aliases
    assert [entry.path for entry in artifact.manifest.contents] == ["last.ckpt"]
    assert {"output_raw", "stats"} <= second["kinds"]  # the console and system metrics, on by default


def test_checkpoint_console_and_system_metrics_can_be_switched_off(tmp_path, monkeypatch, compose_cfg):
    use_wandb_free_env(tmp_path, monkeypatch)
    from ntm_repro.training.run import train

    off = ["logger.wandb.log_checkpoint=false", "logger.wandb.system_metrics=false", "logger.wandb.console=false"]
    assert train(compose_cfg("logger=wandb", *SHORT[len(TINY):], *off), tmp_path / "run")["status"] == "completed"
    run = offline_run(tmp_path / "run", wait_s=20)
    assert not [a for a in run.get("artifacts", []) if a.type == "model"]
    assert not {"output_raw", "stats"} & run["kinds"], run["kinds"]


def test_the_logger_without_wandb_installed_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    """A preset naming the logger in a config file (not on the command line): the same line when it is built."""
    from ntm_repro.errors import ConfigError
    from ntm_repro.training.wandb_logger import WandbLogger

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ConfigError, match=r"^logger.wandb needs the wandb extra; install it with pip install -e '\.\[wandb\]'$"):
        WandbLogger(save_dir=str(tmp_path))
