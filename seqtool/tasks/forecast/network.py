"""The forecast network: window normalisation -> (segment embedding) -> RNN/LSTM/GRU -> decoder.

Scaled context windows (batch, context_length, columns), targets first, go in; the forecast's
distribution parameters in the same scaled units come out, (batch, horizon, targets, P): P = 1
point value, 2 for `gaussian_nll` (mean and variance) or one per quantile. Training, evaluation,
prediction and `seqtool export` all call this one module, so every option works in all of them.

The options follow the recurrent forecasters that lead the long-horizon benchmarks:

- `model.window_norm`: each window's target columns are normalised before the network and the
  forecast is mapped back after it. `last` subtracts the last observed value (the network
  forecasts the change from "now"); `revin` removes the window's mean and standard deviation
  (Kim et al. 2022, RevIN), optionally with a learned affine (`model.revin_affine`). With many
  series (`observed`: the last column marks data rows) both read the observed rows only, and
  padding stays 0 after normalising.
- `model.segment_length` (Lin et al. 2023, SegRNN): the context is cut into segments of w rows,
  each embedded by one linear layer and a ReLU, and the cell runs over L/w segments, not L rows.
- `model.decoder: parallel` (SegRNN's parallel multi-step forecasting): every output segment is
  one more cell step from the encoder's final state, all taken at once as one batch, each fed a
  learned position embedding (and a channel embedding); a linear map turns each into w values.
  `head` is one linear map from the final state to the whole horizon.
- `model.channels: independent`: every column is a univariate series through the same weights
  (the batch's (batch, rows, channels) is reshaped to (batch * channels, rows, 1), a view of the
  same numbers); `mixed` reads all columns at once, which covariates need.

With the defaults (row by row, `head`, `mixed`, `last`) the parameters are named and computed as
in the forecast models of earlier seqtool versions, so their checkpoints load unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from seqtool.models import recurrent_layers, unrolled
from seqtool.tasks.forecast.config import ForecastModel


@dataclass(frozen=True)
class NetworkInputs:
    """What the input columns hold beside the values: `observed` (the last column marks data rows,
    many series), `future_columns` (read over the horizon too: the window has horizon more rows)
    and `series_count` (the column before `observed` holds each row's series id, embedded with
    `model.series_embedding`; id 0 is a series unseen in training)."""

    observed: bool = False
    future_columns: tuple[int, ...] = ()
    series_count: int = 0


Z_80 = 1.2815515655446004  # standard normal quantile of 0.9: mean +- Z_80 sigma covers 80%
REVIN_EPS = 1e-5  # added to a window's variance: a constant window normalises to zeros, not NaN


class ForecastNetwork(nn.Module):
    def __init__(
        self,
        config: ForecastModel,
        columns: int,
        targets: int,
        horizon: int,
        loss: str,
        outputs_per_step: int,
        inputs: NetworkInputs | None = None,
    ):
        super().__init__()
        self.config = config
        inputs = inputs or NetworkInputs()
        self.observed = inputs.observed  # the last column says which rows are data (1) and which padding (0)
        self.future_columns = list(inputs.future_columns)
        self.series_column = columns - 2 if inputs.series_count else None  # just before the observed column
        self.series_table = nn.Embedding(inputs.series_count + 1, config.series_embedding) if inputs.series_count else None
        extra = horizon * len(self.future_columns) + (config.series_embedding if inputs.series_count else 0)
        columns -= self.series_column is not None  # the series id is looked up, not read as a number
        self.independent = config.channels == "independent"
        self.targets, self.horizon, self.loss, self.outputs_per_step = targets, horizon, loss, outputs_per_step
        self.outputs_per_series = 1 if self.independent else targets  # target columns per sequence
        channels_in = 1 if self.independent else columns
        self.segment = config.segment_length or 1
        size = config.hidden_size
        embedded = config.segment_length is not None or config.decoder == "parallel"
        self.segment_embedding = nn.Linear(self.segment * channels_in, size) if embedded else None
        self.dropout = nn.Dropout(config.dropout)
        self.recurrent = recurrent_layers(config, size if embedded else channels_in)
        per_value = self.outputs_per_series * outputs_per_step
        if config.decoder == "parallel":
            self.output_segments = math.ceil(horizon / self.segment)
            channel_size = size // 2 if self.independent else 0
            self.position_embedding = nn.Parameter(torch.randn(self.output_segments, size - channel_size))
            self.channel_embedding = nn.Parameter(torch.randn(targets, channel_size)) if self.independent else None
            self.head = nn.Linear(size, self.segment * per_value)
        else:
            self.head = nn.Linear(size + extra, horizon * per_value)
        if config.revin_affine:
            self.revin_weight = nn.Parameter(torch.ones(targets))
            self.revin_bias = nn.Parameter(torch.zeros(targets))
        # A list while `seqtool train` logs gradient flow: the encoder's top-layer states land there.
        self.probe: list | None = None

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """context (batch, context_length, columns), scaled -> (batch, horizon, targets, P), scaled.
        With future covariates the window is context_length + horizon rows: the last horizon rows
        hold the covariates' known future values (the network reads only those columns there)."""
        extras = []
        if self.future_columns:
            extras.append(context[:, -self.horizon :, self.future_columns].reshape(context.shape[0], -1))
            context = context[:, : -self.horizon]
        if self.series_column is not None:
            extras.append(self.series_table(context[:, -1, self.series_column].round().long()))
            context = torch.cat([context[:, :, : self.series_column], context[:, :, self.series_column + 1 :]], dim=2)
        batch, rows, k = context.shape[0], context.shape[1], self.targets
        normalised, loc, scale = self._normalise(context)
        series = normalised
        if self.independent:  # (batch, rows, k) -> (batch * k, rows, 1); row b * k + c is channel c
            series = normalised.transpose(1, 2).reshape(batch * k, rows, 1)
        if self.segment_embedding is not None:
            segments = series.reshape(series.shape[0], rows // self.segment, self.segment * series.shape[2])
            series = self.dropout(F.relu(self.segment_embedding(segments)))  # (sequences, rows / w, hidden)
        if self.probe is None:
            _, state = self.recurrent(series)
        else:
            _, state = unrolled(self.recurrent, self.config, series, None, self.probe)
        out = self._decode(state, torch.cat(extras, dim=1) if extras else None)  # (sequences, horizon, targets per sequence, P)
        if self.independent:
            out = out.reshape(batch, k, self.horizon, self.outputs_per_step).transpose(1, 2)
        return self._denormalise(out.float(), loc, scale)

    def _decode(self, state, extras: torch.Tensor | None) -> torch.Tensor:
        """The encoder's final state (with the future covariates and series embedding, `extras`)
        -> raw outputs (sequences, horizon, targets per sequence, P)."""
        top = (state[0] if isinstance(state, tuple) else state)[-1]  # (sequences, hidden)
        sequences = top.shape[0]
        shape = (sequences, -1, self.outputs_per_series, self.outputs_per_step)
        if self.config.decoder != "parallel":
            top = self.dropout(top)
            return self.head(top if extras is None else torch.cat([top, extras.to(top.dtype)], dim=1)).reshape(shape)
        m = self.output_segments
        queries = self.position_embedding[None].expand(sequences, -1, -1)  # (sequences, m, position size)
        if self.channel_embedding is not None:
            channels = self.channel_embedding.repeat(sequences // self.targets, 1)  # row b * k + c -> channel c
            queries = torch.cat([queries, channels[:, None, :].expand(-1, m, -1)], dim=2)
        queries = self.dropout(queries.reshape(sequences * m, 1, -1))

        def repeat(s: torch.Tensor) -> torch.Tensor:  # (layers, sequences, ...) -> (layers, sequences * m, ...)
            return s.repeat_interleave(m, dim=1)

        start = tuple(repeat(s) for s in state) if isinstance(state, tuple) else repeat(state)
        decoded, _ = self.recurrent(queries, start)  # one step for every output segment at once
        out = self.head(self.dropout(decoded[:, 0])).reshape(shape)  # (sequences, m * w, ...)
        return out[:, : self.horizon]

    def _normalise(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The context with its target columns normalised per window, and the (batch, targets)
        location and scale that map a normalised forecast back: value * scale + loc."""
        k, norm = self.targets, self.config.window_norm
        targets = context[:, :, :k]
        if norm == "none":
            zeros = targets.new_zeros(targets.shape[0], k)
            return context, zeros, zeros + 1
        weight = context[:, :, -1:] if self.observed else None  # padding rows weigh nothing
        if norm == "last":
            loc = targets[:, -1]
            scale = torch.ones_like(loc)
        elif weight is None:
            loc = targets.mean(dim=1)
            scale = (targets.var(dim=1, unbiased=False) + REVIN_EPS).sqrt()
        else:
            count = weight.sum(dim=1).clamp_min(1.0)
            loc = (targets * weight).sum(dim=1) / count
            scale = ((((targets - loc[:, None]) ** 2) * weight).sum(dim=1) / count + REVIN_EPS).sqrt()
        normalised = (targets - loc[:, None]) / scale[:, None]
        if weight is not None:
            normalised = normalised * weight  # padding reads 0: the window's level
        if self.config.revin_affine:
            normalised = normalised * self.revin_weight + self.revin_bias
            # (y - bias) / weight * scale + loc, folded into one affine map
            scale = scale / (self.revin_weight + REVIN_EPS**2)
            loc = loc - self.revin_bias * scale
        return torch.cat([normalised, context[:, :, k:]], dim=2), loc, scale

    def _denormalise(self, out: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        loc, scale = loc[:, None, :].float(), scale[:, None, :].float()  # (batch, 1, targets)
        if self.loss == "gaussian_nll":
            mean = out[..., 0] * scale + loc
            variance = (F.softplus(out[..., 1]) + 1e-6) * scale**2
            return torch.stack([mean, variance], dim=-1)
        return out * scale[..., None] + loc[..., None]


def point_and_interval(
    out: torch.Tensor, loss: str, quantiles: list[float]
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The model's outputs (batch, horizon, targets, outputs_per_step) -> point forecast and 80%
    (or outermost-quantile) interval, each (batch, horizon, targets); in torch, so that the
    exported graph (`seqtool export`) computes exactly this too. Gaussian outputs are mean and
    variance."""
    if loss == "gaussian_nll":
        mean, sigma = out[..., 0], out[..., 1].sqrt()
        return mean, mean - Z_80 * sigma, mean + Z_80 * sigma
    if loss == "quantile":
        middle = min(range(len(quantiles)), key=lambda i: abs(quantiles[i] - 0.5))
        return out[..., middle], out[..., 0], out[..., -1]
    return out[..., 0], None, None
