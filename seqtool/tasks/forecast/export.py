"""The forecaster's export graph: a scaled context window in, the scaled forecast (and interval) out."""

from __future__ import annotations

import torch
from torch import nn

from seqtool.tasks.forecast.network import ForecastNetwork, point_and_interval


class ForecastGraph(nn.Module):
    """context (batch, context_length, columns), scaled -> forecast[, lower, upper] (batch, horizon,
    targets), scaled: the forecast network and `point_and_interval`, in one graph (`seqtool export`)."""

    def __init__(self, model: ForecastNetwork, loss: str, quantiles: list[float]):
        super().__init__()
        self.model = model
        self.loss, self.quantiles = loss, quantiles

    def forward(self, context: torch.Tensor):
        out = self.model(context)  # (batch, horizon, targets, outputs_per_step)
        return tuple(part for part in point_and_interval(out, self.loss, self.quantiles) if part is not None)
