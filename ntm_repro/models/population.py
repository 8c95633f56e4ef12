"""A population: the K >= 1 networks of one configuration (one per seed, each with its own
parameters) as one module whose parameters are the K networks' parameters stacked along a
new first dimension (row k is seed k's). Every run trains one (K = 1 for a single run), so
everything downstream (learner, checkpoints, loggers, run folders) takes a population and
never asks how many seeds it holds; how K networks run together is decided here alone.

K > 1 run as one batched computation: the fused engine and the LSTM baseline take the
stacked tensors as they are (for K = 1 too), the reference engine's time step runs under
``torch.func.vmap``. On the reference engine K = 1 runs its network directly with the stacked parameters' one row
(``functional_call``: no vmap overhead), unless its time step is compiled, which the
batched path does.

Seed k's outputs, losses and gradients are seed k's alone (nothing mixes along the seed
dimension), so K seeds trained together follow the K runs trained alone, up to float
rounding of batched matrix products. Small networks at small batch sizes are bound by
per-op overhead, which K seeds share: 5 seeds at batch 1 train 2.4x (eager) and 3.1x
(compiled) the sequences per second of one (``python -m ntm_repro.bench --seeds 1 5``).

Sequences of different lengths (each seed draws its own) are padded at the end to the
longest; the networks are causal, so outputs before a seed's own length are unchanged by
the padding, and the padded steps are cut off before the loss.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ntm_repro.models.engines import fused_takes
from ntm_repro.models.lstm_baseline import LSTMBaseline, stacked_logits
from ntm_repro.models.ntm import NTM, stacked_readout


def stack_key(name: str) -> str:
    """Parameter names as attribute names (``.`` is not allowed in one)."""
    return name.replace(".", "__")


class _Method(nn.Module):
    """Calls one method of ``model`` as its forward, so ``functional_call`` can run any
    method with swapped-in parameters (names gain the prefix ``model.``)."""

    def __init__(self, model: nn.Module, method: Callable[..., object]):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args):
        return self.method(self.model, *args)


def _ntm_step(model: NTM, x: torch.Tensor, state):
    return model.step(x, state, model.mixing_plans())


class Population(nn.Module):
    """K networks of identical architecture (``models``, one per seed) as one module whose
    parameters are the K networks' parameters stacked along a new first dimension."""

    def __init__(self, models: list[nn.Module], compile_step: bool = False):
        super().__init__()
        if len({type(m) for m in models}) != 1:
            raise ValueError("Population: every seed's network must have the same architecture")
        self.seeds = len(models)
        self.names = [name for name, _ in models[0].named_parameters()]
        params, buffers = stack_module_state(models)
        # in the networks' own order (a dict would be sorted), so optimizer state index i is
        # the same parameter here as in a network trained alone
        self.stacked = nn.ParameterDict([(stack_key(n), nn.Parameter(params[n].detach().clone())) for n in self.names])
        self.buffer_names = list(buffers)
        for name in self.buffer_names:
            self.register_buffer(stack_key(name), buffers[name].clone(), persistent=False)
        self._models = models  # a plain list: not registered, so not trained or saved twice
        self.direct = self.seeds == 1 and not compile_step  # one network, run as itself
        template = copy.deepcopy(models[0]).to("meta")
        self.template = [template]  # kept out of the module tree (meta tensors)
        self.fused = isinstance(template, NTM) and template.engine == "fused"
        if self.fused:  # the engine takes the population's stacked tensors as they are
            from ntm_repro.models.fused import Layout

            self.layout = Layout.of(models[0])
        if isinstance(template, NTM):  # the reference step also serves a fused model's batches the loops cannot take
            self._init = vmap(self._call(_Method(template, NTM.initial_state)), in_dims=(0, 0, None))
            self._step = vmap(self._call(_Method(template, _ntm_step)))
            if compile_step:
                self._step = torch.compile(self._step, dynamic=False)
        elif compile_step:
            raise ValueError("Population: only NTM models have a compiled time step")
        elif not (self.direct or isinstance(template, LSTMBaseline)):
            raise TypeError(f"Population: no batched forward for {type(template).__name__} (one network runs as itself)")

    @staticmethod
    def _call(module: nn.Module) -> Callable[..., object]:
        prefix = "model." if isinstance(module, _Method) else ""

        def call(params: dict, buffers: dict, *args):
            state = {prefix + n: t for n, t in params.items()}
            state.update({prefix + n: t for n, t in buffers.items()})
            return functional_call(module, state, args)

        return call

    def _tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = {n: self.stacked[stack_key(n)] for n in self.names}
        buffers = {n: getattr(self, stack_key(n)) for n in self.buffer_names}
        return params, buffers

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` (K, B, T, I), seed k's batch in row k -> logits (K, B, T, O)."""
        params, buffers = self._tensors()
        if self.fused and fused_takes(inputs):
            from ntm_repro.models.fused import fused_logits

            return fused_logits(self.template[0], self.layout, {**params, **buffers}, inputs)
        if isinstance(self.template[0], LSTMBaseline):  # every K, straight from the stacked tensors
            return stacked_logits(self.template[0], {**params, **buffers}, inputs)
        if self.direct:
            rows = {n: t.squeeze(0) for n, t in (*params.items(), *buffers.items())}
            return functional_call(self._models[0], rows, (inputs.squeeze(0),)).unsqueeze(0)
        state = self._init(params, buffers, inputs.shape[1])
        tops, reads = [], []
        # time-major, canonical strides: one compiled step serves every length (see NTM.forward)
        for x in inputs.permute(2, 0, 1, 3).clone(memory_format=torch.contiguous_format):
            top, state = self._step(params, buffers, x, state)
            tops.append(top)
            reads.append(state.reads)
        return stacked_readout(params, torch.stack(tops, dim=2), torch.stack(reads, dim=2))

    def forward_padded(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """One input batch (B, T_k, I) per seed (lengths may differ) -> each seed's logits at
        its own length."""
        lengths = [inputs.shape[1] for inputs in batches]
        longest = max(lengths)
        inputs = torch.stack([nn.functional.pad(x, (0, 0, 0, longest - x.shape[1])) for x in batches])
        logits = self(inputs)
        return [logits[k, :, :length] for k, length in enumerate(lengths)]

    def seed_models(self) -> list[nn.Module]:
        """The K networks with their current parameters (copied out of the stack)."""
        with torch.no_grad():
            for k, model in enumerate(self._models):
                for name, param in model.named_parameters():
                    param.copy_(self.stacked[stack_key(name)][k])
        return self._models
