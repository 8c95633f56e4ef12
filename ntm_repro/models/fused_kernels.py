"""The fused engine's loops: a whole sequence of the NTM time step (module docstring of
:mod:`ntm_repro.models.ntm`, steps 1-5), forward and back-propagation through time, for a
population of K networks, compiled with numba. No Python and no autograd per time step.

Every network k and batch element b is its own recurrence; weights are per network. The
arrays (leading dimensions K, B, T) hold what the backward pass needs; weight gradients of
the controller and the head projections are left to one matrix product each over all time
steps (``dgates``, ``dparams`` returned per step), done by the caller with BLAS.

Conventions (canonical layout of :class:`ntm_repro.models.ntm.NTM`): heads are numbered
write heads first, then read heads; head h's addressing parameters start at ``h * A``,
``A = W + S + 3``: key (W), strength, gate, shift logits (S), sharpening; write head h's
erase logits and add vector start at ``HH * A + h * 2W``. Memory is (NB, N, W), NB blocks.
Controller: ``kind`` 0 LSTM (gates i, f, g, o as torch), 1 feedforward; ``act`` of the
feedforward layers 0 sigmoid, 1 tanh, 2 relu. Mixing ``block <- a block + b source`` for
``(mix_target[m], mix_source[m])`` in the order given (sources final first).
"""

from __future__ import annotations

import math

import numba
import numpy as np

COSINE_EPS = 1e-8  # as ntm_repro.memory.addressing
SHARPEN_EPS = 1e-12
SOFTPLUS_THRESHOLD = 20.0  # torch.nn.functional.softplus: x itself above this

_jit = numba.njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")

# exp(x) = 2^k exp(r), k = round(x / ln 2), |r| <= ln(2) / 2 (Cody & Waite's split of ln 2),
# exp(r) by its Taylor polynomial: degree 12 in float64 (truncation < 2e-16 relative),
# degree 7 in float32; 2^k built from its exponent bits. Pure arithmetic, so the compiler
# vectorises it (a call to libm's exp per element it cannot).
_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_EXP_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(13))
_F32 = np.float32
_LOG2E32, _LN2_HI32, _LN2_LO32 = _F32(_LOG2E), _F32(0.693359375), _F32(-2.12194440e-4)
_EXP_TAYLOR32 = tuple(_F32(c) for c in _EXP_TAYLOR[:8])
_EXP_RANGE32 = (_F32(-87.0), _F32(88.0))  # exp stays a normal float32
_EXP_RANGE64 = (-708.0, 709.0)
# log(x) = k ln 2 + log(m), x = 2^k m with m in [sqrt(1/2), sqrt(2)) from the exponent and
# mantissa bits, log(m) = 2 atanh(s) = sum_i 2 s^(2i+1) / (2i + 1), s = (m - 1) / (m + 1),
# |s| < 0.172: 11 terms leave < 1e-17 (computed in float64 for either dtype).
_LOG_SERIES = tuple(2.0 / (2 * i + 1) for i in range(11))
_SQRT2 = math.sqrt(2.0)
_MANTISSA_BITS = np.int64(0x000FFFFFFFFFFFFF)
_ONE_BITS = np.int64(0x3FF0000000000000)


@_jit
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@_jit
def _softplus(x):
    return x if x > SOFTPLUS_THRESHOLD else math.log1p(math.exp(x))


@_jit
def _softplus_grad(x):
    return 1.0 if x > SOFTPLUS_THRESHOLD else _sigmoid(x)


@_jit
def _exp_inplace(v, n, buf):
    """v[:n] = exp(v[:n]) (see _EXP_TAYLOR), arguments clamped to the range where exp is a
    normal float of v's dtype; ``buf``: a uint8 working array of at least 8n bytes."""
    if v.itemsize == 4:
        c0, c1, c2, c3, c4, c5, c6, c7 = _EXP_TAYLOR32
        low, high = _EXP_RANGE32
        bits, scale = buf.view(np.int32), buf.view(np.float32)
        for i in range(n):
            x = min(max(v[i], low), high)
            k = np.floor(x * _LOG2E32 + _F32(0.5))  # a float: math.floor's integer is a call per element
            r = (x - k * _LN2_HI32) - k * _LN2_LO32
            v[i] = c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * c7))))))
            bits[i] = (np.int32(k) + np.int32(127)) << np.int32(23)
        for i in range(n):
            v[i] *= scale[i]
    else:
        c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12 = _EXP_TAYLOR
        low, high = _EXP_RANGE64
        bits, scale = buf.view(np.int64), buf.view(np.float64)
        for i in range(n):
            x = min(max(np.float64(v[i]), low), high)
            k = np.floor(x * _LOG2E + 0.5)
            r = (x - k * _LN2_HI) - k * _LN2_LO
            v[i] = c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (c7 + r * (c8 + r * (c9 + r * (c10 + r * (c11 + r * c12)))))))))))
            bits[i] = (np.int64(k) + 1023) << 52
        for i in range(n):
            v[i] *= scale[i]


@_jit
def _log_inplace(v, n, buf):
    """v[:n] = log(v[:n]) for positive normal v (see _LOG_SERIES); ``buf``: a uint8
    working array of at least 8n bytes."""
    bits, f = buf.view(np.int64), buf.view(np.float64)
    for i in range(n):
        f[i] = v[i]
    for i in range(n):
        b = bits[i]
        v[i] = ((b >> 52) & 0x7FF) - 1023  # the exponent k, exact in either dtype
        bits[i] = (b & _MANTISSA_BITS) | _ONE_BITS  # the mantissa m in [1, 2)
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10 = _LOG_SERIES
    for i in range(n):
        m = f[i]
        k = np.float64(v[i])
        above = m > _SQRT2
        m = m * 0.5 if above else m
        k = k + 1.0 if above else k
        s = (m - 1.0) / (m + 1.0)
        z = s * s
        series = c0 + z * (c1 + z * (c2 + z * (c3 + z * (c4 + z * (c5 + z * (c6 + z * (c7 + z * (c8 + z * (c9 + z * c10)))))))))
        v[i] = k * _LN2_HI + (k * _LN2_LO + s * series)


@_jit
def _sigmoid_inplace(v, o, n, buf):
    """v[o : o + n] = sigmoid(v[o : o + n]) = 1 / (1 + exp(-v))."""
    w = v[o : o + n]
    for i in range(n):
        w[i] = -w[i]
    _exp_inplace(w, n, buf)
    for i in range(n):
        w[i] = 1.0 / (1.0 + w[i])


@_jit
def _tanh_inplace(v, o, n, buf):
    """v[o : o + n] = tanh(v[o : o + n]) = 2 / (1 + exp(-2v)) - 1."""
    w = v[o : o + n]
    for i in range(n):
        w[i] = -2.0 * w[i]
    _exp_inplace(w, n, buf)
    for i in range(n):
        w[i] = 2.0 / (1.0 + w[i]) - 1.0


@_jit
def _softmax(z, out, buf):
    top = z.max()
    n = z.shape[0]
    for i in range(n):
        out[i] = z[i] - top
    _exp_inplace(out, n, buf)
    total = out.dtype.type(0)
    for i in range(n):
        total += out[i]
    scale = 1.0 / total
    for i in range(n):
        out[i] *= scale


@_jit
def _softmax_back(y, dy, dz):
    """dz = y * (dy - sum(y * dy)), the softmax's vector-Jacobian product."""
    inner = dz.dtype.type(0)
    for i in range(y.shape[0]):
        inner += y[i] * dy[i]
    for i in range(y.shape[0]):
        dz[i] = y[i] * (dy[i] - inner)


@_jit
def _matvec_add(w, n, x, out):
    """out += w[:, :n] @ x for a C-contiguous w (R, C). The columns are indexed, not sliced
    (a sliced window is a strided view the compiler cannot vectorise), and the sum is kept
    in the arrays' own dtype (a float64 sum would halve float32's vector width)."""
    zero = out.dtype.type(0)
    for r in range(w.shape[0]):
        acc = zero
        for c in range(n):
            acc += w[r, c] * x[c]
        out[r] += acc


@_jit
def _matvec_t_add(w, columns, v, out):
    """out[:columns] += w[:, :columns].T @ v for a C-contiguous w (R, C): one row of w at a
    time, scaled by v[r] and added along the contiguous columns (the transposed product
    without a transposed copy of w)."""
    for r in range(w.shape[0]):
        g = v[r]
        for c in range(columns):
            out[c] += w[r, c] * g


@_jit
def _circular(src, s, shifts, out):
    """out_i = sum_j s_j src[(i - shift_j) mod N] (eq. 8), shift_j in [0, N): for each shift,
    two contiguous runs of i (no index arithmetic per element)."""
    n = out.shape[0]
    out[:] = 0.0
    for j in range(shifts.shape[0]):
        shift, weight = shifts[j], s[j]
        for i in range(shift, n):
            out[i] += weight * src[i - shift]
        for i in range(shift):
            out[i] += weight * src[i - shift + n]


@_jit
def _circular_back(src, s, shifts, dout, dsrc, ds):
    """Vector-Jacobian product of :func:`_circular`: dsrc (added) and ds (written)."""
    n = dout.shape[0]
    zero = ds.dtype.type(0)
    for j in range(shifts.shape[0]):
        shift, weight = shifts[j], s[j]
        acc = zero
        for i in range(shift, n):
            acc += dout[i] * src[i - shift]
            dsrc[i - shift] += weight * dout[i]
        for i in range(shift):
            acc += dout[i] * src[i - shift + n]
            dsrc[i - shift + n] += weight * dout[i]
        ds[j] = acc


@_jit
def _layer_columns(l, c0, hsize, skip, kind):
    """Controller layer l's columns of w_all: its input width, [x_t, r_{t-1}] (c0), with
    skip connections and above the first layer followed by h^{l-1}_t, else h^{l-1}_t
    alone; and the whole row, the input then h^l_{t-1} for an LSTM (kind 0)."""
    width_in = c0 if l == 0 else (c0 + hsize if skip else hsize)
    return width_in, width_in + hsize if kind == 0 else width_in


@_jit
def _head_params(p, o, width, n_shift):
    """A head's raw addressing parameters starting at ``p[o]``: key (W), strength, gate,
    shift logits (S), sharpening."""
    return p[o : o + width], p[o + width], p[o + width + 1], p[o + width + 2 : o + width + 2 + n_shift], p[o + width + 2 + n_shift]


@_jit
def _address(mem, norms, p, o, prev, shifts, sim, wc, wg, ws, w, scratch, s, buf):
    """Graves et al. eqs. 5-9 for one head, its raw parameters at ``p[o:]``, on one block
    ``mem`` (N, W) with row norms ``norms``: fills sim, wc (content), wg (interpolated),
    ws (shifted), w (sharpened); ``s`` (S) receives the shift distribution."""
    n, width = mem.shape
    zero = sim.dtype.type(0)
    key, beta_raw, gate_raw, shift_raw, gamma_raw = _head_params(p, o, width, shifts.shape[0])
    nk = zero
    for j in range(width):
        nk += key[j] * key[j]
    nk = math.sqrt(nk)
    beta = _softplus(beta_raw)
    for i in range(n):
        dot = zero
        for j in range(width):
            dot += key[j] * mem[i, j]
        sim[i] = dot / max(nk * norms[i], COSINE_EPS)
        scratch[i] = beta * sim[i]
    _softmax(scratch, wc, buf)
    gate = _sigmoid(gate_raw)
    for i in range(n):
        wg[i] = prev[i] + gate * (wc[i] - prev[i])
    _softmax(shift_raw, s, buf)
    _circular(wg, s, shifts, ws)
    gamma = 1.0 + _softplus(gamma_raw)
    for i in range(n):
        scratch[i] = ws[i] + SHARPEN_EPS
    _log_inplace(scratch, n, buf)
    for i in range(n):
        scratch[i] *= gamma
    _softmax(scratch, w, buf)


@_jit
def _address_back(mem, norms, p, o, prev, shifts, sim, wc, wg, ws, w, dw, dmem, dkey_etc, dprev, scratch, scratch2, shift_scratch, buf):
    """Vector-Jacobian product of :func:`_address`: from dw (N) into dmem (N, W; row norms
    included), the raw parameters (dkey_etc: key W, beta, gate, shift S, gamma; written)
    and dprev (N; added). ``shift_scratch`` (3, S) is working space."""
    n, width = mem.shape
    ns = shifts.shape[0]
    zero = dmem.dtype.type(0)
    key, beta_raw, gate_raw, shift_raw, gamma_raw = _head_params(p, o, width, ns)
    gamma = 1.0 + _softplus(gamma_raw)
    # sharpening: w = softmax(u), u = gamma log(ws + eps)
    _softmax_back(w, dw, scratch)  # du
    for i in range(n):
        scratch2[i] = ws[i] + SHARPEN_EPS
    _log_inplace(scratch2, n, buf)
    dgamma = zero
    for i in range(n):
        dgamma += scratch[i] * scratch2[i]
        scratch[i] = scratch[i] * gamma / (ws[i] + SHARPEN_EPS)  # dws
    # circular shift: ws_i = sum_j s_j wg[(i - shift_j) mod N]
    s, ds, dshift = shift_scratch[0], shift_scratch[1], shift_scratch[2]
    _softmax(shift_raw, s, buf)
    scratch2[:] = 0.0
    _circular_back(wg, s, shifts, scratch, scratch2, ds)  # scratch2: dwg
    # interpolation: wg = prev + gate (wc - prev)
    gate = _sigmoid(gate_raw)
    dgate = zero
    for i in range(n):
        dgate += scratch2[i] * (wc[i] - prev[i])
        dprev[i] += (1.0 - gate) * scratch2[i]
        scratch2[i] = gate * scratch2[i]  # dwc
    # content: wc = softmax(beta sim)
    beta = _softplus(beta_raw)
    _softmax_back(wc, scratch2, scratch)  # dz
    dbeta = zero
    for i in range(n):
        dbeta += scratch[i] * sim[i]
    # cosine: sim_i = dot_i / max(|k| |M_i|, eps)
    nk = zero
    for j in range(width):
        nk += key[j] * key[j]
    nk = math.sqrt(nk)
    dnk = zero
    for j in range(width):
        dkey_etc[j] = 0.0
    for i in range(n):
        dsim = beta * scratch[i]
        product = nk * norms[i]
        den = max(product, COSINE_EPS)
        ddot = dsim / den
        scale = zero  # d sim_i / d M_i through |M_i| (the floor, when it holds, has none)
        if product >= COSINE_EPS:
            dden = -dsim * sim[i] / den
            dnk += dden * norms[i]
            if norms[i] > 0.0:
                scale = dden * nk / norms[i]
        for j in range(width):
            m = mem[i, j]
            dkey_etc[j] += ddot * m
            dmem[i, j] += ddot * key[j] + scale * m
    if nk > 0.0:
        for j in range(width):
            dkey_etc[j] += dnk * key[j] / nk
    dkey_etc[width] = dbeta * _softplus_grad(beta_raw)
    dkey_etc[width + 1] = dgate * gate * (1.0 - gate)
    _softmax_back(s, ds, dshift)
    for j in range(ns):
        dkey_etc[width + 2 + j] = dshift[j]
    dkey_etc[width + 2 + ns] = dgamma * _softplus_grad(gamma_raw)


@_jit
def _erase_add(p, start, width, n_write, out):
    """Each write head's erase vector sigmoid(logits) and add vector: out (Hw, 2W)."""
    for h in range(n_write):
        o = start + h * 2 * width
        for j in range(width):
            out[h, j] = _sigmoid(p[o + j])
            out[h, width + j] = p[o + width + j]


@_jit
def _writers(head_block, n_write, blk):
    """How many write heads write block ``blk``, and the last of them."""
    writers, last = 0, 0
    for h in range(n_write):
        if head_block[h] == blk:
            writers += 1
            last = h
    return writers, last


@_jit
def _write(m_old, w_t, erase, head_block, n_write, m_w):
    """Graves et al. eqs. 3-4, every write head on its block: M' = M prod_h (1 - w_h e_h) +
    sum_h w_h a_h (all erases, then all adds) into m_w; ``erase`` (Hw, 2W): e_h, a_h. A
    block one head writes, the usual case, takes a single pass."""
    n_blocks, n_loc, width = m_old.shape
    one = m_w.dtype.type(1)
    for blk in range(n_blocks):
        writers, only = _writers(head_block, n_write, blk)
        if writers == 1:
            w, e, a = w_t[only], erase[only, :width], erase[only, width:]
            for i in range(n_loc):
                wi = w[i]
                for j in range(width):
                    m_w[blk, i, j] = m_old[blk, i, j] * (one - wi * e[j]) + wi * a[j]
            continue
        m_w[blk] = m_old[blk]
        for h in range(n_write):
            if head_block[h] == blk:
                w = w_t[h]
                for i in range(n_loc):
                    for j in range(width):
                        m_w[blk, i, j] *= one - w[i] * erase[h, j]
        for h in range(n_write):
            if head_block[h] == blk:
                w = w_t[h]
                for i in range(n_loc):
                    for j in range(width):
                        m_w[blk, i, j] += w[i] * erase[h, width + j]


@_jit
def _erase_add_back(dmem_w, m_old, w_t, erase, head_block, n_write, dmem, dw, dp, erase_start, keep, others, acc_ea):
    """Vector-Jacobian product of the writes ``M' = M prod_h (1 - w_h e_h) + sum_h w_h a_h``
    (each block, its write heads): from dmem_w (the gradient of M') into dmem (of M;
    written), dw (each head's weighting; added) and dp (the raw erase logits and add
    vectors; added). A block one head writes, the usual case, takes a single pass per row."""
    n_blocks, n_loc, width = dmem_w.shape
    zero, one = dmem.dtype.type(0), dmem.dtype.type(1)
    acc_ea[:] = zero  # [h, 0]: sum_i w_i (dM' M others)_ij, [h, 1]: sum_i w_i dM'_ij
    for blk in range(n_blocks):
        writers, only = _writers(head_block, n_write, blk)
        if writers == 0:
            dmem[blk] = dmem_w[blk]
        elif writers == 1:
            w, e, a, de, da = w_t[only], erase[only, :width], erase[only, width:], acc_ea[only, 0], acc_ea[only, 1]
            for i in range(n_loc):
                wi = w[i]
                acc = zero
                for j in range(width):
                    g = dmem_w[blk, i, j]
                    gm = g * m_old[blk, i, j]
                    dmem[blk, i, j] = g * (one - wi * e[j])
                    acc += g * a[j] - gm * e[j]
                    de[j] += gm * wi
                    da[j] += g * wi
                dw[only, i] += acc
        else:
            for i in range(n_loc):
                for j in range(width):
                    keep[j] = one
                for h in range(n_write):
                    if head_block[h] == blk:
                        wi = w_t[h, i]
                        for j in range(width):
                            keep[j] *= one - wi * erase[h, j]
                for j in range(width):
                    dmem[blk, i, j] = dmem_w[blk, i, j] * keep[j]
                for h in range(n_write):
                    if head_block[h] != blk:
                        continue
                    for j in range(width):
                        others[j] = one  # the other heads' erase factors on this row
                    for h2 in range(n_write):
                        if h2 != h and head_block[h2] == blk:
                            w2 = w_t[h2, i]
                            for j in range(width):
                                others[j] *= one - w2 * erase[h2, j]
                    wi = w_t[h, i]
                    acc = zero
                    for j in range(width):
                        g = dmem_w[blk, i, j]
                        gm = g * m_old[blk, i, j] * others[j]
                        acc += g * erase[h, width + j] - gm * erase[h, j]
                        acc_ea[h, 0, j] += gm * wi
                        acc_ea[h, 1, j] += g * wi
                    dw[h, i] += acc
    for h in range(n_write):
        o = erase_start + h * 2 * width
        for j in range(width):
            e = erase[h, j]
            dp[o + j] -= acc_ea[h, 0, j] * e * (one - e)  # through e = sigmoid(logit)
            dp[o + width + j] += acc_ea[h, 1, j]


@_jit
def _row_norms(mem, norms):
    for i in range(mem.shape[0]):
        acc = norms.dtype.type(0)
        for j in range(mem.shape[1]):
            acc += mem[i, j] * mem[i, j]
        norms[i] = math.sqrt(acc)


@_jit
def forward(
    x, kind, act, skip,
    w_all, bias, proj, proj_bias, feeds,
    mix_ab, mix_target, mix_source, head_block, n_write, shifts,
    mem0, reads0, weights0, state0,
    # saved for backward (filled)
    ctrl_in, gates, cells, hidden, params, sims, wcs, wgs, wss, ws, memory, memory_written, norms, reads,
):
    """Run every network k and batch element b over T steps.

    x (K, B, T, I). Controller, per layer l: w_all (K, L, G, C) = [W_ih (the layer's
    input width, :func:`_layer_columns`), W_hh (H; LSTM), zeros to the widest layer], one
    matrix so that a step is one matrix-vector product over [input, h_{t-1}]; bias
    (K, L, G) (both LSTM biases summed), G = 4H (LSTM) or H (feedforward). Heads: proj (K, L, P, H) in canonical layout (zero
    rows for heads a layer does not feed), proj_bias (K, P), feeds (L,) whether layer l
    feeds heads. mix_ab (K, M, 2). Initial state: mem0 (K, NB, N, W), reads0 (K, R),
    weights0 (K, HH, N), state0 (K, L, 2, H) (h, c).

    Saved (filled): ctrl_in (K, B, T, I + R); gates (K, B, T, L, G) activated (i, f, g, o:
    sigmoid, sigmoid, tanh, sigmoid; feedforward: the layer output); cells and hidden
    (K, B, T + 1, L, H), index 0 the initial state; params (K, B, T, P) raw; sims, wcs,
    wgs, wss, ws (K, B, T + 1, HH, N) (index 0: ws holds the initial weightings);
    memory (K, B, T + 1, NB, N, W) after each step (index 0: the initial memory),
    memory_written (K, B, T, NB, N, W) after the writes, before mixing; norms
    (K, B, T + 1, NB, N); reads (K, B, T + 1, R)."""
    n_k, n_b, n_t, n_in = x.shape
    n_layers = w_all.shape[1]
    hsize = hidden.shape[-1]
    heads = head_block.shape[0]
    n_read = heads - n_write
    n_blocks, n_loc, width = mem0.shape[1], mem0.shape[2], mem0.shape[3]
    n_shift = shifts.shape[0]
    a_width = width + n_shift + 3
    erase_start = heads * a_width
    c0 = n_in + n_read * width
    dtype = memory.dtype
    scratch = np.empty(n_loc, dtype)
    shift_dist = np.empty(n_shift, dtype)
    buf = np.empty(8 * max(n_loc, 4 * hsize), np.uint8)  # _exp_inplace's working space
    erase = np.empty((n_write, 2 * width), dtype)
    z = np.empty(w_all.shape[3], dtype)  # a layer's [input, h_{t-1}]
    for k in range(n_k):
        for b in range(n_b):
            memory[k, b, 0] = mem0[k]
            for blk in range(n_blocks):
                _row_norms(memory[k, b, 0, blk], norms[k, b, 0, blk])
            reads[k, b, 0] = reads0[k]
            ws[k, b, 0] = weights0[k]
            for l in range(n_layers):
                hidden[k, b, 0, l] = state0[k, l, 0]
                cells[k, b, 0, l] = state0[k, l, 1]
            for t in range(n_t):
                # 1. controller input [x_t, r_{t-1}] and layers
                inp = ctrl_in[k, b, t]
                inp[:n_in] = x[k, b, t]
                inp[n_in:] = reads[k, b, t]
                for l in range(n_layers):
                    g = gates[k, b, t, l]
                    g[:] = bias[k, l]
                    width_in, columns = _layer_columns(l, c0, hsize, skip, kind)
                    if l == 0 or skip:
                        z[:c0] = inp
                    if l > 0:
                        z[width_in - hsize : width_in] = hidden[k, b, t + 1, l - 1]
                    if kind == 0:
                        z[width_in:columns] = hidden[k, b, t, l]
                    _matvec_add(w_all[k, l], columns, z, g)
                    h_new = hidden[k, b, t + 1, l]
                    if kind == 0:
                        _sigmoid_inplace(g, 0, 2 * hsize, buf)  # i, f
                        _tanh_inplace(g, 2 * hsize, hsize, buf)  # g
                        _sigmoid_inplace(g, 3 * hsize, hsize, buf)  # o
                        c_old, c_new = cells[k, b, t, l], cells[k, b, t + 1, l]
                        for j in range(hsize):
                            c_new[j] = g[hsize + j] * c_old[j] + g[j] * g[2 * hsize + j]
                            h_new[j] = c_new[j]
                        _tanh_inplace(h_new, 0, hsize, buf)
                        for j in range(hsize):
                            h_new[j] *= g[3 * hsize + j]
                    else:
                        if act == 0:
                            _sigmoid_inplace(g, 0, hsize, buf)
                        elif act == 1:
                            _tanh_inplace(g, 0, hsize, buf)
                        else:
                            for j in range(hsize):
                                g[j] = max(g[j], 0.0)
                        h_new[:] = g
                # 2. head parameters
                p = params[k, b, t]
                p[:] = proj_bias[k]
                for l in range(n_layers):
                    if feeds[l]:
                        _matvec_add(proj[k, l], hsize, hidden[k, b, t + 1, l], p)
                # 3. write heads address M_{t-1}, then erase and add
                m_old = memory[k, b, t]
                for h in range(n_write):
                    o = h * a_width
                    blk = head_block[h]
                    _address(m_old[blk], norms[k, b, t, blk], p, o, ws[k, b, t, h],
                             shifts, sims[k, b, t + 1, h], wcs[k, b, t + 1, h], wgs[k, b, t + 1, h],
                             wss[k, b, t + 1, h], ws[k, b, t + 1, h], scratch, shift_dist, buf)
                m_w = memory_written[k, b, t]
                _erase_add(p, erase_start, width, n_write, erase)
                _write(m_old, ws[k, b, t + 1], erase, head_block, n_write, m_w)
                # 4. mixing
                m_new = memory[k, b, t + 1]
                m_new[:] = m_w
                for m in range(mix_target.shape[0]):
                    tgt, src = mix_target[m], mix_source[m]
                    a, bb = mix_ab[k, m, 0], mix_ab[k, m, 1]
                    for i in range(n_loc):
                        for j in range(width):
                            m_new[tgt, i, j] = a * m_new[tgt, i, j] + bb * m_new[src, i, j]
                for blk in range(n_blocks):
                    _row_norms(m_new[blk], norms[k, b, t + 1, blk])
                # 5. read heads address M_t and read
                r = reads[k, b, t + 1]
                for hr in range(n_read):
                    h = n_write + hr
                    o = h * a_width
                    blk = head_block[h]
                    _address(m_new[blk], norms[k, b, t + 1, blk], p, o, ws[k, b, t, h],
                             shifts, sims[k, b, t + 1, h], wcs[k, b, t + 1, h], wgs[k, b, t + 1, h],
                             wss[k, b, t + 1, h], ws[k, b, t + 1, h], scratch, shift_dist, buf)
                    w, o = ws[k, b, t + 1, h], hr * width
                    r[o : o + width] = 0.0
                    for i in range(n_loc):
                        for j in range(width):
                            r[o + j] += w[i] * m_new[blk, i, j]


@_jit
def backward(
    kind, act, skip,
    w_all, proj, feeds,
    mix_ab, mix_target, mix_source, head_block, n_write, shifts,
    ctrl_in, gates, cells, hidden, params, sims, wcs, wgs, wss, ws, memory, memory_written, norms,
    dtops, dreads,
    # filled
    dgates, dparams, dmix_ab, dmem0, dreads0, dweights0, dstate0, dx,
):
    """Back-propagation through time of :func:`forward`, given the gradients of the top
    layer's outputs dtops (K, B, T, H) and of the reads dreads (K, B, T, R). Fills, per
    step, dgates (K, B, T, L, G): the gradient of each layer's pre-activations, and
    dparams (K, B, T, P): of the raw head parameters (the caller turns both into weight
    gradients with one product over all steps); dx (K, B, T, I): of the inputs; and,
    summed over the batch, the gradients
    of the mixing coefficients dmix_ab (K, M, 2); per batch element, of the initial state:
    dmem0 (K, B, NB, N, W), dreads0 (K, B, R), dweights0 (K, B, HH, N), dstate0
    (K, B, L, 2, H). w_all (K, L, G, C) and proj (K, L, P, H): the forward's, whose
    transposed products carry the gradients back (:func:`_matvec_t_add`)."""
    n_k, n_b, n_t, c0 = ctrl_in.shape
    n_layers = w_all.shape[1]
    hsize = hidden.shape[-1]
    heads = head_block.shape[0]
    n_read = heads - n_write
    n_blocks, n_loc, width = memory.shape[3], memory.shape[4], memory.shape[5]
    n_shift = shifts.shape[0]
    a_width = width + n_shift + 3
    erase_start = heads * a_width
    n_in = c0 - n_read * width
    dtype = memory.dtype
    zero = dtype.type(0)
    scratch = np.empty(n_loc, dtype)
    scratch2 = np.empty(n_loc, dtype)
    shift_scratch = np.empty((3, n_shift), dtype)
    dmem = np.empty((n_blocks, n_loc, width), dtype)
    dmem_w = np.empty((n_blocks, n_loc, width), dtype)
    dw_next = np.empty((heads, n_loc), dtype)  # gradient of each head's weighting of step t (from t and t + 1)
    dw_prev = np.empty((heads, n_loc), dtype)
    dr = np.empty(n_read * width, dtype)
    dh = np.empty((n_layers, hsize), dtype)  # recurrent gradient into h_{l,t} from step t + 1
    dc = np.empty((n_layers, hsize), dtype)
    dh_layer = np.empty(hsize, dtype)
    dbelow = np.empty(hsize, dtype)  # gradient into h_{l-1} from layer l's input
    dctrl = np.empty(c0, dtype)  # gradient of the controller input [x_t, r_{t-1}]
    dhead = np.empty(a_width, dtype)
    erase = np.empty((n_write, 2 * width), dtype)
    dz = np.empty(w_all.shape[3], dtype)  # gradient of a layer's [input, h_{t-1}]
    buf = np.empty(8 * max(n_loc, hsize), np.uint8)  # _exp_inplace's working space
    tanh_c = np.empty(hsize, dtype)
    keep = np.empty(width, dtype)  # the erase factors' product on one memory row
    others = np.empty(width, dtype)  # the same without one head's factor
    de_acc = np.empty((n_write, 2, width), dtype)  # each write head's erase and add gradients over the rows
    for k in range(n_k):
        for b in range(n_b):
            dmem[:] = 0.0
            dw_next[:] = 0.0
            dr[:] = 0.0
            dh[:] = 0.0
            dc[:] = 0.0
            for t in range(n_t - 1, -1, -1):
                p = params[k, b, t]
                dp = dparams[k, b, t]
                dp[:] = 0.0
                m_new, m_old, m_w = memory[k, b, t + 1], memory[k, b, t], memory_written[k, b, t]
                # 5. reads and read addressing
                for j in range(n_read * width):
                    dr[j] += dreads[k, b, t, j]
                dw_prev[:] = 0.0
                for hr in range(n_read):
                    h = n_write + hr
                    blk = head_block[h]
                    for i in range(n_loc):
                        acc = zero
                        for j in range(width):
                            g = dr[hr * width + j]
                            acc += g * m_new[blk, i, j]
                            dmem[blk, i, j] += ws[k, b, t + 1, h, i] * g
                        dw_next[h, i] += acc
                    o = h * a_width
                    _address_back(m_new[blk], norms[k, b, t + 1, blk], p, o, ws[k, b, t, h],
                                  shifts, sims[k, b, t + 1, h], wcs[k, b, t + 1, h], wgs[k, b, t + 1, h],
                                  wss[k, b, t + 1, h], ws[k, b, t + 1, h], dw_next[h], dmem[blk], dhead, dw_prev[h],
                                  scratch, scratch2, shift_scratch, buf)
                    dp[o : o + a_width] += dhead
                # 4. mixing, in reverse order: dmem becomes the gradient of the written memory
                dmem_w[:] = dmem
                for m in range(mix_target.shape[0] - 1, -1, -1):
                    tgt, src = mix_target[m], mix_source[m]
                    a, bb = mix_ab[k, m, 0], mix_ab[k, m, 1]
                    da = zero
                    db = zero
                    for i in range(n_loc):
                        for j in range(width):
                            g = dmem_w[tgt, i, j]
                            da += g * m_w[tgt, i, j]
                            db += g * m_new[src, i, j]
                            dmem_w[src, i, j] += bb * g
                            dmem_w[tgt, i, j] = a * g
                    dmix_ab[k, m, 0] += da
                    dmix_ab[k, m, 1] += db
                # 3. erase and add (M' = M prod_h (1 - w_h e_h) + sum_h w_h a_h), then write addressing on M_{t-1}
                _erase_add(p, erase_start, width, n_write, erase)
                _erase_add_back(dmem_w, m_old, ws[k, b, t + 1], erase, head_block, n_write, dmem, dw_next, dp, erase_start,
                                keep, others, de_acc)
                for h in range(n_write):
                    o = h * a_width
                    blk = head_block[h]
                    _address_back(m_old[blk], norms[k, b, t, blk], p, o, ws[k, b, t, h],
                                  shifts, sims[k, b, t + 1, h], wcs[k, b, t + 1, h], wgs[k, b, t + 1, h],
                                  wss[k, b, t + 1, h], ws[k, b, t + 1, h], dw_next[h], dmem[blk], dhead, dw_prev[h],
                                  scratch, scratch2, shift_scratch, buf)
                    dp[o : o + a_width] += dhead
                dw_next[:] = dw_prev
                # 2. head parameters -> layers; 1. controller, top layer first
                dctrl[:] = 0.0
                for l in range(n_layers - 1, -1, -1):
                    dh_layer[:] = dh[l]  # from step t + 1 (LSTM; zero for a feedforward layer)
                    if l == n_layers - 1:
                        for j in range(hsize):
                            dh_layer[j] += dtops[k, b, t, j]
                    if feeds[l]:
                        _matvec_t_add(proj[k, l], hsize, dp, dh_layer)
                    if l + 1 < n_layers:
                        dh_layer += dbelow  # layer l + 1's input holds h_l
                    g = gates[k, b, t, l]
                    dg = dgates[k, b, t, l]
                    if kind == 0:
                        c_old, c_new = cells[k, b, t, l], cells[k, b, t + 1, l]
                        tanh_c[:] = c_new
                        _tanh_inplace(tanh_c, 0, hsize, buf)
                        for j in range(hsize):
                            gi, gf, gg, go = g[j], g[hsize + j], g[2 * hsize + j], g[3 * hsize + j]
                            tc = tanh_c[j]
                            dcell = dc[l, j] + dh_layer[j] * go * (1.0 - tc * tc)
                            dg[j] = dcell * gg * gi * (1.0 - gi)
                            dg[hsize + j] = dcell * c_old[j] * gf * (1.0 - gf)
                            dg[2 * hsize + j] = dcell * gi * (1.0 - gg * gg)
                            dg[3 * hsize + j] = dh_layer[j] * tc * go * (1.0 - go)
                            dc[l, j] = dcell * gf
                    else:
                        for j in range(hsize):
                            v = g[j]
                            if act == 0:
                                dg[j] = dh_layer[j] * v * (1.0 - v)
                            elif act == 1:
                                dg[j] = dh_layer[j] * (1.0 - v * v)
                            else:
                                dg[j] = dh_layer[j] if v > 0.0 else 0.0
                    width_in, columns = _layer_columns(l, c0, hsize, skip, kind)
                    dz[:columns] = 0.0
                    _matvec_t_add(w_all[k, l], columns, dg, dz)
                    if l == 0 or skip:
                        dctrl += dz[:c0]
                    if l > 0:
                        dbelow[:] = dz[width_in - hsize : width_in]
                    if kind == 0:
                        dh[l, :] = dz[width_in:columns]
                dr[:] = dctrl[n_in:]
                dx[k, b, t] = dctrl[:n_in]
            # the initial state's gradients
            dmem0[k, b] = dmem
            dreads0[k, b] = dr
            dweights0[k, b] = dw_next
            for l in range(n_layers):
                dstate0[k, b, l, 0] = dh[l]
                dstate0[k, b, l, 1] = dc[l]
