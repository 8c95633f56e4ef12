"""``ntm-repro``: train one configuration, or sweep many with ``-m`` (a Hydra app: every
Hydra flag works, e.g. ``--config-dir DIR``, ``-cn``, ``--info``, ``-sc install=bash``).

    ntm-repro model=ntm controller=lstm task=copy
    ntm-repro -m model=ntm,lstm seed=0-4 train.sequences=20000   # each model's 5 seeds as one population
    ntm-repro -m model=ntm seed=0-4 hydra/launcher=basic         # each seed alone, one after another
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ntm_repro.cli_args import check_extras, expand_ranges, hydra_error_line
from ntm_repro.console import say
from ntm_repro.errors import ConfigError, RunInterrupted
from ntm_repro.training.run_folder import COMMAND_ENV, Status, objective_value, outcome_line, sweep_outcome

_exit_status: list[int] = []  # a job's or the sweep's reason to exit non-zero (the largest wins)


def _fail(message: str) -> None:
    for line in message.splitlines():
        say(f"ntm-repro: error: {line}")


@hydra.main(version_base="1.3", config_path="pkg://ntm_repro.conf", config_name="config")
def _job(cfg: DictConfig) -> float | None:
    """One job: a population of one seed (a single run, or a job of a launcher that runs
    jobs one by one, e.g. ``hydra/launcher=basic`` or ``joblib``). Returns the run's
    ``objective`` for a sweeper (NaN if it did not complete; None if it never started)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    from ntm_repro.training.run import train  # torch and Lightning load only for real jobs

    try:
        summary = train(cfg, run_dir)
    except ConfigError as error:  # the command's exit status: 2 (a sweep's other jobs go on)
        _fail(str(error))
        _exit_status.append(2)
        return
    except RunInterrupted as interrupt:  # one line per run, and the shell's code for the signal
        say(str(interrupt))
        sys.exit(128 + interrupt.signum)
    except Exception as error:  # a bug or a broken environment: one line here, the traceback in the run folder
        _fail(f"{type(error).__name__}: {error} (traceback in {run_dir}/traceback.txt)")
        _exit_status.append(1)
        return
    say(outcome_line(run_dir, summary))
    if summary["status"] != Status.COMPLETED:
        _exit_status.append(1)
    return objective_value(run_dir, str(cfg.objective))


class SweepOutcome(Callback):
    """After a sweep, in the launching process (jobs may have run in other processes or on
    other machines): one line on the jobs whose summary.json is missing or not completed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        line = sweep_outcome(Path(config.hydra.sweep.dir))
        if line:
            _exit_status.append(1)
            _fail(line)


def register_launcher() -> None:
    """Hydra finds plugins by scanning the ``hydra_plugins`` folders on ``sys.path``; an
    editable install maps ours there by an import hook the scan cannot see, so it is
    registered by hand too (Hydra's public ``Plugins.register``)."""
    from hydra.core.plugins import Plugins

    import hydra_plugins.ntm_repro as plugin

    Plugins.instance().register(plugin.PopulationLauncher)


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--version"]:  # the project's version, not Hydra's
        from ntm_repro import __version__

        print(f"ntm-repro {__version__}")
        return
    if "--help" in argv or "-h" in argv:  # ours: usage and the presets (--hydra-help: Hydra's)
        from ntm_repro.cli_help import help_text

        print(help_text(), end="")
        return
    os.environ[COMMAND_ENV] = json.dumps(["ntm-repro", *argv])  # for each run's provenance.jsonl, in every process
    register_launcher()
    try:
        check_extras(argv)
        argv = expand_ranges(argv)
    except ConfigError as error:
        _fail(str(error))
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv]
    full_errors = bool(os.environ.get("HYDRA_FULL_ERROR"))  # the user asked for Hydra's own reports
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing: the errors below get one line
    try:
        _job()
    except ConfigError as error:  # from a callback or the launcher, before any job trained
        _fail(str(error))
        sys.exit(2)
    except RunInterrupted as interrupt:  # a sweep: the populations launcher's summary line
        say(str(interrupt))
        sys.exit(128 + interrupt.signum)
    except KeyboardInterrupt:  # outside training: nothing was being written
        say("ntm-repro: interrupted")
        sys.exit(128 + signal.SIGINT)
    except Exception as error:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if full_errors:
            raise
        if isinstance(error.__cause__, ConfigError):  # e.g. a launcher setting, through Hydra's instantiate
            _fail(str(error.__cause__))
            sys.exit(2)
        if isinstance(error, (HydraException, OmegaConfBaseException)):  # parsing or composing the config
            _fail(hydra_error_line(error, argv))
            sys.exit(2)
        if isinstance(error, OSError):  # Hydra could not create or write a run folder
            where = error.filename or "the run folder"
            _fail(f"cannot write runs to {where}: {error.strerror or error}; choose another folder with hydra.run.dir=PATH "
                  "(hydra.sweep.dir=PATH for -m)")
            sys.exit(2)
        raise
    finally:
        if not full_errors:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    if _exit_status:
        sys.exit(max(_exit_status))
