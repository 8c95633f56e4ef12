"""A progress bar counted in training sequences (of every seed of the population), with
each seed's latest validation bit errors and training cost, redrawn at most once a second."""

from __future__ import annotations

import pytorch_lightning as pl
from tqdm import tqdm

from ntm_repro.console import STDERR


class SequenceProgress(pl.Callback):
    def __init__(self, total_sequences: int, description: str):
        self.total, self.description = total_sequences, description
        self.bar: tqdm | None = None

    def on_train_start(self, trainer, module) -> None:
        self.bar = tqdm(
            total=self.total,
            initial=min(module.sequences_seen * module.seeds, self.total),
            desc=self.description,
            unit="seq",
            mininterval=1.0,
            file=STDERR,  # a closed terminal turns the bar off, never fails the run
            dynamic_ncols=True,
        )

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.bar.update(module.batch_size * module.seeds)
        if module.global_step % module.log_every_steps == 0:
            shown = ("val/bit_errors", "train/cost_bits")
            postfix = {key.replace("/", " "): "/".join(f"{m[key]:.3g}" if key in m else "-" for m in module.last_metrics) for key in shown}
            self.bar.set_postfix(postfix, refresh=False)

    def on_train_end(self, trainer, module) -> None:
        if self.bar is not None:
            self.bar.close()

    def on_exception(self, trainer, module, exception) -> None:
        self.on_train_end(trainer, module)
