"""Initial memory contents: ``constant`` (1e-6 everywhere, Collier & Beel 2018), ``learned``
(a trained bias, as in the NTM paper), ``random`` (a fixed random matrix drawn at
construction, uniform in +-1/sqrt(N + W), as pytorch-ntm's memory bias)."""

from __future__ import annotations

import math

import torch
from torch import nn

MEMORY_INITS = ("constant", "learned", "random")
CONSTANT_VALUE = 1e-6


class MemoryInit(nn.Module):
    """Produces the memory at t = 0, (B, L, W), for L locations of width W."""

    def __init__(self, locations: int, width: int, scheme: str = "constant"):
        super().__init__()
        if scheme not in MEMORY_INITS:
            raise ValueError(f"memory init {scheme!r} is unknown; choose one of {', '.join(MEMORY_INITS)}")
        self.scheme = scheme
        if scheme == "constant":
            self.register_buffer("bias", torch.full((locations, width), CONSTANT_VALUE), persistent=False)
        else:
            bound = 1.0 / math.sqrt(locations + width)
            bias = torch.empty(locations, width).uniform_(-bound, bound)
            if scheme == "learned":
                self.bias = nn.Parameter(bias)
            else:
                self.register_buffer("bias", bias)

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.bias.unsqueeze(0).expand(batch_size, -1, -1)
