"""The populations launcher, ``ntm-repro -m``'s default (``hydra/launcher=populations``): a
Hydra launcher that composes every job of a sweep first (so a bad job is refused, in one line,
before any job trains, whatever its place in the sweep), groups the jobs whose configs differ
only in ``seed`` into populations, and trains each population as one batched computation
(:func:`ntm_repro.training.run.train_seeds`; every seed still writes its own run folder as if
it had trained alone), ``hydra.launcher.jobs`` populations at a time in worker processes.

    ntm-repro -m model=ntm,ntm1 seed=0-4                       # 2 populations of 5, both at once
    ntm-repro -m model=ntm seed=0-4 hydra.launcher.jobs=1      # one population after another
    ntm-repro -m model=ntm seed=0-4 hydra/launcher=basic       # Hydra's own: each seed alone

Hydra loads it from ``hydra_plugins.ntm_repro`` (the package's plugin entry); torch loads
only in the processes that train.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from ntm_repro.cli_args import hydra_error_line
from ntm_repro.console import say
from ntm_repro.errors import ConfigError, RunInterrupted
from ntm_repro.training.run_folder import acquire_lock, check_free, objective_value, outcome_line, release_lock, sweep_outcome

log = logging.getLogger(__name__)

Run = tuple[DictConfig, Path]
#: what trains one population: (configs, run folders) -> one outcome line per run
PopulationTrainer = Callable[[list[DictConfig], list[Path]], list[str]]


def populations(runs: list[Run]) -> list[list[Run]]:
    """Runs whose configs differ only in ``seed``, in order of first appearance, each
    population sorted by seed."""
    groups: dict[str, list[Run]] = {}
    for cfg, run_dir in runs:
        config = OmegaConf.to_container(cfg, resolve=True)
        config.pop("seed")
        groups.setdefault(json.dumps(config, sort_keys=True, default=str), []).append((cfg, run_dir))
    return [sorted(group, key=lambda run: run[0].seed) for group in groups.values()]


def default_jobs(threads: int) -> int:
    """Populations at once when ``hydra.launcher.jobs`` is null: one per ``threads`` cores."""
    return max(1, (os.cpu_count() or 1) // max(1, threads))


def train_all(groups: list[list[Run]], jobs: int, train: PopulationTrainer, submitit: dict | None = None,
              folder: Path | None = None) -> Iterator[str]:
    """Train every population with ``train`` (a module-level function: workers import it),
    ``jobs`` at a time in worker processes (here, for one at a time), or, given
    ``submitit`` parameters, as one submitit job array with its files in ``folder`` (a task
    per population); yields each population's outcome lines as it ends."""
    work = [([cfg for cfg, _ in group], [run_dir for _, run_dir in group]) for group in groups]
    if submitit is not None:
        yield from _submit(work, jobs, train, dict(submitit), folder or Path("."))
        return
    if jobs <= 1 or len(work) == 1:
        for cfgs, dirs in work:
            yield from train(cfgs, dirs)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=min(jobs, len(work)), backend="loky", return_as="generator_unordered")
    for lines in parallel(delayed(train)(cfgs, dirs) for cfgs, dirs in work):
        yield from lines


def _submit(work: list[tuple[list[DictConfig], list[Path]]], jobs: int, train: PopulationTrainer, parameters: dict,
            folder: Path) -> Iterator[str]:
    """The populations as one submitit job array (SLURM, or local processes for a check),
    at most ``jobs`` tasks at once; waits for each task in turn."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("hydra.launcher.submitit: submitting needs the slurm extra; install it with pip install -e '.[slurm]'") from None

    executor = submitit.AutoExecutor(folder=str(folder / ".submitit" / "%j"), cluster=parameters.pop("cluster", None))
    executor.update_parameters(slurm_array_parallelism=jobs, **parameters)
    submitted = executor.map_array(train, [cfgs for cfgs, _ in work], [dirs for _, dirs in work])
    for job, (_, dirs) in zip(submitted, work):
        try:
            yield from job.result()
        except Exception as error:  # the task itself died (killed, out of memory, timed out)
            yield f"ntm-repro: error: submitit job {job.job_id} ({dirs[0].parent}): {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def train_population(cfgs: list[DictConfig], run_dirs: list[Path]) -> list[str]:
    """Train one population (in a worker process, or here); its outcome lines."""
    from ntm_repro.training.run import train_seeds
    from ntm_repro.training.signals import stop_requested

    if stop_requested() is not None:  # the sweep was interrupted before this population began
        return [f"{run_dir}: not started (the sweep was interrupted)" for run_dir in run_dirs]
    try:
        summaries = train_seeds(cfgs, run_dirs)
    except RunInterrupted as interrupt:
        return str(interrupt).splitlines()
    except ConfigError as error:
        return [f"ntm-repro: error: {error}"]
    except Exception as error:
        return [f"ntm-repro: error: {type(error).__name__}: {error} (traceback in {run_dirs[0]}/traceback.txt)"]
    return [outcome_line(run_dir, summary) for run_dir, summary in zip(run_dirs, summaries)]


@contextlib.contextmanager
def _stop_file(path: Path) -> Iterator[list[int]]:
    """While the populations train: SIGINT or SIGTERM to this process (or any population's)
    writes ``path``, which stops every population at its next step boundary and any not
    yet begun before it begins (:mod:`ntm_repro.training.signals`); yields a list that holds
    the signal's number once one came. A second signal stops this process at once."""
    from ntm_repro.training.signals import STOP_FILE_ENV, request_stop, stop_requested

    path.unlink(missing_ok=True)
    stopped: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if stopped:
            raise KeyboardInterrupt
        stopped.append(signum)
        request_stop(signum)

    os.environ[STOP_FILE_ENV] = str(path)  # inherited by the worker processes started from here
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        requested = stop_requested()  # a population's process may have had the signal alone
        if requested is not None and not stopped:
            stopped.append(requested)
        os.environ.pop(STOP_FILE_ENV, None)
        path.unlink(missing_ok=True)


class PopulationLauncher(Launcher):
    """Hydra's Launcher interface (``setup``, ``launch``) over populations of seeds."""

    def __init__(self, jobs: int | None = None, submitit: Any = None) -> None:
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise ConfigError(f"hydra.launcher.jobs={jobs!r}: give a positive number of populations to train at once (or null: one per core)")
        self.jobs = jobs
        self.submitit = OmegaConf.to_container(submitit, resolve=True) if isinstance(submitit, DictConfig) else submitit
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context  # jobs train here, not through task_function

    def _compose(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[DictConfig]:
        """Every job's config; a ConfigError with one line per job that cannot be composed."""
        configs, problems = [], []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            except Exception as error:  # Hydra's and OmegaConf's composition errors
                problems.append(f"job {idx} ({' '.join(filter_overrides(overrides))}): {hydra_error_line(error, overrides)}")
                continue
            with open_dict(cfg):
                cfg.hydra.job.id = idx
                cfg.hydra.job.num = idx
            configs.append(cfg)
        if problems:
            raise ConfigError("\n".join(problems))
        return configs

    @staticmethod
    def _check_folders(configs: list[DictConfig]) -> None:
        """Before Hydra writes anything into the jobs' folders (its .hydra/ record): a
        ConfigError with one line per folder that holds a run (without resume=true) or
        that another process is writing."""
        problems = []
        for cfg in configs:
            try:
                check_free(Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir), bool(cfg.get("resume")))
            except ConfigError as error:
                problems.append(f"job {cfg.hydra.job.num}: {error}")
        if problems:
            raise ConfigError("\n".join(problems))

    def _prepare(self, cfg: DictConfig) -> tuple[JobReturn, Run]:
        """Hydra's job set-up for ``cfg`` (its run folder, .hydra/ record, logging), and the
        job's own config, resolved while its Hydra config is current."""
        prepared: list[Run] = []

        def record(task_cfg: DictConfig) -> None:
            OmegaConf.resolve(task_cfg)
            prepared.append((task_cfg, Path(HydraConfig.get().runtime.output_dir)))

        ret = run_job(hydra_context=self.hydra_context, task_function=record, config=cfg,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        ret.return_value  # noqa: B018 - re-raises what went wrong setting the job up
        return ret, prepared[0]

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None, "launch() before setup()"
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        configs = self._compose(job_overrides, initial_job_idx)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)  # before the jobs' folders
        note = acquire_lock(sweep_dir)  # one sweep at a time in a sweep folder
        try:
            if note:
                say(note)
            return self._launch(configs, sweep_dir)
        finally:
            release_lock(sweep_dir)

    def _launch(self, configs: list[DictConfig], sweep_dir: Path) -> list[JobReturn]:
        self._check_folders(configs)
        returns, runs = zip(*(self._prepare(cfg) for cfg in configs))
        HydraConfig.instance().cfg = None  # the last job's: no population's training may read it
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        groups = populations(list(runs))
        jobs = self.jobs or default_jobs(int(self.config.get("threads") or 1))
        where = f"submitit ({self.submitit.get('cluster') or 'auto'})" if self.submitit is not None else "here"
        log.info(f"Training {len(runs)} runs as {len(groups)} population(s), {min(jobs, len(groups))} at a time, {where}")
        with _stop_file(sweep_dir / ".stop") as stopped:
            for line in train_all(groups, jobs, train_population, self.submitit, sweep_dir):
                say(line)
        if stopped:
            line = sweep_outcome(sweep_dir)
            raise RunInterrupted(stopped[0], line or f"{sweep_dir}: interrupted")
        for ret, (cfg, run_dir) in zip(returns, runs):  # what each job gives a sweeper (Optuna): its objective
            ret.return_value = objective_value(run_dir, str(cfg.objective))
        return list(returns)
