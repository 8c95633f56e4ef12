"""Evaluation of a trained model on fixed held-out episodes: cost and bit errors per test
level (``generalisation.csv``) and attention traces (``attention/*.npz``), both at the end
of training and later, from a run folder's checkpoint, for other levels."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.precision import Precision

from ntm_repro.errors import ConfigError
from ntm_repro.models.ntm import NTM
from ntm_repro.models.population import Population
from ntm_repro.tasks.base import Task
from ntm_repro.training.build import build_networks
from ntm_repro.training.data import generalisation_sets
from ntm_repro.training.metrics import evaluate
from ntm_repro.training.run_folder import KEPT, write_generalisation
from ntm_repro.training.instantiate import build_task



def generalisation_rows(
    model: Population, task: Task, levels: Sequence[Any], per_level: int, precision: Precision | None = None
) -> list[list[dict[str, Any]]]:
    """Each seed's cost and bit errors at every level of ``levels``, on fixed held-out
    episodes (the same for every seed), with the target bits scored per sequence (bit errors
    over them: the per-bit error): one list of rows per seed of the population (under the
    trainer's ``precision``, as training ran)."""
    rows: list[list[dict[str, Any]]] = [[] for _ in range(model.seeds)]
    for level, episode in zip(levels, generalisation_sets(task, levels, per_level)):
        in_range = level in task.train_levels
        scored = float(episode.mask.sum()) * episode.targets.shape[-1] / episode.mask.shape[0]  # target bits per sequence
        for seed_rows, metrics in zip(rows, evaluate(model, [episode], task.reference_metrics, precision, task.scored_apart)):
            seed_rows.append({"level": task.level_label(level), "in_training_range": in_range, "sequences": per_level,
                              "scored_bits": scored, **metrics})
    return rows


def attention_path(run_dir: Path, task: Task, level: Any) -> Path:
    """``attention/<level name>_<level>.npz``, e.g. ``attention/length_10.npz``."""
    return run_dir / "attention" / f"{task.level_name.replace(' ', '_')}_{task.level_label(level)}.npz"


@torch.no_grad()
def write_attention(model: torch.nn.Module, task: Task, level: Any, path: Path) -> Path:
    """One held-out episode of ``level`` through the model, into ``path`` (the same episode
    every time: :func:`attention_path` at the end of a run, one per kept checkpoint along
    it): inputs (T, I), targets (T, O),
    mask (T,), output probabilities (T, O) and, for an NTM, the write and read weightings
    (T, H, N) within each head's block and the memory after the last step (K N, W)."""
    was_training = model.training
    model.eval()
    (episode,) = generalisation_sets(task, [level], 1)
    arrays: dict[str, Any] = {
        "inputs": episode.inputs[0].numpy(),
        "targets": episode.targets[0].numpy(),
        "mask": episode.mask[0].numpy() > 0,
        "level": str(task.level_label(level)),
        "task": task.name,
    }
    if isinstance(model, NTM):
        logits, trace = model(episode.inputs, trace=True)
        arrays.update(
            write_weights=trace.write_weights[0].numpy(),
            read_weights=trace.read_weights[0].numpy(),
            memory=trace.memory[0].numpy(),
        )
    else:
        logits = model(episode.inputs)
    arrays["outputs"] = torch.sigmoid(logits[0]).numpy()
    model.train(was_training)
    path.parent.mkdir(exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def load_trained(
    run_dir: Path, task_overrides: Sequence[str] = (), checkpoint: Path | None = None
) -> tuple[DictConfig, Task, torch.nn.Module]:
    """The config, task and model of a run folder, with the weights of its ``last.ckpt``
    (or of ``checkpoint``); ``task_overrides`` (``key=value``, keys under ``task.``) change
    the task's test settings."""
    config_path, checkpoint = run_dir / "config.yaml", checkpoint or run_dir / "last.ckpt"
    for path in (config_path, checkpoint):
        if not path.is_file():
            raise ConfigError(f"{path} is missing: give the folder of a run that finished training")
    cfg = OmegaConf.load(config_path)
    try:
        cfg.merge_with_dotlist(list(task_overrides))
    except Exception as error:
        raise ConfigError(f"cannot apply {list(task_overrides)}: {error}".replace("\n", " ")) from None
    task = build_task(cfg.task)
    (model,) = build_networks(cfg, task, [cfg.seed])
    load_weights(model, checkpoint, config_path)
    return cfg, task, model


def load_weights(model: torch.nn.Module, checkpoint: Path, config_path: Path) -> None:
    """The model's weights from a training checkpoint (its ``model.`` entries); a clear
    error when it is unreadable or does not fit the model of ``config_path``."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as error:
        raise ConfigError(f"{checkpoint} is unreadable ({type(error).__name__}); rerun the training") from None
    weights = {key[len("model.") :]: value for key, value in state.items() if key.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ConfigError(f"{checkpoint} does not fit the model of {config_path}: {str(error).splitlines()[0]}") from None


def kept_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """The checkpoints kept along a run (``train.keep_checkpoints``), by sequences trained."""
    found = []
    for path in (run_dir / KEPT).glob("sequences_*.ckpt"):
        number = path.stem.removeprefix("sequences_")
        if number.isdigit():
            found.append((int(number), path))
    return sorted(found)


def merge_generalisation(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` into the run's generalisation.csv, replacing rows of the same level
    and keeping the others."""
    path = run_dir / "generalisation.csv"
    kept = []
    if path.is_file():
        new_levels = {str(row["level"]) for row in rows}
        with open(path, newline="") as f:
            kept = [row for row in csv.DictReader(f) if row["level"] not in new_levels]
    write_generalisation(run_dir, kept + rows)
