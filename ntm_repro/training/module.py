"""The LightningModule: one optimisation step per batch of episodes, with no per-step
logging; training metrics are averaged over each logging interval and the held-out set is
evaluated every ``val_every_steps`` steps (and before the first step).

One learner trains one :class:`~ntm_repro.models.population.Population` (the K >= 1 seeds
of a configuration); every batch is a list with one batch of episodes per seed, and every
figure is kept and logged per seed, to that seed's own loggers. A seed whose loss is not finite stops there (``diverged``) while the
others go on.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.plugins.precision import Precision
from torch.utils.data import DataLoader

from ntm_repro.errors import ConfigError
from ntm_repro.models.ntm import NTM
from ntm_repro.models.population import Population
from ntm_repro.tasks.base import Episode, Task
from ntm_repro.training.callbacks import early_stop_reason
from ntm_repro.training.data import generalisation_sets
from ntm_repro.training.metrics import LN2, Reference, bit_errors, cost_nats, evaluate
from ntm_repro.training.run_folder import KEPT
from ntm_repro.training.seed_checkpoints import CONFIGS, STACKED_PREFIX, split_checkpoint, stack_checkpoints


def mixing_figures(network: torch.nn.Module) -> dict[str, float]:
    """``mix_<block>_a``, ``mix_<block>_b`` of a structured memory (none for other networks)."""
    return network.mixing_figures() if isinstance(network, NTM) else {}


class TrainingDiverged(RuntimeError):
    """A non-finite loss: the run stops with status ``diverged``."""


class SequenceLearner(pl.LightningModule):
    def __init__(
        self,
        model: Population,
        optimizer: Callable[..., torch.optim.Optimizer],
        validation: list[Episode],
        batch_size: int,
        log_every_steps: int,
        val_every_steps: int,
        reference: Reference | None = None,
        checkpoint_every_steps: int = 0,
        checkpoint_paths: list[Path] | None = None,
        keep_every_steps: int = 0,
        configs: list[dict[str, Any]] | None = None,
        task: Task | None = None,
        test_batch_size: int = 32,
    ):
        super().__init__()
        self.model = model
        self.seeds = model.seeds
        #: each seed's resolved run config, kept in its checkpoints (load_from_checkpoint)
        self.configs = configs or []
        self.run_seeds = [config["seed"] for config in self.configs] or list(range(self.seeds))
        self.task, self.test_batch_size = task, test_batch_size  # trainer.test's levels
        self.optimizer_factory = optimizer
        self.validation = validation
        self.batch_size = batch_size
        self.log_every_steps = log_every_steps
        self.val_every_steps = val_every_steps
        self.reference = reference
        self.checkpoint_every_steps, self.checkpoint_paths = checkpoint_every_steps, checkpoint_paths or []
        self.keep_every_steps = keep_every_steps
        #: each seed's loggers (set once they exist; a single network's are the trainer's)
        self.seed_loggers: list[list] = [[] for _ in range(self.seeds)]
        #: per seed: None while training, else the reason it stopped (non-finite loss)
        self.diverged: list[str | None] = [None] * self.seeds
        self.diverged_at: list[int | None] = [None] * self.seeds  # steps completed before it
        self._extra: list[dict[str, float]] = [{} for _ in range(self.seeds)]  # reference figures' sums
        # running sums over the logging interval, per seed, on the model's device (no per-step sync)
        self.register_buffer("_cost", torch.zeros(self.seeds), persistent=False)
        self.register_buffer("_errors", torch.zeros(self.seeds), persistent=False)
        self._steps = 0
        self._pending: tuple | None = None  # the current step's figures, until it completes
        self._validated_at: int | None = None
        self._start = time.monotonic()
        self._elapsed_before = 0.0  # training time of the sessions before a resume
        self.last_metrics: list[dict[str, float]] = [{} for _ in range(self.seeds)]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def training_step(self, batch: list[Episode], batch_idx: int) -> torch.Tensor:
        logits = self.model.forward_padded([episode.inputs for episode in batch])
        losses = torch.stack([cost_nats(seed_logits, episode) for seed_logits, episode in zip(logits, batch)])
        values = losses.detach()
        finite = torch.isfinite(values).tolist()
        for k, ok in enumerate(finite):
            if not ok and self.diverged[k] is None:
                self.diverged_at[k] = self.global_step
                self.diverged[k] = (
                    f"non-finite loss ({values[k].item()}) at step {self.global_step + 1} "
                    f"({self.global_step * self.batch_size} sequences seen); try a lower optimizer.lr"
                )
        if all(reason is not None for reason in self.diverged):
            raise TrainingDiverged(next(reason for reason in reversed(self.diverged) if reason))
        alive = torch.tensor([reason is None for reason in self.diverged], device=values.device)
        errors = torch.stack([bit_errors(l.detach(), e) for l, e in zip(logits, batch)])
        extra = [self.reference(episode) for episode in batch] if self.reference is not None else []
        # added to the interval's sums once the step is complete (on_train_batch_end): a run
        # stopped inside this step checkpoints sums that do not hold it, and redoes it on resume
        self._pending = (torch.where(alive, values, 0.0), torch.where(alive, errors, 0.0), extra)
        # a diverged seed's loss leaves the sum (its own parameters are past saving; no other seed's depend on them)
        return torch.where(alive, losses, 0.0).sum()

    @property
    def sequences_seen(self) -> int:
        return self.global_step * self.batch_size

    def on_train_start(self) -> None:
        self._start = time.monotonic()
        if self.global_step == 0:
            self._validate()

    def _elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._start

    def _commit_step(self) -> None:
        """Add the completed step's figures to the interval's sums."""
        cost, errors, extra = self._pending
        self._pending = None
        self._cost += cost
        self._errors += errors
        for sums, figures in zip(self._extra, extra):
            for name, value in figures.items():
                sums[name] = sums.get(name, 0.0) + value
        self._steps += 1

    def end_step(self) -> None:
        """The end of a training step (from :class:`~ntm_repro.training.callbacks.StepEnd`,
        before any other callback): its figures join the interval; log, evaluate and
        checkpoint when their intervals end."""
        self._commit_step()
        step = self.global_step
        if step % self.log_every_steps == 0:
            self._log_training()
        if step % self.val_every_steps == 0:
            self._validate()
        keep = bool(self.keep_every_steps) and step % self.keep_every_steps == 0
        if keep or (self.checkpoint_every_steps and step % self.checkpoint_every_steps == 0):
            self.save_checkpoint()
        if keep:
            self.keep_checkpoint(step * self.batch_size)

    def keep_checkpoint(self, sequences: int) -> None:
        """Each seed's last checkpoint kept as ``checkpoints/sequences_<N>.ckpt`` beside it
        (a diverged seed's last finite one is not the model at N: none kept)."""
        for path, diverged in zip(self.checkpoint_paths, self.diverged):
            if diverged is None:
                kept = path.parent / KEPT / f"sequences_{sequences}.ckpt"
                kept.parent.mkdir(exist_ok=True)
                shutil.copyfile(path, kept)

    def save_checkpoint(self) -> None:
        """Write each seed's checkpoint atomically (a run killed mid-write keeps the previous
        one), the checkpoint it would have had alone. A diverged seed keeps its last finite one."""
        tmp = [path.with_name(path.name + ".tmp") for path in self.checkpoint_paths]
        self.trainer.save_checkpoint(tmp[0])
        checkpoint = torch.load(tmp[0], map_location="cpu", weights_only=False)
        for seed_checkpoint, path in zip(split_checkpoint(checkpoint, self.model), tmp):
            torch.save(seed_checkpoint, path)
        for source, target, diverged in zip(tmp, self.checkpoint_paths, self.diverged):
            if diverged is None:
                os.replace(source, target)
            else:
                source.unlink()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The unlogged part of the current interval (per seed) and the clock, so that a
        resumed run logs exactly the rows an uninterrupted one would."""
        checkpoint[CONFIGS] = self.configs
        checkpoint["interval"] = {
            "cost": self._cost.tolist(),
            "errors": self._errors.tolist(),
            "extra": [dict(extra) for extra in self._extra],
            "steps": self._steps,
            "validated_at": self._validated_at,
            "elapsed": self._elapsed(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        interval = checkpoint["interval"]
        self._cost.copy_(torch.tensor(interval["cost"]))
        self._errors.copy_(torch.tensor(interval["errors"]))
        self._extra = [dict(extra) for extra in interval["extra"]]
        self._steps, self._validated_at = interval["steps"], interval["validated_at"]
        self._elapsed_before = interval["elapsed"]

    def on_train_end(self) -> None:
        """Close the last, possibly partial, interval: the curve ends where training ended.
        A run interrupted early leaves it open: the checkpoint holds it, and the resumed run
        closes it where the uninterrupted one would (one stopped by EarlyStopping is done)."""
        if self.global_step < self.trainer.max_steps and early_stop_reason(self.trainer) is None:
            return
        self._log_training()
        if self._validated_at != self.global_step:
            self._validate()

    def _log_training(self) -> None:
        """Training metrics averaged over the steps since the last training row, and the
        mixing coefficients of structured memories as they are at its end."""
        if not self._steps:
            return
        cost, errors = self._cost.tolist(), self._errors.tolist()
        rows = []
        for k, network in enumerate(self._networks()):
            values = {"cost_bits": cost[k] / self._steps / LN2, "bit_errors": errors[k] / self._steps}
            values.update({name: total / self._steps for name, total in self._extra[k].items()})
            values.update(mixing_figures(network))
            rows.append(values)
            self._extra[k].clear()
        self._log("train", rows)
        self._cost.zero_()
        self._errors.zero_()
        self._steps = 0

    def _networks(self) -> list[torch.nn.Module]:
        """Each seed's network with its current parameters."""
        return self.model.seed_models()

    @property
    def precision_plugin(self) -> Precision | None:
        """The trainer's ``trainer.precision``, which evaluation follows as training does."""
        return self._trainer.precision_plugin if self._trainer is not None else None

    @property
    def validated_now(self) -> bool:
        """Whether the held-out set was evaluated at the current step."""
        return self._validated_at == self.global_step

    def _evaluate(self, episodes: list[Episode]) -> list[dict[str, float]]:
        """Each seed's figures on ``episodes``, in the trainer's precision, with the task's
        channels scored apart."""
        return evaluate(self.model, episodes, self.reference, self.precision_plugin, self.task.scored_apart if self.task else None)

    def _validate(self) -> None:
        per_seed = self._evaluate(self.validation)
        self._log("val", per_seed)
        self._validated_at = self.global_step
        if self._current_fx_name == "on_train_batch_end":  # where Lightning lets a hook log
            self.log_dict(self._callback_values("val", per_seed), logger=False, on_step=True, on_epoch=False, batch_size=1)

    def _callback_values(self, split: str, per_seed: list[dict[str, float]], suffix: str = "") -> dict[str, float]:
        """What ``trainer.callback_metrics`` gets of an evaluation (for EarlyStopping and
        ModelCheckpoint): ``<split>/<name><suffix>``, over several seeds the mean of those
        still training, with each seed's own as ``<split>/<name><suffix>/seed<s>``."""
        alive = [(k, values) for k, values in enumerate(per_seed) if self.diverged[k] is None]
        values = {f"{split}/{name}{suffix}": sum(v[name] for _, v in alive) / len(alive) for name in alive[0][1]}
        if self.seeds > 1:
            values.update({f"{split}/{name}{suffix}/seed{self.run_seeds[k]}": value for k, v in alive for name, value in v.items()})
        return values

    # trainer.validate and trainer.test: the held-out set of training, and the test levels
    def val_dataloader(self) -> DataLoader:
        return DataLoader([self.validation], batch_size=None)

    def validation_step(self, episodes: list[Episode], batch_idx: int) -> None:
        """The held-out set as evaluated during training: ``val/<metric>``."""
        self.log_dict(self._callback_values("val", self._evaluate(episodes)), batch_size=1)

    def test_dataloader(self) -> DataLoader:
        if self.task is None:
            raise ConfigError("this learner has no task: build it with SequenceLearner.load_from_checkpoint or ntm-repro")
        levels = self.task.test_levels
        episodes = generalisation_sets(self.task, levels, self.test_batch_size)
        return DataLoader(list(zip(map(str, map(self.task.level_label, levels)), episodes)), batch_size=None)

    def test_step(self, labelled: tuple[str, Episode], batch_idx: int) -> None:
        """One test level, on the episodes of the run's generalisation.csv:
        ``test/<metric>@<level>``."""
        label, episode = labelled
        per_seed = self._evaluate([episode])
        self.log_dict(self._callback_values("test", per_seed, f"@{label}"), batch_size=1)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, map_location: Any = None, **kwargs: Any) -> "SequenceLearner":
        """The learner of a run's checkpoint (``last.ckpt``, ``checkpoints/sequences_<N>.ckpt``,
        ``best/*.ckpt``), rebuilt from the run config the checkpoint holds, with its weights
        and logging interval; ``trainer.validate`` and ``trainer.test`` evaluate it."""
        from ntm_repro.training.build import build_learner  # build imports this module

        if kwargs:
            raise TypeError(f"SequenceLearner.load_from_checkpoint takes no arguments beyond the path and map_location (got {sorted(kwargs)})")
        checkpoint = torch.load(checkpoint_path, map_location=map_location or "cpu", weights_only=False)
        configs = checkpoint.get(CONFIGS)
        if not configs:
            raise ConfigError(f"{checkpoint_path} holds no run config (a checkpoint of an older ntm-repro): "
                              "evaluate its run folder with ntm-repro-eval")
        run_dir = Path(checkpoint_path).resolve().parent
        _, learner = build_learner([OmegaConf.create(config) for config in configs], [run_dir] * len(configs))
        if not any(key.startswith(STACKED_PREFIX) for key in checkpoint["state_dict"]):  # a seed's own (split) checkpoint
            checkpoint = stack_checkpoints([checkpoint], learner.model)
        learner.load_state_dict(checkpoint["state_dict"])
        learner.on_load_checkpoint(checkpoint)
        return learner

    def _log(self, split: str, per_seed: list[dict[str, float]]) -> None:
        """One row per seed still training, to that seed's loggers."""
        for k, values in enumerate(per_seed):
            if self.diverged[k] is not None:
                continue
            metrics = {"sequences": self.sequences_seen, "time_s": round(self._elapsed(), 3)}
            metrics.update({f"{split}/{name}": value for name, value in values.items()})
            self.last_metrics[k].update({f"{split}/{name}": value for name, value in values.items()})
            for logger in self.seed_loggers[k]:
                logger.log_metrics(metrics, step=self.global_step)
