"""The runs behind a report as one small archive (``ntm-repro-report --archive``), so that a
report can be made again, or joined with runs of a later session, after ``multirun/`` is
gone: every file the report reads (summaries, configs, metrics, generalisation, attention
traces, provenance, Hydra's records), no checkpoints, W&B files or logs. ``ntm-repro-report``
reads an archive wherever it reads a sweep folder.

    ntm-repro-report multirun/part1 --name part1 --archive      # -> reports/part1/runs.tar.xz
    ntm-repro-report reports/part1/runs.tar.xz multirun/part2 --name both
"""

from __future__ import annotations

import atexit
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator

ARCHIVE = "runs.tar.xz"
SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar")
#: what a run folder keeps in the archive (patterns relative to it)
KEPT = ("summary.json", "config.yaml", "metrics.csv", "generalisation.csv", "generalisation_along.csv", "provenance.jsonl",
             ".hydra/overrides.yaml", ".hydra/hydra.yaml", ".hydra/config.yaml", "attention/*.npz", "attention_along/*.npz")
SWEEP_FILES = ("multirun.yaml",)  # beside the run folders


def is_archive(path: str | Path) -> bool:
    return Path(path).is_file() and str(path).endswith(SUFFIXES)


def _members(run_dirs: list[Path]) -> Iterator[tuple[Path, str]]:
    """(file, name in the archive): ``<sweep folder>/<run folder>/<file>``, each sweep
    folder's own record once."""
    sweeps = set()
    for run_dir in run_dirs:
        for pattern in KEPT:
            for path in sorted(run_dir.glob(pattern)):
                yield path, f"{run_dir.parent.name}/{run_dir.name}/{path.relative_to(run_dir)}"
        if run_dir.parent not in sweeps:
            sweeps.add(run_dir.parent)
            for name in SWEEP_FILES:
                if (run_dir.parent / name).is_file():
                    yield run_dir.parent / name, f"{run_dir.parent.name}/{name}"


def write_archive(run_dirs: list[Path], path: Path) -> Path:
    """Archive what the report reads of ``run_dirs`` (file times kept: the report's wall
    time and order come from them) as ``path`` (xz-compressed tar)."""
    names = [f"{d.parent.name}/{d.name}" for d in run_dirs]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise ValueError(f"two run folders would both be {clashes[0]} in the archive; report their sweeps separately")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    with tarfile.open(partial, "w:xz") as tar:
        for file, name in _members(run_dirs):
            tar.add(file, arcname=name, recursive=False)
    partial.replace(path)
    return path


def extract(path: Path) -> Path:
    """The archive unpacked into a temporary folder removed when the process ends (only
    regular files and folders inside it: tarfile's ``data`` filter)."""
    folder = Path(tempfile.mkdtemp(prefix="ntm-repro-runs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with tarfile.open(path) as tar:
        tar.extractall(folder, filter="data")
    return folder


def expand_archives(paths: list[str]) -> list[str]:
    """``paths`` with every archive replaced by the folder it is unpacked into."""
    return [str(extract(Path(path))) if is_archive(path) else path for path in paths]
