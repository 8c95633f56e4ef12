"""Bad user input: one exception type whose message is a single line naming the offending
key or value and what would be accepted, and the small checks that raise it."""

from __future__ import annotations

from typing import Any, Sequence


class ConfigError(ValueError):
    """Raised before training for any configuration that cannot work."""


class RunInterrupted(Exception):
    """Training stopped by the signal ``signum`` (SIGINT, SIGTERM) at a step boundary, every
    seed's checkpoint kept; the message has one line per run folder."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def positive(value: Any, key: str) -> int:
    """``value`` as a positive integer, or a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r}: must be a positive integer")
    return value


def choice(value: Any, key: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, or a ConfigError listing them."""
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: unknown; choose one of {', '.join(allowed)}")
    return value
