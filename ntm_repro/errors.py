"""The one exception type for bad user input: its message is a single line naming the
offending key or value and what would be accepted."""


class ConfigError(ValueError):
    """Raised before training for any configuration that cannot work."""
