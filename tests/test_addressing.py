"""NTM addressing (ntm_repro.memory.addressing) against values computed by hand.

Every tensor is batched as (B, H, N) (or (B, H, W) for keys); the helpers below wrap a
single vector into a (1, 1, n) tensor so the hand arithmetic stays readable.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm_repro.memory.addressing import (
    address,
    circular_shift,
    content_weights,
    cosine_similarity,
    interpolate,
    sharpen,
    shift_index,
)


def vec(*values: float) -> torch.Tensor:
    """A single head's vector as (B=1, H=1, n), float64 for exact comparisons."""
    return torch.tensor(values, dtype=torch.float64).view(1, 1, -1)


def scalar(value: float) -> torch.Tensor:
    """A per-head scalar parameter, (B=1, H=1, 1)."""
    return torch.tensor(value, dtype=torch.float64).view(1, 1, 1)


def close(actual: torch.Tensor, expected, atol: float = 1e-6) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype).reshape(actual.shape)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# --------------------------------------------------------------------------------------
# cosine_similarity
# --------------------------------------------------------------------------------------


def test_cosine_similarity_by_hand():
    # key k = [3, 4], |k| = 5. Memory rows and k . M_i / (|k| |M_i|):
    #   [4, 3]   : (12 + 12) / (5 * 5)         = 24/25 = 0.96
    #   [-3, -4] : (-9 - 16) / (5 * 5)         = -1
    #   [1, 0]   : 3 / (5 * 1)                 = 0.6
    #   [2, 2]   : (6 + 8) / (5 * 2 sqrt 2)    = 14 / (10 sqrt 2) = 0.98994949...
    keys = vec(3.0, 4.0)
    memory = torch.tensor([[[4.0, 3.0], [-3.0, -4.0], [1.0, 0.0], [2.0, 2.0]]], dtype=torch.float64)
    sim = cosine_similarity(keys, memory)
    assert sim.shape == (1, 1, 4)
    close(sim, [0.96, -1.0, 0.6, 14 / (10 * math.sqrt(2))])


def test_cosine_similarity_two_heads_and_precomputed_norms():
    # head 0 key [1, 0], head 1 key [0, 2]; rows [1, 0], [0, 1], [1, 1]:
    #   head 0: 1, 0, 1/sqrt 2        head 1: 0, 2/2 = 1, 2/(2 sqrt 2) = 1/sqrt 2
    keys = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[[1.0, 0.0, r], [0.0, 1.0, r]]], dtype=torch.float64)
    close(cosine_similarity(keys, memory), expected)
    norms = torch.linalg.vector_norm(memory, dim=-1)
    close(cosine_similarity(keys, memory, norms), expected)


def test_cosine_similarity_zero_key_gives_zero_not_nan():
    # k = 0: every dot product is 0 and the denominator 0 is floored at eps: 0 / eps = 0.
    memory = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [-3.0, 1.0]]], dtype=torch.float64)
    sim = cosine_similarity(vec(0.0, 0.0), memory)
    assert torch.isfinite(sim).all()
    close(sim, [0.0, 0.0, 0.0], atol=0)


def test_cosine_similarity_zero_memory_row_gives_zero_not_nan():
    # row 1 is zero: dot 0, |M_1| = 0, 0 / eps = 0; the other rows are ordinary:
    #   k = [1, 1], rows [1, 1] -> 2 / (sqrt 2 sqrt 2) = 1; [-1, 0] -> -1 / sqrt 2
    memory = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [-1.0, 0.0]]], dtype=torch.float64)
    sim = cosine_similarity(vec(1.0, 1.0), memory)
    assert torch.isfinite(sim).all()
    close(sim, [1.0, 0.0, -1 / math.sqrt(2)])


def test_cosine_similarity_all_zero_memory_float32():
    # The whole memory is zero (float32, as in training): all similarities are exactly 0.
    keys = torch.tensor([[[0.3, -0.2, 0.5]]])
    sim = cosine_similarity(keys, torch.zeros(1, 5, 3))
    assert torch.equal(sim, torch.zeros(1, 1, 5))


# --------------------------------------------------------------------------------------
# content_weights
# --------------------------------------------------------------------------------------


def test_content_weights_by_hand():
    # K = [1, 0, -1], beta = 2: softmax([2, 0, -2]) = [e^2, 1, e^-2] / (e^2 + 1 + e^-2)
    #   e^2 = 7.3890561, e^-2 = 0.1353353, sum = 8.5243914
    #   -> [0.8668133, 0.1173105, 0.0158762]
    w = content_weights(vec(1.0, 0.0, -1.0), scalar(2.0))
    close(w, [0.8668133, 0.1173105, 0.0158762], atol=1e-7)
    e2 = math.exp(2)
    close(w, [e2 / (e2 + 1 + 1 / e2), 1 / (e2 + 1 + 1 / e2), (1 / e2) / (e2 + 1 + 1 / e2)], atol=1e-12)


def test_content_weights_beta_zero_is_uniform():
    # beta = 0: softmax of zeros = 1/N everywhere, whatever the similarities.
    close(content_weights(vec(0.9, -0.3, 0.1, 0.5), scalar(0.0)), [0.25] * 4, atol=1e-12)


def test_content_weights_per_head_beta():
    # two heads, same K = [ln 3, 0] (so e^K = [3, 1]); beta 1 -> [3/4, 1/4]; beta 2 -> [9/10, 1/10]
    sim = torch.tensor([[[math.log(3), 0.0], [math.log(3), 0.0]]], dtype=torch.float64)
    beta = torch.tensor([[[1.0], [2.0]]], dtype=torch.float64)
    close(content_weights(sim, beta), [[[0.75, 0.25], [0.9, 0.1]]], atol=1e-12)


# --------------------------------------------------------------------------------------
# interpolate
# --------------------------------------------------------------------------------------

CONTENT = (0.7, 0.2, 0.1)
PREVIOUS = (0.1, 0.1, 0.8)


def test_interpolate_gate_one_is_content():
    # g = 1: 1 * w_c + 0 * w_prev = w_c
    close(interpolate(vec(*CONTENT), vec(*PREVIOUS), scalar(1.0)), CONTENT, atol=1e-12)


def test_interpolate_gate_zero_is_previous():
    # g = 0: 0 * w_c + 1 * w_prev = w_prev
    close(interpolate(vec(*CONTENT), vec(*PREVIOUS), scalar(0.0)), PREVIOUS, atol=1e-12)


def test_interpolate_middle_gate_by_hand():
    # g = 0.25: 0.25 * [0.7, 0.2, 0.1] + 0.75 * [0.1, 0.1, 0.8]
    #         = [0.175 + 0.075, 0.05 + 0.075, 0.025 + 0.6] = [0.25, 0.125, 0.625]
    close(interpolate(vec(*CONTENT), vec(*PREVIOUS), scalar(0.25)), [0.25, 0.125, 0.625], atol=1e-12)


# --------------------------------------------------------------------------------------
# shift_index and circular_shift
# --------------------------------------------------------------------------------------


def test_shift_index_by_hand():
    # index[j, i] = (i - s_j) mod 3 for s = [-1, 0, 1], i = 0, 1, 2:
    #   s = -1: [1, 2, 0];  s = 0: [0, 1, 2];  s = +1: [-1 mod 3, 0, 1] = [2, 0, 1]
    index = shift_index([-1, 0, 1], 3)
    assert index.dtype == torch.long
    assert index.tolist() == [[1, 2, 0], [0, 1, 2], [2, 0, 1]]


def test_shift_index_wraps_modulo_n():
    # N = 4, s = 2: (i - 2) mod 4 = [2, 3, 0, 1]; s = 5 = 1 (mod 4): [3, 0, 1, 2];
    # s = -6 = 2 (mod 4): same as s = 2
    assert shift_index([2, 5, -6], 4).tolist() == [[2, 3, 0, 1], [3, 0, 1, 2], [2, 3, 0, 1]]


def test_shift_index_forward_only():
    # s = [0, 1], N = 3: [[0, 1, 2], [2, 0, 1]]
    assert shift_index((0, 1), 3).tolist() == [[0, 1, 2], [2, 0, 1]]


W_G = (0.8, 0.3, 0.1)


def test_circular_shift_plus_one_spec_example():
    # SPEC: all shift weight on +1 moves the focus forward: w~_i = w_{i-1 mod 3}
    #   [0.8, 0.3, 0.1] -> [w_2, w_0, w_1] = [0.1, 0.8, 0.3]
    out = circular_shift(vec(*W_G), vec(0.0, 0.0, 1.0), shift_index([-1, 0, 1], 3))
    close(out, [0.1, 0.8, 0.3], atol=1e-12)


def test_circular_shift_minus_one():
    # all weight on -1: w~_i = w_{i+1 mod 3} = [w_1, w_2, w_0] = [0.3, 0.1, 0.8]
    out = circular_shift(vec(*W_G), vec(1.0, 0.0, 0.0), shift_index([-1, 0, 1], 3))
    close(out, [0.3, 0.1, 0.8], atol=1e-12)


def test_circular_shift_zero_is_identity():
    out = circular_shift(vec(*W_G), vec(0.0, 1.0, 0.0), shift_index([-1, 0, 1], 3))
    close(out, W_G, atol=1e-12)


def test_circular_shift_forward_only_shifts():
    # shifts [0, 1]. s = [0, 1]: same as +1 -> [0.1, 0.8, 0.3].
    # s = [0.5, 0.5]: 0.5 [0.8, 0.3, 0.1] + 0.5 [0.1, 0.8, 0.3] = [0.45, 0.55, 0.2]
    index = shift_index([0, 1], 3)
    close(circular_shift(vec(*W_G), vec(0.0, 1.0), index), [0.1, 0.8, 0.3], atol=1e-12)
    close(circular_shift(vec(*W_G), vec(0.5, 0.5), index), [0.45, 0.55, 0.2], atol=1e-12)


def test_circular_shift_mixed_distribution_by_hand():
    # s over [-1, 0, +1] = [0.2, 0.5, 0.3]:
    #   0.2 * [0.3, 0.1, 0.8]   (shift -1)  = [0.06, 0.02, 0.16]
    #   0.5 * [0.8, 0.3, 0.1]   (shift  0)  = [0.40, 0.15, 0.05]
    #   0.3 * [0.1, 0.8, 0.3]   (shift +1)  = [0.03, 0.24, 0.09]
    #   sum                                 = [0.49, 0.41, 0.30]
    out = circular_shift(vec(*W_G), vec(0.2, 0.5, 0.3), shift_index([-1, 0, 1], 3))
    close(out, [0.49, 0.41, 0.30], atol=1e-12)


def test_circular_shift_wraps_at_both_ends():
    # N = 4, focus on the last location, shift +1 wraps to location 0:
    #   [0, 0, 0, 1] -> w~_0 = w_{-1 mod 4} = w_3 = 1 -> [1, 0, 0, 0]
    # focus on location 0, shift -1 wraps to the last: [1, 0, 0, 0] -> [0, 0, 0, 1]
    index = shift_index([-1, 0, 1], 4)
    close(circular_shift(vec(0, 0, 0, 1.0), vec(0, 0, 1.0), index), [1.0, 0, 0, 0], atol=0)
    close(circular_shift(vec(1.0, 0, 0, 0), vec(1.0, 0, 0), index), [0, 0, 0, 1.0], atol=0)


def test_circular_shift_large_shift_wraps_modulo_n():
    # shifts [5] on N = 4 is a shift of 1: [0.4, 0.3, 0.2, 0.1] -> [0.1, 0.4, 0.3, 0.2]
    out = circular_shift(vec(0.4, 0.3, 0.2, 0.1), vec(1.0), shift_index([5], 4))
    close(out, [0.1, 0.4, 0.3, 0.2], atol=1e-12)


def test_circular_shift_is_not_a_flat_convolution():
    # A flat (zero-padded) convolution would lose the mass at the edge; the circular one
    # keeps the total: sum of shifted weighting == sum of the input.
    w = vec(0.05, 0.05, 0.1, 0.8)
    out = circular_shift(w, vec(0.1, 0.2, 0.7), shift_index([-1, 0, 1], 4))
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-12)


def test_circular_shift_batched_heads():
    # batch 2, heads 2; each (batch, head) pair uses its own shift distribution.
    w = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]], [[0, 0, 1.0], [0.5, 0.5, 0]]], dtype=torch.float64)
    s = torch.tensor([[[0, 0, 1.0], [1.0, 0, 0]], [[0, 1.0, 0], [0, 0, 1.0]]], dtype=torch.float64)
    # (0,0): [1,0,0] +1 -> [0,1,0];  (0,1): [0,1,0] -1 -> [1,0,0]
    # (1,0): [0,0,1] 0  -> [0,0,1];  (1,1): [.5,.5,0] +1 -> [0,.5,.5]
    expected = [[[0, 1.0, 0], [1.0, 0, 0]], [[0, 0, 1.0], [0, 0.5, 0.5]]]
    close(circular_shift(w, s, shift_index([-1, 0, 1], 3)), expected, atol=0)


# --------------------------------------------------------------------------------------
# sharpen
# --------------------------------------------------------------------------------------


def test_sharpen_gamma_one_leaves_normalised_weighting_unchanged():
    # gamma = 1: w^1 / sum w^1 = w when sum w = 1 (up to the 1e-12 guard).
    w = vec(0.5, 0.3, 0.2)
    close(sharpen(w, scalar(1.0)), [0.5, 0.3, 0.2], atol=1e-10)


def test_sharpen_gamma_two_by_hand():
    # gamma = 2 on [0.5, 0.3, 0.2]: squares [0.25, 0.09, 0.04], sum 0.38
    #   -> [25/38, 9/38, 4/38] = [0.6578947, 0.2368421, 0.1052632]
    out = sharpen(vec(0.5, 0.3, 0.2), scalar(2.0))
    close(out, [25 / 38, 9 / 38, 4 / 38], atol=1e-10)
    close(out, [0.6578947, 0.2368421, 0.1052632], atol=1e-7)


def test_sharpen_unnormalised_input_is_normalised():
    # gamma = 1 on [2, 1, 1]: [2, 1, 1] / 4 = [0.5, 0.25, 0.25]
    close(sharpen(vec(2.0, 1.0, 1.0), scalar(1.0)), [0.5, 0.25, 0.25], atol=1e-10)


@pytest.mark.parametrize("gamma", [1.0, 2.0, 20.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sharpen_exact_zeros_finite_values_and_gradients(gamma, dtype):
    # [0.5, 0, 0.5, 0] with gamma >= 1: the zeros stay (numerically) zero, the two halves
    # stay 0.5 each, and the gradient with respect to both w and gamma is finite.
    w = torch.tensor([0.5, 0.0, 0.5, 0.0], dtype=dtype).view(1, 1, 4).requires_grad_()
    g = torch.tensor(gamma, dtype=dtype).view(1, 1, 1).requires_grad_()
    out = sharpen(w, g)
    assert torch.isfinite(out).all()
    close(out.detach(), [0.5, 0.0, 0.5, 0.0], atol=1e-6)
    (out * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=dtype)).sum().backward()
    assert torch.isfinite(w.grad).all()
    assert torch.isfinite(g.grad).all()


def test_sharpen_one_hot_input_finite_gradients():
    # A one-hot weighting (all but one location exactly 0) is the commonest case in a trained
    # NTM; sharpening it must neither divide by zero nor produce NaN gradients.
    w = torch.tensor([0.0, 1.0, 0.0]).view(1, 1, 3).requires_grad_()
    g = torch.tensor(3.0).view(1, 1, 1).requires_grad_()
    out = sharpen(w, g)
    close(out.detach(), [0.0, 1.0, 0.0], atol=1e-6)
    out[..., 0].sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(g.grad).all()


# --------------------------------------------------------------------------------------
# address: the composition
# --------------------------------------------------------------------------------------


def test_address_by_hand():
    # N = 3, beta = 0 -> content uniform [1/3, 1/3, 1/3]
    # previous [1, 0, 0], g = 0.5 -> [2/3, 1/6, 1/6]
    # all shift on +1 -> [1/6, 2/3, 1/6]
    # gamma = 2 -> squares [1/36, 16/36, 1/36], sum 18/36 -> [1/18, 16/18, 1/18]
    out = address(
        similarity=vec(0.3, -0.7, 0.9),
        previous=vec(1.0, 0.0, 0.0),
        beta=scalar(0.0),
        gate=scalar(0.5),
        shift=vec(0.0, 0.0, 1.0),
        gamma=scalar(2.0),
        index=shift_index([-1, 0, 1], 3),
    )
    close(out, [1 / 18, 16 / 18, 1 / 18], atol=1e-10)


def test_address_by_hand_content_only():
    # g = 1, shift 0, gamma 1: address = content weighting = softmax(beta K).
    # K = [ln 3, 0, 0], beta 1 -> [3, 1, 1] / 5 = [0.6, 0.2, 0.2]
    out = address(
        similarity=vec(math.log(3), 0.0, 0.0),
        previous=vec(0.0, 0.0, 1.0),
        beta=scalar(1.0),
        gate=scalar(1.0),
        shift=vec(0.0, 1.0, 0.0),
        gamma=scalar(1.0),
        index=shift_index([-1, 0, 1], 3),
    )
    close(out, [0.6, 0.2, 0.2], atol=1e-10)


def test_address_is_the_composition_of_the_four_steps():
    gen = torch.Generator().manual_seed(0)
    b, h, n, shifts = 2, 3, 7, [-1, 0, 1]
    sim = torch.rand(b, h, n, generator=gen) * 2 - 1
    prev = torch.softmax(torch.randn(b, h, n, generator=gen), -1)
    beta = torch.rand(b, h, 1, generator=gen) * 5
    gate = torch.rand(b, h, 1, generator=gen)
    shift = torch.softmax(torch.randn(b, h, 3, generator=gen), -1)
    gamma = 1 + torch.rand(b, h, 1, generator=gen) * 3
    index = shift_index(shifts, n)
    expected = sharpen(circular_shift(interpolate(content_weights(sim, beta), prev, gate), shift, index), gamma)
    torch.testing.assert_close(address(sim, prev, beta, gate, shift, gamma, index), expected)


# --------------------------------------------------------------------------------------
# Property: address always returns a probability distribution over locations
# --------------------------------------------------------------------------------------


@st.composite
def addressing_inputs(draw):
    b = draw(st.integers(1, 3))
    h = draw(st.integers(1, 3))
    n = draw(st.integers(1, 10))
    shifts = draw(st.lists(st.integers(-(n - 1), n - 1), min_size=1, max_size=min(n, 5), unique=True))
    seed = draw(st.integers(0, 2**31 - 1))
    beta_scale = draw(st.sampled_from([0.0, 1.0, 10.0, 100.0]))
    gamma_scale = draw(st.sampled_from([0.0, 1.0, 10.0, 50.0]))
    sparse_prev = draw(st.booleans())
    gen = torch.Generator().manual_seed(seed)
    sim = torch.rand(b, h, n, generator=gen) * 2 - 1
    if sparse_prev:  # one-hot previous weightings, exact zeros elsewhere
        prev = torch.nn.functional.one_hot(torch.randint(n, (b, h), generator=gen), n).float()
    else:
        prev = torch.softmax(torch.randn(b, h, n, generator=gen) * 3, -1)
    beta = torch.rand(b, h, 1, generator=gen) * beta_scale
    gate = torch.rand(b, h, 1, generator=gen)
    shift = torch.softmax(torch.randn(b, h, len(shifts), generator=gen) * 3, -1)
    gamma = 1 + torch.rand(b, h, 1, generator=gen) * gamma_scale
    return sim, prev, beta, gate, shift, gamma, shift_index(shifts, n)


@settings(max_examples=60, deadline=None)
@given(addressing_inputs())
def test_address_output_is_a_distribution(inputs):
    out = address(*inputs)
    b, h, n = inputs[0].shape
    assert out.shape == (b, h, n)
    assert torch.isfinite(out).all()
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(b, h), atol=1e-5, rtol=0)


@settings(max_examples=25, deadline=None)
@given(addressing_inputs())
def test_address_gradients_are_finite(inputs):
    sim, prev, beta, gate, shift, gamma, index = inputs
    leaves = [t.clone().requires_grad_() for t in (sim, prev, beta, gate, shift, gamma)]
    out = address(*leaves, index)
    weights = torch.arange(out.shape[-1], dtype=out.dtype)
    (out * weights).sum().backward()
    for leaf in leaves:
        assert torch.isfinite(leaf.grad).all()


def test_cosine_similarity_gradients_finite_at_zero_key_and_zero_row():
    # The guarded denominator keeps the gradient defined (no 0/0) for a zero key and for a
    # zero memory row (a row cleared by a full erase).
    keys = torch.tensor([[[0.0, 0.0], [1.0, 2.0]]], requires_grad=True)
    memory = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [-1.0, 0.5]]], requires_grad=True)
    cosine_similarity(keys, memory).sum().backward()
    assert torch.isfinite(keys.grad).all()
    assert torch.isfinite(memory.grad).all()
