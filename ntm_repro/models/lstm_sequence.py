"""One LSTM layer over a whole sequence for K networks at once (a population, each with its
own weights), with back-propagation through time written out (an autograd Function).

Forward, per step t: ``a_t = W_ih x_t + b + W_hh h_{t-1}`` (the input part for every t in
one matrix product before the loop), ``i, f, o = sigma(a)``, ``g = tanh(a)``,
``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)`` (``torch.nn.LSTMCell``'s form, gates in the
order i, f, g, o).

Backward (BPTT), with ``dh_t = dL/dh_t + W_hh^T da_{t+1}`` and
``dc_t = dc_{t+1} f_{t+1} + dh_t o_t (1 - tanh^2 c_t)``:
``da_i = dc_t g i (1 - i)``, ``da_f = dc_t c_{t-1} f (1 - f)``, ``da_g = dc_t i (1 - g^2)``,
``da_o = dh_t tanh(c_t) o (1 - o)``; the weight gradients are then one matrix product each
over all steps (``dW_hh = sum_t da_t h_{t-1}^T``, ``dW_ih = sum_t da_t x_t^T``) instead of
autograd's rank-one update per step, and only the recurrent matrix-vector products and
six element-wise operations remain in the loop. On the CPU in float32 and float64 the time
loops are compiled (:mod:`ntm_repro.models.lstm_kernels`, no tensor operation per step);
elsewhere (a GPU, bf16 under autocast, batches above :data:`COMPILED_MAX_BATCH`) they step
in Python over whole (K, B, ...) tensors, a handful of operations per step shared by every
network and sequence of the batch.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import torch
from torch.autograd.function import once_differentiable

from ntm_repro.console import say
from ntm_repro.models.engines import fused_takes, fused_unavailable


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """(K, B, T, F) -> (K, T * B, F), rows in (t, b) order."""
    K, B, T, F = x.shape
    return x.transpose(1, 2).reshape(K, T * B, F)


class LSTMLayerSequence(torch.autograd.Function):
    """``x`` (K, B, T, I), ``w_ih`` (K, 4H, I), ``w_hh`` (K, 4H, H), ``bias`` (K, 4H),
    ``h0`` and ``c0`` (K, B, H) -> the hidden states h_1..h_T (K, B, T, H)."""

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, bias, h0, c0):
        K, B, T, _ = x.shape
        H = w_hh.shape[-1]
        x_tb = _time_major(x)
        # the gates' input part for every step, time-major: a[t] is (K, B, 4H), contiguous
        a = torch.baddbmm(bias.unsqueeze(1), x_tb, w_ih.transpose(1, 2)).view(K, T, B, 4 * H).transpose(0, 1).contiguous()
        hs, cs = x.new_empty(T + 1, K, B, H), x.new_empty(T + 1, K, B, H)
        tanh_c = x.new_empty(T, K, B, H)
        hs[0], cs[0] = h0, c0
        if _compiled(a):
            _kernels().forward(a.numpy(), w_hh.detach().contiguous().numpy(), hs.numpy(), cs.numpy(), tanh_c.numpy())
        else:
            _forward_steps(a, w_hh, hs, cs, tanh_c)
        ctx.save_for_backward(x_tb, w_ih, w_hh, a, hs, cs, tanh_c)
        return hs[1:].permute(1, 2, 0, 3).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x_tb, w_ih, w_hh, a, hs, cs, tanh_c = ctx.saved_tensors
        T, K, B, four_h = a.shape
        dh_all = dout.permute(2, 0, 1, 3).clone(memory_format=torch.contiguous_format)  # (T, K, B, H), ours to change
        da = torch.empty_like(a)
        dh0, dc0 = torch.empty_like(hs[0]), torch.empty_like(cs[0])
        if _compiled(a):
            arrays = (a, w_hh.contiguous(), cs, tanh_c, dh_all, da, dh0, dc0)
            _kernels().backward(*(t.detach().numpy() for t in arrays))
        else:
            _backward_steps(a, w_hh, cs, tanh_c, dh_all, da, dh0, dc0)
        da_tb = da.transpose(0, 1).reshape(K, T * B, four_h)  # rows in (t, b) order, as x_tb
        da_t = da_tb.transpose(1, 2)
        dx = dw_ih = dw_hh = dbias = None
        if ctx.needs_input_grad[0]:
            dx = torch.bmm(da_tb, w_ih).view(K, T, B, -1).transpose(1, 2)
        if ctx.needs_input_grad[1]:
            dw_ih = torch.bmm(da_t, x_tb)
        if ctx.needs_input_grad[2]:
            dw_hh = torch.bmm(da_t, hs[:-1].transpose(0, 1).reshape(K, T * B, hs.shape[-1]))
        if ctx.needs_input_grad[3]:
            dbias = da_tb.sum(1)
        return dx, dw_ih, dw_hh, dbias, dh0, dc0


# The compiled loops take a batch of up to this many sequences per network. They multiply one
# row of W_hh at a time against each sequence (about 27 GFLOP/s for a 1024 x 256 matrix, three
# times torch's addmv at batch 1), while torch's batched products reach BLAS rates as the batch
# grows: one layer of 256 units over 42 steps, forward and backward, ran 64.7 / 32.6 / 17.5
# times a second compiled against 29.8 / 22.4 / 14.5 stepping in torch at batch 2 / 4 / 8,
# and a whole training step of `graves/copy_lstm` at batch 32 halved compiled.
COMPILED_MAX_BATCH = 8


_compiled_allowed = True


@contextlib.contextmanager
def torch_steps():
    """Within it, every layer steps in torch: the compiled loops' arithmetic as torch
    operations (which ``FlopCounterMode`` sees; the benchmark counts FLOPs this way)."""
    global _compiled_allowed
    before, _compiled_allowed = _compiled_allowed, False
    try:
        yield
    finally:
        _compiled_allowed = before


@functools.cache
def _kernels():
    """:mod:`ntm_repro.models.lstm_kernels`, or None where numba cannot be imported (then
    every layer steps in torch, and one line says so, once per process)."""
    if reason := fused_unavailable():
        say(f"ntm-repro: the LSTM's compiled loops are unavailable here ({reason}); its layers step in torch", logging.WARNING)
        return None
    from ntm_repro.models import lstm_kernels

    return lstm_kernels


def _compiled(a: torch.Tensor) -> bool:
    """Whether the compiled loops (:mod:`ntm_repro.models.lstm_kernels`) take this layer's
    gates ``a`` (T, K, B, 4H): on the CPU, in float32 or float64, at batches up to
    :data:`COMPILED_MAX_BATCH` (bf16 under autocast, other devices and larger batches step
    in torch)."""
    return _compiled_allowed and fused_takes(a) and a.shape[2] <= COMPILED_MAX_BATCH and _kernels() is not None


def _forward_steps(a, w_hh, hs, cs, tanh_c) -> None:
    """:func:`lstm_kernels.forward` as torch operations on whole (K, B, ...) tensors per step."""
    H = w_hh.shape[-1]
    w_hh_t = w_hh.transpose(1, 2)
    for t in range(a.shape[0]):
        gates = a[t].baddbmm_(hs[t], w_hh_t)
        gates[..., : 2 * H].sigmoid_()
        gates[..., 2 * H : 3 * H].tanh_()
        gates[..., 3 * H :].sigmoid_()
        i, f, g, o = gates.split(H, dim=-1)
        torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, g)
        torch.mul(o, torch.tanh(cs[t + 1], out=tanh_c[t]), out=hs[t + 1])


def _backward_steps(a, w_hh, cs, tanh_c, dh_all, da, dh0, dc0) -> None:
    """:func:`lstm_kernels.backward` as torch operations on whole (K, B, ...) tensors per step."""
    T, K, B, four_h = a.shape
    H = four_h // 4
    i, f, g, o = a.split(H, dim=-1)
    # the step-independent factors of the gates' gradients, for every step at once
    through_c = o * (1 - tanh_c * tanh_c)  # dc_t += dh_t * this
    factors = torch.cat((g * i * (1 - i), cs[:-1] * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)), dim=-1)
    factors = factors.view(T, K, B, 4, H)
    da_4 = da.view(T, K, B, 4, H)
    dh0.zero_()
    dc0.zero_()
    for t in range(T - 1, -1, -1):
        dh = dh_all[t].add_(dh0)
        dc0.addcmul_(dh, through_c[t])
        torch.mul(dc0.unsqueeze(2), factors[t, :, :, :3], out=da_4[t, :, :, :3])
        torch.mul(dh, factors[t, :, :, 3], out=da_4[t, :, :, 3])
        torch.bmm(da[t], w_hh, out=dh0)
        dc0.mul_(f[t])


def lstm_layer_sequence(x, w_ih, w_hh, bias, h0, c0) -> torch.Tensor:
    """K LSTM layers over whole sequences (see :class:`LSTMLayerSequence`), in the weights'
    dtype or, under autocast, in autocast's (as ``torch.lstm`` runs there). One network at a
    batch above :data:`COMPILED_MAX_BATCH` outside autocast goes through ``torch.lstm``
    instead, faster there than stepping in Python (235 against 166 training sequences/s for
    ``graves/copy_lstm`` at batch 32)."""
    device = x.device.type
    K, B = x.shape[:2]
    if K == 1 and B > COMPILED_MAX_BATCH and not torch.is_autocast_enabled(device):
        weights = [w_ih[0], w_hh[0], bias[0], torch.zeros_like(bias[0])]
        return torch.lstm(x[0], (h0[0].unsqueeze(0).contiguous(), c0[0].unsqueeze(0).contiguous()), weights,
                          True, 1, 0.0, torch.is_grad_enabled(), False, True)[0].unsqueeze(0)
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else w_ih.dtype
    with torch.autocast(device, enabled=False):
        return LSTMLayerSequence.apply(*(t.to(dtype) for t in (x, w_ih, w_hh, bias, h0, c0)))
