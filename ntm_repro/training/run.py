"""A run's lifecycle: from composed configs (a population of seeds) to filled run folders:
summaries written before, during and after training, faults recorded, resume planned
(:mod:`~ntm_repro.training.resume`), results written. Building lives in
:mod:`~ntm_repro.training.build`."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ntm_repro.console import run_log, say
from ntm_repro.errors import ConfigError, RunInterrupted
from ntm_repro.models.factory import count_parameters
from ntm_repro.training.build import build_setup
from ntm_repro.training.callbacks import early_stop_reason
from ntm_repro.training.evaluation import attention_path, generalisation_rows, write_attention
from ntm_repro.training.module import TrainingDiverged
from ntm_repro.training.resume import ResumePlan, plan_resume, resume_checkpoint
from ntm_repro.training.run_folder import (
    Status,
    acquire_lock,
    check_free,
    code_version,
    outcome_line,
    read_summary,
    record_provenance,
    release_lock,
    write_config,
    write_generalisation,
    write_json,
)


@contextlib.contextmanager
def collector_frozen():
    """Python's cyclic garbage collector leaves the objects alive on entry (the imported
    modules, the config, the networks: about 500,000) alone until exit. Its full
    collections visit every tracked object, and took about 5% of a one-network training
    step at batch 1 (perf); the objects a step makes are still collected."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def quiet_lightning() -> None:
    """Lightning's start-up banners and its own deprecation notices say nothing about the run."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"pytorch_lightning\.utilities\._pytree")
    warnings.filterwarnings("ignore", message=".*validation_step.*val_dataloader")  # fit evaluates in its own loop


























def _record_failure(summary: dict[str, Any], run_dir: Path, error: BaseException, when: str = "") -> None:
    """Status ``failed`` with a one-line reason; the traceback goes to traceback.txt."""
    (run_dir / "traceback.txt").write_text(traceback.format_exc())
    summary.update(status=Status.FAILED, reason=f"{when}{type(error).__name__}: {error} (traceback in traceback.txt)")


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train ``cfg`` and write the run folder; returns the summary (also in summary.json).

    Raises :class:`ConfigError` (after recording it) for configurations that cannot run.
    """
    return train_seeds([cfg], [run_dir])[0]


def train_seeds(cfgs: list[DictConfig], run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Train the population ``cfgs`` (identical configs but for the seed) together
    (:mod:`ntm_repro.models.population`), each seed writing its own run folder as if it had
    trained alone; returns their summaries.

    Each folder is locked while it is written (:func:`~ntm_repro.training.run_folder.acquire_lock`),
    refused if it holds a run and ``resume`` is not set, and every invocation is appended
    to its ``provenance.jsonl``. With ``resume=true``, finished seeds are skipped; the others
    continue together when their checkpoints are at the same step (or none has one), else
    each on its own.
    """
    held: list[Path] = []
    started = False
    with contextlib.ExitStack() as stack:
        try:
            for run_dir in run_dirs:
                run_dir.mkdir(parents=True, exist_ok=True)
                note = acquire_lock(run_dir)
                held.append(run_dir)
                if note:
                    say(note)
            stack.enter_context(run_log(held))  # the folders are ours: what is said goes to their logs too
            seeds = [cfg.seed for cfg in cfgs]
            say(f"training seed {seeds[0]}" if len(seeds) == 1 else f"training seeds {seeds} together in {', '.join(map(str, run_dirs))}",
                logging.DEBUG)
            plans = []
            for cfg, run_dir in zip(cfgs, run_dirs):
                try:
                    check_free(run_dir, bool(cfg.get("resume")))
                    plans.append(plan_resume(cfg, run_dir) if cfg.get("resume") else ResumePlan())
                except ConfigError as error:
                    record_provenance(run_dir, "refused", reason=str(error))
                    say(f"{run_dir}: refused: {error}", logging.DEBUG, run_dir)
                    raise
            for run_dir in run_dirs:
                record_provenance(run_dir, "started")
            started = True
            quiet_lightning()
            return _train_population(cfgs, run_dirs, plans)
        finally:
            for run_dir in held:
                if started:  # the outcome, as summary.json has it now
                    summary = read_summary(run_dir)
                    record_provenance(run_dir, str(summary.get("status")), reason=summary.get("reason"))
                    if "status" in summary:  # the terminal gets this line from the caller
                        say(outcome_line(run_dir, summary), logging.DEBUG, run_dir)
                release_lock(run_dir)


def _train_population(cfgs: list[DictConfig], run_dirs: list[Path], plans: list[ResumePlan]) -> list[dict[str, Any]]:
    """:func:`train_seeds` inside the claimed folders, given each seed's resume plan."""
    results: dict[int, dict[str, Any]] = {i: {**p.finished, "skipped": True} for i, p in enumerate(plans) if p.finished is not None}
    todo = [i for i in range(len(cfgs)) if i not in results]
    if len({plans[i].step for i in todo}) > 1:  # checkpoints at different steps: each continues alone
        results.update({i: _train_population([cfgs[i]], [run_dirs[i]], [plans[i]])[0] for i in todo})
    elif todo:
        summaries = _train_together([cfgs[i] for i in todo], [run_dirs[i] for i in todo], [plans[i] for i in todo])
        results.update(zip(todo, summaries))
    return [results[i] for i in range(len(cfgs))]


def _train_together(cfgs: list[DictConfig], run_dirs: list[Path], plans: list[ResumePlan]) -> list[dict[str, Any]]:
    seeds = [c.seed for c in cfgs]
    summaries: list[dict[str, Any]] = []
    for cfg, run_dir in zip(cfgs, run_dirs):
        summary: dict[str, Any] = {
            "status": Status.RUNNING,
            "reason": None,
            "model": cfg.model.name,
            "task": cfg.task.name,
            "seed": cfg.seed,
            "num_parameters": None,
            "sequences_seen": 0,
            "steps": 0,
            "wall_time_s": 0.0,
            "versions": code_version(),
        }
        summary["trained_with_seeds"] = seeds  # the population
        summaries.append(summary)
        write_config(run_dir, cfg)
    start = time.monotonic()

    def write_all() -> None:
        for summary, run_dir in zip(summaries, run_dirs):
            write_json(run_dir / "summary.json", summary)  # a Status is written as its value

    try:
        setup = build_setup(cfgs, run_dirs, plans[0].step)
    except ConfigError as error:
        for summary in summaries:
            summary.update(status=Status.FAILED, reason=str(error))
        write_all()
        raise
    except Exception as error:
        for summary, run_dir in zip(summaries, run_dirs):
            _record_failure(summary, run_dir, error)
        write_all()
        raise
    for summary in summaries:
        summary.update(num_parameters=count_parameters(setup.model.seed_models()[0]), level_name=setup.task.level_name)
        if plans[0].checkpoint is not None:
            summary["resumed_from_sequences"] = plans[0].step * setup.batch_size
    write_all()

    trainer, learner = setup.trainer, setup.learner
    interrupted = None
    status, reason = Status.COMPLETED, None
    resume_from = None
    try:
        resume_from = resume_checkpoint(plans, run_dirs, setup.model)
        with collector_frozen():
            trainer.fit(learner, datamodule=setup.datamodule, ckpt_path=resume_from)
        if trainer.global_step < setup.max_steps:
            interrupted = setup.stopper.signum  # Ctrl-C: stopped after a whole step
            if trainer.fast_dev_run and interrupted is None:  # asked for: a debug run of a step or a few
                reason = f"trainer.fast_dev_run: a debug run of {trainer.global_step} of {setup.max_steps} steps"
            elif interrupted is None and early_stop_reason(trainer) is not None:  # asked for: callbacks=early_stopping
                reason = early_stop_reason(trainer)
            elif interrupted is None:
                status, reason = Status.INTERRUPTED, f"the trainer stopped after {trainer.global_step} of {setup.max_steps} steps"
    except TrainingDiverged:
        status = Status.DIVERGED  # every seed: the reasons are the learner's
    except (KeyboardInterrupt, SystemExit) as error:  # SIGTERM (at a step boundary), or Ctrl-C twice
        interrupted = signal.SIGTERM if isinstance(error, SIGTERMException) else signal.SIGINT
    except Exception as error:  # recorded in summary.json and traceback.txt, never lost
        for summary, run_dir in zip(summaries, run_dirs):
            _record_failure(summary, run_dir, error)
        status, reason = Status.FAILED, summaries[0]["reason"]
    finally:
        if resume_from is not None:  # the stacked one: made for this fit
            resume_from.unlink(missing_ok=True)
    if interrupted is not None:
        by = "Ctrl-C (SIGINT)" if interrupted == signal.SIGINT else signal.Signals(interrupted).name
        status = Status.INTERRUPTED
        reason = (f"stopped by {by} at {trainer.global_step * setup.batch_size:,} sequences; rerun the same command "
                  "with resume=true to continue from last.ckpt")

    for k, summary in enumerate(summaries):
        if learner.diverged[k] is not None:
            summary.update(status=Status.DIVERGED, reason=learner.diverged[k], steps=learner.diverged_at[k])
        else:
            summary.update(status=status, reason=reason, steps=trainer.global_step)
        summary.update(sequences_seen=summary["steps"] * setup.batch_size, final=dict(learner.last_metrics[k]))
    rows: list[list[dict[str, Any]]] = [[] for _ in summaries]
    try:
        if any(summary["status"] != Status.DIVERGED for summary in summaries):  # a diverged model's weights are not finite
            learner.save_checkpoint()
        task, completed = setup.task, [summary["status"] == Status.COMPLETED for summary in summaries]
        if any(completed):  # every seed's test in one pass of the population
            tested = generalisation_rows(setup.model, task, task.test_levels, setup.test_batch_size, trainer.precision_plugin)
            for k, (network, run_dir) in enumerate(zip(setup.model.seed_models(), run_dirs)):
                if completed[k]:
                    rows[k] = tested[k]
                    write_generalisation(run_dir, rows[k])
                    for level in task.trace_levels:
                        write_attention(network, task, level, attention_path(run_dir, task, level))
    except Exception as error:
        for summary, run_dir in zip(summaries, run_dirs):
            _record_failure(summary, run_dir, error, when="after training: ")
    finally:
        for summary, seed_rows, seed_loggers in zip(summaries, rows, setup.loggers):
            # the plain value from here on: loggers (W&B writes an enum by name) and callers
            summary.update(status=str(summary["status"]), wall_time_s=round(time.monotonic() - start, 2))
            for logger in seed_loggers:
                if hasattr(logger, "log_results"):  # e.g. W&B: the summary and generalisation table
                    logger.log_results(summary, seed_rows)
                logger.finalize(summary["status"])
        write_all()
    if interrupted is not None:
        raise RunInterrupted(interrupted, "\n".join(f"{run_dir}: interrupted ({summary['reason']})" for run_dir, summary in zip(run_dirs, summaries)))
    return summaries
