"""What ntm-repro adds to Hydra's command line: the seed-range sugar, and one line for each
of Hydra's composition errors (the errors are Hydra's own, raised by its compose API)."""

import pytest
from hydra import compose, initialize_config_module

from ntm_repro.cli_args import RANGE_KEYS, expand_ranges, hydra_error_line
from ntm_repro.errors import ConfigError


def test_range_expands_inclusive():
    assert expand_ranges(["-m", "seed=0-4"]) == ["-m", "seed=0,1,2,3,4"]


def test_range_mixed_with_single_values():
    assert expand_ranges(["--multirun", "seed=0-2,7"]) == ["--multirun", "seed=0,1,2,7"]


def test_hydra_mode_multirun_counts_as_a_sweep():
    assert expand_ranges(["hydra.mode=MULTIRUN", "seed=1-2"]) == ["hydra.mode=MULTIRUN", "seed=1,2"]


def test_range_without_multirun_says_to_add_it():
    with pytest.raises(ConfigError, match="seed=0-2 is a sweep over 3 values; add -m to run them all"):
        expand_ranges(["seed=0-2"])


def test_one_value_range_needs_no_multirun():
    assert expand_ranges(["seed=3-3"]) == ["seed=3"]


def test_seed_zero_alone_is_untouched():
    assert expand_ranges(["seed=0", "-m"]) == ["seed=0", "-m"]


def test_only_declared_keys_take_ranges():
    """train.sequences=1000-2000 must never become 1,001 jobs: only seed-like keys expand."""
    assert RANGE_KEYS == ("seed",)
    argv = ["-m", "train.sequences=1000-2000", "run_name=2024-01-05", "task.max_length=10-20", "model.shifts=[0,1]"]
    assert expand_ranges(argv) == argv


def test_prefix_is_kept():
    assert expand_ranges(["-m", "+seed=1-2"]) == ["-m", "+seed=1,2"]


def test_empty_range_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="seed=4-2"):
        expand_ranges(["seed=4-2"])


def hydra_error(*overrides: str) -> BaseException:
    with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
        with pytest.raises(Exception) as caught:
            compose("config", overrides=list(overrides))
    return caught.value


@pytest.mark.parametrize(
    "overrides, line",
    [
        (["model=transformer"], "model=transformer: 'transformer' is not a model option; choose one of lstm, ntm, ntm1, ntm2, ntm3, ntm_2heads"),
        (["experiment=graves/nope"], "experiment=graves/nope: 'graves/nope' is not an experiment option; ntm-repro --help lists them"),
        (["train.sequence=10"], "train.sequence=10: no such key in this config; did you mean train.sequences? (a new key needs a leading +)"),
        (["trian.sequences=10"], "trian.sequences=10: no such key in this config; did you mean train.sequences? (a new key needs a leading +)"),
        (["train.zzz=1"], "train.zzz=1: no such key in this config; (a new key needs a leading +)"),
        (["x=["], "x=[: Hydra cannot parse this override (no viable alternative at input '['; see "),
    ],
)
def test_hydra_errors_become_one_line_naming_the_argument(overrides, line):
    text = hydra_error_line(hydra_error(*overrides), overrides)
    assert "\n" not in text and text.startswith(line), text
