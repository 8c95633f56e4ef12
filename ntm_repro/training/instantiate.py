"""Objects named by ``_target_`` in the config, with our own one-line errors kept intact."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ntm_repro.errors import ConfigError
from ntm_repro.tasks.base import Task


def instantiate_checked(spec: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, re-raising our own ConfigError rather than Hydra's wrapper."""
    try:
        return instantiate(spec, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise


def build_task(task_cfg: DictConfig) -> Task:
    """The task of ``task_cfg`` (its ``name`` only labels runs and folders)."""
    spec = OmegaConf.to_container(task_cfg, resolve=True)
    spec.pop("name", None)
    return instantiate_checked(spec)
