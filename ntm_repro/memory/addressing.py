"""NTM addressing (Graves, Wayne & Danihelka 2014, section 3.3), batched over heads.

Shapes: ``B`` batch, ``H`` heads, ``N`` memory locations, ``W`` word width, ``S`` allowed
shifts. Every function is pure and differentiable; every division, log and power is
guarded so that no weighting can produce NaN.
"""

from __future__ import annotations

import torch

#: Floor of the cosine similarity's denominator (as ``torch.nn.functional.cosine_similarity``).
COSINE_EPS = 1e-8
#: Added to a weighting before it is raised to ``gamma`` (keeps ``0 ** gamma`` differentiable).
SHARPEN_EPS = 1e-12


def cosine_similarity(
    keys: torch.Tensor, memory: torch.Tensor, memory_norms: torch.Tensor | None = None
) -> torch.Tensor:
    """``K[k, M_i] = k . M_i / max(|k| |M_i|, eps)`` (eq. 6) for every head and location.

    ``keys``: (B, H, W); ``memory``: (B, N, W). Returns (B, H, N). ``memory_norms`` (B, N)
    may be passed when several calls share one memory.
    """
    if memory_norms is None:
        memory_norms = torch.linalg.vector_norm(memory, dim=-1)
    dots = torch.bmm(keys, memory.transpose(1, 2))
    key_norms = torch.linalg.vector_norm(keys, dim=-1, keepdim=True)
    return dots / (key_norms * memory_norms.unsqueeze(1)).clamp_min(COSINE_EPS)


def content_weights(similarity: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``w^c_i = softmax_i(beta K[k, M_i])`` (eq. 5). ``beta``: (B, H, 1), positive."""
    return torch.softmax(beta * similarity, dim=-1)


def interpolate(content: torch.Tensor, previous: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``w^g = g w^c + (1 - g) w_{t-1}`` (eq. 7). ``gate``: (B, H, 1) in (0, 1)."""
    return torch.lerp(previous, content, gate)


def shift_index(shifts: list[int] | tuple[int, ...], n: int) -> torch.Tensor:
    """Gather index (S, N) for circular convolution: ``index[j, i] = (i - shifts[j]) mod N``."""
    offsets = torch.tensor(list(shifts), dtype=torch.long).unsqueeze(1)
    return torch.remainder(torch.arange(n).unsqueeze(0) - offsets, n)


def circular_shift(weights: torch.Tensor, shift: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``w~_i = sum_j s_j w^g_{(i - shift_j) mod N}`` (eq. 8, circular convolution).

    ``weights``: (B, H, N); ``shift``: (B, H, S), a distribution over the shifts that built
    ``index`` (see :func:`shift_index`). All weight on shift +1 moves the focus one location
    forward: [0.8, 0.3, 0.1] -> [0.1, 0.8, 0.3].
    """
    shifted = weights.index_select(-1, index.flatten()).unflatten(-1, index.shape)  # (B, H, S, N)
    return torch.matmul(shift.unsqueeze(-2), shifted).squeeze(-2)


def sharpen(weights: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``w_i = w~_i^gamma / sum_j w~_j^gamma`` (eq. 9), computed as a softmax of
    ``gamma log(w~ + eps)``: the same value, with no division by a vanishing sum."""
    return torch.softmax(gamma * torch.log(weights + SHARPEN_EPS), dim=-1)


def address(
    similarity: torch.Tensor,
    previous: torch.Tensor,
    beta: torch.Tensor,
    gate: torch.Tensor,
    shift: torch.Tensor,
    gamma: torch.Tensor,
    index: torch.Tensor,
) -> torch.Tensor:
    """The whole addressing pipeline of Figure 2: content -> interpolation -> shift -> sharpen."""
    content = content_weights(similarity, beta)
    gated = interpolate(content, previous, gate)
    return sharpen(circular_shift(gated, shift, index), gamma)
