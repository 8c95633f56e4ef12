"""The Neural Turing Machine (Graves et al. 2014), one class for every memory topology.

Per time step t, in this order (the order of Zhang, Yu & Zhou 2015, eqs. for NTM1-3):

1. controller input ``[x_t, r_{t-1}]`` -> controller layer outputs;
2. one linear projection per feeding controller layer emits every head's parameters;
3. write heads address ``M_{t-1}`` and write (all erase, then all add) -> memory after writes;
4. mixing: ``block <- a * block + b * source`` for each mixed block -> ``M_t``;
5. read heads address ``M_t`` and read ``r_t``;
6. output ``y_t = sigmoid(W_o [h_t, r_t] + b_o)`` (returned as logits; applied over all t
   at once since it feeds nothing back).

Head parameters: key ``k`` (W), strength ``beta = softplus`` (> 0), gate ``g = sigmoid``,
shift ``s = softmax`` over the allowed shifts, sharpening ``gamma = 1 + softplus`` (>= 1);
write heads also emit erase ``e = sigmoid`` and add ``a`` (unconstrained).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ntm_repro.memory.addressing import address, shift_index
from ntm_repro.memory.init import MemoryInit
from ntm_repro.memory.topology import BlockPlacement, Mixer, Topology
from ntm_repro.models.engines import fused_takes

#: Initial weighting logits: +INIT_FOCUS at location 0, -INIT_FOCUS elsewhere (a softmax of
#: these puts all but ~1e-6 of the weight on location 0; learnable when learn_init_weights).
INIT_FOCUS = 10.0


class NTMState(NamedTuple):
    """Everything carried from one time step to the next."""

    controller: Any  # the controller's own state (empty for a feedforward controller)
    memory: torch.Tensor  # (B, K, N, W), all blocks stacked
    norms: torch.Tensor  # (B, K, N), row norms of ``memory`` (shared by all heads' addressing)
    write_weights: torch.Tensor  # (B, Hw, N), within each head's block
    read_weights: torch.Tensor  # (B, Hr, N)
    reads: torch.Tensor  # (B, Hr * W)


@dataclass
class Trace:
    """What a forward pass did, for attention plots: weightings per step within each head's
    block, (B, T, H, N), and the memory after the last step, blocks stacked along the
    locations, (B, K*N, W)."""

    write_weights: torch.Tensor
    read_weights: torch.Tensor
    memory: torch.Tensor


def stacked_readout(tensors: Mapping[str, torch.Tensor], tops: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
    """:meth:`NTM.readout` of K networks from their stacked parameters (``output.weight``
    (K, O, H + R), ``output.bias`` (K, O)): (K, B, T, H) and (K, B, T, R) -> (K, B, T, O),
    one batched matrix product."""
    k, b, t, _ = tops.shape
    weight, bias = tensors["output.weight"], tensors["output.bias"]
    features = torch.cat((tops, reads), dim=-1).reshape(k, b * t, -1)
    return torch.baddbmm(bias.unsqueeze(1), features, weight.transpose(1, 2)).reshape(k, b, t, -1)


class NTM(nn.Module):
    def __init__(
        self,
        controller: nn.Module,
        input_size: int,
        output_size: int,
        topology: Topology,
        locations: int = 128,
        width: int = 20,
        shifts: tuple[int, ...] = (-1, 0, 1),
        memory_init: str = "constant",
        learn_init_reads: bool = True,
        learn_init_weights: bool = True,
        mix_a: float = 0.5,
        mix_b: float = 0.5,
        learn_mix: bool = True,
        mix_form: str = "convex",
        engine: str = "fused",
    ):
        super().__init__()
        self.engine = engine  # "reference": this module's own ops; "fused": ntm_repro.models.fused (models.engines)
        self.controller = controller
        self.topology = topology
        self.locations, self.width = locations, width
        self.num_blocks = len(topology.blocks)
        self.num_write = len(topology.write_blocks)
        self.num_read = len(topology.read_blocks)
        heads = self.num_write + self.num_read
        self.shift_count = len(shifts)
        # per head: key (W), beta, gate, shifts (S), gamma
        self.address_sizes = [width, 1, 1, self.shift_count, 1]
        self.address_width = sum(self.address_sizes)

        self.memory_init = MemoryInit(self.num_blocks * locations, width, memory_init)
        self.register_buffer("shift_index", shift_index(shifts, locations), persistent=False)
        self.write_place = BlockPlacement(topology.write_blocks, self.num_blocks, locations)
        self.read_place = BlockPlacement(topology.read_blocks, self.num_blocks, locations)
        self.mixer = Mixer(topology, mix_a, mix_b, learn_mix, mix_form)

        if learn_init_reads:
            self.init_reads = nn.Parameter(torch.randn(self.num_read * width) * 0.01)
        else:
            self.register_buffer("init_reads", torch.zeros(self.num_read * width), persistent=False)
        # Every head starts focused on the first location of its block: a uniform start
        # would never break the symmetry between identical (e.g. constant) memory rows.
        init_logits = torch.full((heads, locations), -INIT_FOCUS)
        init_logits[:, 0] = INIT_FOCUS
        if learn_init_weights:
            self.init_weight_logits = nn.Parameter(init_logits)
        else:
            self.register_buffer("init_weight_logits", init_logits, persistent=False)

        self._build_projections(controller.layer_sizes)
        self.output = nn.Linear(controller.layer_sizes[-1] + self.num_read * width, output_size)
        nn.init.xavier_uniform_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        self.input_size, self.output_size = input_size, output_size

    def _build_projections(self, layer_sizes: list[int]) -> None:
        """One linear map per controller layer that feeds heads. The concatenated outputs
        are permuted (only when needed) into the canonical layout: addressing parameters
        of every head (write heads first, then read heads), then erase and add of every
        write head."""
        head_layers = list(self.topology.write_layers) + [self.topology.read_layer] * self.num_read
        chunks = []  # (layer, canonical start, length) of every parameter chunk
        for head, layer in enumerate(head_layers):
            chunks.append((layer, head * self.address_width, self.address_width))
        erase_add_start = len(head_layers) * self.address_width
        for head in range(self.num_write):
            chunks.append((head_layers[head], erase_add_start + head * 2 * self.width, 2 * self.width))
        self.feeding_layers = sorted({layer for layer, _, _ in chunks})
        self.projections = nn.ModuleList()
        emitted: list[int] = []  # canonical position of every emitted column, in emission order
        for layer in self.feeding_layers:
            mine = [(start, length) for lay, start, length in chunks if lay == layer]
            self.projections.append(nn.Linear(layer_sizes[layer], sum(length for _, length in mine)))
            for start, length in mine:
                emitted.extend(range(start, start + length))
        order = torch.tensor(emitted).argsort()
        self.register_buffer("projection_order", order, persistent=False)
        self.permute_projection = not torch.equal(order, torch.arange(len(emitted)))
        self.projection_split = [self.num_write * self.address_width, self.num_read * self.address_width, self.num_write * 2 * self.width]
        for proj in self.projections:
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def _project(self, layer_outputs: list[torch.Tensor]) -> torch.Tensor:
        if len(self.projections) == 1:
            flat = self.projections[0](layer_outputs[self.feeding_layers[0]])
        else:
            flat = torch.cat([p(layer_outputs[l]) for p, l in zip(self.projections, self.feeding_layers)], dim=-1)
        return flat[:, self.projection_order] if self.permute_projection else flat

    def _activate(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Raw addressing parameters (B, H, W + S + 3) -> key, beta > 0, gate in (0, 1),
        shift distribution, gamma >= 1."""
        key, beta, gate, shift, gamma = params.split(self.address_sizes, dim=-1)
        return key, F.softplus(beta), torch.sigmoid(gate), torch.softmax(shift, dim=-1), 1 + F.softplus(gamma)

    def initial_state(self, batch: int) -> NTMState:
        """The state before the first step: memory init, every head on its initial
        weighting, the initial read vectors and the controller's initial state."""
        memory = self.memory_init(batch).view(batch, self.num_blocks, self.locations, self.width)
        weights = torch.softmax(self.init_weight_logits, dim=-1).unsqueeze(0).expand(batch, -1, -1)
        return NTMState(
            controller=self.controller.initial_state(batch),
            memory=memory,
            norms=torch.linalg.vector_norm(memory, dim=-1),
            write_weights=weights[:, : self.num_write],
            read_weights=weights[:, self.num_write :],
            reads=self.init_reads.unsqueeze(0).expand(batch, -1),
        )

    def mixing_plans(self) -> list:
        """The mixer's :meth:`Mixer.level_plans` (none for a topology without mixing)."""
        return self.mixer.level_plans() if self.mixer.active else []

    def mixing_figures(self) -> dict[str, float]:
        """The current ``a``, ``b`` of every mixed block (:meth:`Mixer.figures`), for the log."""
        return self.mixer.figures(self.topology.blocks) if self.mixer.active else {}

    def readout(self, tops: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
        """Output logits ``W_o [h_t, r_t] + b_o`` for every step at once: ``tops`` (B, T, H),
        ``reads`` (B, T, Hr * W) -> (B, T, output_size)."""
        return self.output(torch.cat((tops, reads), dim=-1))

    def step(self, x: torch.Tensor, state: NTMState, plans: list) -> tuple[torch.Tensor, NTMState]:
        """One time step (module docstring, 1-5): returns the top controller layer's output
        and the new state. ``plans``: :meth:`Mixer.level_plans`, built once per sequence."""
        batch = x.shape[0]
        hw, width = self.num_write, self.width
        layers, controller = self.controller.step(torch.cat((x, state.reads), dim=-1), state.controller)
        write_addressing, read_addressing, erase_add = self._project(layers).split(self.projection_split, dim=-1)
        key_w, beta_w, gate_w, shift_w, gamma_w = self._activate(write_addressing.view(batch, hw, -1))
        key_r, beta_r, gate_r, shift_r, gamma_r = self._activate(read_addressing.view(batch, -1, self.address_width))
        erase, add = erase_add.view(batch, hw, 2 * width).split(width, dim=-1)
        index = self.shift_index

        similarity = self.write_place.similarity(key_w, state.memory, state.norms)
        w_write = address(similarity, state.write_weights, beta_w, gate_w, shift_w, gamma_w, index)
        blocks = Mixer.mix(self.write_place.write(state.memory, w_write, torch.sigmoid(erase), add), plans)
        memory = torch.stack(blocks, dim=1) if len(blocks) > 1 else blocks[0].unsqueeze(1)
        norms = torch.linalg.vector_norm(memory, dim=-1)

        similarity = self.read_place.similarity(key_r, memory, norms)
        w_read = address(similarity, state.read_weights, beta_r, gate_r, shift_r, gamma_r, index)
        reads = self.read_place.read(memory, w_read).reshape(batch, -1)
        return layers[-1], NTMState(controller, memory, norms, w_write, w_read, reads)

    def forward(self, inputs: torch.Tensor, trace: bool = False):
        """``inputs``: (B, T, input_size) -> output logits (B, T, output_size), and a
        :class:`Trace` when ``trace`` is true (traces always come from the reference)."""
        if self.engine == "fused" and fused_takes(inputs) and not trace:
            from ntm_repro.models.fused import fused_forward  # it builds on this module

            return fused_forward([self], inputs.unsqueeze(0))[0]
        state = self.initial_state(inputs.shape[0])
        plans = self.mixing_plans()
        tops, reads, write_trace, read_trace = [], [], [], []
        # Time-major with canonical strides (a copy: ``contiguous`` keeps the odd stride of a
        # size-1 batch dimension): every x_t then has the same strides whatever the sequence
        # length, so a compiled step is not recompiled for each new length.
        for x in inputs.transpose(0, 1).clone(memory_format=torch.contiguous_format):
            top, state = self.step(x, state, plans)
            tops.append(top)
            reads.append(state.reads)
            if trace:
                write_trace.append(state.write_weights)
                read_trace.append(state.read_weights)
        logits = self.readout(torch.stack(tops, dim=1), torch.stack(reads, dim=1))
        if not trace:
            return logits
        memory = state.memory.reshape(inputs.shape[0], -1, self.width)
        return logits, Trace(torch.stack(write_trace, 1), torch.stack(read_trace, 1), memory)
