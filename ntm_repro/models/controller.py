"""Controllers: a stacked LSTM and a feedforward network, stepped one time step at a time,
each exposing the output of every layer (NTM3 feeds write heads from different layers)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LSTM_BIASES = ("double", "single")
ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def lstm_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh=None):
    """One LSTM step, ``gates = W_ih x + b_ih + W_hh h + b_hh``, ``c' = sigma(f) c + sigma(i) tanh(g)``,
    ``h' = sigma(o) tanh(c')``: the ops of ``torch.lstm_cell`` on the CPU (bitwise equal there),
    written out so that ``torch.func.vmap`` can batch it over seeds (it has no rule for the fused op)."""
    h, c = state
    gates = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class LSTMController(nn.Module):
    """Stacked LSTM (Hochreiter & Schmidhuber 1997, the form of ``torch.nn.LSTMCell``).

    ``skip``: Graves-style skip connections, the input fed to every layer
    (``in_l = [x, h_{l-1}]``). ``bias``: ``double`` (PyTorch's two bias vectors, 8H
    parameters) or ``single`` (one 4H bias, Graves 2013). ``learn_init_state``: learned
    h_0 and c_0 per layer (2H parameters each, as pytorch-ntm's controller).
    """

    def __init__(
        self,
        input_size: int,
        size: int,
        layers: int = 1,
        skip: bool = False,
        bias: str = "double",
        learn_init_state: bool = True,
    ):
        super().__init__()
        self.input_size, self.size, self.num_layers, self.skip = input_size, size, layers, skip
        self.layer_sizes = [size] * layers
        bound = 1.0 / math.sqrt(size)

        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.weight_ih = nn.ParameterList()
        self.weight_hh = nn.ParameterList()
        self.bias_ih = nn.ParameterList()
        self.bias_hh = nn.ParameterList() if bias == "double" else None
        for layer in range(layers):
            fan_in = input_size if layer == 0 else (input_size + size if skip else size)
            self.weight_ih.append(uniform(4 * size, fan_in))
            self.weight_hh.append(uniform(4 * size, size))
            self.bias_ih.append(uniform(4 * size))
            if self.bias_hh is not None:
                self.bias_hh.append(uniform(4 * size))
        if learn_init_state:
            self.init_state = nn.Parameter(torch.randn(layers, 2, size) * 0.05)
        else:
            self.register_buffer("init_state", torch.zeros(layers, 2, size), persistent=False)

    def initial_state(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [
            (self.init_state[l, 0].expand(batch_size, -1), self.init_state[l, 1].expand(batch_size, -1))
            for l in range(self.num_layers)
        ]

    def step(self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]]):
        """One time step: returns (output of every layer, new state)."""
        outputs, new_state = [], []
        inp = x
        for l in range(self.num_layers):
            b_hh = self.bias_hh[l] if self.bias_hh is not None else None
            h, c = lstm_cell(inp, state[l], self.weight_ih[l], self.weight_hh[l], self.bias_ih[l], b_hh)
            outputs.append(h)
            new_state.append((h, c))
            inp = torch.cat((x, h), dim=-1) if self.skip else h
        return outputs, new_state


class FeedforwardController(nn.Module):
    """A multilayer perceptron: ``h_l = act(W_l h_{l-1} + b_l)``; stateless."""

    def __init__(self, input_size: int, size: int, layers: int = 1, activation: str = "sigmoid"):
        super().__init__()
        self.input_size, self.size, self.num_layers = input_size, size, layers
        self.layer_sizes = [size] * layers
        self.activation = ACTIVATIONS[activation]
        self.layers = nn.ModuleList(nn.Linear(input_size if l == 0 else size, size) for l in range(layers))

    def initial_state(self, batch_size: int) -> tuple:
        """No state: an empty tuple (a tensor tree with no leaves, which vmap can return)."""
        return ()

    def step(self, x: torch.Tensor, state: tuple):
        outputs = []
        for layer in self.layers:
            x = self.activation(layer(x))
            outputs.append(x)
        return outputs, ()
