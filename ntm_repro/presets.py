"""The presets of the config groups under ``conf/`` (the package's ``ntm_repro.conf``), as
``ntm-repro --help`` lists them and ``ntm-repro-params`` counts them: every group's yaml
files, recursively, less the base files that presets build on (a line starting
:data:`BASE_MARKER`, e.g. ``graves/shared``)."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def _yaml_files(folder: Traversable, prefix: str = "") -> dict[str, Traversable]:
    """``relative name without .yaml -> file`` under ``folder``, recursively."""
    found = {}
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.name.startswith("__"):
            found.update(_yaml_files(entry, f"{prefix}{entry.name}/"))
        elif entry.name.endswith(".yaml"):
            found[prefix + entry.name[: -len(".yaml")]] = entry
    return found


BASE_MARKER = "# base config:"  # a comment line of a file the presets build on


def _is_base(file: Traversable) -> bool:
    """A base file (marked with :data:`BASE_MARKER`), not a preset to choose."""
    return any(line.startswith(BASE_MARKER) for line in file.read_text().splitlines())


def presets() -> dict[str, list[str]]:
    """Every config group (Hydra's own left out) and its presets, base files left out."""
    root = resources.files("ntm_repro.conf")
    groups = {}
    for group in sorted(entry.name for entry in root.iterdir() if entry.is_dir() and entry.name not in ("hydra", "__pycache__")):
        files = _yaml_files(root / group)
        groups[group] = sorted(name for name, file in files.items() if not _is_base(file))
    return groups
