"""Memory topologies as data (Zhang, Yu & Zhou 2015, section 3; DESIGN.md).

A topology names memory blocks, says which block each write head writes and which
controller layer feeds it, which block each read head reads, and for some blocks a mixing
source applied after the writes: ``block <- a * block + b * source``. The plain NTM is one
block with no mixing; NTM1, NTM2 and NTM3 are other instances of the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ntm_repro.errors import ConfigError


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
            raise ConfigError(f"model.topology.blocks={list(blocks)}: give one or more distinct block names")

        def block_index(name: str, where: str) -> int:
            if name not in blocks:
                raise ConfigError(f"{where}: block {name!r} does not exist; blocks are {', '.join(blocks)}")
            return blocks.index(name)

        def layer_index(layer: int, where: str) -> int:
            if layer == -1:
                return controller_layers - 1
            if not 1 <= layer <= controller_layers:
                raise ConfigError(
                    f"{where}: controller layer {layer} does not exist; the controller has "
                    f"{controller_layers} layer(s) (set controller.layers={layer} or use layer: -1)"
                )
            return layer - 1

        writes = list(cfg["write"])
        reads = list(cfg["read"])
        if not writes or not reads:
            raise ConfigError("model.topology: needs at least one write and one read entry")
        write_blocks, write_layers = [], []
        for i, entry in enumerate(writes):
            where = f"model.topology.write[{i}]"
            block = block_index(entry["block"], where)
            layer = layer_index(int(entry.get("layer", -1)), where)
            write_blocks += [block] * heads
            write_layers += [layer] * heads
        read_blocks = [block_index(name, f"model.topology.read[{i}]") for i, name in enumerate(reads) for _ in range(heads)]

        mix = dict(cfg.get("mix") or {})
        sources = {
            block_index(target, "model.topology.mix"): block_index(source, f"model.topology.mix.{target}")
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
            raise ConfigError(f"model.topology.mix: mixing sources form a cycle ({cycle}); a block cannot depend on itself")
        if block not in level:
            level[block] = depth(sources[block], (*path, block)) + 1
        return level[block]

    for block in sources:
        depth(block, ())
    count = max(level.values(), default=0)
    return tuple(tuple(sorted(b for b, lv in level.items() if lv == k)) for k in range(1, count + 1))


class BlockPlacement:
    """Maps heads onto their blocks inside the stacked memory (B, blocks x N, W).

    With one block both maps are the identity and cost nothing.
    """

    def __init__(self, head_blocks: Sequence[int], num_blocks: int, locations: int):
        self.num_blocks = num_blocks
        self.locations = locations
        self.heads = torch.arange(len(head_blocks))
        self.head_blocks = torch.tensor(list(head_blocks), dtype=torch.long)
        self.one_hot = nn.functional.one_hot(self.head_blocks, num_blocks).float().unsqueeze(-1)  # (H, K, 1)

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


class Mixer(nn.Module):
    """``block <- a * block + b * source`` for every mixed block, applied after the writes
    in the order of :attr:`Topology.mix_levels`; ``a`` and ``b`` are scalars per mixed block,
    learnable or fixed."""

    def __init__(self, topology: Topology, a: float, b: float, learnable: bool):
        super().__init__()
        self.num_blocks = len(topology.blocks)
        self.levels = topology.mix_levels
        self.sources = dict(topology.mix_sources)
        mixed = sorted(self.sources)
        self.mixed = mixed
        init = torch.tensor([[a, b]] * len(mixed), dtype=torch.float32) if mixed else None
        if learnable and mixed:
            self.coefficients = nn.Parameter(init)
        else:
            self.register_buffer("coefficients", init)  # None (no state at all) without mixing

    @property
    def active(self) -> bool:
        return bool(self.mixed)

    def level_plans(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per level: (source index (K,), a (K, 1, 1), b (K, 1, 1)), identity for blocks not
        mixed at that level. Built once per sequence, not per step."""
        plans = []
        for level in self.levels:
            source = list(range(self.num_blocks))
            a_rows, b_rows = [], []
            for block in range(self.num_blocks):
                if block in level:
                    row = self.coefficients[self.mixed.index(block)]
                    source[block] = self.sources[block]
                    a_rows.append(row[0])
                    b_rows.append(row[1])
                else:
                    a_rows.append(self.coefficients.new_ones(()))
                    b_rows.append(self.coefficients.new_zeros(()))
            plans.append(
                (torch.tensor(source), torch.stack(a_rows).view(-1, 1, 1), torch.stack(b_rows).view(-1, 1, 1))
            )
        return plans

    @staticmethod
    def mix(memory: torch.Tensor, plans: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Mix a stacked memory (B, K*N, W) by the plans of :meth:`level_plans`."""
        if not plans:
            return memory
        b, locations, width = memory.shape
        blocks = memory.view(b, plans[0][0].numel(), -1, width)
        for source, a, coef_b in plans:
            blocks = torch.addcmul(a * blocks, coef_b, blocks[:, source])
        return blocks.reshape(b, locations, width)
