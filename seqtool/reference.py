"""The RNN/LSTM overview's equations (docs/rnn-lstm-overview.md), written out one gate at a time.

These cells are for reading and for testing, not for training: `tests/test_reference.py` checks
that torch's fused nn.RNN / nn.LSTM / nn.GRU compute exactly these equations with the same
weights. See docs/rnn-lstm-overview.md for the notation.

PyTorch keeps two bias vectors per layer (input-side and hidden-side); the document's single b
is their sum. Its `W [h_{t-1}, x_t]` on a concatenation is the same as `W_h h_{t-1} + W_x x_t`
with W split column-wise, which is how PyTorch stores it (weight_hh and weight_ih).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Gate:
    """One affine map of the input and the previous hidden state: W_x x + W_h h + b."""

    W_x: torch.Tensor  # (hidden, input)
    W_h: torch.Tensor  # (hidden, hidden)
    b: torch.Tensor  # (hidden,)

    def __call__(self, x_t: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        return x_t @ self.W_x.T + h_prev @ self.W_h.T + self.b


def rnn_step(gate: Gate, f, x_t: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
    """h_t = f(W_x x_t + W_h h_{t-1} + b)"""
    return f(gate(x_t, h_prev))


def lstm_step(gates: dict[str, Gate], x_t: torch.Tensor, h_prev: torch.Tensor, C_prev: torch.Tensor):
    """The LSTM cell of the document, with the candidate C~_t and the output gate o_t spelled out."""
    f_t = torch.sigmoid(gates["forget"](x_t, h_prev))  # forget gate: what to discard from C
    i_t = torch.sigmoid(gates["input"](x_t, h_prev))  # input gate: what new information to store
    C_tilde = torch.tanh(gates["candidate"](x_t, h_prev))  # candidate cell content
    o_t = torch.sigmoid(gates["output"](x_t, h_prev))  # output gate: what to expose as h_t
    C_t = f_t * C_prev + i_t * C_tilde  # cell update: long-term memory
    h_t = o_t * torch.tanh(C_t)  # hidden state: short-term memory
    return h_t, C_t


def gru_step(gates: dict[str, Gate], x_t: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
    """GRU (Cho et al., 2014) as PyTorch defines it: the reset gate scales W_h h + b_h only."""
    r_t = torch.sigmoid(gates["reset"](x_t, h_prev))
    z_t = torch.sigmoid(gates["update"](x_t, h_prev))
    cand = gates["candidate"]
    n_t = torch.tanh(x_t @ cand.W_x.T + cand.b_x + r_t * (h_prev @ cand.W_h.T + cand.b_h))
    return (1 - z_t) * n_t + z_t * h_prev


@dataclass
class GruCandidate(Gate):
    """The GRU candidate keeps its two biases apart, since the reset gate multiplies only one."""

    b_x: torch.Tensor = None  # type: ignore[assignment]
    b_h: torch.Tensor = None  # type: ignore[assignment]


_GATE_ORDER = {  # how PyTorch stacks the gates in weight_ih / weight_hh
    "lstm": ("input", "forget", "candidate", "output"),
    "gru": ("reset", "update", "candidate"),
    "rnn": ("hidden",),
}


def gates_of(module: nn.RNNBase, layer: int) -> dict[str, Gate]:
    """Split a fused module's stacked weights for `layer` into named gates."""
    kind = {nn.LSTM: "lstm", nn.GRU: "gru", nn.RNN: "rnn"}[type(module)]
    names = _GATE_ORDER[kind]
    w_ih, w_hh, b_ih, b_hh = (getattr(module, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    chunks = [t.chunk(len(names)) for t in (w_ih, w_hh, b_ih, b_hh)]
    gates: dict[str, Gate] = {}
    for k, name in enumerate(names):
        W_x, W_h, b_x, b_h = (c[k] for c in chunks)
        if kind == "gru" and name == "candidate":
            gates[name] = GruCandidate(W_x, W_h, b_x + b_h, b_x=b_x, b_h=b_h)
        else:
            gates[name] = Gate(W_x, W_h, b_x + b_h)
    return gates


def run_reference(module: nn.RNNBase, inputs: torch.Tensor) -> torch.Tensor:
    """Run the equations over inputs (batch, time, features) through every layer, from zero
    state; returns the top layer's hidden states (batch, time, hidden)."""
    batch, steps, _ = inputs.shape
    layer_input = inputs
    for layer in range(module.num_layers):
        gates = gates_of(module, layer)
        h = inputs.new_zeros(batch, module.hidden_size)
        C = inputs.new_zeros(batch, module.hidden_size)
        outputs = []
        for t in range(steps):
            x_t = layer_input[:, t]
            if isinstance(module, nn.LSTM):
                h, C = lstm_step(gates, x_t, h, C)
            elif isinstance(module, nn.GRU):
                h = gru_step(gates, x_t, h)
            else:
                f = torch.tanh if module.nonlinearity == "tanh" else torch.relu
                h = rnn_step(gates["hidden"], f, x_t, h)
            outputs.append(h)
        layer_input = torch.stack(outputs, dim=1)
    return layer_input
