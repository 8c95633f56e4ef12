"""``ntm-repro --help``: usage, every config group's presets (leaving out the base files
that presets build on, marked ``# base config:``, e.g. ``graves/shared``), examples, and where to look next.
``--hydra-help`` still gives Hydra's own flags."""

from __future__ import annotations

import textwrap

from ntm_repro.presets import presets

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


def help_text() -> str:
    lines = [USAGE, "presets (GROUP=PRESET):"]
    for group, options in presets().items():
        lines += textwrap.wrap(", ".join(options), 100, initial_indent=f"  {group}: ", subsequent_indent=" " * (len(group) + 4),
                               break_on_hyphens=False)
    return "\n".join(lines) + "\n\n" + EXAMPLES
