"""The argv rewriting done before Hydra: integer ranges and group-option checks."""

import pytest

from ntm_repro.cli_args import (
    check_group_options,
    check_keys,
    compose_for_checks,
    config_groups,
    expand_ranges,
    int_keys_of,
)
from ntm_repro.errors import ConfigError


def int_keys(*keys):
    return lambda key: key in keys


def test_range_expands_inclusive():
    assert expand_ranges(["-m", "seed=0-4"], int_keys("seed")) == ["-m", "seed=0,1,2,3,4"]


def test_range_mixed_with_single_values():
    assert expand_ranges(["--multirun", "seed=0-2,7"], int_keys("seed")) == ["--multirun", "seed=0,1,2,7"]


def test_range_without_multirun_says_to_add_it():
    with pytest.raises(ConfigError, match="seed=0-2 is a sweep over 3 values; add -m to run them all"):
        expand_ranges(["seed=0-2"], int_keys("seed"))


def test_one_value_range_needs_no_multirun():
    assert expand_ranges(["seed=3-3"], int_keys("seed")) == ["seed=3"]


def test_seed_zero_alone_is_untouched():
    assert expand_ranges(["seed=0", "-m"], int_keys("seed")) == ["seed=0", "-m"]


def test_non_integer_keys_and_date_like_values_are_left_alone():
    argv = ["run_name=2024-01-05", "tag=10-20", "model=ntm,lstm", "model.shifts=[0,1]"]
    assert expand_ranges(argv, int_keys("seed")) == argv


def test_prefix_is_kept():
    assert expand_ranges(["-m", "+seed=1-2"], int_keys("seed")) == ["-m", "+seed=1,2"]


def test_empty_range_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="seed=4-2"):
        expand_ranges(["seed=4-2"], int_keys("seed"))


def test_integer_keys_come_from_the_composed_config():
    is_int = int_keys_of(compose_for_checks(["model=ntm,lstm", "seed=0-3"]))
    assert is_int("seed")
    assert is_int("model.memory.locations")
    assert not is_int("task.name")
    assert not is_int("no.such.key")


def test_group_options_are_listed_from_the_package():
    groups = config_groups()
    assert {"ntm", "lstm"} <= set(groups["model"])
    assert "ift6135/lstm_ntm" in groups["experiment"]


def test_unknown_group_option_names_the_choices():
    with pytest.raises(ConfigError, match=r"model=ntm,foo: 'foo' is not a model option; choose one of .*lstm.*ntm"):
        check_group_options(["model=ntm,foo"])


def test_known_group_options_pass():
    check_group_options(["model=ntm,lstm", "experiment=ift6135/mlp_ntm", "seed=3", "model.heads=2"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train.sequence=64"], r"train.sequence=64: no such key in this config; did you mean train.sequences\?"),
        (["model=lstm", "model.heads=2"], r"model.heads=2: no such key in this config"),
        (["-m", "model=ntm,lstm", "controller.sise=5"], r"controller.sise=5: no such key .*did you mean controller.size"),
    ],
)
def test_unknown_keys_are_one_line_with_a_suggestion(argv, message):
    with pytest.raises(ConfigError, match=message):
        check_keys(argv, compose_for_checks(argv))


def test_known_and_new_keys_pass():
    argv = ["model=ntm1", "model.memory.locations=64", "+extra.note=hi", "hydra.run.dir=x", "seed=2"]
    check_keys(argv, compose_for_checks(argv))
