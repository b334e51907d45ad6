"""The language model's export graph: tokens and the carried recurrent state in, scores and the new state out, so a deployment steps token by token."""

from __future__ import annotations

import torch
from torch import nn

from seqtool.models import SequenceModel
from seqtool.signature import reads_every_input


class LanguageModelGraph(nn.Module):
    """tokens (batch, time) int64 and each part of the state (num_layers, batch, ...) -> scores and
    each part of the new state."""

    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, *states: torch.Tensor):
        scores, state = self.model(tokens, states[0] if len(states) == 1 else states)
        scores = reads_every_input(scores, states)
        return (scores, *state) if isinstance(state, tuple) else (scores, state)
