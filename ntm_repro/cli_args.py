"""Command-line overrides, checked and rewritten before Hydra parses them.

- Integer ranges: ``seed=0-4`` -> ``seed=0,1,2,3,4`` (items may be mixed: ``seed=0-2,7``),
  only for keys whose composed value is an integer; anything else (a date-like string,
  a string key) is left alone.
- Config-group options: ``model=foo`` for an option that does not exist fails with one
  line listing the options, instead of Hydra's multi-line error.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Callable, Iterable

from ntm_repro.errors import ConfigError

OVERRIDE = re.compile(r"^(?P<prefix>[+~]{0,2})(?P<key>[A-Za-z_][\w./]*)=(?P<value>.*)$")
RANGE_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")
SIMPLE_OPTION = re.compile(r"^[\w./-]+$")


def config_groups() -> dict[str, list[str]]:
    """Every config group of the package's ``conf/`` and its options (``experiment`` nests)."""
    root = resources.files("ntm_repro.conf")
    groups = {}
    for group in root.iterdir():
        if group.is_dir() and not group.name.startswith(("_", ".")) and group.name != "hydra":
            groups[group.name] = sorted(_options(group, ""))
    return groups


def _options(folder, prefix: str) -> Iterable[str]:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.name.startswith(("_", ".")):
            yield from _options(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".yaml"):
            yield prefix + entry.name[: -len(".yaml")]


def _group_overrides(argv: list[str], groups: dict[str, list[str]]) -> list[tuple[str, str, list[str]]]:
    found = []
    for arg in argv:
        match = OVERRIDE.match(arg)
        if match and match["key"] in groups:
            values = match["value"].split(",")
            if all(SIMPLE_OPTION.match(v) for v in values):
                found.append((match["key"], match["value"], values))
    return found


def check_group_options(argv: list[str], groups: dict[str, list[str]] | None = None) -> None:
    """A ConfigError naming the first unknown group option and the allowed ones."""
    groups = config_groups() if groups is None else groups
    for group, value, values in _group_overrides(argv, groups):
        for option in values:
            if option not in groups[group] and option != "null":
                raise ConfigError(f"{group}={value}: {option!r} is not a {group} option; choose one of {', '.join(groups[group])}")


def expand_ranges(argv: list[str], is_int_key: Callable[[str], bool]) -> list[str]:
    """Rewrite ``KEY=A-B`` items (A <= B, non-negative) into comma lists for integer keys."""
    out = []
    for arg in argv:
        match = OVERRIDE.match(arg)
        items = [RANGE_ITEM.match(v) for v in match["value"].split(",")] if match else []
        if not items or not all(items) or not any(m.group(2) for m in items) or not is_int_key(match["key"]):
            out.append(arg)
            continue
        values: list[int] = []
        for item in items:
            low, high = int(item.group(1)), int(item.group(2) or item.group(1))
            if low > high:
                raise ConfigError(f"{match['key']}={match['value']}: the range {low}-{high} is empty; write the smaller bound first")
            values.extend(range(low, high + 1))
        out.append(f"{match['prefix']}{match['key']}={','.join(map(str, values))}")
    return out


def composed_int_keys(argv: list[str]) -> Callable[[str], bool]:
    """``is_int_key`` backed by the config composed with the command's group choices (the
    first option of a sweep list), composed only if some argument looks like a range."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    cache = {}

    def is_int_key(key: str) -> bool:
        if "cfg" not in cache:
            groups = config_groups()
            overrides = [f"{group}={values[0]}" for group, _, values in _group_overrides(argv, groups)]
            try:
                with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
                    cache["cfg"] = compose(config_name="config", overrides=overrides)
            except Exception:  # Hydra itself will report a broken composition
                cache["cfg"] = None
            finally:
                GlobalHydra.instance().clear()
        cfg = cache["cfg"]
        if cfg is None:
            return False
        value = OmegaConf.select(cfg, key, default=None)
        return isinstance(value, int) and not isinstance(value, bool)

    return is_int_key
