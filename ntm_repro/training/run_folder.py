"""The run folder, the contract between training and reporting (DESIGN.md): resolved
``config.yaml``, ``metrics.csv``, ``generalisation.csv``, ``summary.json``, ``last.ckpt``,
and ``provenance.jsonl``, every command that touched the folder (Hydra rewrites ``.hydra/``
on each; this log is only appended to). Owned here: the status values, atomic writes, the
lock a writer holds, the refusal to write over a run without ``resume=true``."""

from __future__ import annotations

import csv
import datetime
import fnmatch
import functools
import io
import json
import math
import os
import platform
import socket
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from ntm_repro.errors import ConfigError


class Status(str, Enum):
    """A run's status in summary.json (a str: it compares and serialises as its value)."""

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


#: a rerun would only repeat these: resume=true skips them
FINISHED = (Status.COMPLETED, Status.DIVERGED)
LOCK = ".lock"
PROVENANCE = "provenance.jsonl"
# Override keys that change how a run is executed, resumed or logged, not what it learns:
# runs differing only in these are one configuration (the report's labels, W&B's job_type;
# shell-style patterns: logger* is the logger group and every logger.* key, hydra* likewise).
NOT_SCIENCE = (
    "threads", "resume", "train.compile", "model.engine", "train.checkpoint_every", "train.keep_checkpoints", "logger*",
    "seed_batch*", "hydra*",
)
KEPT = "checkpoints"  # checkpoints kept along the run (train.keep_checkpoints): sequences_<N>.ckpt


def is_science(key: str) -> bool:
    """Whether an override key can change what a run learns (not in :data:`NOT_SCIENCE`)."""
    return not any(fnmatch.fnmatchcase(key, pattern) for pattern in NOT_SCIENCE)


def configuration(overrides: Sequence[str]) -> list[str]:
    """The overrides that make a run's configuration: all but the seed and those that do not
    change what it learns (:func:`is_science`), sorted."""
    pairs = (override.lstrip("+~").split("=", 1) for override in overrides if "=" in override)
    return sorted(f"{key}={value}" for key, value in pairs if key != "seed" and is_science(key))


#: the command line as the user typed it, set by ``ntm-repro`` for every process it starts
COMMAND_ENV = "NTM_REPRO_COMMAND"


def read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json, or {} when there is none or it cannot be read."""
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def objective_value(run_dir: Path, name: str) -> float:
    """What a job returns to a sweeper (``objective``): the final metric ``name`` of a
    completed run's summary, NaN otherwise (a failed trial for Optuna)."""
    summary = read_summary(run_dir)
    value = (summary.get("final") or {}).get(name)
    return float(value) if summary.get("status") == Status.COMPLETED and value is not None else math.nan


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _alive(holder: Mapping[str, Any]) -> bool:
    """Whether the process that wrote a lock may still run (another host's: assume so)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def _holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _ours(holder: Mapping[str, Any]) -> bool:
    """Whether a lock's holder is this process."""
    return holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()


def _busy(run_dir: Path, holder: Mapping[str, Any]) -> ConfigError:
    return ConfigError(
        f"{run_dir} is being written by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}; "
        "wait for it to end, or write to another folder (hydra.run.dir=PATH, hydra.sweep.dir=PATH for -m)"
    )


def acquire_lock(run_dir: Path) -> str | None:
    """Hold ``run_dir``'s lock (``.lock``: host, pid, start time) for this process. A live
    holder stops us with a ConfigError naming it; a stale lock (its process gone) is taken
    over, and the line saying so is returned."""
    path = run_dir / LOCK
    note = None
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if _ours(holder):
                return note  # ours already
            if holder and _alive(holder):
                raise _busy(run_dir, holder) from None
            path.unlink(missing_ok=True)
            note = (f"{run_dir}: took over the stale lock of pid {holder.get('pid')} on {holder.get('host')} "
                    f"(since {holder.get('started')}; that process is gone)")
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": _now()}))
        return note
    raise _busy(run_dir, _holder(path))


def release_lock(run_dir: Path) -> None:
    """Give up ``run_dir``'s lock if this process holds it."""
    if _ours(_holder(run_dir / LOCK)):
        (run_dir / LOCK).unlink(missing_ok=True)


def check_free(run_dir: Path, resume: bool) -> None:
    """A ConfigError when ``run_dir`` holds a run that writing would lose: a finished or
    unfinished run (or its checkpoint) without ``resume=true``, or a live writer."""
    holder = _holder(run_dir / LOCK)
    if holder and not _ours(holder) and _alive(holder):
        raise _busy(run_dir, holder)
    if resume:
        return
    status = read_summary(run_dir).get("status")
    if status == Status.FAILED and not (run_dir / "last.ckpt").exists():
        return  # nothing trained to lose: a run that failed before training
    if status is not None or (run_dir / "last.ckpt").exists():
        kind = status or "checkpointed"
        what = "an unfinished run (its process is gone)" if status == Status.RUNNING else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} run"
        way = "skip it" if status in FINISHED else "continue it"
        raise ConfigError(
            f"{run_dir} already holds {what}; add resume=true to {way}, or write to another folder "
            "(hydra.run.dir=PATH, hydra.sweep.dir=PATH for -m)"
        )


def record_provenance(run_dir: Path, outcome: str, **extra: Any) -> None:
    """Append this invocation to ``provenance.jsonl``: command line, working folder, host,
    pid, commit, time and ``outcome`` (started, completed, refused: ..., ...)."""
    try:
        argv = json.loads(os.environ[COMMAND_ENV])
    except (KeyError, ValueError):
        argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
    entry = {
        "time": _now(), "outcome": outcome, "argv": argv, "cwd": os.getcwd(),
        "host": socket.gethostname(), "pid": os.getpid(), "commit": code_version().get("commit"), **extra,
    }
    with open(run_dir / PROVENANCE, "a") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a reader (or a run killed mid-write) never
    sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_config(run_dir: Path, cfg: DictConfig) -> None:
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


GENERALISATION, ALONG = "generalisation.csv", "generalisation_along.csv"
ATTENTION_ALONG = "attention_along"  # ntm-repro-eval --along: sequences_<N>.npz, one trace per kept checkpoint


def along_trace_path(run_dir: Path, trained: int) -> Path:
    """``attention_along/sequences_<N>.npz``: the trace of the checkpoint kept after N sequences."""
    return run_dir / ATTENTION_ALONG / f"sequences_{trained}.npz"


def write_generalisation(run_dir: Path, rows: Sequence[Mapping[str, Any]], name: str = GENERALISATION) -> None:
    """One row per test level: ``level`` (a length or an item count, named by ``level_name``
    in summary.json), sequences evaluated, cost in bits and bit errors per sequence, and the
    task's reference figures if it has any (e.g. ``optimal_cost_bits``); in ``ALONG``, one
    row per kept checkpoint and level, its ``sequences_trained`` first."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(run_dir / name, text.getvalue())


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """The commit of the checkout this package runs from (if any) and library versions,
    read once per process: every job of a sweep runs the code imported at its start, even
    if the checkout moves on meanwhile."""
    import pytorch_lightning
    import torch

    here = Path(__file__).resolve().parent
    commit = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if dirty:
            commit += "-dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    from ntm_repro import __version__

    return {
        "commit": commit,
        "ntm_repro": __version__,
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "python": platform.python_version(),
    }


def outcome_line(run_dir: Path, summary: Mapping[str, Any]) -> str:
    """``<run folder>: <status>``, the final validation figures, and why if it did not complete."""
    line = f"{run_dir}: {summary['status']}"
    final = summary.get("final") or {}
    if "val/bit_errors" in final:
        line += f", val cost {final['val/cost_bits']:.4g} bits, {final['val/bit_errors']:.4g} bit errors per sequence"
    if summary.get("skipped"):
        line += " (already finished: skipped; resume=true)"
    elif summary["reason"]:
        line += f" ({summary['reason']})"
    return line


def sweep_outcome(sweep_dir: Path) -> str | None:
    """One line on the job folders of ``sweep_dir`` that did not complete (N of M completed,
    which did not and why, what to run next), or None when all completed."""
    jobs = sorted(job for job in Path(sweep_dir).iterdir() if (job / ".hydra").is_dir()) if Path(sweep_dir).is_dir() else []
    unfinished = []
    for job in jobs:
        status = read_summary(job).get("status")
        if status != Status.COMPLETED:
            unfinished.append((job, status or "not started"))
    if not unfinished:
        return None
    listed = ", ".join(f"{job.name} ({status})" for job, status in unfinished[:6])
    more = f" and {len(unfinished) - 6} more" if len(unfinished) > 6 else ""
    line = (f"{sweep_dir}: {len(jobs) - len(unfinished)} of {len(jobs)} runs completed; not completed: {listed}{more}; "
            f"rerun the same command with resume=true to continue them; ntm-repro-report {sweep_dir} reports what there is")
    return line
