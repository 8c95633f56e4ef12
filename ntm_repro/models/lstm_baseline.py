"""The LSTM baseline of Graves et al. 2014 (section 4): a stacked LSTM and a sigmoid output
layer; with ``skip`` (Graves 2013, Graves-style deep LSTM) the output layer sees every layer."""

from __future__ import annotations

import torch
from torch import nn

from ntm_repro.models.controller import LSTMController
from ntm_repro.models.lstm_sequence import lstm_layer_sequence


class LSTMBaseline(nn.Module):
    def __init__(self, controller: LSTMController, output_size: int):
        super().__init__()
        self.controller = controller
        features = sum(controller.layer_sizes) if controller.skip else controller.layer_sizes[-1]
        self.output = nn.Linear(features, output_size)
        self.input_size, self.output_size = controller.input_size, output_size

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` (B, T, I) -> output logits (B, T, O)."""
        tensors = {name: t.unsqueeze(0) for name, t in (*self.named_parameters(), *self.named_buffers())}
        return stacked_logits(self, tensors, inputs.unsqueeze(0)).squeeze(0)

    def _stepped(self, inputs: torch.Tensor) -> torch.Tensor:
        """The same, one :meth:`LSTMController.step` per time step (the reference the
        whole-sequence form is tested against)."""
        state = self.controller.initial_state(inputs.shape[0])
        features = []
        for t in range(inputs.shape[1]):
            layers, state = self.controller.step(inputs[:, t], state)
            features.append(torch.cat(layers, dim=-1) if self.controller.skip else layers[-1])
        return self.output(torch.stack(features, dim=1))


def stacked_logits(net: LSTMBaseline, t: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """K baselines of ``net``'s architecture, seed k's parameters in row k of each stacked
    tensor of ``t`` (named as ``net``'s), on ``inputs`` (K, B, T, I) -> logits (K, B, T, O).

    Layer by layer over the whole sequence (:mod:`ntm_repro.models.lstm_sequence`, its time
    loops compiled on the CPU): a layer's input, ``x_t`` or with skip connections
    ``[x_t, h^{l-1}_t]``, is known for every t once the layer below has run the whole
    sequence. The same function as stepping :meth:`LSTMController.step` (test)."""
    c = net.controller
    K, B = inputs.shape[:2]
    init = t["controller.init_state"]  # (K, layers, 2, H)
    features, layer_input = [], inputs
    for l in range(c.num_layers):
        bias = t[f"controller.bias_ih.{l}"]
        if c.bias_hh is not None:
            bias = bias + t[f"controller.bias_hh.{l}"]
        h0, c0 = (init[:, l, i].unsqueeze(1).expand(K, B, -1) for i in range(2))
        out = lstm_layer_sequence(layer_input, t[f"controller.weight_ih.{l}"], t[f"controller.weight_hh.{l}"], bias, h0, c0)
        features.append(out)
        layer_input = torch.cat((inputs, out), dim=-1) if c.skip else out
    top = torch.cat(features, dim=-1) if c.skip else features[-1]
    weight, out_bias = t["output.weight"], t["output.bias"]  # (K, O, F), (K, O)
    return torch.baddbmm(out_bias.unsqueeze(1), top.flatten(1, 2), weight.transpose(1, 2)).view(K, B, inputs.shape[2], -1)
