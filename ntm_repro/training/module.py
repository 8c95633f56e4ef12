"""The LightningModule: one optimisation step per batch of episodes, with no per-step
logging; training metrics are averaged over each logging interval and the held-out set is
evaluated every ``val_every_steps`` steps (and before the first step)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch

from ntm_repro.tasks.base import Episode
from ntm_repro.training.metrics import LN2, Reference, bit_errors, cost_nats, evaluate


class TrainingDiverged(RuntimeError):
    """A non-finite loss: the run stops with status ``diverged``."""


class SequenceLearner(pl.LightningModule):
    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        validation: list[Episode],
        batch_size: int,
        log_every_steps: int,
        val_every_steps: int,
        reference: Reference | None = None,
        checkpoint_every_steps: int = 0,
        checkpoint_path: Path | None = None,
    ):
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.validation = validation
        self.batch_size = batch_size
        self.log_every_steps = log_every_steps
        self.val_every_steps = val_every_steps
        self.reference = reference
        self.checkpoint_every_steps, self.checkpoint_path = checkpoint_every_steps, checkpoint_path
        self._extra: dict[str, float] = {}  # sums of the reference figures over the interval
        # running sums over the logging interval, on the model's device (no per-step sync)
        self.register_buffer("_cost", torch.zeros(()), persistent=False)
        self.register_buffer("_errors", torch.zeros(()), persistent=False)
        self._steps = 0
        self._validated_at: int | None = None
        self._start = time.monotonic()
        self._elapsed_before = 0.0  # training time of the sessions before a resume
        self.last_metrics: dict[str, float] = {}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def training_step(self, batch: Episode, batch_idx: int) -> torch.Tensor:
        logits = self.model(batch.inputs)
        loss = cost_nats(logits, batch)
        loss_value = loss.detach()
        if not torch.isfinite(loss_value):
            raise TrainingDiverged(
                f"non-finite loss ({loss_value.item()}) at step {self.global_step + 1} "
                f"({self.global_step * self.batch_size} sequences seen); try a lower optimizer.lr"
            )
        self._cost += loss_value
        self._errors += bit_errors(logits.detach(), batch)
        if self.reference is not None:
            for name, value in self.reference(batch).items():
                self._extra[name] = self._extra.get(name, 0.0) + value
        self._steps += 1
        return loss

    @property
    def sequences_seen(self) -> int:
        return self.global_step * self.batch_size

    def on_train_start(self) -> None:
        self._start = time.monotonic()
        if self.global_step == 0:
            self._validate()

    def _elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._start

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        step = self.global_step
        if step % self.log_every_steps == 0:
            self._log_training()
        if step % self.val_every_steps == 0:
            self._validate()
        if self.checkpoint_every_steps and step % self.checkpoint_every_steps == 0:
            self.save_checkpoint()

    def save_checkpoint(self) -> None:
        """Write ``checkpoint_path`` atomically: a run killed mid-write keeps the previous one."""
        tmp = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        self.trainer.save_checkpoint(tmp)
        os.replace(tmp, self.checkpoint_path)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The unlogged part of the current interval and the clock, so that a resumed run
        logs exactly the rows an uninterrupted one would."""
        checkpoint["interval"] = {
            "cost": float(self._cost),
            "errors": float(self._errors),
            "extra": dict(self._extra),
            "steps": self._steps,
            "validated_at": self._validated_at,
            "elapsed": self._elapsed(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        interval = checkpoint["interval"]
        self._cost.fill_(interval["cost"])
        self._errors.fill_(interval["errors"])
        self._extra = dict(interval["extra"])
        self._steps, self._validated_at = interval["steps"], interval["validated_at"]
        self._elapsed_before = interval["elapsed"]

    def on_train_end(self) -> None:
        """Close the last, possibly partial, interval: the curve ends where training ended."""
        self._log_training()
        if self._validated_at != self.global_step:
            self._validate()

    def _log_training(self) -> None:
        """Training metrics averaged over the steps since the last training row."""
        if not self._steps:
            return
        values = {"cost_bits": float(self._cost) / self._steps / LN2, "bit_errors": float(self._errors) / self._steps}
        values.update({name: total / self._steps for name, total in self._extra.items()})
        self._log("train", values)
        self._extra.clear()
        self._cost.zero_()
        self._errors.zero_()
        self._steps = 0

    def _validate(self) -> None:
        self._log("val", evaluate(self.model, self.validation, self.reference))
        self._validated_at = self.global_step

    def _log(self, split: str, values: dict[str, float]) -> None:
        metrics = {"sequences": self.sequences_seen, "time_s": round(self._elapsed(), 3)}
        metrics.update({f"{split}/{k}": v for k, v in values.items()})
        self.last_metrics.update({f"{split}/{k}": v for k, v in values.items()})
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)
