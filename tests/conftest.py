"""Shared fixtures: the package's config composed with Hydra's compose API, shrunk for speed."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

# A run small enough for a test: short copy sequences, small memory, few sequences.
TINY = [
    "train.sequences=96",
    "train.batch_size=8",
    "train.log_every=16",
    "train.val_every=32",
    "train.val_batch_size=2",
    "train.test_batch_size=2",
    "task.max_length=4",
    "task.test_lengths=[2,6]",
    "++model.memory.locations=16",
    "++model.memory.width=6",
    "controller.size=12",
]


@pytest.fixture
def compose_cfg():
    def _compose(*overrides: str, tiny: bool = True) -> DictConfig:
        with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
            return compose("config", overrides=[*(TINY if tiny else []), *overrides])

    return _compose


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The models are tiny: extra threads only add contention (and make timings erratic)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
