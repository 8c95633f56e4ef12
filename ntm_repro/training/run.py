"""One training run, from a composed config to a filled run folder."""

from __future__ import annotations

import logging
import math
import shutil
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException
import torch
from omegaconf import DictConfig, OmegaConf

from ntm_repro.errors import ConfigError, positive
from ntm_repro.models.factory import build_model, count_parameters
from ntm_repro.models.ntm import NTM
from ntm_repro.models.seed_batch import SeedBatch
from ntm_repro.tasks.base import Task
from ntm_repro.training.data import MAX_SEED, EpisodeDataModule, heldout
from ntm_repro.training.instantiate import build_task, instantiate_checked
from ntm_repro.training.evaluation import generalisation_rows, write_attention
from ntm_repro.training.module import SequenceLearner, TrainingDiverged, mixing_figures
from ntm_repro.training.progress import SequenceProgress
from ntm_repro.training.resume import ResumePlan, plan_resume
from ntm_repro.training.seed_checkpoints import stack_checkpoints
from ntm_repro.training.streams import seed_initialisation
from ntm_repro.training.wandb_logger import finish_open_runs
from ntm_repro.training.run_folder import code_version, write_config, write_generalisation, write_json


def quiet_lightning() -> None:
    """Lightning's start-up banners and its own deprecation notices say nothing about the run."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"pytorch_lightning\.utilities\._pytree")


def _steps(sequences: int, batch_size: int, key: str) -> int:
    return max(1, positive(sequences, key) // batch_size)


def build_optimizer(optimizer_cfg: DictConfig):
    """The optimizer factory (a partial taking parameters), tried once on a dummy parameter
    so that an impossible setting (e.g. a negative lr) fails before training."""
    factory = instantiate_checked(optimizer_cfg)
    try:
        factory([torch.zeros(1, requires_grad=True)])
    except (ValueError, TypeError) as error:
        message = f"optimizer settings rejected by {optimizer_cfg._target_}: {error}"
        raise ConfigError(message.replace("\n", " ")) from None
    return factory


def build_loggers(cfg: DictConfig, run_dir: Path, columns: list[str], resume_step: int | None = None) -> list:
    """Instantiate every entry of ``cfg.logger`` (a mapping of named loggers; empty for
    ``logger=none``), each given the run folder; the CSV log gets the extra ``columns``
    and, resumed, keeps its rows up to ``resume_step``."""
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        extra = {"save_dir": str(run_dir)}
        if name == "csv":
            extra.update(extra_columns=columns, keep_until_step=resume_step)
        loggers.append(instantiate_checked(spec, **extra))
    return loggers


def build_seed_loggers(cfgs: list[DictConfig], run_dirs: list[Path], columns: list[str], resume_step: int | None) -> list[list]:
    """Each seed's loggers; when one cannot be built, those built before it are closed
    (a W&B run is never left open)."""
    finish_open_runs()
    built: list[list] = []
    try:
        for cfg, run_dir in zip(cfgs, run_dirs):
            built.append(build_loggers(cfg, run_dir, columns, resume_step))
    except BaseException:
        for logger in (logger for seed_loggers in built for logger in seed_loggers):
            logger.finalize("failed")
        raise
    return built


@dataclass
class Setup:
    """Everything a run needs (one seed, or several trained as a batch), built and checked
    before training starts."""

    task: Task
    model: torch.nn.Module  # the network, or a SeedBatch of several
    networks: list[torch.nn.Module]  # one per seed (the SeedBatch's, copied out on request)
    learner: SequenceLearner
    loggers: list[list]  # per seed
    trainer: pl.Trainer
    datamodule: EpisodeDataModule
    max_steps: int
    batch_size: int
    test_batch_size: int


def _seed_network(cfg: DictConfig) -> tuple[Task, torch.nn.Module]:
    """Task and freshly initialised network of one run seed, exactly as a run alone draws them."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed={cfg.seed!r}: must be an integer from 0 to {MAX_SEED}")
    seed_initialisation(cfg.seed)
    task: Task = build_task(cfg.task)
    return task, build_model(cfg.model, cfg.controller, task.input_size, task.output_size)


def build_setup(cfgs: list[DictConfig], run_dirs: list[Path], resume_step: int | None = None) -> Setup:
    """Check the config and build task, model, optimizer, loggers and trainer; every
    problem found here is a ConfigError (one line naming the key). ``cfgs``: one config per
    seed, identical but for the seed (several: trained as a batch)."""
    cfg = cfgs[0]
    batch_size = positive(cfg.train.batch_size, "train.batch_size")
    max_steps = math.ceil(positive(cfg.train.sequences, "train.sequences") / batch_size)
    test_batch_size = positive(cfg.train.test_batch_size, "train.test_batch_size")
    every = cfg.train.get("checkpoint_every") or 0
    checkpoint_every = _steps(every, batch_size, "train.checkpoint_every") if every else 0
    torch.set_num_threads(positive(cfg.threads, "threads"))
    task, network = _seed_network(cfg)
    networks = [network] + [_seed_network(seed_cfg)[1] for seed_cfg in cfgs[1:]]
    check_memory_capacity(task, cfg.model)
    # the fused engine is compiled code already: train.compile is for the reference's time step
    compiled = bool(cfg.train.get("compile", False)) and getattr(network, "engine", "reference") == "reference"
    model = trainable_model(networks, compiled)
    learner = SequenceLearner(
        model,
        build_optimizer(cfg.optimizer),
        heldout(task, task.validation_levels, positive(cfg.train.val_batch_size, "train.val_batch_size")),
        batch_size=batch_size,
        log_every_steps=_steps(cfg.train.log_every, batch_size, "train.log_every"),
        val_every_steps=_steps(cfg.train.val_every, batch_size, "train.val_every"),
        reference=task.reference_metrics if task.extra_metrics else None,
        checkpoint_every_steps=checkpoint_every,
        checkpoint_paths=[run_dir / "last.ckpt" for run_dir in run_dirs],
    )
    seeds = [c.seed for c in cfgs]
    label = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {','.join(map(str, seeds))}"
    try:
        trainer = pl.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            max_steps=max_steps,
            logger=False,  # set below, once nothing else can fail: a W&B run is never left open
            callbacks=[SequenceProgress(max_steps * batch_size * len(cfgs), f"{cfg.model.name}/{cfg.task.name} {label}")],
            default_root_dir=str(run_dirs[0]),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            log_every_n_steps=max_steps + 1,
        )
    except Exception as error:  # e.g. an unknown Trainer argument or an accelerator this machine lacks
        raise ConfigError(f"trainer settings rejected by pytorch_lightning.Trainer: {error}".replace("\n", " ")) from None
    columns = list(task.extra_metrics) + list(mixing_figures(network))
    loggers = build_seed_loggers(cfgs, run_dirs, columns, resume_step)
    learner.seed_loggers = loggers
    trainer.loggers = [logger for seed_loggers in loggers for logger in seed_loggers]
    datamodule = EpisodeDataModule(task, batch_size, seeds)
    return Setup(task, model, networks, learner, loggers, trainer, datamodule, max_steps, batch_size, test_batch_size)


def check_memory_capacity(task: Task, model_cfg: DictConfig) -> None:
    """Every training episode's items must fit the memory, one location each at least
    (test levels may exceed it: generalisation tests probe exactly that)."""
    if model_cfg.get("type") != "ntm":
        return
    needs = [n for n in map(task.items_to_store, task.train_levels) if n is not None]
    locations = model_cfg.memory.locations  # already checked by build_model
    if needs and max(needs) > locations:
        raise ConfigError(
            f"{task.capacity_key}: training episodes store up to {max(needs)} items but "
            f"model.memory.locations={locations}; lower {task.capacity_key} or raise model.memory.locations"
        )


#: Compilers torch.compile's CPU backend (Inductor) can build with.
CXX_COMPILERS = ("g++", "c++", "clang++")


def check_compile(model: torch.nn.Module) -> None:
    """``train.compile=true`` compiles the NTM's per-time-step function (``torch.compile``).
    Its shapes do not depend on the sequence length, so variable lengths never recompile;
    each batch size compiles once (tens of seconds), which pays off on long runs (about 2.3x
    at batch 1, 2x at batch 32). Checked here: an NTM, and a C++ compiler on a CPU machine."""
    if not isinstance(model, NTM):
        raise ConfigError("train.compile=true: only NTM models (model.type=ntm) have a compiled time step")
    if not torch.cuda.is_available() and not any(shutil.which(cxx) for cxx in CXX_COMPILERS):
        raise ConfigError(
            "train.compile=true: torch.compile needs a C++ compiler on the CPU (none of "
            f"{', '.join(CXX_COMPILERS)} is on PATH); install one (e.g. apt install g++) or set train.compile=false"
        )
    # A fresh start for each model: compiled entries of earlier models in this process (the
    # jobs before it in a sweep, the configurations before it in a benchmark) would otherwise
    # use up Dynamo's recompile limit and silently leave this one running eagerly.
    torch._dynamo.reset()


def compile_time_step(model: torch.nn.Module) -> None:
    """Check (:func:`check_compile`) and compile ``model.step`` in place."""
    check_compile(model)
    model.step = torch.compile(model.step, dynamic=False)


def trainable_model(networks: list[torch.nn.Module], compiled: bool) -> torch.nn.Module:
    """What trains: the one network, or the seeds' networks as a :class:`SeedBatch`; its
    time step compiled when ``compiled``."""
    if len(networks) == 1:
        if compiled:
            compile_time_step(networks[0])
        return networks[0]
    if compiled:
        check_compile(networks[0])
    return SeedBatch(networks, compile_step=compiled)


def _record_failure(summary: dict[str, Any], run_dir: Path, error: BaseException, when: str = "") -> None:
    """Status ``failed`` with a one-line reason; the traceback goes to traceback.txt."""
    (run_dir / "traceback.txt").write_text(traceback.format_exc())
    summary.update(status="failed", reason=f"{when}{type(error).__name__}: {error} (traceback in traceback.txt)")


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train ``cfg`` and write the run folder; returns the summary (also in summary.json).

    Raises :class:`ConfigError` (after recording it) for configurations that cannot run.
    """
    return train_seeds([cfg], [run_dir])[0]


def train_seeds(cfgs: list[DictConfig], run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Train the runs ``cfgs`` (identical configs but for the seed) together, as one batch
    of seeds (:mod:`ntm_repro.models.seed_batch`), each writing its own run folder as if it
    had trained alone; returns their summaries. One config trains on its own.

    With ``resume=true``, finished seeds are skipped; the others continue together when
    their checkpoints are at the same step (or none has one), else each on its own.
    """
    for run_dir in run_dirs:
        run_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    plans = [plan_resume(c, d) if c.get("resume") else ResumePlan() for c, d in zip(cfgs, run_dirs)]
    results: dict[int, dict[str, Any]] = {i: {**p.finished, "skipped": True} for i, p in enumerate(plans) if p.finished is not None}
    todo = [i for i in range(len(cfgs)) if i not in results]
    if len({plans[i].step for i in todo}) > 1:  # checkpoints at different steps: each continues alone
        results.update({i: train_seeds([cfgs[i]], [run_dirs[i]])[0] for i in todo})
    elif todo:
        summaries = _train_together([cfgs[i] for i in todo], [run_dirs[i] for i in todo], [plans[i] for i in todo])
        results.update(zip(todo, summaries))
    return [results[i] for i in range(len(cfgs))]


def _resume_checkpoint(setup: Setup, plans: list[ResumePlan], run_dirs: list[Path]) -> Path | None:
    """The checkpoint to continue from: a seed's own, or the seeds' own ones stacked into a
    batch checkpoint (written beside the first seed's)."""
    if plans[0].checkpoint is None or len(plans) == 1:
        return plans[0].checkpoint
    checkpoints = [torch.load(plan.checkpoint, map_location="cpu", weights_only=False) for plan in plans]
    path = run_dirs[0] / "seed_batch_resume.ckpt"
    torch.save(stack_checkpoints(checkpoints, setup.model), path)
    return path


def _train_together(cfgs: list[DictConfig], run_dirs: list[Path], plans: list[ResumePlan]) -> list[dict[str, Any]]:
    seeds = [c.seed for c in cfgs]
    summaries: list[dict[str, Any]] = []
    for cfg, run_dir in zip(cfgs, run_dirs):
        summary: dict[str, Any] = {
            "status": "running",
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
        if len(cfgs) > 1:
            summary["trained_with_seeds"] = seeds
        summaries.append(summary)
        write_config(run_dir, cfg)
    start = time.monotonic()

    def write_all() -> None:
        for summary, run_dir in zip(summaries, run_dirs):
            write_json(run_dir / "summary.json", summary)

    try:
        setup = build_setup(cfgs, run_dirs, plans[0].step)
    except ConfigError as error:
        for summary in summaries:
            summary.update(status="failed", reason=str(error))
        write_all()
        raise
    except Exception as error:
        for summary, run_dir in zip(summaries, run_dirs):
            _record_failure(summary, run_dir, error)
        write_all()
        raise
    for summary in summaries:
        summary.update(num_parameters=count_parameters(setup.networks[0]), level_name=setup.task.level_name)
        if plans[0].checkpoint is not None:
            summary["resumed_from_sequences"] = plans[0].step * setup.batch_size
    write_all()

    trainer, learner = setup.trainer, setup.learner
    interrupted = None
    status, reason = "completed", None
    resume_from = None
    try:
        resume_from = _resume_checkpoint(setup, plans, run_dirs)
        trainer.fit(learner, datamodule=setup.datamodule, ckpt_path=resume_from)
        if trainer.global_step < setup.max_steps:
            status, reason = "interrupted", f"the trainer stopped after {trainer.global_step} of {setup.max_steps} steps"
    except TrainingDiverged:
        status = "diverged"  # every seed: the reasons are the learner's
    except (KeyboardInterrupt, SystemExit) as error:
        by = "SIGTERM" if isinstance(error, SIGTERMException) else "the user"
        status, reason = "interrupted", f"stopped by {by}; resume=true continues from last.ckpt"
        interrupted = error
    except Exception as error:  # recorded in summary.json and traceback.txt, never lost
        for summary, run_dir in zip(summaries, run_dirs):
            _record_failure(summary, run_dir, error)
        status, reason = "failed", summaries[0]["reason"]
    finally:
        if resume_from is not None and resume_from != plans[0].checkpoint:  # the stacked one: made for this fit
            resume_from.unlink(missing_ok=True)

    for k, summary in enumerate(summaries):
        if learner.diverged[k] is not None:
            summary.update(status="diverged", reason=learner.diverged[k], steps=learner.diverged_at[k])
        else:
            summary.update(status=status, reason=reason, steps=trainer.global_step)
        summary.update(sequences_seen=summary["steps"] * setup.batch_size, final=dict(learner.last_metrics[k]))
    rows: list[list[dict[str, Any]]] = [[] for _ in summaries]
    try:
        if any(summary["status"] != "diverged" for summary in summaries):  # a diverged model's weights are not finite
            learner.save_checkpoint()
        networks = setup.model.seed_models() if isinstance(setup.model, SeedBatch) else setup.networks
        task = setup.task
        for k, (summary, run_dir) in enumerate(zip(summaries, run_dirs)):
            if summary["status"] == "completed":
                rows[k] = generalisation_rows(networks[k], task, task.test_levels, setup.test_batch_size)
                write_generalisation(run_dir, rows[k])
                write_attention(networks[k], task, task.trace_level, run_dir)
    except Exception as error:
        for summary, run_dir in zip(summaries, run_dirs):
            _record_failure(summary, run_dir, error, when="after training: ")
    finally:
        for summary, seed_rows, seed_loggers in zip(summaries, rows, setup.loggers):
            summary["wall_time_s"] = round(time.monotonic() - start, 2)
            for logger in seed_loggers:
                if hasattr(logger, "log_results"):  # e.g. W&B: the summary and generalisation table
                    logger.log_results(summary, seed_rows)
                logger.finalize(summary["status"])
        write_all()
    if interrupted is not None:
        raise KeyboardInterrupt from interrupted
    return summaries
