"""The cells of 1986-2014 on torch's fused kernels: the Elman RNN, the LSTM and the GRU.

Their equations, one gate at a time, are in `seqtool.reference` (the seed overview's notation),
which the tests check these modules against.
"""

from __future__ import annotations

import torch
from torch import nn

from seqtool.cells.protocol import Cell, StatePart
from seqtool.reference import run_reference
from seqtool.schema import ModelConfig

_HIDDEN = StatePart("h", "hidden state", lambda config: (config.hidden_size,))
_MEMORY = StatePart("c", "cell state", lambda config: (config.hidden_size,))


def _build(module: type[nn.RNNBase]):
    def build(config: ModelConfig, input_size: int) -> nn.Module:
        """The fused stack a model config describes, batch first."""
        extra = {"nonlinearity": config.nonlinearity} if module is nn.RNN else {}
        stack = module(
            input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
            bidirectional=getattr(config, "bidirectional", False),
            **extra,
        )
        if module is nn.LSTM:
            _init_forget_bias(stack, config.hidden_size, config.forget_bias)
        return stack

    return build


@torch.no_grad()
def _init_forget_bias(recurrent: nn.Module, size: int, value: float) -> None:
    """Start every LSTM layer's forget gate at sigmoid(value): with 1.0 the cell keeps most of
    its memory from the first step, which long-range dependencies need to be learnt at all
    (Gers et al. 2000; Jozefowicz et al. 2015). PyTorch's two biases add up; the value goes
    in one of them."""
    for name, bias in recurrent.named_parameters():
        if name.startswith("bias_"):
            bias[size : 2 * size] = value if name.startswith("bias_ih") else 0.0


RNN = Cell(
    name="rnn",
    summary="Elman network (Elman 1990): h_t = f(W x_t + U h_{t-1} + b); torch's fused kernel",
    colour="tab:red",
    build=_build(nn.RNN),
    reference=run_reference,
    state=(_HIDDEN,),
    options=("nonlinearity",),
    fused=True,
)

LSTM = Cell(
    name="lstm",
    summary="long short-term memory (Hochreiter & Schmidhuber 1997, forget gate: Gers et al. 2000); torch's fused kernel",
    colour="tab:blue",
    build=_build(nn.LSTM),
    reference=run_reference,
    state=(_HIDDEN, _MEMORY),
    options=("forget_bias",),
    fused=True,
)

GRU = Cell(
    name="gru",
    summary="gated recurrent unit (Cho et al. 2014); torch's fused kernel",
    colour="tab:green",
    build=_build(nn.GRU),
    reference=run_reference,
    state=(_HIDDEN,),
    fused=True,
)
