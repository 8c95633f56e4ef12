"""The run folder, the contract between training and reporting (DESIGN.md): resolved
``config.yaml``, ``metrics.csv``, ``generalisation.csv``, ``summary.json``, ``last.ckpt``."""

from __future__ import annotations

import csv
import functools
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

STATUSES = ("running", "completed", "diverged", "failed", "interrupted")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def write_config(run_dir: Path, cfg: DictConfig) -> None:
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def write_generalisation(run_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One row per test level: ``level`` (a length or an item count, named by ``level_name``
    in summary.json), sequences evaluated, cost in bits and bit errors per sequence, and the
    task's reference figures if it has any (e.g. ``optimal_cost_bits``)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(run_dir / "generalisation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


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
