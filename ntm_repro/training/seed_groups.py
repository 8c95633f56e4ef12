"""``seed_batch.enabled=true``: a sweep's runs grouped by configuration (every key but the
seed), each group trained as one batch of seeds (:func:`ntm_repro.training.run.train_seeds`),
``seed_batch.jobs`` groups at a time in worker processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

from omegaconf import DictConfig, OmegaConf

Run = tuple[DictConfig, Path]
#: what trains one group: (configs, run folders) -> one outcome line per run
GroupTrainer = Callable[[list[DictConfig], list[Path]], list[str]]


def group_by_config(runs: list[Run]) -> list[list[Run]]:
    """Runs whose configs differ only in ``seed``, in order of first appearance, each group
    sorted by seed."""
    groups: dict[str, list[Run]] = {}
    for cfg, run_dir in runs:
        config = OmegaConf.to_container(cfg, resolve=True)
        config.pop("seed")
        groups.setdefault(json.dumps(config, sort_keys=True, default=str), []).append((cfg, run_dir))
    return [sorted(group, key=lambda run: run[0].seed) for group in groups.values()]


def train_groups(runs: list[Run], jobs: int, train_group: GroupTrainer) -> Iterator[str]:
    """Train every group of ``runs`` with ``train_group`` (a module-level function: workers
    import it), ``jobs`` groups at a time; yields each group's outcome lines as it ends."""
    groups = group_by_config(runs)
    work = [([cfg for cfg, _ in group], [run_dir for _, run_dir in group]) for group in groups]
    if jobs <= 1 or len(work) == 1:
        for cfgs, dirs in work:
            yield from train_group(cfgs, dirs)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=min(jobs, len(work)), backend="loky", return_as="generator_unordered")
    for lines in parallel(delayed(train_group)(cfgs, dirs) for cfgs, dirs in work):
        yield from lines
