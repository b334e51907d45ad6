"""The language model's export graph: tokens and the carried recurrent state in, scores and the new state out, so a deployment steps token by token."""

from __future__ import annotations

import torch
from torch import nn

from seqtool.models import SequenceModel


class LanguageModelGraph(nn.Module):
    """tokens (batch, time) int64, state (num_layers, batch, hidden) -> scores, new state."""

    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None):
        state = h if c is None else (h, c)
        scores, state = self.model(tokens, state)
        return (scores, *state) if isinstance(state, tuple) else (scores, state)
