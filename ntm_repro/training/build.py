"""Building a run from its composed config: the task, each seed's network (initialised as
the seed draws it), the trainable model, optimizer, loggers, Lightning trainer and data;
every problem found here is a ConfigError (one line naming the key). The benchmark and
``ntm-repro-eval`` build their networks with :func:`build_networks` too."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from ntm_repro.errors import ConfigError, positive
from ntm_repro.models.factory import build_model
from ntm_repro.models.population import Population
from ntm_repro.tasks.base import Task
from ntm_repro.training.callbacks import BestCheckpoint, StepEnd
from ntm_repro.training.data import MAX_SEED, EpisodeDataModule, heldout
from ntm_repro.training.instantiate import build_task, instantiate_checked
from ntm_repro.training.module import SequenceLearner, mixing_figures
from ntm_repro.training.progress import SequenceProgress
from ntm_repro.training.run_folder import Status
from ntm_repro.training.signals import StopAtStepBoundary, fault_injection
from ntm_repro.training.streams import seed_initialisation
from ntm_repro.training.trainable import trainable_model
from ntm_repro.training.wandb_logger import finish_open_runs


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
    and, resumed, keeps its rows up to ``resume_step``; W&B, resumed, continues its run."""
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        extra = {"save_dir": str(run_dir)}
        if name == "csv":
            extra.update(extra_columns=columns, keep_until_step=resume_step)
        if name == "wandb":  # resume=true continues the W&B run the folder names
            extra.update(resume=bool(cfg.get("resume")))
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
            logger.finalize(Status.FAILED)
        raise
    return built


@dataclass
class Setup:
    """Everything a run of a population needs, built and checked before training starts."""

    task: Task
    model: Population
    learner: SequenceLearner
    loggers: list[list]  # per seed
    trainer: pl.Trainer
    datamodule: EpisodeDataModule
    max_steps: int
    batch_size: int
    test_batch_size: int
    stopper: StopAtStepBoundary


def build_networks(cfg: DictConfig, task: Task, seeds: Sequence[Any]) -> list[torch.nn.Module]:
    """The network of ``cfg`` for each seed, initialised exactly as a run of that seed draws
    it (:func:`~ntm_repro.training.streams.seed_initialisation`)."""
    networks = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seed={seed!r}: must be an integer from 0 to {MAX_SEED}")
        seed_initialisation(seed)
        networks.append(build_model(cfg.model, cfg.controller, task.input_size, task.output_size))
    return networks


def metric_names(task: Task, splits: Sequence[str] = ("val", "train")) -> list[str]:
    """The metrics a run of ``task`` logs, ``<split>/<name>``."""
    return [f"{split}/{metric}" for split in splits for metric in ("bit_errors", "cost_bits", *task.evaluated_metrics)]


def check_objective(cfg: DictConfig, task: Task) -> None:
    """``objective`` (what a job returns to a sweeper) must be a final metric of the run."""
    names = metric_names(task)
    if cfg.get("objective", names[0]) not in names:
        raise ConfigError(f"objective={cfg.get('objective')}: not a final metric of this run; choose one of {', '.join(names)}")


def build_callbacks(cfg: DictConfig, task: Task, seeds: int) -> list[pl.Callback]:
    """The ``callbacks`` group's Lightning callbacks (a mapping of named ones; empty for
    ``callbacks=none``). A monitored metric must be one the held-out evaluation puts in
    ``trainer.callback_metrics``; a best checkpoint is one run's, so not a population's."""
    callbacks = []
    names = metric_names(task, ["val"])
    for name, spec in (cfg.get("callbacks") or {}).items():
        if spec is None:
            continue
        monitor = spec.get("monitor")
        if monitor is not None and monitor not in names:
            raise ConfigError(f"callbacks.{name}.monitor={monitor}: not an evaluated metric; choose one of {', '.join(names)}")
        callback = instantiate_checked(spec)
        if not isinstance(callback, pl.Callback):
            raise ConfigError(f"callbacks.{name}: {spec.get('_target_')} is not a Lightning Callback")
        if isinstance(callback, BestCheckpoint) and seeds > 1:
            raise ConfigError(f"callbacks.{name}: a best checkpoint is one run's, and {seeds} seeds train together here; "
                              "run the seeds one by one with hydra/launcher=basic")
        callbacks.append(callback)
    return callbacks


def check_devices(trainer_cfg: DictConfig) -> None:
    """One device per run: several would start Lightning's distributed training, which the
    learner's own loop does not support (the seeds of a configuration train together as a
    population already)."""
    devices = trainer_cfg.get("devices", 1)
    if devices in (1, "1", "auto") or (OmegaConf.is_list(devices) and len(devices) == 1):
        return
    raise ConfigError(f"trainer.devices={devices}: one device per run is supported; run jobs in parallel instead "
                      "(hydra.launcher.jobs=N under -m)")


def trainer_arguments(trainer_cfg: DictConfig) -> tuple[dict[str, Any], bool]:
    """``pl.Trainer``'s arguments from the ``trainer`` config (one device checked), and
    whether our progress bar is on (``trainer.enable_progress_bar``; Lightning's is off)."""
    check_devices(trainer_cfg)
    arguments = OmegaConf.to_container(trainer_cfg, resolve=True)
    return arguments, bool(arguments.pop("enable_progress_bar", True))


def build_learner(cfgs: list[DictConfig], run_dirs: list[Path]) -> tuple[Task, SequenceLearner]:
    """The task and the learner of the population ``cfgs`` (one config per seed, identical but
    for the seed), its networks initialised as each seed draws them; every problem found here
    is a ConfigError (one line naming the key)."""
    cfg = cfgs[0]
    batch_size = positive(cfg.train.batch_size, "train.batch_size")
    every, keep = (cfg.train.get(key) or 0 for key in ("checkpoint_every", "keep_checkpoints"))
    checkpoint_every = _steps(every, batch_size, "train.checkpoint_every") if every else 0
    keep_every = _steps(keep, batch_size, "train.keep_checkpoints") if keep else 0
    torch.set_num_threads(positive(cfg.threads, "threads"))
    task = build_task(cfg.task)
    check_objective(cfg, task)
    networks = build_networks(cfg, task, [seed_cfg.seed for seed_cfg in cfgs])
    check_memory_capacity(task, cfg.model)
    # the fused engine is compiled code already: train.compile is for the reference's time step
    compiled = bool(cfg.train.get("compile", False)) and getattr(networks[0], "engine", "reference") == "reference"
    learner = SequenceLearner(
        trainable_model(networks, compiled),
        build_optimizer(cfg.optimizer),
        heldout(task, task.validation_levels, positive(cfg.train.val_batch_size, "train.val_batch_size")),
        batch_size=batch_size,
        log_every_steps=_steps(cfg.train.log_every, batch_size, "train.log_every"),
        val_every_steps=_steps(cfg.train.val_every, batch_size, "train.val_every"),
        reference=task.reference_metrics if task.extra_metrics else None,
        checkpoint_every_steps=checkpoint_every,
        keep_every_steps=keep_every,
        checkpoint_paths=[run_dir / "last.ckpt" for run_dir in run_dirs],
        configs=[OmegaConf.to_container(c, resolve=True) for c in cfgs],
        task=task,
        test_batch_size=positive(cfg.train.test_batch_size, "train.test_batch_size"),
    )
    return task, learner


def build_setup(cfgs: list[DictConfig], run_dirs: list[Path], resume_step: int | None = None) -> Setup:
    """Check the config and build task, model, optimizer, loggers and trainer; every
    problem found here is a ConfigError (one line naming the key). ``cfgs``: one config per
    seed, identical but for the seed (several: trained as a batch)."""
    cfg = cfgs[0]
    task, learner = build_learner(cfgs, run_dirs)
    model, batch_size, test_batch_size = learner.model, learner.batch_size, learner.test_batch_size
    max_steps = math.ceil(positive(cfg.train.sequences, "train.sequences") / batch_size)
    network = model.seed_models()[0]
    seeds = [c.seed for c in cfgs]
    label = f"seed={','.join(map(str, seeds))}"
    stopper = StopAtStepBoundary()
    trainer_args, progress_bar = trainer_arguments(cfg.trainer)
    chosen = build_callbacks(cfg, task, len(cfgs))
    progress = [SequenceProgress(max_steps * batch_size * len(cfgs), f"{cfg.model.name}/{cfg.task.name} {label}")]
    try:
        trainer = pl.Trainer(
            **trainer_args,
            max_steps=max_steps,
            logger=False,  # set below, once nothing else can fail: a W&B run is never left open
            # the learner's end of step first: the callbacks after it see its evaluation
            callbacks=[StepEnd(), *(progress if progress_bar else []), stopper, *fault_injection(), *chosen],
            default_root_dir=str(run_dirs[0]),
            enable_checkpointing=any(isinstance(callback, BestCheckpoint) for callback in chosen),  # else Lightning adds its own
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            log_every_n_steps=max_steps + 1,
        )
    except Exception as error:  # e.g. an unknown Trainer argument or an accelerator this machine lacks
        raise ConfigError(f"trainer settings rejected by pytorch_lightning.Trainer: {error}".replace("\n", " ")) from None
    columns = list(task.evaluated_metrics) + list(mixing_figures(network))
    loggers = build_seed_loggers(cfgs, run_dirs, columns, resume_step)
    learner.seed_loggers = loggers
    trainer.loggers = [logger for seed_loggers in loggers for logger in seed_loggers]
    datamodule = EpisodeDataModule(task, batch_size, seeds)
    return Setup(task, model, learner, loggers, trainer, datamodule, max_steps, batch_size, test_batch_size, stopper)


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
