"""Build a model from its config groups (``model`` and ``controller``), checking every size
first so that bad input fails with one line naming the key."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from ntm_repro.errors import ConfigError, choice, positive
from ntm_repro.memory.init import MEMORY_INITS
from ntm_repro.memory.topology import MIX_FORMS, MixingError, Topology, TopologyError
from ntm_repro.models.controller import ACTIVATIONS, LSTM_BIASES, FeedforwardController, LSTMController
from ntm_repro.models.engines import ENGINES, resolve_engine
from ntm_repro.models.lstm_baseline import LSTMBaseline
from ntm_repro.models.ntm import NTM

MODEL_TYPES = ("ntm", "lstm")
CONTROLLER_TYPES = ("lstm", "feedforward")


def build_controller(cfg: Mapping[str, Any], input_size: int) -> nn.Module:
    kind = choice(cfg["type"], "controller.type", CONTROLLER_TYPES)
    size = positive(cfg["size"], "controller.size")
    layers = positive(cfg["layers"], "controller.layers")
    if kind == "lstm":
        return LSTMController(
            input_size,
            size,
            layers,
            skip=bool(cfg.get("skip", False)),
            bias=choice(cfg.get("bias", "double"), "controller.bias", LSTM_BIASES),
            learn_init_state=bool(cfg.get("learn_init_state", True)),
        )
    activation = choice(cfg.get("activation", "sigmoid"), "controller.activation", list(ACTIVATIONS))
    return FeedforwardController(input_size, size, layers, activation)


def resolve_topology(cfg: Mapping[str, Any], heads: int, layers: int) -> Topology:
    """``model.topology`` resolved; a fault of it as a ConfigError naming the key."""
    try:
        return Topology.from_config(cfg, heads, layers)
    except TopologyError as error:
        key = f"model.topology.{error.where}" if error.where else "model.topology"
        hint = f" (set controller.layers={error.layer} or use layer: -1)" if error.layer is not None else ""
        raise ConfigError(f"{key}: {error}{hint}") from None


def build_model(model: Mapping[str, Any], controller: Mapping[str, Any], input_size: int, output_size: int) -> nn.Module:
    """The network for ``model.type``: ``ntm`` (any memory topology) or ``lstm`` (baseline)."""
    kind = choice(model["type"], "model.type", MODEL_TYPES)
    if kind == "lstm":
        if controller["type"] != "lstm":
            raise ConfigError(f"model=lstm needs controller=lstm, not controller={controller['type']}")
        return LSTMBaseline(build_controller(controller, input_size), output_size)

    memory = model["memory"]
    locations = positive(memory["locations"], "model.memory.locations")
    width = positive(memory["width"], "model.memory.width")
    heads = positive(model["heads"], "model.heads")
    init = choice(memory["init"], "model.memory.init", MEMORY_INITS)
    if not isinstance(model["shifts"], Sequence) or isinstance(model["shifts"], str):
        raise ConfigError(f"model.shifts={model['shifts']!r}: give a list of distinct integer shifts, e.g. [-1, 0, 1]")
    shifts = tuple(model["shifts"])
    if not shifts or len(set(shifts)) != len(shifts) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shifts):
        raise ConfigError(f"model.shifts={list(shifts)}: give distinct integer shifts, e.g. [-1, 0, 1]")
    if max(shifts) - min(shifts) + 1 > locations:
        raise ConfigError(
            f"model.shifts={list(shifts)}: spans {max(shifts) - min(shifts) + 1} locations, wider than the "
            f"memory (model.memory.locations={locations}); narrow the shifts or enlarge the memory"
        )
    layers = positive(controller["layers"], "controller.layers")
    topology = resolve_topology(model["topology"], heads, layers)
    reads = len(topology.read_blocks)
    ctrl = build_controller(controller, input_size + reads * width)
    mix = model["topology"].get("mix_init") or {}
    mix_form = choice(model["topology"].get("mixing", "convex"), "model.topology.mixing", MIX_FORMS)
    mix_a, mix_b = float(mix.get("a", 0.5)), float(mix.get("b", 0.5))
    learn_mix = bool(model["topology"].get("learn_mix", True))
    try:
        return NTM(
            ctrl,
            input_size,
            output_size,
            topology,
            locations=locations,
            width=width,
            shifts=shifts,
            memory_init=init,
            learn_init_reads=bool(model.get("learn_init_reads", True)),
            learn_init_weights=bool(model.get("learn_init_weights", True)),
            mix_a=mix_a,
            mix_b=mix_b,
            learn_mix=learn_mix,
            mix_form=mix_form,
            engine=resolve_engine(choice(model.get("engine", "fused"), "model.engine", ENGINES)),
        )
    except MixingError as error:  # the mixer's own check, named by the config keys that set it
        raise ConfigError(
            f"model.topology.mix_init={{a: {mix_a}, b: {mix_b}}} with model.topology.mixing={mix_form}, "
            f"learn_mix={str(learn_mix).lower()}: {error}"
        ) from None


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters, the count the papers report."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
