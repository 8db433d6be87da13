"""The small networks ``mix`` and ``bilstm`` train on states of the frozen model.

- :class:`ScalarMix`: ELMo's scalar mix (Peters et al. 2018, eq. 1) of pooled hidden
  states, ``gamma * sum_j softmax(w)_j * h_j``, then a linear head. Each state may first be
  normalised (no learned scale or shift), as ELMo's ``do_layer_norm``: hidden states of
  different layers differ in scale, and the weights should compare layers, not scales.
- :class:`BiLSTMHead`: BERT's feature-based setting (Devlin et al. 2019, section 5.3): token
  states feed a randomly initialised bidirectional LSTM; the final states of its top layer
  (forward: at the last real token; backward: at the first) feed a linear head. Padding
  never enters the LSTM: sequences are packed (``pack_padded_sequence``).

Each ends in a linear head of the task's ``n_outputs`` units (classes, labels, or 1 for a score).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


def normalise_layers(states: torch.Tensor, width: int) -> torch.Tensor:
    """Layer-normalise each ``width``-wide slice of the last dimension (one slice per hidden state), no affine."""
    shape = states.shape
    parts = states.reshape(*shape[:-1], shape[-1] // width, width)
    return nn.functional.layer_norm(parts, (width,)).reshape(shape)


class ScalarMix(nn.Module):
    """Softmax-normalised weights over ``n_layers`` pooled states, a scale gamma, and a linear head."""

    def __init__(self, n_layers: int, hidden_size: int, n_outputs: int, layer_norm: bool = True) -> None:
        super().__init__()
        self.layer_norm = layer_norm
        self.weights = nn.Parameter(torch.zeros(n_layers))  # softmax(0) = equal weights at the start
        self.gamma = nn.Parameter(torch.ones(()))
        self.head = nn.Linear(hidden_size, n_outputs)

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.weights, dim=0)

    def mixed(self, states: torch.Tensor) -> torch.Tensor:
        """[batch, n_layers, hidden] -> [batch, hidden]."""
        if self.layer_norm:
            states = nn.functional.layer_norm(states, states.shape[-1:])
        return self.gamma * torch.einsum("l,blh->bh", self.layer_weights(), states)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.head(self.mixed(states))


class BiLSTMHead(nn.Module):
    """A bidirectional LSTM over token states (padding masked by packing), then a linear head."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        n_outputs: int,
        dropout: float,
        layer_width: int | None = None,
    ) -> None:
        super().__init__()
        self.layer_width = layer_width  # normalise each hidden state's slice of the input; None: no normalisation
        self.lstm = nn.LSTM(
            input_size,
            hidden_size,
            num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden_size, n_outputs)

    def features(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[batch, tokens, input] padded on the right, real lengths [batch] -> [batch, 2 * hidden]."""
        if self.layer_width:
            states = normalise_layers(states, self.layer_width)
        packed = pack_padded_sequence(states, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        # h_n: [layers * 2, batch, hidden] in the input's order; the top layer's two directions are last
        return torch.cat([h_n[-2], h_n[-1]], dim=-1)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(states, lengths)))


__all__ = ["BiLSTMHead", "ScalarMix", "normalise_layers"]
