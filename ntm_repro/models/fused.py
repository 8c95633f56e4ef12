"""The fused engine: a population of K NTMs of one architecture run over a whole sequence
by the compiled loops of :mod:`ntm_repro.models.fused_kernels`, forward and backward, as
one ``torch.autograd.Function``.

The networks' parameters enter through a few *derived* tensors built with ordinary torch
operations once per sequence (each controller layer's [W_ih, W_hh] as one matrix and its two
LSTM biases summed, each head projection laid out in the canonical column order, the mixing coefficients, the initial weightings as a softmax of
their logits), so autograd carries the gradients from the derived tensors back to the
parameters; the time loop itself records nothing. The output layer, applied to every step
at once, stays an ordinary torch operation (:meth:`NTM.readout`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ntm_repro.models import fused_kernels as kernels
from ntm_repro.models.controller import ACTIVATIONS, LSTMController
from ntm_repro.models.ntm import NTM

_ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}  # sigmoid 0, tanh 1, relu 2


@dataclass(frozen=True)
class Layout:
    """What the loops need to know of an architecture, beyond the tensors' shapes."""

    kind: int  # 0 LSTM, 1 feedforward
    act: int
    skip: bool
    feeds: np.ndarray  # (L,) bool: layer l feeds head parameters
    mix_target: np.ndarray  # (M,) blocks mixed, in mixing order
    mix_source: np.ndarray
    mix_rows: np.ndarray  # (M,) row of each in Mixer.effective()
    head_block: np.ndarray  # (HH,) write heads, then read heads
    n_write: int
    shifts: np.ndarray  # (S,)
    proj_rows: tuple[np.ndarray, ...]  # per projection: the canonical row of each of its outputs
    proj_whole: bool  # one projection emits every head parameter, in canonical order

    @classmethod
    def of(cls, net: NTM) -> "Layout":
        controller = net.controller
        lstm = isinstance(controller, LSTMController)
        act = 0 if lstm else _ACTIVATION_CODES[next(n for n, f in ACTIVATIONS.items() if f is controller.activation)]
        layers = controller.num_layers
        feeds = np.zeros(layers, dtype=np.bool_)
        feeds[net.feeding_layers] = True
        plans = [(block, source) for level in net.mixer.levels for block in level for source in [net.mixer.sources[block]]]
        emitted = net.projection_order.argsort().numpy()  # canonical position of each emitted column
        starts = np.cumsum([0] + [p.out_features for p in net.projections])
        return cls(
            kind=0 if lstm else 1,
            act=act,
            skip=bool(getattr(controller, "skip", False)),
            feeds=feeds,
            mix_target=np.array([b for b, _ in plans], dtype=np.int64),
            mix_source=np.array([s for _, s in plans], dtype=np.int64),
            mix_rows=np.array([net.mixer.mixed.index(b) for b, _ in plans], dtype=np.int64),
            head_block=np.array(list(net.topology.write_blocks) + list(net.topology.read_blocks), dtype=np.int64),
            n_write=net.num_write,
            shifts=((-net.shift_index[:, 0]) % net.locations).numpy().astype(np.int64),
            proj_rows=tuple(emitted[a:b] for a, b in zip(starts[:-1], starts[1:])),
            proj_whole=len(net.projections) == 1 and not net.permute_projection,
        )


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``, as a view when there is one tensor (a network alone, one layer)."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


def _controller_tensors(net: NTM) -> tuple[torch.Tensor, torch.Tensor]:
    """w_all (L, G, C) and bias (L, G) of one network: per layer [W_ih, W_hh (LSTM), zeros
    to the widest], so that a step is one matrix-vector product over [input, h_{t-1}] (two
    products, the first over a short input, cost about three times as much)."""
    c = net.controller
    if isinstance(c, LSTMController):
        weights = [torch.cat((w_ih, w_hh), dim=1) for w_ih, w_hh in zip(c.weight_ih, c.weight_hh)]
        bias = [b if c.bias_hh is None else b + c.bias_hh[l] for l, b in enumerate(c.bias_ih)]
    else:
        weights = [layer.weight for layer in c.layers]
        bias = [layer.bias for layer in c.layers]
    widest = max(w.shape[1] for w in weights)
    return _stack([w if w.shape[1] == widest else F.pad(w, (0, widest - w.shape[1])) for w in weights]), _stack(bias)


def _head_tensors(net: NTM, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """proj (L, P, H): each feeding layer's projection in canonical row order (zero rows for
    heads it does not feed), and the summed bias (P,)."""
    size = net.controller.layer_sizes[0]
    total = sum(p.out_features for p in net.projections)
    ref = net.projections[0].weight
    if layout.proj_whole:  # the weights as they are: no scatter
        proj = [ref if layer == net.feeding_layers[0] else ref.new_zeros(total, size) for layer in range(len(layout.feeds))]
        return _stack(proj), net.projections[0].bias
    proj = [ref.new_zeros(total, size) for _ in net.controller.layer_sizes]
    bias = ref.new_zeros(total)
    for projection, layer, rows in zip(net.projections, net.feeding_layers, layout.proj_rows):
        index = torch.as_tensor(rows)
        proj[layer] = proj[layer].index_add(0, index, projection.weight)
        bias = bias.index_add(0, index, projection.bias)
    return torch.stack(proj), bias


def _initial_tensors(net: NTM) -> tuple[torch.Tensor, ...]:
    """mem0 (NB, N, W), reads0 (R,), weights0 (HH, N), state0 (L, 2, H) of one network."""
    mem0 = net.memory_init.bias.reshape(net.num_blocks, net.locations, net.width)
    weights0 = torch.softmax(net.init_weight_logits, dim=-1)
    c = net.controller
    state0 = c.init_state if isinstance(c, LSTMController) else mem0.new_zeros(c.num_layers, 2, c.size)
    return mem0, net.init_reads, weights0, state0


def derived_tensors(net: NTM, layout: Layout) -> list[torch.Tensor]:
    """The engine's inputs for one network, in :class:`FusedSequence`'s order."""
    w_all, bias = _controller_tensors(net)
    proj, proj_bias = _head_tensors(net, layout)
    if len(layout.mix_rows):
        mix_ab = net.mixer.effective()[torch.as_tensor(layout.mix_rows)]
    else:
        mix_ab = w_all.new_zeros(0, 2)
    return [w_all, bias, proj, proj_bias, mix_ab, *_initial_tensors(net)]


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


class FusedSequence(torch.autograd.Function):
    """(x (K, B, T, I), derived tensors each with a leading K) -> tops (K, B, T, H), reads
    (K, B, T, R); backward by :func:`fused_kernels.backward`."""

    @staticmethod
    def forward(ctx, layout: Layout, x, w_all, bias, proj, proj_bias, mix_ab, mem0, reads0, weights0, state0):
        k, b, t, _ = x.shape
        dtype = x.dtype
        layers, gate_width, hsize = w_all.shape[1], w_all.shape[2], state0.shape[-1]
        heads, (blocks, locations, width) = len(layout.head_block), mem0.shape[1:]
        reads_width, params = reads0.shape[1], proj.shape[2]

        def new(*shape):
            return torch.empty(*shape, dtype=dtype)

        saved = {
            "ctrl_in": new(k, b, t, x.shape[3] + reads_width),
            "gates": new(k, b, t, layers, gate_width),
            "cells": new(k, b, t + 1, layers, hsize),
            "hidden": new(k, b, t + 1, layers, hsize),
            "params": new(k, b, t, params),
            **{name: new(k, b, t + 1, heads, locations) for name in ("sims", "wcs", "wgs", "wss", "ws")},
            "memory": new(k, b, t + 1, blocks, locations, width),
            "memory_written": new(k, b, t, blocks, locations, width),
            "norms": new(k, b, t + 1, blocks, locations),
            "reads": new(k, b, t + 1, reads_width),
        }
        kernels.forward(
            _numpy(x), layout.kind, layout.act, layout.skip,
            *map(_numpy, (w_all, bias, proj, proj_bias)), layout.feeds,
            _numpy(mix_ab), layout.mix_target, layout.mix_source, layout.head_block, layout.n_write, layout.shifts,
            *map(_numpy, (mem0, reads0, weights0, state0)),
            *(tensor.numpy() for tensor in saved.values()),
        )
        ctx.layout = layout
        ctx.save_for_backward(w_all, proj, mix_ab, *saved.values())
        ctx.saved_names = list(saved)
        tops = saved["hidden"][:, :, 1:, -1]
        return tops, saved["reads"][:, :, 1:]

    @staticmethod
    def backward(ctx, dtops, dreads):
        layout = ctx.layout
        w_all, proj, mix_ab, *rest = ctx.saved_tensors
        saved = dict(zip(ctx.saved_names, rest))
        k, b, t, c0 = saved["ctrl_in"].shape
        dtype = dtops.dtype
        layers, hsize = w_all.shape[1], saved["hidden"].shape[-1]
        heads, (blocks, locations, width) = len(layout.head_block), saved["memory"].shape[3:]
        dgates = torch.empty_like(saved["gates"])
        dparams = torch.empty_like(saved["params"])
        dmix_ab = torch.zeros_like(mix_ab)
        dmem0 = torch.empty(k, b, blocks, locations, width, dtype=dtype)
        dreads0 = torch.empty(k, b, saved["reads"].shape[-1], dtype=dtype)
        dweights0 = torch.empty(k, b, heads, locations, dtype=dtype)
        dstate0 = torch.empty(k, b, layers, 2, hsize, dtype=dtype)
        dx = torch.empty(k, b, t, c0 - saved["reads"].shape[-1], dtype=dtype)
        names = ["ctrl_in", "gates", "cells", "hidden", "params", "sims", "wcs", "wgs", "wss", "ws", "memory",
                 "memory_written", "norms"]
        kernels.backward(
            layout.kind, layout.act, layout.skip,
            _numpy(w_all.transpose(-1, -2)), _numpy(proj.transpose(-1, -2)), layout.feeds,
            _numpy(mix_ab), layout.mix_target, layout.mix_source, layout.head_block, layout.n_write, layout.shifts,
            *(saved[name].numpy() for name in names),
            _numpy(dtops), _numpy(dreads),
            dgates.numpy(), dparams.numpy(), dmix_ab.numpy(), dmem0.numpy(), dreads0.numpy(), dweights0.numpy(),
            dstate0.numpy(), dx.numpy(),
        )
        # weight gradients: one product over all steps and batch elements per matrix
        hidden, ctrl_in = saved["hidden"], saved["ctrl_in"]
        dw_all = torch.zeros_like(w_all)
        for l in range(layers):
            parts = [ctrl_in] if l == 0 or layout.skip else []
            parts += [hidden[:, :, 1:, l - 1]] if l > 0 else []  # h^{l-1}_t
            parts += [hidden[:, :, :-1, l]] if layout.kind == 0 else []  # h^l_{t-1}
            z = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
            dw_all[:, l, :, : z.shape[-1]] = torch.einsum("kbtg,kbtc->kgc", dgates[:, :, :, l], z)
        dbias = dgates.sum(dim=(1, 2))
        dproj = torch.einsum("kbtp,kbtlh->klph", dparams, hidden[:, :, 1:])
        dproj_bias = dparams.sum(dim=(1, 2))
        return (
            None, dx, dw_all, dbias, dproj, dproj_bias, dmix_ab,
            dmem0.sum(1), dreads0.sum(1), dweights0.sum(1), dstate0.sum(1),
        )


def fused_forward(nets: list[NTM], inputs: torch.Tensor) -> torch.Tensor:
    """Output logits (K, B, T, O) of the K networks ``nets`` (one architecture) on
    ``inputs`` (K, B, T, I), network k on row k. The architecture's :class:`Layout` is
    worked out once and kept on the first network."""
    layout = nets[0].__dict__.get("_fused_layout") or nets[0].__dict__.setdefault("_fused_layout", Layout.of(nets[0]))
    per_net = [derived_tensors(net, layout) for net in nets]
    stacked = [_stack(list(parts)) for parts in zip(*per_net)]
    tops, reads = FusedSequence.apply(layout, inputs, *stacked)
    return torch.stack([net.readout(tops[k], reads[k]) for k, net in enumerate(nets)])
