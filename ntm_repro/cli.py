"""``ntm-repro``: train one configuration, or sweep many with ``-m`` (a Hydra app).

    ntm-repro model=ntm controller=lstm task=copy
    ntm-repro -m model=ntm,lstm seed=0-4 train.sequences=20000
    ntm-repro -m model=ntm,ntm1 seed=0-4 seed_batch.enabled=true   # each model's 5 seeds as one batch
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
    override_value,
)
from ntm_repro.errors import ConfigError

_unsuccessful: list[str] = []
_deferred: list[tuple[DictConfig, Path]] = []  # seed_batch.enabled: the sweep's jobs, trained at its end

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
SEED_BATCH_LAUNCHER = (
    "seed_batch.enabled=true trains the seed groups in the launching process; drop the hydra/launcher "
    "override (seed_batch.jobs sets how many groups train at once) or set seed_batch.enabled=false"
)


def _fail(message: str) -> None:
    print(f"ntm-repro: error: {message}", file=sys.stderr)


@hydra.main(version_base="1.3", config_path="pkg://ntm_repro.conf", config_name="config")
def _job(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    single = hydra_cfg.mode != RunMode.MULTIRUN  # a sweep's outcome is read by SweepOutcome
    if not single and cfg.seed_batch.enabled:
        if hydra_cfg.launcher._target_ != BASIC_LAUNCHER:
            _fail(f"{run_dir}: {SEED_BATCH_LAUNCHER}")
            return
        _deferred.append((cfg, run_dir))  # trained with its seed group once every job is known
        return
    from ntm_repro.training.run import train  # torch and Lightning load only for real jobs

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
    print(outcome_line(run_dir, summary), file=sys.stderr)
    if single and summary["status"] != "completed":
        _unsuccessful.append(str(run_dir))


def outcome_line(run_dir: Path, summary: dict) -> str:
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


def train_seed_group(cfgs: list[DictConfig], run_dirs: list[Path]) -> list[str]:
    """Train one group of seeds together (in a worker process, or here); its outcome lines."""
    from ntm_repro.training.run import train_seeds

    try:
        summaries = train_seeds(cfgs, run_dirs)
    except ConfigError as error:
        return [f"ntm-repro: error: {error}"]
    except Exception as error:
        return [f"ntm-repro: error: {type(error).__name__}: {error} (traceback in {run_dirs[0]}/traceback.txt)"]
    return [outcome_line(run_dir, summary) for run_dir, summary in zip(run_dirs, summaries)]


class SweepOutcome(Callback):
    """After a sweep, in the launching process (jobs may have run in other processes or on
    other machines): every job folder whose summary.json is missing or not completed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if _deferred:  # seed_batch.enabled: every job is known now; train them by seed group
            from ntm_repro.training.seed_groups import train_groups

            for line in train_groups(_deferred, int(config.seed_batch.jobs), train_seed_group):
                print(line, file=sys.stderr)
        for job in sorted(Path(config.hydra.sweep.dir).iterdir()):
            if not (job / ".hydra").is_dir():
                continue
            try:
                status = json.loads((job / "summary.json").read_text())["status"]
            except (OSError, ValueError, KeyError):
                status = None
            if status != "completed":
                _unsuccessful.append(str(job))


def check_seed_batch(argv: list[str], cfg: DictConfig | None) -> None:
    """``seed_batch.enabled=true`` needs Hydra's basic launcher, and a positive ``seed_batch.jobs``."""
    given = override_value(argv, "seed_batch.enabled")
    enabled = given.lower() == "true" if given is not None else bool(cfg is not None and cfg.seed_batch.enabled)
    if not enabled:
        return
    if override_value(argv, "hydra/launcher") is not None:
        raise ConfigError(SEED_BATCH_LAUNCHER)
    jobs = override_value(argv, "seed_batch.jobs")
    if jobs is not None and not (jobs.isdigit() and int(jobs) >= 1):
        raise ConfigError(f"seed_batch.jobs={jobs}: give a positive number of seed groups to train at once")


def main() -> None:
    argv = sys.argv[1:]
    try:
        groups = config_groups()  # listed once, shared by the three checks
        check_group_options(argv, groups)
        cfg = compose_for_checks(argv, groups)
        check_keys(argv, cfg, groups)
        argv = expand_ranges(argv, int_keys_of(cfg))
        check_output_folder(argv)
        check_seed_batch(argv, cfg)
    except ConfigError as error:
        _fail(str(error))
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv]
    _job()
    if _unsuccessful:
        _fail(f"{len(_unsuccessful)} run(s) did not complete; see summary.json in: {', '.join(_unsuccessful)}")
        sys.exit(1)
