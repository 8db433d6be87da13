"""The trainable classifier: backbone body, pooling over chosen hidden states, linear head."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from ..models.backbone import Backbone
from ..models.pooling import pool
from .prefix import PrefixBatch, block_input, skip_bottom_blocks


class TextClassificationModel(nn.Module):
    """body -> hidden states ``layers`` -> pooling -> dropout -> linear head of ``n_outputs`` units.

    ``n_outputs`` is the task's (``Task.n_outputs``): K classes (single), K labels (multilabel),
    1 (regression); a bundle records it as ``n_classes``, as bundles always have.

    Hidden state j < L is the input of block j (0 = embedding output) and state L is the
    body's ``last_hidden_state`` (after a final norm where the family has one), the
    same convention as Hugging Face's ``hidden_states``.
    """

    per_token = False  # one row of logits per input (TokenClassificationModel: one per token)

    def __init__(
        self, backbone: Backbone, n_outputs: int, pooling: str, layers: Sequence[int], dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.body = backbone.model
        self.pooling = pooling
        self.layers = tuple(layers)
        self.num_blocks = backbone.num_blocks
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.hidden_size * len(self.layers), n_outputs)
        # not a submodule: the blocks already live inside body
        self._blocks = [backbone.blocks]

    @property
    def blocks(self) -> nn.ModuleList:
        return self._blocks[0]

    def pooled(self, batch: dict[str, torch.Tensor], prefix: PrefixBatch | None = None) -> torch.Tensor:
        """Pooled features of ``batch``; with ``prefix`` (the batch's cached output of the frozen blocks,
        ``PrefixStates.batch``) the frozen bottom blocks are skipped."""
        captured = self.states(batch, prefix)
        mask = batch["attention_mask"]
        return torch.cat([pool(captured[j].float(), mask, self.pooling) for j in self.layers], dim=-1)

    def states(self, batch: dict[str, torch.Tensor], prefix: PrefixBatch | None = None) -> dict[int, torch.Tensor]:
        """The hidden states ``layers`` of ``batch`` by layer, [b, tokens, hidden] each (see ``pooled``)."""
        captured: dict[int, torch.Tensor] = {}
        handles = []
        for j in self.layers:
            if j < self.num_blocks:

                def hook(_module, args, kwargs, j=j):
                    captured[j] = block_input(args, kwargs)

                handles.append(self.blocks[j].register_forward_pre_hook(hook, with_kwargs=True))
        skip = (
            skip_bottom_blocks(self.blocks, prefix.k, prefix.tuple_length)
            if prefix is not None
            else contextlib.nullcontext()
        )
        try:
            with skip as stand_in:
                if stand_in is not None and prefix is not None:
                    stand_in.replacement = prefix.states
                out = self.body(**batch)
        finally:
            for handle in handles:
                handle.remove()
        captured[self.num_blocks] = out.last_hidden_state
        return captured

    def forward(self, batch: dict[str, torch.Tensor], prefix: PrefixBatch | None = None) -> torch.Tensor:
        features = self.pooled(batch, prefix)
        return self.head(self.dropout(features))


class TokenClassificationModel(TextClassificationModel):
    """The same body, hooks and prefix skipping, without pooling: the hidden states ``layers`` of every token,
    concatenated -> dropout -> a linear head per token. ``forward`` gives logits [b, tokens, n_outputs]."""

    per_token = True

    def forward(self, batch: dict[str, torch.Tensor], prefix: PrefixBatch | None = None) -> torch.Tensor:
        captured = self.states(batch, prefix)
        features = torch.cat([captured[j].float() for j in self.layers], dim=-1)
        return self.head(self.dropout(features))
