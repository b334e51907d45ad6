"""The stack every cell that is not one of torch's fused modules runs in: layers, directions,
padding, normalisation and the carried state, written once.

A cell module supplies one layer, one direction (`CellLayer` below); `LayerStack` gives it the
interface torch's nn.LSTM has, so every task kind uses it unchanged.

The stack's structure follows the papers the modern cells come from. Layer 1 reads the inputs as
they are (a series of one feature cannot be normalised). Every later layer is a pre-norm residual
block, `x + dropout(layer(LayerNorm(x)))`: minGRU/minLSTM (Feng et al. 2024) and xLSTM (Beck et
al. 2024) both stack their cells so, and without the residual path a deep stack of gates that read
only their input trains slowly. A stack of two or more layers ends with a LayerNorm, so the head
reads a normalised residual stream (as in GPT-2). Padding is handled by masking: a padded step
leaves the state as it is, so the final state of each sequence is the state after its own last
step, and the backward direction reads each sequence reversed within its own length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqtool.schema import ModelConfig

LayerState = tuple[torch.Tensor, ...]  # one layer and direction: each part (batch, ...)


class CellLayer(Protocol):
    """One layer, one direction, of a cell. `forward` must give what `step` gives step by step."""

    def initial_state(self, batch: int, like: torch.Tensor) -> LayerState:
        """The zero state: each part (batch, ...), on `like`'s device and dtype."""

    def forward(self, x: torch.Tensor, state: LayerState, mask: torch.Tensor | None) -> tuple[torch.Tensor, LayerState]:
        """x (batch, time, input) -> every h_t (batch, time, hidden) and the final state. Where
        `mask` (batch, time) is False the step must leave the state unchanged."""

    def step(self, x_t: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        """x_t (batch, input) -> h_t (batch, hidden) and the new state."""


class LayerStack(nn.Module):
    """`num_layers` layers of one cell, in one or both directions, with nn.LSTM's interface."""

    def __init__(self, config: ModelConfig, input_size: int, make_layer: Callable[[int, int], nn.Module]):
        """`make_layer(input_size, hidden_size)` builds one layer of one direction."""
        super().__init__()
        self.hidden_size, self.num_layers = config.hidden_size, config.num_layers
        self.directions = 2 if getattr(config, "bidirectional", False) else 1
        width = self.hidden_size * self.directions
        self.layers = nn.ModuleList(  # layer k, direction d at k * directions + d
            make_layer(input_size if k == 0 else width, self.hidden_size)
            for k in range(self.num_layers)
            for _ in range(self.directions)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(self.num_layers - 1))
        self.final_norm = nn.LayerNorm(width) if self.num_layers > 1 else None
        self.dropout = nn.Dropout(config.dropout if self.num_layers > 1 else 0.0)

    def forward(self, inputs: torch.Tensor | PackedSequence, state=None):
        """inputs (batch, time, features) or packed -> outputs (batch, time, hidden * directions),
        packed likewise, and the final state (see seqtool.cells.protocol). One step of a
        unidirectional stack runs the step form."""
        if isinstance(inputs, PackedSequence):
            x, lengths = pad_packed_sequence(inputs, batch_first=True)
            outputs, final = self.padded(x, lengths.to(x.device), state)
            return pack_padded_sequence(outputs, lengths, batch_first=True, enforce_sorted=False), final
        if inputs.shape[1] == 1 and self.directions == 1:
            h, final = self.step(inputs[:, 0], state)
            return h[:, None], final
        return self.padded(inputs, None, state)

    def padded(self, x: torch.Tensor, lengths: torch.Tensor | None, state=None):
        """x (batch, time, features) padded after each sequence's `lengths` steps (None: none is)
        -> outputs (batch, time, hidden * directions), zero at padding as a packed batch's, and
        the final state. Export graphs run this: a packed batch traces into ONNX only around
        torch's own RNN operators."""
        mask = None if lengths is None else torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        states = self._split(state, x)
        finals: list[LayerState] = []
        for k in range(self.num_layers):
            layer_input = x if k == 0 else self.norms[k - 1](x)
            outputs = []
            for d in range(self.directions):
                index = k * self.directions + d
                reading = layer_input if d == 0 else _reverse(layer_input, lengths)
                out, final = self.layers[index](reading, states[index], mask)
                outputs.append(out if d == 0 else _reverse(out, lengths))
                finals.append(final)
            y = torch.cat(outputs, dim=-1) if self.directions == 2 else outputs[0]
            x = y if k == 0 else x + self.dropout(y)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if mask is not None:
            x = x * mask[..., None].to(x.dtype)
        return x, self._join(finals)

    def step(self, x_t: torch.Tensor, state=None):
        """One time step of a unidirectional stack: x_t (batch, features) -> the top output
        (batch, hidden) and the new state."""
        if self.directions != 1:
            raise ValueError("a bidirectional stack has no step form: its backward direction reads the future")
        states = self._split(state, x_t[:, None])
        finals = []
        x = x_t
        for k, layer in enumerate(self.layers):
            h, final = layer.step(x if k == 0 else self.norms[k - 1](x), states[k])
            x = h if k == 0 else x + self.dropout(h)
            finals.append(final)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, self._join(finals)

    def layer_parameters(self, k: int, reverse: bool = False) -> list[nn.Parameter]:
        """The parameters of layer k (one direction), with the normalisation that feeds it (and,
        for the top layer, the final one)."""
        own = list(self.layers[k * self.directions + int(reverse)].parameters())
        if reverse:
            return own
        norm = list(self.norms[k - 1].parameters()) if k > 0 else []
        top = list(self.final_norm.parameters()) if self.final_norm is not None and k == self.num_layers - 1 else []
        return own + norm + top

    def _split(self, state, like: torch.Tensor) -> list[LayerState]:
        """The stack's state (parts of (layers * directions, batch, ...)) -> one tuple per layer
        and direction; zeros when None."""
        if state is None:
            return [layer.initial_state(like.shape[0], like) for layer in self.layers]
        parts = state if isinstance(state, tuple) else (state,)
        return [tuple(part[i] for part in parts) for i in range(len(self.layers))]

    @staticmethod
    def _join(states: list[LayerState]):
        parts = tuple(torch.stack([s[j] for s in states]) for j in range(len(states[0])))
        return parts[0] if len(parts) == 1 else parts


def _reverse(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence of x (batch, time, ...) reversed within its own length; padding stays put."""
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = lengths[:, None] - 1 - steps
    index = torch.where(index >= 0, index, steps)
    return x.gather(1, index[..., None].expand_as(x))


def run_layers_by_reference(stack: LayerStack, inputs: torch.Tensor, reference_layer: Callable) -> torch.Tensor:
    """The stack's top outputs from zero state, each layer computed by `reference_layer(layer,
    x_t, state) -> (h_t, state)` one step at a time: the structure above around a cell's
    published equations, unidirectional."""
    x = inputs
    for k, layer in enumerate(stack.layers):
        reading = x if k == 0 else stack.norms[k - 1](x)
        state = layer.initial_state(inputs.shape[0], inputs)
        outputs = []
        for t in range(inputs.shape[1]):
            h, state = reference_layer(layer, reading[:, t], state)
            outputs.append(h)
        y = torch.stack(outputs, dim=1)
        x = y if k == 0 else x + stack.dropout(y)
    return x if stack.final_norm is None else stack.final_norm(x)
