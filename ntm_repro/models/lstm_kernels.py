"""The time loops of one LSTM layer over a whole sequence (:mod:`ntm_repro.models.lstm_sequence`),
forward and back-propagation through time, for K networks and B sequences at once, compiled
with numba: no Python and no tensor operation per time step on the CPU.

Only the recurrence is here: the gates' input part ``W_ih x_t + b`` for every step, and the
weight gradients afterwards, are one matrix product each, left to the caller (BLAS). Per
step and sequence the loop adds ``W_hh h_{t-1}`` to the gates (one row of ``W_hh`` at a
time, against every sequence of the batch while the row is in cache), then the element-wise
cell of ``torch.nn.LSTMCell`` (gates i, f, g, o); backward, the element-wise gradients and
``dh_{t-1} = W_hh^T da_t``. Arrays are C-contiguous, float32 or float64.
"""

from __future__ import annotations

import numpy as np

from ntm_repro.models.fused_kernels import _jit, _sigmoid_inplace, _tanh_inplace


@_jit
def _recurrent_add(w, hs, gates):
    """gates[b] += w @ hs[b] for every b: w (4H, H), hs (B, H), gates (B, 4H)."""
    zero = gates.dtype.type(0)
    for r in range(w.shape[0]):
        for b in range(hs.shape[0]):
            acc = zero
            for c in range(w.shape[1]):
                acc += w[r, c] * hs[b, c]
            gates[b, r] += acc


@_jit
def forward(gates, w_hh, hs, cs, tanh_c):
    """``gates`` (T, K, B, 4H): on entry the input part ``W_ih x_t + b``, on return the gates'
    activations i, f, g, o; ``w_hh`` (K, 4H, H); ``hs``, ``cs`` (T + 1, K, B, H) with the
    initial state in row 0, filled with ``h_t = o tanh(c_t)``, ``c_t = f c_{t-1} + i g``;
    ``tanh_c`` (T, K, B, H) filled with ``tanh(c_t)``."""
    T, K, B, G = gates.shape
    H = G // 4
    buf = np.empty(8 * G, dtype=np.uint8)
    for t in range(T):
        for k in range(K):
            _recurrent_add(w_hh[k], hs[t, k], gates[t, k])
            for b in range(B):
                a = gates[t, k, b]
                _sigmoid_inplace(a, 0, 2 * H, buf)
                _tanh_inplace(a, 2 * H, H, buf)
                _sigmoid_inplace(a, 3 * H, H, buf)
                c_prev, c, tc = cs[t, k, b], cs[t + 1, k, b], tanh_c[t, k, b]
                for j in range(H):
                    c[j] = a[H + j] * c_prev[j] + a[j] * a[2 * H + j]
                    tc[j] = c[j]
                _tanh_inplace(tc, 0, H, buf)
                h = hs[t + 1, k, b]
                for j in range(H):
                    h[j] = a[3 * H + j] * tc[j]


@_jit
def backward(gates, w_hh, cs, tanh_c, dh_all, dgates, dh0, dc0):
    """BPTT of :func:`forward`: ``dh_all`` (T, K, B, H) the loss's gradient by each h_t
    (changed: the recurrent part is added in); fills ``dgates`` (T, K, B, 4H), the gradient
    by the gates' pre-activations, and ``dh0``, ``dc0`` (K, B, H), by the initial state.
    ``dc_t = dc_{t+1} f_{t+1} + dh_t o_t (1 - tanh^2 c_t)``; ``da_i = dc_t g i (1 - i)``,
    ``da_f = dc_t c_{t-1} f (1 - f)``, ``da_g = dc_t i (1 - g^2)``,
    ``da_o = dh_t tanh(c_t) o (1 - o)``; ``dh_{t-1} += W_hh^T da_t``."""
    T, K, B, G = gates.shape
    H = G // 4
    dc0[:] = 0.0
    dh0[:] = 0.0
    for t in range(T - 1, -1, -1):
        for k in range(K):
            w = w_hh[k]
            for b in range(B):
                a, da, dh, dc = gates[t, k, b], dgates[t, k, b], dh_all[t, k, b], dc0[k, b]
                c_prev, tc = cs[t, k, b], tanh_c[t, k, b]
                for j in range(H):
                    i, f, g, o = a[j], a[H + j], a[2 * H + j], a[3 * H + j]
                    dcj = dc[j] + dh[j] * o * (1.0 - tc[j] * tc[j])
                    da[j] = dcj * g * i * (1.0 - i)
                    da[H + j] = dcj * c_prev[j] * f * (1.0 - f)
                    da[2 * H + j] = dcj * i * (1.0 - g * g)
                    da[3 * H + j] = dh[j] * tc[j] * o * (1.0 - o)
                    dc[j] = dcj * f
                into = dh_all[t - 1, k, b] if t > 0 else dh0[k, b]
                for r in range(G):
                    v = da[r]
                    for c in range(H):
                        into[c] += w[r, c] * v
