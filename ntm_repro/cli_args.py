"""Command-line overrides, checked and rewritten before Hydra parses them.

- Integer ranges: ``seed=0-4`` -> ``seed=0,1,2,3,4`` (items may be mixed: ``seed=0-2,7``),
  only for keys whose composed value is an integer; anything else (a date-like string,
  a string key) is left alone.
- Config-group options: ``model=foo`` for an option that does not exist fails with one
  line listing the options, instead of Hydra's multi-line error; so does a key that the
  config does not have (``train.sequence=10``), with the nearest keys suggested.
"""

from __future__ import annotations


import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from omegaconf import DictConfig, OmegaConf

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
    """Rewrite ``KEY=A-B`` items (A <= B, non-negative) into comma lists for integer keys.
    A range is a sweep: without ``-m`` it is an error that says so."""
    multirun = any(arg in ("-m", "--multirun") for arg in argv)
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
        if len(values) > 1 and not multirun:
            raise ConfigError(f"{arg} is a sweep over {len(values)} values; add -m to run them all")
        out.append(f"{match['prefix']}{match['key']}={','.join(map(str, values))}")
    return out


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix] if prefix else []
    keys = [prefix] if prefix else []
    for key, value in node.items():
        keys += _dotted_keys(value, f"{prefix}.{key}" if prefix else str(key))
    return keys


def check_keys(argv: list[str], cfg: DictConfig | None, groups: dict[str, list[str]] | None = None) -> None:
    """A ConfigError for an override of a key the composed config does not have (a typo,
    or a key of another model), suggesting the nearest existing keys. Keys prefixed with
    ``+``/``++``/``~``, config groups and Hydra's own keys are Hydra's business."""
    if cfg is None:
        return
    groups = config_groups() if groups is None else groups
    known = None
    for arg in argv:
        match = OVERRIDE.match(arg)
        if not match or match["prefix"] or match["key"] in groups or match["key"].split(".")[0] == "hydra" or "/" in match["key"]:
            continue
        if OmegaConf.select(cfg, match["key"], default=_ABSENT, throw_on_missing=False) is not _ABSENT:
            continue
        if known is None:
            known = _dotted_keys(OmegaConf.to_container(cfg, resolve=False))
        close = difflib.get_close_matches(match["key"], known, n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"{arg}: no such key in this config; {hint}(a new key needs a leading +)")


_ABSENT = object()


def compose_for_checks(argv: list[str], groups: dict[str, list[str]] | None = None) -> DictConfig | None:
    """The config the command would compose with its group choices (the first option of a
    sweep list), or None when Hydra cannot compose it (Hydra then reports why)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    groups = config_groups() if groups is None else groups
    overrides = [f"{group}={values[0]}" for group, _, values in _group_overrides(argv, groups)]
    try:
        with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    except Exception:
        return None
    finally:
        GlobalHydra.instance().clear()


def int_keys_of(cfg: DictConfig | None) -> Callable[[str], bool]:
    """``is_int_key`` for :func:`expand_ranges`: true for keys whose value in ``cfg`` is an int."""

    def is_int_key(key: str) -> bool:
        if cfg is None:
            return False
        value = OmegaConf.select(cfg, key, default=None)
        return isinstance(value, int) and not isinstance(value, bool)

    return is_int_key


def override_value(argv: list[str], key: str) -> str | None:
    """The value a plain ``KEY=VALUE`` override in ``argv`` gives ``key``, or None."""
    return next((arg.split("=", 1)[1] for arg in argv if arg.startswith(key + "=")), None)


def check_output_folder(argv: list[str]) -> None:
    """The folder runs will be written to (``hydra.sweep.dir`` with ``-m``, else
    ``hydra.run.dir``; by default under ``multirun/``) must be creatable: its nearest
    existing ancestor must be a writable directory."""
    sweep = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    target = override_value(argv, key) or "multirun"
    path = Path(target).absolute()
    ancestor = next(p for p in (path, *path.parents) if p.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        problem = "is not a directory" if not ancestor.is_dir() else "is not writable"
        raise ConfigError(f"cannot write runs to {path}: {ancestor} {problem}; choose another folder with {key}=PATH")
