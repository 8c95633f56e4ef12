"""What ntm-repro says, through the ``ntm_repro`` logger: on the terminal (stderr, as it
is, no time or level), which may go away: a closed stderr (``ntm-repro ... | tee log`` and
Ctrl-C, or ``| head``) turns output off instead of failing a run; and, while a run trains,
into its folder's ``ntm-repro.log`` (:func:`run_log`, with times, and the details the
terminal is spared)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator, Sequence


class ClosableStream:
    """A file-like stand-in for stderr that stops writing once writes fail."""

    def __init__(self) -> None:
        self.open = True

    def write(self, text: str) -> int:
        if self.open:
            try:
                return sys.stderr.write(text)
            except (BrokenPipeError, OSError, ValueError):  # ValueError: stderr closed
                self.open = False
        return 0

    def flush(self) -> None:
        if self.open:
            try:
                sys.stderr.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.open = False


STDERR = ClosableStream()
LOG = logging.getLogger("ntm_repro")
LOG.propagate = False  # its own handlers: Hydra's console handler would repeat every line
LOG.setLevel(logging.DEBUG)
RUN_LOG = "ntm-repro.log"  # in each run folder (Hydra's job log, hydra.job.name: ntm-repro)


class ConsoleHandler(logging.Handler):
    """Lines of INFO and above on stderr as they are, while it can be written."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        STDERR.write(self.format(record) + "\n")
        STDERR.flush()


def _console() -> None:
    """The console handler, once (a logging configuration may have removed it)."""
    if not any(isinstance(handler, ConsoleHandler) for handler in LOG.handlers):
        LOG.addHandler(ConsoleHandler())


def say(message: str, level: int = logging.INFO, run_dir: Path | None = None) -> None:
    """``message`` on stderr and in the logs of the runs training, or of ``run_dir`` alone
    (DEBUG: the logs only)."""
    _console()
    LOG.log(level, message, extra={"run_dir": str(run_dir)} if run_dir is not None else None)


@contextlib.contextmanager
def run_log(run_dirs: Sequence[Path]) -> Iterator[None]:
    """While in it, what is said also goes to each run folder's :data:`RUN_LOG`."""
    handlers = []
    for run_dir in run_dirs:
        handler = logging.FileHandler(Path(run_dir) / RUN_LOG, encoding="utf-8")
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
        handler.addFilter(lambda record, run_dir=str(run_dir): getattr(record, "run_dir", run_dir) == run_dir)
        LOG.addHandler(handler)
        handlers.append(handler)
    try:
        yield
    finally:
        for handler in handlers:
            LOG.removeHandler(handler)
            handler.close()


_console()
