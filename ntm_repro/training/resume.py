"""``resume=true``: what to do with a run folder that already holds a run of the same
config. A finished run (completed, or diverged: rerunning it would diverge again) is
skipped; an unfinished one (killed, interrupted, failed) continues from its ``last.ckpt``;
a folder without a checkpoint starts afresh."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ntm_repro.errors import ConfigError
from ntm_repro.training.run_folder import FINISHED, read_summary
from ntm_repro.training.seed_checkpoints import stack_checkpoints

#: keys that may differ between the first attempt and the resumed one
FREE_KEYS = ("resume", "threads", "seed_batch")  # seed_batch: in run folders of earlier versions


@dataclass(frozen=True)
class ResumePlan:
    finished: dict[str, Any] | None = None  # the summary of a finished run: nothing to do
    checkpoint: Path | None = None  # continue from here
    step: int | None = None  # the checkpoint's global step


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def differing_keys(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two configs, ignoring :data:`FREE_KEYS`."""
    old, new = _flat(previous), _flat(current)
    keys = sorted(set(old) | set(new))
    return [key for key in keys if key.split(".")[0] not in FREE_KEYS and old.get(key) != new.get(key)]


def plan_resume(cfg: DictConfig, run_dir: Path) -> ResumePlan:
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        return ResumePlan()
    try:
        previous = OmegaConf.to_container(OmegaConf.load(config_path))
    except Exception:
        raise ConfigError(f"resume=true: {config_path} is unreadable; delete the folder to start the run afresh") from None
    differ = differing_keys(previous, OmegaConf.to_container(cfg, resolve=True))
    if differ:
        raise ConfigError(
            f"resume=true: {run_dir} holds a run of another config (it differs at {', '.join(differ[:3])}); "
            "resume into a new folder or drop resume=true"
        )
    summary = read_summary(run_dir)
    if summary.get("status") in FINISHED:
        return ResumePlan(finished=summary)
    checkpoint = run_dir / "last.ckpt"
    if not checkpoint.is_file():
        return ResumePlan()
    try:
        step = int(torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"])
    except Exception:
        raise ConfigError(f"resume=true: {checkpoint} is unreadable; delete it to restart this run from scratch") from None
    return ResumePlan(checkpoint=checkpoint, step=step)


def resume_checkpoint(plans: list[ResumePlan], run_dirs: list[Path], model: torch.nn.Module) -> Path | None:
    """The checkpoint to continue from, or None: the seeds' own ones stacked into the
    population's checkpoint for ``model`` (written beside the first seed's; the caller
    removes it after the fit)."""
    if plans[0].checkpoint is None:
        return None
    checkpoints = [torch.load(plan.checkpoint, map_location="cpu", weights_only=False) for plan in plans]
    path = run_dirs[0] / "population_resume.ckpt"
    torch.save(stack_checkpoints(checkpoints, model), path)
    return path
