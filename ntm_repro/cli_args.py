"""What ``ntm-repro`` adds to Hydra's own command line, and nothing more: Hydra parses the
arguments and composes the config (so all of Hydra's flags work); this module gives

- the seed-range sugar ``seed=0-4`` -> ``seed=0,1,2,3,4`` (items may be mixed:
  ``seed=0-2,7``), for the keys of :data:`RANGE_KEYS` only, so that ``train.sequences=
  1000-2000`` is never quietly 1,001 jobs;
- one line for each of Hydra's composition errors (an unknown group option, a key the
  config does not have, an override it cannot parse), instead of its multi-line report;
- one line naming the optional extra a chosen preset needs when it is not installed.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from typing import Sequence

from ntm_repro.errors import ConfigError

#: keys whose ``A-B`` values are integer ranges (a sweep over seeds)
RANGE_KEYS = ("seed",)
OVERRIDE = re.compile(r"^(?P<prefix>[+~]{0,2})(?P<key>[A-Za-z_][\w./]*)=(?P<value>.*)$")
RANGE_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")
MULTIRUN_FLAGS = ("-m", "--multirun", "hydra.mode=MULTIRUN")


#: presets chosen on the command line -> (the extra that installs them, the modules they import)
EXTRAS = {
    "hydra/sweeper=optuna": ("optuna", ("optuna", "hydra_plugins.hydra_optuna_sweeper")),
    "logger=wandb": ("wandb", ("wandb",)),
    "logger=csv_wandb": ("wandb", ("wandb",)),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_extras(argv: Sequence[str]) -> None:
    """A preset of :data:`EXTRAS` chosen in ``argv`` whose modules are missing: a
    ConfigError naming the extra to install."""
    for prefix, (extra, modules) in EXTRAS.items():
        chosen = [arg for arg in argv if arg.lstrip("+~").startswith(prefix)]
        if chosen and not all(map(_installed, modules)):
            raise ConfigError(f"{chosen[0]}: needs the {extra} extra; install it with pip install -e '.[{extra}]'")


def expand_ranges(argv: list[str]) -> list[str]:
    """Rewrite ``KEY=A-B`` items (A <= B, non-negative) into comma lists for the keys of
    :data:`RANGE_KEYS`. A range is a sweep: without ``-m`` it is an error that says so."""
    multirun = any(arg in MULTIRUN_FLAGS for arg in argv)
    out = []
    for arg in argv:
        match = OVERRIDE.match(arg)
        items = [RANGE_ITEM.match(v) for v in match["value"].split(",")] if match and match["key"] in RANGE_KEYS else []
        if not items or not all(items) or not any(m.group(2) for m in items):
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


def _chosen_by(missing: str, overrides: Sequence[str]) -> tuple[str, str, str]:
    """(argument, group, option) of the override that chose the missing config file
    ``missing`` (``group/option``; groups may nest: ``experiment/graves/foo``)."""
    for arg in overrides:
        match = OVERRIDE.match(arg)
        for option in match["value"].split(",") if match else ():
            if missing == f"{match['key'].lstrip('/')}/{option}":
                return arg, match["key"].lstrip("/"), option
    group, option = missing.rsplit("/", 1)
    return f"{group}={option}", group, option


def hydra_error_line(error: BaseException, overrides: Sequence[str] = ()) -> str:
    """One line for an error Hydra or OmegaConf raised while parsing the overrides or
    composing the config, naming the argument and what would be accepted."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file and "/" in error.missing_cfg_file:
        arg, group, option = _chosen_by(error.missing_cfg_file, overrides)
        choices = f"choose one of {', '.join(error.options)}" if error.options else "ntm-repro --help lists them"
        article = "an" if group[0] in "aeiou" else "a"
        return f"{arg}: {option!r} is not {article} {group} option; {choices}"
    if isinstance(error, OverrideParseException):
        return f"{error.override}: Hydra cannot parse this override ({error.message.splitlines()[0]}; see https://hydra.cc/docs/advanced/override_grammar/basic)"
    cause = error.__cause__
    full_key = getattr(cause, "full_key", None)
    if full_key and "not in struct" in str(cause):
        matches = [m for a in overrides if (m := OVERRIDE.match(a)) and (m["key"] + ".").startswith(full_key + ".")]
        key = matches[0]["key"] if matches else full_key
        arg = matches[0].string if matches else full_key
        parent = getattr(cause, "parent_node", None)
        known = [str(k) for k in parent.keys()] if parent is not None else []
        close = difflib.get_close_matches(str(cause.key), known, n=1, cutoff=0.75)
        stem = full_key[: -len(str(cause.key))]
        hint = f"did you mean {stem}{close[0]}{key[len(full_key):]}? " if close else ""
        return f"{arg}: no such key in this config; {hint}(a new key needs a leading +)"
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith("\t")]
    return " ".join(line for line in lines if line != "Config search path:")
