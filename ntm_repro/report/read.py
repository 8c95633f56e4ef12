"""Run folders -> tidy frames: one row per run, per run x logged point, per run x test
level, and one row per folder skipped or read with a caveat, with its reason."""

from __future__ import annotations

import functools
import io
import json
import math
import os
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ntm_repro.report.archive import expand_archives
from ntm_repro.training.run_folder import ALONG, ATTENTION_ALONG, GENERALISATION, PROVENANCE, Status, is_science

RUN_FILES = ("summary.json", "config.yaml", "metrics.csv")
METRIC_COLUMNS = ("step", "sequences", "split", "cost_bits", "bit_errors")
LEVEL_COLUMNS = ("level", "cost_bits", "bit_errors")
ALONG_COLUMNS = ("sequences_trained", *LEVEL_COLUMNS)
TRACE_ARRAYS = ("inputs", "targets", "mask", "outputs")  # an attention trace has at least these
NOT_CONVERGED = (Status.DIVERGED, Status.FAILED)  # statuses that count as not converged, whatever the metrics say
IDENTITY = {"model": "model.name", "task": "task.name", "seed": "seed"}  # column -> config key


class NoRuns(Exception):
    """A path that does not exist or holds no run folder (a one-line message)."""


@dataclass
class Reading:
    """Everything the report draws on. ``runs`` has one row per run read (run, model, task,
    seed, variant, label, status, level_name, commit, started, spans: (start, end) of each time it
    trained, budget: train.sequences
    or NaN, attention traces, memory_max: the largest |M| at the end of any trace,
    Hydra's overrides and choices, config, command); ``metrics``, ``generalisation`` and
    ``along`` (generalisation of the checkpoints kept along the run, by ``sequences_trained``)
    carry run, task, model, label and seed on every row; ``issues`` lists run, status,
    handling (skipped / not converged / read) and reason."""

    runs: pd.DataFrame
    metrics: pd.DataFrame
    generalisation: pd.DataFrame
    issues: pd.DataFrame
    commands: list[str]
    folders_found: int
    varying: list[str]
    along: pd.DataFrame = field(default_factory=pd.DataFrame)
    folders: list[Path] = field(default_factory=list)  # every run folder found (read or skipped)


def find_run_dirs(paths: list[str]) -> list[Path]:
    """Every folder under ``paths`` holding a run file, outside hidden folders (``.hydra``)
    and outside other run folders (e.g. a logger's own ``wandb/.../config.yaml``)."""
    found: set[Path] = set()
    for given in paths:
        root = Path(given)
        if not given or not root.exists():
            raise NoRuns(f"{given!r}: no such file or directory")
        here = {
            hit.parent.resolve()
            for name in RUN_FILES
            for hit in root.rglob(name)
            if not any(part.startswith(".") for part in hit.relative_to(root).parts)
        }
        if not here:
            raise NoRuns(f"{given}: no run folders in it (none holds {', '.join(RUN_FILES)})")
        found |= here
    return sorted(d for d in found if not any(parent in found for parent in d.parents))  # not a run's own subfolders


def read_tolerant_csv(path: Path, required: tuple[str, ...]) -> tuple[pd.DataFrame, list[str]]:
    """A CSV written row by row: drop a partial last line (a run in progress or killed) and
    rows whose numbers do not parse, saying so. Raises ValueError if nothing usable is left."""
    notes = []
    text = path.read_text(errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        notes.append(f"{path.name}: dropped a partial last line")
    bad: list[list[str]] = []
    try:
        frame = pd.read_csv(io.StringIO(text), engine="python", on_bad_lines=lambda line: bad.append(line))
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise ValueError(f"{path.name} unreadable ({str(error).splitlines()[0]})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path.name} unreadable (no column {', '.join(missing)})")
    numeric = [c for c in frame.columns if c not in ("split", "in_training_range", "level")]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    keys = [c for c in ("step", "sequences", "level") if c in frame.columns]
    parsed = frame.dropna(subset=keys)
    dropped = len(bad) + len(frame) - len(parsed)
    if dropped:
        notes.append(f"{path.name}: dropped {dropped} malformed row(s)")
    if parsed.empty:
        raise ValueError(f"{path.name} has no complete row")
    return parsed.reset_index(drop=True), notes


def _load_yaml(path: Path) -> dict[str, Any] | None:
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # missing, unparsable or not a mapping: the caller says what is lacking
        return None


def _lookup(tree: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _budget(config: dict[str, Any] | None) -> float:
    """The training budget in sequences (``train.sequences``), NaN if the config lacks it."""
    value = _lookup(config, "train.sequences")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def _read_summary(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The summary and, if it is missing or unreadable, why."""
    path = run_dir / "summary.json"
    if not path.exists():
        return {}, "no summary.json (killed before writing it?)"
    try:
        summary = json.loads(path.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
        return summary, None
    except (ValueError, OSError) as error:
        return {}, f"summary.json unreadable ({type(error).__name__}: {str(error).splitlines()[0]})"


def _overrides(run_dir: Path) -> dict[str, str]:
    """This job's command-line overrides (Hydra's record), key -> value."""
    listed = _load_yaml(run_dir / ".hydra" / "overrides.yaml") or []
    pairs = (item.split("=", 1) for item in listed if isinstance(item, str) and "=" in item)
    return {key.lstrip("+~"): value for key, value in pairs}


@functools.lru_cache(maxsize=None)
def _command(record_file: Path) -> str | None:
    """The command line in Hydra's record: a sweep's ``multirun.yaml`` or a single job's
    ``.hydra/hydra.yaml``."""
    sweep = record_file.name == "multirun.yaml"
    overrides = _lookup(_load_yaml(record_file), "hydra.overrides")
    if not isinstance(overrides, dict):
        return None
    hydra_args = [a for a in overrides.get("hydra") or [] if not a.startswith("hydra.mode=")]
    words = ["ntm-repro", *(["-m"] if sweep else []), *(overrides.get("task") or []), *hydra_args]
    return " ".join(shlex.quote(str(word)) for word in words)


def _provenance(run_dir: Path) -> list[dict[str, Any]] | None:
    """provenance.jsonl's entries (unreadable lines skipped), or None for a folder written
    before the log existed."""
    path = run_dir / PROVENANCE
    if not path.is_file():
        return None
    entries = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _provenance_commands(entries: list[dict[str, Any]] | None) -> list[str] | None:
    """The command lines that trained in a folder (its log's ``started`` entries, refused
    ones left out), or None without a log."""
    if entries is None:
        return None
    return [" ".join(shlex.quote(str(word)) for word in entry["argv"])
            for entry in entries if entry.get("outcome") == "started" and isinstance(entry.get("argv"), list)]


def _local_time(text: Any) -> datetime | None:
    """A log's ISO time as a naive local time (as file times are read), None if it is not one."""
    try:
        return datetime.fromisoformat(str(text)).astimezone().replace(tzinfo=None)
    except ValueError:
        return None


def _training_spans(entries: list[dict[str, Any]] | None, last_write: datetime | pd.Timestamp) -> tuple:
    """When a run trained: from each ``started`` entry of its log to the outcome that follows it
    (a start with none, e.g. a killed process, ends at the run's last write if that came
    before the next start). Times come from the log, not from files, so a copied folder
    keeps them."""
    spans, start = [], None
    for entry in entries or ():
        time = _local_time(entry.get("time"))
        if time is None:
            continue
        if entry.get("outcome") == "started":
            if start is not None and not pd.isna(last_write) and start < last_write <= time:
                spans.append((start, last_write))
            start = time
        elif start is not None:
            spans.append((start, time))
            start = None
    if start is not None and not pd.isna(last_write) and start < last_write:
        spans.append((start, last_write))
    return tuple(spans)


def _traces(run_dir: Path, folder: str = "attention") -> tuple[tuple[str, ...], list[str]]:
    """The readable attention traces of a run in ``folder``, and a note for each unreadable
    one; ``attention_along/sequences_<N>.npz`` in the order of N."""
    traces, notes = [], []
    found = sorted((run_dir / folder).glob("*.npz"), key=lambda path: (len(path.stem), path.stem))  # sequences_9000 < _10000
    for path in found:
        try:
            with np.load(path) as npz:
                missing = [key for key in TRACE_ARRAYS if key not in npz.files]
            problem = f"no {', '.join(missing)}" if missing else None
        except Exception as error:  # truncated, not an npz archive, ...: never stops the report
            problem = f"unreadable: {type(error).__name__}"
        if problem:
            notes.append(f"{folder}/{path.name} not drawn ({problem})")
        else:
            traces.append(str(path))
    return tuple(traces), notes


def trace_memory_max(traces: tuple[str, ...]) -> float:
    """The largest |M| after the last step of any of a run's attention traces (their
    ``memory`` arrays), whatever their order; NaN without a trace with memory (e.g. the
    LSTM baseline's)."""
    largest = math.nan
    for trace in traces:
        with np.load(trace) as npz:
            if "memory" in npz.files:
                largest = np.fmax(largest, float(np.abs(npz["memory"]).max()))
    return float(largest)


def _modified(path: Path) -> datetime | pd.Timestamp:
    """When ``path`` was last written (NaT if it does not exist)."""
    return datetime.fromtimestamp(path.stat().st_mtime) if path.exists() else pd.NaT


def _optional_csv(path: Path, columns: tuple[str, ...], caveats: list[str]) -> pd.DataFrame:
    """A table a run may have (generalisation, along): empty if absent, a caveat if unreadable."""
    if not path.exists():
        return pd.DataFrame()
    try:
        frame, notes = read_tolerant_csv(path, columns)
        caveats += notes
        return frame
    except (OSError, ValueError) as error:
        caveats.append(str(error))
        return pd.DataFrame()


def _read_run(
    run_dir: Path, name: str
) -> tuple[dict[str, Any] | None, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any] | None]:
    """One folder -> (run row or None if skipped, metrics, generalisation, along, issue or None)."""
    summary, summary_problem = _read_summary(run_dir)
    config = _load_yaml(run_dir / "config.yaml")
    caveats = [summary_problem] if summary_problem else []
    identity = {key: _lookup(config, path) for key, path in IDENTITY.items()}
    if None in identity.values():
        caveats.append("config.yaml missing or unreadable")
        identity = {key: identity[key] if identity[key] is not None else summary.get(key) for key in IDENTITY}
    status = summary.get("status", "unknown")
    issue = {"run": name, "status": status}
    if None in identity.values():
        reason = "; ".join(caveats + ["model, task or seed unknown"])
        return None, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {**issue, "handling": "skipped", "reason": reason}

    try:
        metrics, notes = read_tolerant_csv(run_dir / "metrics.csv", METRIC_COLUMNS)
        caveats += notes
        if not (metrics["split"] == "val").any():
            raise ValueError("metrics.csv has no validation point yet")
    except (OSError, ValueError) as error:
        metrics = pd.DataFrame()
        problem = "no metrics.csv" if isinstance(error, FileNotFoundError) else str(error)
        caveats.append(problem)
        if status not in NOT_CONVERGED:
            return None, metrics, pd.DataFrame(), pd.DataFrame(), {**issue, "handling": "skipped", "reason": "; ".join(caveats)}
    generalisation = _optional_csv(run_dir / GENERALISATION, LEVEL_COLUMNS, caveats)
    along = _optional_csv(run_dir / ALONG, ALONG_COLUMNS, caveats)

    traces, notes = _traces(run_dir)
    along_traces, along_notes = _traces(run_dir, ATTENTION_ALONG)
    caveats += notes + along_notes
    handling = "read"
    if status in NOT_CONVERGED:
        handling = "not converged"
        caveats.insert(0, f"{status}: {summary.get('reason') or 'no reason given'}")
    elif status in (Status.RUNNING, Status.INTERRUPTED, "unknown"):
        caveats.append(f"status {status}: judged on the points logged so far")
    config_file, sweep_record = run_dir / "config.yaml", run_dir.parent / "multirun.yaml"
    provenance = _provenance(run_dir)
    # when it trained, from the provenance log; without one, the config's write (at the start) to the summary's last
    spans = _training_spans(provenance, _modified(run_dir / "metrics.csv")) or (
        (_modified(config_file), _modified(run_dir / "summary.json")),)
    run = {
        "run": name,
        **identity,
        "status": status,
        "level_name": summary.get("level_name", "level"),
        "commit": (summary.get("versions") or {}).get("commit"),
        "num_parameters": summary.get("num_parameters"),
        "budget": _budget(config),
        "started": spans[0][0],
        "spans": spans,
        "attention": traces,
        "attention_along": along_traces,  # one per kept checkpoint (ntm-repro-eval --along), in training order
        "memory_max": trace_memory_max(traces),
        "overrides": _overrides(run_dir),
        "choices": _lookup(_load_yaml(run_dir / ".hydra" / "hydra.yaml"), "hydra.runtime.choices") or {},
        "config": config or {},
        "commands": _provenance_commands(provenance)
        or [_command(sweep_record if sweep_record.exists() else run_dir / ".hydra" / "hydra.yaml")],
    }
    issue = {**issue, "handling": handling, "reason": "; ".join(caveats)} if caveats else None
    return run, metrics.assign(run=name), generalisation.assign(run=name), along.assign(run=name), issue


def resolved_value(run: pd.Series, key: str) -> str:
    """A run's value of an override key, whether or not its command line set it."""
    if key in run["overrides"]:
        return run["overrides"][key]
    if key in run["choices"]:
        choice = run["choices"][key]
        return "none" if choice is None else str(choice)  # e.g. no experiment preset
    value = _lookup(run["config"], key)
    return "default" if value is None or isinstance(value, dict) else str(value)  # a group without Hydra's record


def tells_apart(key: str) -> bool:
    """Whether an override key can split runs into labels: not seed, model or task (columns
    of their own) and :func:`is_science`."""
    return key not in IDENTITY and is_science(key)


def add_variants(runs: pd.DataFrame) -> list[str]:
    """Label each run by the override keys that may tell runs apart (:func:`tells_apart`)
    and whose values differ between runs; returns those keys."""
    keys = sorted({key for overrides in runs["overrides"] for key in overrides if tells_apart(key)})
    values = {key: runs.apply(resolved_value, axis=1, key=key) for key in keys}
    varying = [key for key in keys if values[key].nunique() > 1]
    runs["variant"] = [" ".join(f"{key}={values[key].iloc[i]}" for key in varying) for i in range(len(runs))]
    runs["label"] = [f"{m} ({v})" if v else m for m, v in zip(runs["model"], runs["variant"])]
    return varying


def _names(run_dirs: list[Path]) -> list[str]:
    """Short names: each folder relative to the parent the folders share, or ``<sweep>/<run>``
    when that is longer and still tells them apart (e.g. a sweep folder beside an archive's)."""
    base = Path(os.path.commonpath([d.parent for d in run_dirs]))
    names = [str(d.relative_to(base)) for d in run_dirs]
    short = [f"{d.parent.name}/{d.name}" for d in run_dirs]
    deep = any(len(Path(name).parts) > 2 for name in names)
    return short if deep and len(set(short)) == len(short) else names


def _stack(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    """The non-empty frames one below the other (an empty frame with ``columns`` if none)."""
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*columns, "run"])


def read_runs(paths: list[str]) -> Reading:
    """Read every run folder under ``paths`` (sweep or run folders, or archives of the runs
    behind a report: :mod:`~ntm_repro.report.archive`); raises :class:`NoRuns` if a path
    holds none."""
    run_dirs = find_run_dirs(expand_archives(paths))
    rows, metrics, levels, alongs, issues = [], [], [], [], []
    for run_dir, name in zip(run_dirs, _names(run_dirs)):
        run, run_metrics, run_levels, run_along, issue = _read_run(run_dir, name)
        issues += [issue] if issue else []
        if run is not None:
            rows.append(run)
            metrics.append(run_metrics)
            levels.append(run_levels)
            alongs.append(run_along)
    issue_frame = pd.DataFrame(issues, columns=["run", "status", "handling", "reason"])
    if not rows:
        first = issues[0]
        raise NoRuns(
            f"{', '.join(paths)}: no readable run; {len(issues)} folder(s) skipped, e.g. {first['run']}: {first['reason']}"
        )
    runs = pd.DataFrame(rows).sort_values(["task", "model", "seed", "run"], ignore_index=True)
    varying = add_variants(runs)
    tags = runs[["run", "task", "model", "label", "seed"]]
    return Reading(
        runs=runs,
        metrics=_stack(metrics, METRIC_COLUMNS).merge(tags, on="run"),
        generalisation=_stack(levels, LEVEL_COLUMNS).merge(tags, on="run"),
        issues=issue_frame,
        commands=list(dict.fromkeys(c for listed in runs.sort_values("started")["commands"] for c in listed if c)),
        folders_found=len(run_dirs),
        varying=varying,
        along=_stack(alongs, ALONG_COLUMNS).merge(tags, on="run"),
        folders=run_dirs,
    )
