"""Reading and writing memory (Graves et al. 2014, sections 3.1-3.2), batched over heads.

Memory is one tensor (B, L, W) holding every block of a topology stacked along the
locations (L = blocks x N). A head's weighting spans the whole tensor and is zero outside
its own block (see :class:`ntm_repro.memory.topology.BlockPlacement`).
"""

from __future__ import annotations

import torch

_ONE = torch.tensor(1.0)


def read(memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``r_h = sum_i w_h(i) M(i)`` (eq. 2). ``memory``: (B, L, W); ``weights``: (B, H, L).
    Returns (B, H, W)."""
    return torch.bmm(weights, memory)


def write(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """Erase then add (eqs. 3-4): ``M <- M * prod_h (1 - w_h e_h^T) + sum_h w_h a_h^T``.

    All heads erase before any head adds. ``weights``: (B, H, L); ``erase`` and ``add``:
    (B, H, W), erase in (0, 1). Returns the new memory (B, L, W).
    """
    weights_t = weights.transpose(1, 2)  # (B, L, H)
    if weights.shape[1] == 1:
        keep = torch.baddbmm(_ONE.to(memory), weights_t, erase, alpha=-1.0)
    else:
        keep = torch.prod(1.0 - weights.unsqueeze(-1) * erase.unsqueeze(2), dim=1)
    return torch.baddbmm(memory * keep, weights_t, add)
