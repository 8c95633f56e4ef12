"""The LSTM baseline of Graves et al. 2014 (section 4): a stacked LSTM and a sigmoid output
layer; with ``skip`` (Graves 2013, Graves-style deep LSTM) the output layer sees every layer."""

from __future__ import annotations

import torch
from torch import nn

from ntm_repro.models.controller import LSTMController


class LSTMBaseline(nn.Module):
    def __init__(self, controller: LSTMController, output_size: int):
        super().__init__()
        self.controller = controller
        features = sum(controller.layer_sizes) if controller.skip else controller.layer_sizes[-1]
        self.output = nn.Linear(features, output_size)
        self.input_size, self.output_size = controller.input_size, output_size

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` (B, T, I) -> output logits (B, T, O).

        Layer by layer over the whole sequence with torch's LSTM (its time loop in C++): a
        layer's input, ``x_t`` or with skip connections ``[x_t, h^{l-1}_t]``, is known for
        every t once the layer below has run the whole sequence. The same function as
        stepping :meth:`LSTMController.step` (test); seeds batched by vmap step instead
        (torch's LSTM has no vmap rule)."""
        if torch._C._functorch.is_batchedtensor(inputs):
            return self._stepped(inputs)
        c = self.controller
        batch = inputs.shape[0]
        features, layer_input = [], inputs
        for l in range(c.num_layers):
            h0, c0 = (c.init_state[l, i].expand(1, batch, -1).contiguous() for i in range(2))
            bias_hh = c.bias_hh[l] if c.bias_hh is not None else torch.zeros_like(c.bias_ih[l])
            weights = [c.weight_ih[l], c.weight_hh[l], c.bias_ih[l], bias_hh]
            out, _, _ = torch.lstm(layer_input, (h0, c0), weights, True, 1, 0.0, self.training, False, True)
            features.append(out)
            layer_input = torch.cat((inputs, out), dim=-1) if c.skip else out
        return self.output(torch.cat(features, dim=-1) if c.skip else features[-1])

    def _stepped(self, inputs: torch.Tensor) -> torch.Tensor:
        """The same, one :meth:`LSTMController.step` per time step."""
        state = self.controller.initial_state(inputs.shape[0])
        features = []
        for t in range(inputs.shape[1]):
            layers, state = self.controller.step(inputs[:, t], state)
            features.append(torch.cat(layers, dim=-1) if self.controller.skip else layers[-1])
        return self.output(torch.stack(features, dim=1))
