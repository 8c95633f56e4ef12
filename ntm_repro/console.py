"""Writing to the terminal, which may go away: a closed stderr (``ntm-repro ... | tee log``
and Ctrl-C, or ``| head``) turns output off instead of failing a run."""

from __future__ import annotations

import sys


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


def say(message: str) -> None:
    """``message`` and a newline on stderr, while it can be written."""
    STDERR.write(message + "\n")
    STDERR.flush()
