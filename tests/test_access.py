"""Reading and writing memory (ntm_repro.memory.access) and the initial memory
(ntm_repro.memory.init), on tiny memories computed by hand (N = 3 locations, W = 2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ntm_repro.memory.access import read, write
from ntm_repro.memory.init import CONSTANT_VALUE, MemoryInit


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# M = [[1, 2],
#      [3, 4],
#      [5, 6]]       (B = 1, N = 3, W = 2)
MEMORY = [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]]


# --------------------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------------------


def test_read_one_head_by_hand():
    # r = sum_i w_i M_i, w = [0.2, 0.3, 0.5]:
    #   0.2 [1, 2] + 0.3 [3, 4] + 0.5 [5, 6] = [0.2 + 0.9 + 2.5, 0.4 + 1.2 + 3.0] = [3.6, 4.6]
    r = read(t(MEMORY), t([[[0.2, 0.3, 0.5]]]))
    assert r.shape == (1, 1, 2)
    torch.testing.assert_close(r, t([[[3.6, 4.6]]]))


def test_read_two_heads_by_hand():
    # head 0 one-hot on row 2 -> [5, 6]; head 1 uniform -> [(1+3+5)/3, (2+4+6)/3] = [3, 4]
    r = read(t(MEMORY), t([[[0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3]]]))
    torch.testing.assert_close(r, t([[[5.0, 6.0], [3.0, 4.0]]]))


def test_read_batch_elements_are_independent():
    # batch 2: the second memory is the first times 10; the same weighting reads 10x the vector.
    memory = torch.cat([t(MEMORY), 10 * t(MEMORY)])
    w = t([[[0.2, 0.3, 0.5]], [[0.2, 0.3, 0.5]]])
    torch.testing.assert_close(read(memory, w), t([[[3.6, 4.6]], [[36.0, 46.0]]]))


# --------------------------------------------------------------------------------------
# write
# --------------------------------------------------------------------------------------


def test_write_one_head_erase_then_add_by_hand():
    # w = [1, 0.5, 0], e = [0.5, 1], a = [10, 20]
    # erase: M_i * (1 - w_i e)
    #   row 0: [1, 2] * (1 - [0.5, 1])        = [1, 2] * [0.5, 0]    = [0.5, 0]
    #   row 1: [3, 4] * (1 - 0.5 [0.5, 1])    = [3, 4] * [0.75, 0.5] = [2.25, 2]
    #   row 2: unchanged                                              = [5, 6]
    # add: + w_i a
    #   row 0: [0.5, 0] + [10, 20] = [10.5, 20]
    #   row 1: [2.25, 2] + [5, 10] = [7.25, 12]
    #   row 2: [5, 6] + 0          = [5, 6]
    out = write(t(MEMORY), t([[[1.0, 0.5, 0.0]]]), t([[[0.5, 1.0]]]), t([[[10.0, 20.0]]]))
    torch.testing.assert_close(out, t([[[10.5, 20.0], [7.25, 12.0], [5.0, 6.0]]]))


def test_write_does_not_modify_its_input():
    memory = t(MEMORY)
    write(memory, t([[[1.0, 0.0, 0.0]]]), t([[[1.0, 1.0]]]), t([[[7.0, 7.0]]]))
    assert torch.equal(memory, t(MEMORY))


def test_write_full_erase_one_hot_clears_exactly_that_row():
    # w one-hot on row 1, e = [1, 1], a = 0: row 1 becomes [0, 0], rows 0 and 2 untouched.
    out = write(t(MEMORY), t([[[0.0, 1.0, 0.0]]]), t([[[1.0, 1.0]]]), t([[[0.0, 0.0]]]))
    assert torch.equal(out, t([[[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]]]))


def test_write_full_erase_one_hot_then_add_replaces_the_row():
    # erase 1 then add a on a one-hot row: the row becomes exactly a.
    out = write(t(MEMORY), t([[[0.0, 0.0, 1.0]]]), t([[[1.0, 1.0]]]), t([[[-1.0, 9.0]]]))
    assert torch.equal(out, t([[[1.0, 2.0], [3.0, 4.0], [-1.0, 9.0]]]))


def test_write_two_heads_all_erase_before_any_add():
    # Both heads focus on row 0.
    #   head 0: e0 = [0, 0] (erases nothing), a0 = [5, 5]
    #   head 1: e1 = [1, 1] (erases everything), a1 = [0, 0]
    # Correct (all erase, then all add): row 0 -> [1, 2] * 0 = [0, 0] -> + [5, 5] = [5, 5].
    # Head by head (erase+add of head 0, then erase+add of head 1): [6, 7] -> [0, 0].
    # Add before erase: [1, 2] + [5, 5] = [6, 7] -> erased -> [0, 0].
    w = t([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    e = t([[[0.0, 0.0], [1.0, 1.0]]])
    a = t([[[5.0, 5.0], [0.0, 0.0]]])
    out = write(t(MEMORY), w, e, a)
    torch.testing.assert_close(out, t([[[5.0, 5.0], [3.0, 4.0], [5.0, 6.0]]]))
    # The order of the heads does not matter either.
    out_swapped = write(t(MEMORY), w.flip(1), e.flip(1), a.flip(1))
    torch.testing.assert_close(out_swapped, out)


def test_write_two_heads_fractional_by_hand():
    # M <- M * (1 - w0 e0)(1 - w1 e1) + w0 a0 + w1 a1 (elementwise, per row)
    #   w0 = [0.5, 0, 0.5], e0 = [1, 0.5], a0 = [2, 0]
    #   w1 = [0, 1, 0.5],   e1 = [0.5, 0.5], a1 = [0, 4]
    # keep:
    #   row 0: (1 - 0.5 [1, 0.5]) * (1 - 0)        = [0.5, 0.75]
    #   row 1: (1 - 0)            * (1 - [0.5, 0.5]) = [0.5, 0.5]
    #   row 2: [0.5, 0.75]        * (1 - 0.5 [0.5, 0.5]) = [0.5, 0.75] * [0.75, 0.75] = [0.375, 0.5625]
    # M * keep: row 0 [0.5, 1.5]; row 1 [1.5, 2]; row 2 [5 * 0.375, 6 * 0.5625] = [1.875, 3.375]
    # adds: w0 a0 = rows [1, 0], [0, 0], [1, 0];  w1 a1 = rows [0, 0], [0, 4], [0, 2]
    # result: row 0 [1.5, 1.5]; row 1 [1.5, 6]; row 2 [2.875, 5.375]
    w = t([[[0.5, 0.0, 0.5], [0.0, 1.0, 0.5]]])
    e = t([[[1.0, 0.5], [0.5, 0.5]]])
    a = t([[[2.0, 0.0], [0.0, 4.0]]])
    out = write(t(MEMORY), w, e, a)
    torch.testing.assert_close(out, t([[[1.5, 1.5], [1.5, 6.0], [2.875, 5.375]]]))


def test_write_second_head_with_zero_weight_matches_one_head():
    # The one-head and many-head code paths agree: a second head with zero weighting
    # changes nothing.
    gen = torch.Generator().manual_seed(3)
    memory = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    w = torch.softmax(torch.randn(2, 1, 5, generator=gen, dtype=torch.float64), -1)
    e = torch.rand(2, 1, 4, generator=gen, dtype=torch.float64)
    a = torch.randn(2, 1, 4, generator=gen, dtype=torch.float64)
    one = write(memory, w, e, a)
    two = write(
        memory,
        torch.cat([w, torch.zeros_like(w)], 1),
        torch.cat([e, torch.rand_like(e)], 1),
        torch.cat([a, torch.randn_like(a)], 1),
    )
    torch.testing.assert_close(two, one)


def test_write_batch_elements_are_independent():
    # batch 2: element 0 clears row 0, element 1 clears row 2.
    memory = torch.cat([t(MEMORY), t(MEMORY)])
    w = t([[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]])
    e = t([[[1.0, 1.0]], [[1.0, 1.0]]])
    a = torch.zeros(2, 1, 2, dtype=torch.float64)
    out = write(memory, w, e, a)
    torch.testing.assert_close(out[0], t([[0.0, 0.0], [3.0, 4.0], [5.0, 6.0]]))
    torch.testing.assert_close(out[1], t([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]))


def test_write_float32_one_head():
    # The one-head path in float32 (the training dtype) gives the same hand result.
    out = write(
        torch.tensor(MEMORY), torch.tensor([[[1.0, 0.5, 0.0]]]), torch.tensor([[[0.5, 1.0]]]), torch.tensor([[[10.0, 20.0]]])
    )
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[[10.5, 20.0], [7.25, 12.0], [5.0, 6.0]]]))


# --------------------------------------------------------------------------------------
# MemoryInit
# --------------------------------------------------------------------------------------


def test_memory_init_constant_is_1e_6_everywhere():
    init = MemoryInit(4, 3, "constant")
    memory = init(2)
    assert memory.shape == (2, 4, 3)
    assert CONSTANT_VALUE == 1e-6
    assert torch.equal(memory, torch.full((2, 4, 3), 1e-6))
    assert list(init.parameters()) == []


def test_memory_init_default_is_constant():
    assert MemoryInit(2, 2).scheme == "constant"
    assert torch.equal(MemoryInit(2, 2)(1), torch.full((1, 2, 2), 1e-6))


def test_memory_init_learned_is_a_parameter_with_gradient():
    init = MemoryInit(4, 3, "learned")
    assert isinstance(init.bias, nn.Parameter)
    assert [p.shape for p in init.parameters()] == [torch.Size([4, 3])]
    bound = 1 / math.sqrt(4 + 3)
    assert (init.bias.abs() <= bound).all()
    memory = init(2)
    assert memory.shape == (2, 4, 3)
    memory.sum().backward()
    # every batch element is the same bias, so each entry's gradient is the batch size
    assert torch.equal(init.bias.grad, torch.full((4, 3), 2.0))


def test_memory_init_random_is_a_fixed_buffer():
    init = MemoryInit(5, 3, "random")
    assert not isinstance(init.bias, nn.Parameter)
    assert list(init.parameters()) == []
    assert "bias" in dict(init.named_buffers())
    assert "bias" in init.state_dict()  # saved with the checkpoint, so a run can be resumed
    first, second = init(2), init(3)
    assert not first.requires_grad
    assert torch.equal(first[0], first[1])
    assert torch.equal(first[0], second[2])  # the same matrix on every call
    bound = 1 / math.sqrt(5 + 3)
    assert (first.abs() <= bound).all()
    assert first.abs().sum() > 0  # not constant zero


def test_memory_init_random_depends_on_the_torch_seed():
    torch.manual_seed(0)
    a = MemoryInit(5, 3, "random")(1)
    torch.manual_seed(0)
    b = MemoryInit(5, 3, "random")(1)
    c = MemoryInit(5, 3, "random")(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("scheme", ["zeros", "Constant", "", "bias"])
def test_memory_init_unknown_scheme_raises(scheme):
    with pytest.raises(ValueError, match="unknown"):
        MemoryInit(4, 3, scheme)
