"""``ntm-repro --help``: usage, every config group's presets (leaving out the base files
that presets build on, marked ``# base config:``, e.g. ``graves/shared``), examples, and where to look next.
``--hydra-help`` still gives Hydra's own flags."""

from __future__ import annotations

import textwrap
from importlib import resources
from importlib.resources.abc import Traversable

USAGE = """\
usage: ntm-repro [GROUP=PRESET ...] [KEY=VALUE ...]    train one configuration
       ntm-repro -m KEY=A,B ... [seed=0-4]             sweep: a configuration's seeds train together
       ntm-repro --version | --help | --hydra-help | --cfg job [OVERRIDES]

Train Neural Turing Machines and their baselines on the papers' algorithmic tasks; each run
writes a folder (summary.json, metrics.csv, generalisation.csv, last.ckpt) under multirun/.
"""

EXAMPLES = """\
examples:
  ntm-repro model=ntm controller=lstm task=copy train.sequences=20000
  ntm-repro -m model=ntm,ntm1,ntm2,ntm3 task=recall seed=0-4
  ntm-repro -m experiment=graves/copy_lstm_ntm seed=0-4
  ntm-repro-report multirun/<sweep>        # figures, statistics and verdicts as a PDF
  ntm-repro-claims                         # the papers' claims and the commands that test them

Any config key can be overridden (KEY=VALUE; ++KEY=VALUE adds one); `ntm-repro --cfg job
[OVERRIDES]` prints the composed config, `--hydra-help` Hydra's own flags.
"""


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


def help_text() -> str:
    lines = [USAGE, "presets (GROUP=PRESET):"]
    for group, options in presets().items():
        lines += textwrap.wrap(", ".join(options), 100, initial_indent=f"  {group}: ", subsequent_indent=" " * (len(group) + 4),
                               break_on_hyphens=False)
    return "\n".join(lines) + "\n\n" + EXAMPLES
