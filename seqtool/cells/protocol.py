"""The cell protocol: what a recurrent cell is to seqtool, in one file whose docstrings are the reference.

A cell is one module holding a `Cell` object, plus one line in an entry-point group:

    [project.entry-points."seqtool.cells"]
    mingru = "seqtool.cells.minimal:MINGRU"

seqtool's own cells are declared in its pyproject.toml exactly so, and a plug-in package declares
its own the same way. Every task kind builds its recurrent stack through `Cell.build`, so a new
cell works in every kind, in `compare`, in the plots and in `seqtool cells` without an edit
elsewhere. `docs/cells.md` explains the contract with a worked example.

What a stack built by `Cell.build` must do (torch's nn.RNN / nn.LSTM / nn.GRU already do):

- `stack(inputs, state=None) -> (outputs, state)`. `inputs` is (batch, time, features), batch
  first, or a `PackedSequence` of them; `outputs` is (batch, time, hidden * directions), packed
  when the inputs were. Padding never changes a valid step's output nor the final state.
- The state is one tensor, or a tuple of tensors, each with the layers (times the directions)
  first and the batch second: (layers * directions, batch, ...). A tuple's first tensor is the
  hidden state h, (layers * directions, batch, hidden): what classifiers pool and what an
  encoder-decoder's bridge reads. Kinds cut, carry, reorder (beam search) and reset it along dimension 1
  without knowing what it holds. `state=None` starts from zeros.
- Stacks that are not torch's fused modules also have `step(x_t, state) -> (h_t, state)` for one
  time step (batch, features) of a unidirectional stack: the form generation, streaming and
  export run. `stack(x[:, None], state)` computes the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a cell is built, so listing cells stays cheap
    import torch
    from torch import nn

    from seqtool.schema import ModelConfig


@dataclass(frozen=True)
class StatePart:
    """One tensor of a cell's carried state, per layer and direction."""

    name: str
    """Its name in exported graphs (`h` gives inputs `h_in` and outputs `h_out`)."""
    meaning: str
    """What it holds, for export metadata (`hidden state`)."""
    shape: Callable[[ModelConfig], tuple[int, ...]]
    """Its shape after (layers * directions, batch), from the model config: `(hidden,)` for h."""


@dataclass(frozen=True)
class Cell:
    """A recurrent cell: how to build its stack, what its state holds, and what it supports."""

    name: str
    """The `model.type` value that selects it."""
    summary: str
    """One line for `seqtool cells`: the cell, the paper, the year."""
    colour: str
    """Its matplotlib colour in plots that compare cells."""
    build: Callable[[ModelConfig, int], nn.Module]
    """`build(model_config, input_size)`: the stack of `model.num_layers` layers (both directions
    when `model.bidirectional`), obeying the contract in this module's docstring."""
    reference: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    """`reference(stack, inputs)`: the stack's top outputs over inputs (batch, time, features) from
    zero state, computed from the cell's published equations one step at a time with the stack's
    weights. Slow and plain on purpose: the conformance tests check the fast form against it."""
    state: tuple[StatePart, ...]
    """The tensors of the carried state, in the stack's order; the first is h."""
    options: tuple[str, ...] = ()
    """The `model` keys this cell reads beyond the shared ones (`forget_bias`); any of them set
    to a non-default value for another cell is an error."""
    bidirectional: bool = True
    """Whether the stack runs both directions (classifiers, recognisers, encoders)."""
    carried_state: bool = True
    """Whether a final state can start the next call: truncated backpropagation through time,
    `training.state_reset`, generation from a prompt, streaming and exported state inputs."""
    onnx: bool = True
    """Whether `seqtool export` writes ONNX for it (TorchScript is written for every cell)."""
    fused: bool = False
    """True for torch's nn.RNN / nn.LSTM / nn.GRU, whose single steps run on torch's cell kernels
    (`torch.lstm_cell`) and whose weights follow torch's names (`weight_ih_l0_reverse`)."""
    notes: tuple[str, ...] = field(default=())
    """Choices worth knowing (the stack's normalisation, where an encoder-decoder's decoder starts)."""
