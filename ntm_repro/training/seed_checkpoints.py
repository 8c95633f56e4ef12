"""Checkpoints of seeds trained as a batch, kept as one checkpoint per seed in the format of
a run trained alone: each seed's ``last.ckpt`` can be evaluated (``ntm-repro-eval``) and
resumed on its own, and K of them at one step stack back into a batch to resume together.

A batch checkpoint holds the stacked parameters (``model.stacked.<name>``, seed k in row k)
and the optimizer state of the stacked parameters (the optimizers we use act element by
element, so row k of every state tensor is seed k's state); the training interval's sums
are lists with one entry per seed. Everything else (step, loops, data position) is shared.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ntm_repro.models.population import Population, stack_key

#: where a batch checkpoint keeps the stacked parameters (the learner's ``model.stacked``)
STACKED_PREFIX = "model.stacked."
#: the interval entries kept per seed
PER_SEED = ("cost", "errors", "extra")
#: the checkpoint's entry of each seed's run config (the learner's CONFIGS)
CONFIGS = "ntm_repro_configs"


def _optimizer_state(state: dict[str, Any], replace: Callable[[int, str, Any], Any]) -> dict[str, Any]:
    """``state`` (an optimizer's state_dict) with entry ``name`` of parameter ``index``
    replaced by ``replace(index, name, value)``."""
    out = dict(state)
    out["state"] = {
        index: {name: replace(index, name, value) for name, value in entries.items()} for index, entries in state["state"].items()
    }
    return out


def _per_parameter(value: Any, shape: torch.Size) -> bool:
    """A tensor of the parameter's shape (e.g. Adam's moments), not a shared scalar (its step)."""
    return isinstance(value, torch.Tensor) and value.shape == shape


def split_checkpoint(checkpoint: dict[str, Any], model: Population) -> list[dict[str, Any]]:
    """A batch checkpoint -> one checkpoint per seed, as that seed's run alone would write it."""
    shapes = [model.stacked[stack_key(name)].shape for name in model.names]
    interval = checkpoint["interval"]
    seeds = []
    for k, network in enumerate(model.seed_models()):

        def row(index: int, name: str, value: Any, k: int = k) -> Any:
            return value[k].clone() if _per_parameter(value, shapes[index]) else value

        seed = dict(checkpoint)
        seed["state_dict"] = {f"model.{name}": value.clone() for name, value in network.state_dict().items()}
        seed["optimizer_states"] = [_optimizer_state(state, row) for state in checkpoint["optimizer_states"]]
        seed["interval"] = {**interval, **{key: interval[key][k : k + 1] for key in PER_SEED}}
        seed[CONFIGS] = checkpoint.get(CONFIGS, [])[k : k + 1]
        seeds.append(seed)
    return seeds


def stack_checkpoints(checkpoints: list[dict[str, Any]], model: Population) -> dict[str, Any]:
    """One checkpoint per seed, all at the same step -> the batch checkpoint of ``model``."""
    steps = {int(checkpoint["global_step"]) for checkpoint in checkpoints}
    if len(steps) != 1:
        raise ValueError(f"seed checkpoints at different steps ({sorted(steps)}) cannot be stacked")
    shapes = [model.stacked[stack_key(name)].shape[1:] for name in model.names]
    batch = dict(checkpoints[0])
    batch["state_dict"] = {
        f"{STACKED_PREFIX}{stack_key(name)}": torch.stack([c["state_dict"][f"model.{name}"] for c in checkpoints]) for name in model.names
    }
    batch["optimizer_states"] = []
    for i, state in enumerate(checkpoints[0]["optimizer_states"]):
        per_seed = [c["optimizer_states"][i]["state"] for c in checkpoints]

        def stack(index: int, name: str, value: Any, per_seed=per_seed) -> Any:
            if not _per_parameter(value, shapes[index]):
                return value
            return torch.stack([seed[index][name] for seed in per_seed])

        batch["optimizer_states"].append(_optimizer_state(state, stack))
    intervals = [c["interval"] for c in checkpoints]
    batch["interval"] = {**intervals[0], **{key: [v for i in intervals for v in i[key]] for key in PER_SEED}}
    batch[CONFIGS] = [config for c in checkpoints for config in c.get(CONFIGS, [])]
    return batch
