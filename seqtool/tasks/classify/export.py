"""The classifier's export graph: padded token batches with their lengths in, logits and probabilities out."""

from __future__ import annotations

import torch
from torch import nn

from seqtool.models import SequenceModel, layer_weights, pool_over_time


class ClassifierGraph(nn.Module):
    """tokens (batch, time) int64 padded, lengths (batch,) int64 -> logits, probabilities."""

    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model
        config = model.config
        self.pooling, self.bidirectional = config.pooling, config.bidirectional
        if self.bidirectional and isinstance(model.recurrent, nn.RNNBase):
            # One single-layer module per layer and direction, on the same weights, so the
            # backward direction can be fed each text reversed within its own length.
            kind = type(model.recurrent)
            extra = {"nonlinearity": config.nonlinearity} if config.type == "rnn" else {}
            self.layers = nn.ModuleList()
            for k in range(config.num_layers):
                size = config.embedding_size if k == 0 else 2 * config.hidden_size
                for reverse in (False, True):
                    layer = kind(size, config.hidden_size, batch_first=True, **extra)
                    for mine, trained in zip(layer_weights(layer, 0), layer_weights(model.recurrent, k, reverse), strict=True):
                        mine.data = trained.data
                    self.layers.append(layer)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor):
        x = self.model.embedding(tokens)  # (batch, time, embedding_size)
        if not isinstance(self.model.recurrent, nn.RNNBase):  # another cell's stack masks padding itself
            outputs, _ = self.model.recurrent.padded(x, lengths)
        elif self.bidirectional:
            # Position t of a text of length L reads position L - 1 - t; padding stays in place.
            steps = torch.arange(tokens.shape[1], device=tokens.device)[None, :]  # (1, time)
            flip = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)[:, :, None]  # (batch, time, 1)
            for k in range(0, len(self.layers), 2):
                forward_out, _ = self.layers[k](x)
                reversed_in = x.gather(1, flip.expand(-1, -1, x.shape[2]))
                backward_out, _ = self.layers[k + 1](reversed_in)
                backward_out = backward_out.gather(1, flip.expand(-1, -1, backward_out.shape[2]))
                x = torch.cat([forward_out, backward_out], dim=2)
            outputs = x
        else:
            outputs, _ = self.model.recurrent(x)  # (batch, time, hidden * directions)
        if self.pooling == "last":
            size = outputs.shape[2]
            last = (lengths - 1)[:, None, None].expand(-1, 1, size)  # (batch, 1, size)
            final = outputs.gather(1, last)[:, 0]  # each text's last token
            if self.bidirectional:  # forward direction at the end, backward direction at the start
                half = size // 2
                final = torch.cat([final[:, :half], outputs[:, 0, half:]], dim=1)
            features = final
        else:
            features = pool_over_time(outputs, lengths, self.pooling)
        logits = self.model.head(features)
        return logits, torch.softmax(logits, dim=-1)
