"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates that read the input
alone, so a layer's whole sequence is one matrix product and one linear scan.

    minGRU:  z_t = sigmoid(W_z x_t),  h~_t = g(W_h x_t),  h_t = (1 - z_t) h_{t-1} + z_t h~_t
    minLSTM: f_t = sigmoid(W_f x_t),  i_t = sigmoid(W_i x_t),  h~_t = g(W_h x_t),
             f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t),  h_t = f'_t h_{t-1} + i'_t h~_t

`model.candidate_activation: g` is the paper's g(x) = x + 0.5 for x >= 0 and sigmoid(x) below:
every h~ is positive, so the scan runs on logarithms alone. `identity` leaves h~ = W_h x (the
scan then handles both signs). `model.normalise_gates` (minLSTM) divides f and i by their sum, the
paper's time-independent scale; false uses them as they are.

Training runs the parallel form (`seqtool.cells.scan`); generation and predict run `step`, the
recurrence itself. The tests check the two against each other and against `_reference_step`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from seqtool.cells.protocol import Cell, StatePart
from seqtool.cells.scan import FLOOR, linear_scan
from seqtool.cells.stack import LayerStack, LayerState, run_layers_by_reference
from seqtool.schema import ModelConfig


def g(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class MinimalLayer(nn.Module):
    """One direction of one minGRU or minLSTM layer; its state is (h,)."""

    def __init__(self, input_size: int, hidden_size: int, kind: str, activation: str, normalise: bool):
        super().__init__()
        self.kind, self.activation, self.normalise = kind, activation, normalise
        self.hidden_size = hidden_size
        gates = 2 if kind == "mingru" else 3
        self.project = nn.Linear(input_size, gates * hidden_size)  # every gate in one matrix product

    def initial_state(self, batch: int, like: torch.Tensor) -> LayerState:
        return (like.new_zeros(batch, self.hidden_size),)

    def _logs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log a_t (how much of h_{t-1} stays), log of h~_t's weight, and h~_t's pre-activation."""
        if self.kind == "mingru":
            k, candidate = self.project(x).chunk(2, dim=-1)
            return -F.softplus(k), -F.softplus(-k), candidate  # log(1 - z), log z
        k_f, k_i, candidate = self.project(x).chunk(3, dim=-1)
        if self.normalise:  # log f' = -softplus(log i - log f), log i' = -softplus(log f - log i)
            diff = F.softplus(-k_f) - F.softplus(-k_i)
            return -F.softplus(diff), -F.softplus(-diff), candidate
        return -F.softplus(-k_f), -F.softplus(-k_i), candidate

    def forward(self, x: torch.Tensor, state: LayerState, mask: torch.Tensor | None) -> tuple[torch.Tensor, LayerState]:
        log_a, log_weight, candidate = self._logs(x)
        if mask is not None:  # a padded step keeps h: a = 1, nothing added
            padded = ~mask[..., None]
            log_a = log_a.masked_fill(padded, 0.0)
            log_weight = log_weight.masked_fill(padded, FLOOR)
        if self.activation == "g":
            h = linear_scan(log_a, h0=state[0], log_b=log_weight + log_g(candidate))
        else:
            h = linear_scan(log_a, b=torch.exp(log_weight) * candidate, h0=state[0])
        return h, (h[:, -1],)

    def step(self, x_t: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        log_a, log_weight, candidate = self._logs(x_t)
        value = g(candidate) if self.activation == "g" else candidate
        h = torch.exp(log_a) * state[0] + torch.exp(log_weight) * value
        return h, (h,)


def _reference_step(layer: MinimalLayer, x_t: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
    """The paper's equations as written, in probability space."""
    (h,) = state
    candidate_activation = g if layer.activation == "g" else (lambda v: v)
    if layer.kind == "mingru":
        k, pre = layer.project(x_t).chunk(2, dim=-1)
        z = torch.sigmoid(k)
        h = (1 - z) * h + z * candidate_activation(pre)
        return h, (h,)
    k_f, k_i, pre = layer.project(x_t).chunk(3, dim=-1)
    f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
    if layer.normalise:
        f, i = f / (f + i), i / (f + i)
    h = f * h + i * candidate_activation(pre)
    return h, (h,)


def _build(kind: str):
    def build(config: ModelConfig, input_size: int) -> LayerStack:
        normalise = kind == "minlstm" and config.normalise_gates
        return LayerStack(config, input_size, lambda i, h: MinimalLayer(i, h, kind, config.candidate_activation, normalise))

    return build


def _reference(stack: LayerStack, inputs: torch.Tensor) -> torch.Tensor:
    return run_layers_by_reference(stack, inputs, _reference_step)


_HIDDEN = StatePart("h", "hidden state", lambda config: (config.hidden_size,))
_NOTES = (
    "layers after the first are pre-norm residual blocks; two or more layers end with a LayerNorm",
    "training scans the whole sequence in parallel (log space); generation steps",
)

MINGRU = Cell(
    name="mingru",
    summary="minimal GRU (Feng et al. 2024): gates read the input only; trains by a parallel scan",
    colour="tab:olive",
    build=_build("mingru"),
    reference=_reference,
    state=(_HIDDEN,),
    options=("candidate_activation",),
    notes=_NOTES,
)

MINLSTM = Cell(
    name="minlstm",
    summary="minimal LSTM (Feng et al. 2024): normalised input-only gates; trains by a parallel scan",
    colour="tab:cyan",
    build=_build("minlstm"),
    reference=_reference,
    state=(_HIDDEN,),
    options=("candidate_activation", "normalise_gates"),
    notes=_NOTES,
)
