"""The fused engine: a population of K NTMs of one architecture run over a whole sequence
by the compiled loops of :mod:`ntm_repro.models.fused_kernels`, forward and backward, as
one ``torch.autograd.Function``.

The networks' parameters enter through a few *derived* tensors built with ordinary torch
operations once per sequence (each controller layer's [W_ih, W_hh] as one matrix and its two
LSTM biases summed, each head projection laid out in the canonical column order, the mixing coefficients, the initial weightings as a softmax of
their logits), so autograd carries the gradients from the derived tensors back to the
parameters; the time loop itself records nothing. The output layer, applied to every step
at once, stays an ordinary torch operation (:func:`~ntm_repro.models.ntm.stacked_readout`). Everything here works on a
population's stacked tensors (name -> (K, ...)) directly: no ``vmap``, no ``functional_call``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ntm_repro.models import fused_kernels as kernels
from ntm_repro.models.controller import ACTIVATIONS, LSTMController
from ntm_repro.models.ntm import NTM, stacked_readout

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


def _stack(tensors: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.stack``, as a view when there is one tensor (a network alone, one layer)."""
    return tensors[0].unsqueeze(dim) if len(tensors) == 1 else torch.stack(tensors, dim)


Tensors = Mapping[str, torch.Tensor]  # a population's parameters and buffers by name, each (K, ...)


def _controller_tensors(net: NTM, t: Tensors) -> tuple[torch.Tensor, torch.Tensor]:
    """w_all (K, L, G, C) and bias (K, L, G): per layer [W_ih, W_hh (LSTM), zeros to the
    widest], so that a step is one matrix-vector product over [input, h_{t-1}] (two
    products, the first over a short input, cost about three times as much)."""
    c = net.controller
    layers = range(c.num_layers)
    if isinstance(c, LSTMController):
        weights = [torch.cat((t[f"controller.weight_ih.{l}"], t[f"controller.weight_hh.{l}"]), dim=-1) for l in layers]
        bias = [t[f"controller.bias_ih.{l}"] + t[f"controller.bias_hh.{l}"] if c.bias_hh is not None else t[f"controller.bias_ih.{l}"]
                for l in layers]
    else:
        weights = [t[f"controller.layers.{l}.weight"] for l in layers]
        bias = [t[f"controller.layers.{l}.bias"] for l in layers]
    widest = max(w.shape[-1] for w in weights)
    return _stack([w if w.shape[-1] == widest else F.pad(w, (0, widest - w.shape[-1])) for w in weights], 1), _stack(bias, 1)


def _head_tensors(net: NTM, layout: Layout, t: Tensors) -> tuple[torch.Tensor, torch.Tensor]:
    """proj (K, L, P, H): each feeding layer's projection in canonical row order (zero rows
    for heads it does not feed), and the summed bias (K, P)."""
    ref = t["projections.0.weight"]
    k, size, total = ref.shape[0], net.controller.layer_sizes[0], sum(p.out_features for p in net.projections)
    if layout.proj_whole:  # the weights as they are: no scatter
        proj = [ref if layer == net.feeding_layers[0] else ref.new_zeros(k, total, size) for layer in range(len(layout.feeds))]
        return _stack(proj, 1), t["projections.0.bias"]
    proj = [ref.new_zeros(k, total, size) for _ in net.controller.layer_sizes]
    bias = ref.new_zeros(k, total)
    for i, (layer, rows) in enumerate(zip(net.feeding_layers, layout.proj_rows)):
        index = torch.as_tensor(rows)
        proj[layer] = proj[layer].index_add(1, index, t[f"projections.{i}.weight"])
        bias = bias.index_add(1, index, t[f"projections.{i}.bias"])
    return torch.stack(proj, 1), bias


def _initial_tensors(net: NTM, t: Tensors) -> tuple[torch.Tensor, ...]:
    """mem0 (K, NB, N, W), reads0 (K, R), weights0 (K, HH, N), state0 (K, L, 2, H)."""
    reads0 = t["init_reads"]
    mem0 = t["memory_init.bias"].reshape(reads0.shape[0], net.num_blocks, net.locations, net.width)
    weights0 = torch.softmax(t["init_weight_logits"], dim=-1)
    c = net.controller
    state0 = t["controller.init_state"] if isinstance(c, LSTMController) else mem0.new_zeros(reads0.shape[0], c.num_layers, 2, c.size)
    return mem0, reads0, weights0, state0


def derived_tensors(net: NTM, layout: Layout, t: Tensors) -> list[torch.Tensor]:
    """The engine's inputs, in :class:`FusedSequence`'s order, for K networks of ``net``'s
    architecture from their parameters and buffers ``t`` (each with a leading K). ``net``
    gives the structure only (a meta-device template will do)."""
    w_all, bias = _controller_tensors(net, t)
    proj, proj_bias = _head_tensors(net, layout, t)
    if len(layout.mix_rows):
        mix_ab = net.mixer.effective(t[f"mixer.{net.mixer.weight_name}"])[:, torch.as_tensor(layout.mix_rows)]
    else:
        mix_ab = w_all.new_zeros(w_all.shape[0], 0, 2)
    return [w_all, bias, proj, proj_bias, mix_ab, *_initial_tensors(net, t)]


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
            _numpy(w_all), _numpy(proj), layout.feeds,
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


def fused_logits(net: NTM, layout: Layout, t: Tensors, inputs: torch.Tensor) -> torch.Tensor:
    """Output logits (K, B, T, O) of K networks of ``net``'s architecture (parameters and
    buffers ``t``, each (K, ...)) on ``inputs`` (K, B, T, I), network k on row k."""
    tops, reads = FusedSequence.apply(layout, inputs, *derived_tensors(net, layout, t))
    return stacked_readout(t, tops, reads)


def fused_forward(nets: list[NTM], inputs: torch.Tensor) -> torch.Tensor:
    """:func:`fused_logits` of the networks ``nets`` (one architecture), their parameters
    stacked. The architecture's :class:`Layout` is worked out once and kept on the first."""
    layout = nets[0].__dict__.get("_fused_layout") or nets[0].__dict__.setdefault("_fused_layout", Layout.of(nets[0]))
    named = [dict((*net.named_parameters(), *net.named_buffers())) for net in nets]
    return fused_logits(nets[0], layout, {name: _stack([n[name] for n in named]) for name in named[0]}, inputs)
