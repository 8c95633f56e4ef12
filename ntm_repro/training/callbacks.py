"""Lightning callbacks around the learner's own loop. The held-out set is evaluated inside
training every ``train.val_every`` sequences (there is no Lightning validation loop), so:

- :class:`StepEnd` runs the learner's end of step first among the callbacks, so that every
  callback after it sees this step's evaluation in ``trainer.callback_metrics``;
- :class:`EarlyStopping` and :class:`BestCheckpoint` (the ``callbacks`` config group) are
  Lightning's, acting after each evaluation instead of at the end of a validation loop.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping as LightningEarlyStopping
from pytorch_lightning.callbacks import ModelCheckpoint


class StepEnd(pl.Callback):
    """The learner's end of a training step (interval sums, logging, evaluation, checkpoints)."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        pl_module.end_step()


class EarlyStopping(LightningEarlyStopping):
    """Lightning's EarlyStopping, checked after each evaluation of the held-out set.
    :attr:`stopped_at` is the step it stopped training at (None: it did not)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stopped_at: int | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        if not pl_module.validated_now or self._should_skip_check(trainer):
            return
        stopping = trainer.should_stop
        self._run_early_stopping_check(trainer)
        if trainer.should_stop and not stopping:
            self.stopped_at = trainer.global_step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Training is one endless epoch: its end (the budget) is not an evaluation."""

    @property
    def reason(self) -> str:
        """Why it stopped training, in Lightning's words."""
        return getattr(self, "stopping_reason_message", None) or f"{self.monitor} stopped improving"


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint saving after each evaluation of the held-out set (its
    ``every_n_train_steps`` is ``train.val_every``), by default into ``<run folder>/best/``.
    ``SequenceLearner.load_from_checkpoint`` loads what it saves."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._every_n_train_steps = pl_module.val_every_steps
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "best")
        super().setup(trainer, pl_module, stage)


def early_stop_reason(trainer: pl.Trainer) -> str | None:
    """Why an :class:`EarlyStopping` callback stopped training (None: none did)."""
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_at is not None:
            return f"stopped early by EarlyStopping at {callback.stopped_at} steps: {callback.reason}"
    return None
