"""``ntm-repro``: train one configuration, or sweep many with ``-m`` (a Hydra app).

    ntm-repro model=ntm controller=lstm task=copy
    ntm-repro -m model=ntm,lstm seed=0-4 train.sequences=20000
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from ntm_repro.cli_args import (
    check_group_options,
    check_output_folder,
    check_keys,
    compose_for_checks,
    config_groups,
    expand_ranges,
    int_keys_of,
)
from ntm_repro.errors import ConfigError

_unsuccessful: list[str] = []


def _fail(message: str) -> None:
    print(f"ntm-repro: error: {message}", file=sys.stderr)


@hydra.main(version_base="1.3", config_path="pkg://ntm_repro.conf", config_name="config")
def _job(cfg: DictConfig) -> None:
    from ntm_repro.training.run import train  # torch and Lightning load only for real jobs

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    single = hydra_cfg.mode != RunMode.MULTIRUN  # a sweep's outcome is read by SweepOutcome
    try:
        summary = train(cfg, run_dir)
    except ConfigError as error:
        _fail(str(error))
        if single:
            sys.exit(2)
        return
    except Exception as error:  # a bug or a broken environment: one line here, the traceback in the run folder
        _fail(f"{type(error).__name__}: {error} (traceback in {run_dir}/traceback.txt)")
        if single:
            sys.exit(1)
        return
    line = f"{run_dir}: {summary['status']}"
    final = summary.get("final") or {}
    if "val/bit_errors" in final:
        line += f", val cost {final['val/cost_bits']:.4g} bits, {final['val/bit_errors']:.4g} bit errors per sequence"
    if summary.get("skipped"):
        line += " (already finished: skipped; resume=true)"
    elif summary["reason"]:
        line += f" ({summary['reason']})"
    print(line, file=sys.stderr)
    if single and summary["status"] != "completed":
        _unsuccessful.append(str(run_dir))


class SweepOutcome(Callback):
    """After a sweep, in the launching process (jobs may have run in other processes or on
    other machines): every job folder whose summary.json is missing or not completed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        for job in sorted(Path(config.hydra.sweep.dir).iterdir()):
            if not (job / ".hydra").is_dir():
                continue
            try:
                status = json.loads((job / "summary.json").read_text())["status"]
            except (OSError, ValueError, KeyError):
                status = None
            if status != "completed":
                _unsuccessful.append(str(job))


def main() -> None:
    argv = sys.argv[1:]
    try:
        groups = config_groups()  # listed once, shared by the three checks
        check_group_options(argv, groups)
        cfg = compose_for_checks(argv, groups)
        check_keys(argv, cfg, groups)
        argv = expand_ranges(argv, int_keys_of(cfg))
        check_output_folder(argv)
    except ConfigError as error:
        _fail(str(error))
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv]
    _job()
    if _unsuccessful:
        _fail(f"{len(_unsuccessful)} run(s) did not complete; see summary.json in: {', '.join(_unsuccessful)}")
        sys.exit(1)
