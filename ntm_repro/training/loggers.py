"""The run folder's ``metrics.csv``: one tidy row per split and logged step, written and
flushed as it goes so that a crash keeps everything logged before it."""

from __future__ import annotations

import csv
import os
from typing import Any, Mapping, Sequence

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

BASE_COLUMNS = ("step", "sequences", "time_s", "split", "cost_bits", "bit_errors")


class TidyCSVLogger(Logger):
    """Receives ``{"sequences": n, "time_s": t, "<split>/<metric>": value, ...}`` and writes
    one row per split with columns :data:`BASE_COLUMNS` plus ``extra_columns``."""

    def __init__(
        self, save_dir: str, extra_columns: Sequence[str] = (), filename: str = "metrics.csv", keep_until_step: int | None = None
    ):
        """``keep_until_step``: a resumed run keeps the rows logged up to its checkpoint's
        step and drops later ones (logged again after the resume)."""
        super().__init__()
        self.keep_until_step = keep_until_step
        self._save_dir = save_dir
        self.path = os.path.join(save_dir, filename)
        self.columns = list(BASE_COLUMNS) + [c for c in extra_columns if c not in BASE_COLUMNS]
        self._file = None
        self._writer = None

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> int:
        return 0

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is already the run folder's ``config.yaml``."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._writer is None:  # a new run starts a new file, never appends to an old run's rows
            kept = self._rows_to_keep()
            self._file = open(self.path, "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
            self._writer.writeheader()
            self._writer.writerows(kept)
        common = {"step": step, "sequences": metrics.get("sequences"), "time_s": metrics.get("time_s")}
        splits: dict[str, dict[str, Any]] = {}
        for key, value in metrics.items():
            if "/" in key:
                split, metric = key.split("/", 1)
                splits.setdefault(split, {})[metric] = value
        for split, values in splits.items():
            self._writer.writerow({**common, "split": split, **values})
        self._file.flush()

    def _rows_to_keep(self) -> list[dict[str, str]]:
        """Complete rows of the existing file up to ``keep_until_step`` (none for a new run)."""
        if self.keep_until_step is None or not os.path.exists(self.path):
            return []
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        complete = [row for row in rows if None not in row.values() and row.get("step", "").isdigit()]
        return [row for row in complete if int(row["step"]) <= self.keep_until_step]

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None
