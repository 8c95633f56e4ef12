"""Memory topologies as data (Zhang, Yu & Zhou 2015, section 3; DESIGN.md).

A topology names memory blocks, says which block each write head writes and which
controller layer feeds it, which block each read head reads, and for some blocks a mixing
source applied after the writes: ``block <- a * block + b * source``. The plain NTM is one
block with no mixing; NTM1, NTM2 and NTM3 are other instances of the same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ntm_repro.memory.access import read, write
from ntm_repro.memory.addressing import cosine_similarity


class TopologyError(ValueError):
    """A topology that cannot be built. ``where`` names the entry at fault within the
    topology (``blocks``, ``write[1]``, ``mix.M2``, or empty for the whole); ``layer`` is
    set when the entry asks for a controller layer that does not exist."""

    def __init__(self, where: str, message: str, layer: int | None = None):
        super().__init__(message)
        self.where, self.layer = where, layer


@dataclass(frozen=True)
class Topology:
    """A resolved topology: every name turned into an index, every head listed once."""

    blocks: tuple[str, ...]
    write_blocks: tuple[int, ...]  # block index of each write head
    write_layers: tuple[int, ...]  # 0-based controller layer feeding each write head
    read_blocks: tuple[int, ...]  # block index of each read head
    read_layer: int  # 0-based controller layer feeding the read heads (the top one)
    mix_sources: Mapping[int, int]  # mixed block -> its source block
    mix_levels: tuple[tuple[int, ...], ...]  # mixed blocks grouped so each level's sources are final

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], heads: int, controller_layers: int) -> "Topology":
        """Resolve ``cfg`` (blocks, write, read, mix); each write and read entry stands for
        ``heads`` heads. Controller layers are numbered from 1; -1 means the top layer."""
        blocks = tuple(cfg["blocks"])
        if not blocks or len(set(blocks)) != len(blocks):
            raise TopologyError("blocks", f"{list(blocks)}: give one or more distinct block names")

        def block_index(name: str, where: str) -> int:
            if name not in blocks:
                raise TopologyError(where, f"block {name!r} does not exist; blocks are {', '.join(blocks)}")
            return blocks.index(name)

        def layer_index(layer: int, where: str) -> int:
            if layer == -1:
                return controller_layers - 1
            if not 1 <= layer <= controller_layers:
                raise TopologyError(
                    where, f"controller layer {layer} does not exist; the controller has {controller_layers} layer(s)", layer
                )
            return layer - 1

        writes = list(cfg["write"])
        reads = list(cfg["read"])
        if not writes or not reads:
            raise TopologyError("", "needs at least one write and one read entry")
        write_blocks, write_layers = [], []
        for i, entry in enumerate(writes):
            where = f"write[{i}]"
            block = block_index(entry["block"], where)
            layer = layer_index(int(entry.get("layer", -1)), where)
            write_blocks += [block] * heads
            write_layers += [layer] * heads
        read_blocks = [block_index(name, f"read[{i}]") for i, name in enumerate(reads) for _ in range(heads)]

        mix = dict(cfg.get("mix") or {})
        sources = {
            block_index(target, "mix"): block_index(source, f"mix.{target}")
            for target, source in mix.items()
        }
        return cls(
            blocks=blocks,
            write_blocks=tuple(write_blocks),
            write_layers=tuple(write_layers),
            read_blocks=tuple(read_blocks),
            read_layer=controller_layers - 1,
            mix_sources=sources,
            mix_levels=_mix_levels(blocks, sources),
        )


def _mix_levels(blocks: Sequence[str], sources: Mapping[int, int]) -> tuple[tuple[int, ...], ...]:
    """Order the mixing so that a block is mixed only after its source is final; a cycle
    of sources (including a block mixing from itself) is an error naming the blocks."""
    level: dict[int, int] = {}

    def depth(block: int, path: tuple[int, ...]) -> int:
        if block not in sources:
            return 0
        if block in path:
            cycle = " -> ".join(blocks[b] for b in (*path[path.index(block):], block))
            raise TopologyError("mix", f"mixing sources form a cycle ({cycle}); a block cannot depend on itself")
        if block not in level:
            level[block] = depth(sources[block], (*path, block)) + 1
        return level[block]

    for block in sources:
        depth(block, ())
    count = max(level.values(), default=0)
    return tuple(tuple(sorted(b for b, lv in level.items() if lv == k)) for k in range(1, count + 1))


class BlockPlacement:
    """Maps a group of heads (all write heads, or all read heads) onto their blocks of the
    stacked memory (B, K, N, W), choosing the cheapest exact form:

    - ``single``: every head on one block: work on that block's view only;
    - ``diagonal``: head i on block i (one head per block): blocks become batch entries;
    - ``general``: anything else: weightings spread over all K*N locations, zero outside
      each head's block.
    """

    def __init__(self, head_blocks: Sequence[int], num_blocks: int, locations: int):
        self.num_blocks = num_blocks
        self.locations = locations
        self.head_blocks = torch.tensor(list(head_blocks), dtype=torch.long)
        self.heads = torch.arange(len(head_blocks))
        self.one_hot = nn.functional.one_hot(self.head_blocks, num_blocks).float().unsqueeze(-1)  # (H, K, 1)
        if len(set(head_blocks)) == 1:
            self.kind, self.block = "single", int(head_blocks[0])
        elif list(head_blocks) == list(range(num_blocks)):
            self.kind, self.block = "diagonal", None
        else:
            self.kind, self.block = "general", None

    def select(self, per_location: torch.Tensor) -> torch.Tensor:
        """(B, H, K*N) values over the whole memory -> (B, H, N) over each head's block."""
        if self.num_blocks == 1:
            return per_location
        b, h, _ = per_location.shape
        return per_location.view(b, h, self.num_blocks, self.locations)[:, self.heads, self.head_blocks]

    def spread(self, weights: torch.Tensor) -> torch.Tensor:
        """(B, H, N) weightings within each head's block -> (B, H, K*N), zero elsewhere."""
        if self.num_blocks == 1:
            return weights
        b, h, n = weights.shape
        return (weights.unsqueeze(2) * self.one_hot.to(weights)).view(b, h, self.num_blocks * n)

    def similarity(self, keys: torch.Tensor, memory: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each head's key with every row of its block: (B, H, N).
        ``memory`` (B, K, N, W), ``norms`` (B, K, N)."""
        if self.kind == "single":
            return cosine_similarity(keys, memory[:, self.block], norms[:, self.block])
        b, k, n, w = memory.shape
        if self.kind == "diagonal":
            sim = cosine_similarity(keys.reshape(b * k, 1, w), memory.reshape(b * k, n, w), norms.reshape(b * k, n))
            return sim.view(b, k, n)
        return self.select(cosine_similarity(keys, memory.reshape(b, k * n, w), norms.reshape(b, k * n)))

    def read(self, memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Each head's read of its block (eq. 2): (B, H, W)."""
        if self.kind == "single":
            return read(memory[:, self.block], weights)
        b, k, n, w = memory.shape
        if self.kind == "diagonal":
            return read(memory.reshape(b * k, n, w), weights.reshape(b * k, 1, n)).view(b, k, w)
        return read(memory.reshape(b, k * n, w), self.spread(weights))

    def write(self, memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> list[torch.Tensor]:
        """Erase then add (eqs. 3-4), each head on its block. Returns the K blocks (B, N, W)
        after the write (unwritten blocks as views of ``memory``)."""
        b, k, n, w = memory.shape
        if self.kind == "single":
            blocks = list(memory.unbind(1)) if k > 1 else [None]
            blocks[self.block] = write(memory[:, self.block], weights, erase, add)
            return blocks
        if self.kind == "diagonal":
            flat = write(memory.reshape(b * k, n, w), weights.reshape(b * k, 1, n), erase.reshape(b * k, 1, w), add.reshape(b * k, 1, w))
        else:
            flat = write(memory.reshape(b, k * n, w), self.spread(weights), erase, add)
        return list(flat.view(b, k, n, w).unbind(1))


#: Parameterisations of the mixing scalars ``a``, ``b`` (:class:`Mixer`).
MIX_FORMS = ("convex", "free")


class MixingError(ValueError):
    """Initial mixing coefficients the chosen form cannot represent."""


class Mixer(nn.Module):
    """``block <- a * block + b * source`` for every mixed block, applied after the writes
    in the order of :attr:`Topology.mix_levels`; ``a`` and ``b`` are scalars per mixed block,
    learnable or fixed, in one of two forms (:data:`MIX_FORMS`):

    - ``convex``: ``a = sigmoid(theta)``, ``b = 1 - a``. The mixed block is a moving average
      of its source, the "memory smoothing" reading of Zhang et al. (2015, section 3): it
      never leaves the range its source has held, so mixing cannot make the memory grow.
    - ``free``: ``a`` and ``b`` are two unconstrained scalars, the literal reading of the
      paper's equations (``Mh(t) = a Mh(t-1) + b Mc(t)``). Once ``|a| > 1`` a block grows
      geometrically with time.

    Fixed coefficients (``learnable=False``) are used as given in either form.
    """

    def __init__(self, topology: Topology, a: float, b: float, learnable: bool, form: str):
        super().__init__()
        if form not in MIX_FORMS:
            raise ValueError(f"mixing form {form!r} is unknown; choose one of {', '.join(MIX_FORMS)}")
        self.levels = topology.mix_levels
        self.sources = dict(topology.mix_sources)
        self.mixed = sorted(self.sources)
        self.form = form if learnable else "fixed"
        n = len(self.mixed)
        if not self.mixed:
            self.register_buffer("coefficients", None)  # no state at all without mixing
            return
        if form == "convex" and abs(a + b - 1) > 1e-9:
            raise MixingError(f"convex mixing has b = 1 - a; set b={1 - a:g} or use the free form")
        if self.form == "convex":
            if not 0 < a < 1:
                raise MixingError("learnable convex mixing needs 0 < a < 1 (a = sigmoid(theta)); fix a and b to learn nothing")
            self.theta = nn.Parameter(torch.full((n,), math.log(a / (1 - a))))
        elif self.form == "free":
            self.coefficients = nn.Parameter(torch.tensor([[a, b]] * n))
        else:
            self.register_buffer("coefficients", torch.tensor([[a, b]] * n))

    @property
    def weight_name(self) -> str:
        """The name of what holds the coefficients: ``theta`` (convex) or ``coefficients``."""
        return "theta" if self.form == "convex" else "coefficients"

    def effective(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``(a, b)`` of every mixed block, (..., n_mixed, 2), in the order of :attr:`mixed`,
        from ``weight`` (:attr:`weight_name`'s tensor with leading dimensions, e.g. a
        population's stacked one), the mixer's own by default."""
        weight = getattr(self, self.weight_name) if weight is None else weight
        if self.form == "convex":
            return torch.stack((torch.sigmoid(weight), torch.sigmoid(-weight)), dim=-1)
        return weight

    def figures(self, names: Sequence[str]) -> dict[str, float]:
        """``mix_<block>_a`` and ``mix_<block>_b`` of every mixed block (``names``: the
        topology's block names), for the training log."""
        values = self.effective().detach().tolist()
        return {f"mix_{names[block]}_{key}": value for block, pair in zip(self.mixed, values) for key, value in zip("ab", pair)}

    @property
    def active(self) -> bool:
        return bool(self.mixed)

    def level_plans(self) -> list[list[tuple[int, int, torch.Tensor, torch.Tensor]]]:
        """Per level, (block, source, a, b) of each block mixed at that level. Built once per
        sequence, not per step."""
        if not self.mixed:
            return []
        coefficients = self.effective()
        return [
            [(block, self.sources[block], *coefficients[self.mixed.index(block)].unbind()) for block in level]
            for level in self.levels
        ]

    @staticmethod
    def mix(blocks: list[torch.Tensor], plans: list) -> list[torch.Tensor]:
        """Mix a list of blocks (B, N, W) by the plans of :meth:`level_plans`; sources are
        final before any block mixes from them (levels run in order)."""
        if not plans:
            return blocks
        blocks = list(blocks)
        for level in plans:
            for block, source, a, b in level:
                blocks[block] = torch.addcmul(a * blocks[block], b, blocks[source])
        return blocks
