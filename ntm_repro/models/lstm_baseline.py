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
        """``inputs`` (B, T, I) -> output logits (B, T, O)."""
        state = self.controller.initial_state(inputs.shape[0])
        features = []
        for t in range(inputs.shape[1]):
            layers, state = self.controller.step(inputs[:, t], state)
            features.append(torch.cat(layers, dim=-1) if self.controller.skip else layers[-1])
        return self.output(torch.stack(features, dim=1))
