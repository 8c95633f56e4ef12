"""Interrupts at a step boundary. Ctrl-C (SIGINT) during training asks the trainer to stop
once the current step is complete (a second Ctrl-C stops at once); SIGTERM is Lightning's own
handling, which also stops at a step boundary. Either way the run then checkpoints a state
that holds whole steps only, so ``resume=true`` continues to the uninterrupted result.

Within a sweep the populations launcher names a stop file (``STOP_FILE_ENV``): a signal
to any of its processes writes the signal's number there, and every population training
stops at its next step boundary, and none starts after it."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

STOP_FILE_ENV = "NTM_REPRO_STOP_FILE"
#: fault injection for tests: ``STEP:SIGNAL`` (e.g. ``7:SIGINT``) sends SIGNAL to this
#: process in the middle of training step STEP (after the loss, before the update)
SIGNAL_AT_ENV = "NTM_REPRO_SIGNAL_AT"


def stop_file() -> Path | None:
    """The sweep's stop file, when training runs inside a populations sweep."""
    path = os.environ.get(STOP_FILE_ENV)
    return Path(path) if path else None


def stop_requested() -> int | None:
    """The signal number written to the sweep's stop file, if one was."""
    path = stop_file()
    if path is None or not path.exists():
        return None
    try:
        return int(path.read_text().strip() or signal.SIGINT)
    except (OSError, ValueError):
        return int(signal.SIGINT)


def request_stop(signum: int) -> None:
    """Tell every process of the sweep to stop (no-op outside a sweep)."""
    path = stop_file()
    if path is not None:
        try:
            path.write_text(str(int(signum)))
        except OSError:
            pass


class StopAtStepBoundary(pl.Callback):
    """Holds SIGINT while the trainer fits; :attr:`signum` is the signal that stopped it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: Any = None

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread

        def handler(signum: int, frame: Any) -> None:
            if self.signum is not None:
                raise KeyboardInterrupt  # asked twice: at once
            self.signum = signum
            trainer.should_stop = True
            request_stop(signum)

        self._previous = signal.signal(signal.SIGINT, handler)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        requested = stop_requested()
        if requested is not None and self.signum is None:
            self.signum = requested
            trainer.should_stop = True

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()  # also undoes Lightning's SIG_IGN after a KeyboardInterrupt


class SignalAtStep(pl.Callback):
    """:data:`SIGNAL_AT_ENV`'s fault: the signal, to this process, mid-step."""

    def __init__(self, spec: str):
        step, name = spec.split(":")
        self.step, self.signum = int(step), int(getattr(signal, name))

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def fault_injection() -> list[pl.Callback]:
    """The :class:`SignalAtStep` the environment asks for, if any."""
    spec = os.environ.get(SIGNAL_AT_ENV)
    return [SignalAtStep(spec)] if spec else []
