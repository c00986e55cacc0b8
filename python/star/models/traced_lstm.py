"""A bidirectional LSTM that torch.compile traces.

Dynamo refuses to wrap ``nn.LSTM`` (any use of the module breaks the graph unless
``torch._dynamo.config.allow_rnn`` is set globally, and with it inductor fails to
lower the CPU LSTM op). This module holds the parameters of ``nn.LSTM(...,
batch_first=True, bidirectional=True)`` under the same names, shapes and
initialisation, so state dicts load either way, and runs:

- eagerly: the same fused LSTM op as ``nn.LSTM`` (cuDNN on a GPU);
- under torch.compile: the recurrence as explicit per-step ops on the same
  parameters, which dynamo traces into the network's one graph.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DIRECTIONS = ("", "_reverse")  # nn.LSTM's parameter name suffixes


class BiLSTM(nn.Module):
    """One bidirectional, batch-first LSTM layer from zero states: x [B, T, input] -> [B, T, 2 hidden]."""

    batch_first = bidirectional = True  # nn.LSTM's flags, fixed here

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        for suffix in DIRECTIONS:  # registration order = nn.LSTM's (same initial values for a seed)
            self.register_parameter(f"weight_ih_l0{suffix}", nn.Parameter(torch.empty(4 * hidden_size, input_size)))
            self.register_parameter(f"weight_hh_l0{suffix}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size)))
            self.register_parameter(f"bias_ih_l0{suffix}", nn.Parameter(torch.empty(4 * hidden_size)))
            self.register_parameter(f"bias_hh_l0{suffix}", nn.Parameter(torch.empty(4 * hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(hidden), 1/sqrt(hidden)) for every tensor, as nn.LSTM."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            forward = self._direction(x, "")
            backward = self._direction(x.flip(1), "_reverse").flip(1)
            return torch.cat([forward, backward], dim=-1)
        zeros = x.new_zeros(2, x.shape[0], self.hidden_size)
        # (input, (h0, c0), weights, has_biases, num_layers, dropout, train, bidirectional, batch_first)
        return torch.lstm(x, (zeros, zeros), list(self.parameters()), True, 1, 0.0, self.training, True, True)[0]

    def _direction(self, x: torch.Tensor, suffix: str) -> torch.Tensor:
        """One direction over x [B, T, input] -> hidden states [B, T, hidden]."""
        w_hh = getattr(self, f"weight_hh_l0{suffix}")
        bias = getattr(self, f"bias_ih_l0{suffix}") + getattr(self, f"bias_hh_l0{suffix}")
        inputs = x @ getattr(self, f"weight_ih_l0{suffix}").t() + bias  # all steps at once: [B, T, 4 hidden]
        h = c = x.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for t in range(x.shape[1]):
            # gate order of nn.LSTM: input, forget, cell, output
            i, f, g, o = (inputs[:, t] + h @ w_hh.t()).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            states.append(h)
        return torch.stack(states, dim=1)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, batch_first=True, bidirectional=True"
