"""One model for every task: input layer -> a recurrent stack (any registered cell) -> head.

The model returns outputs; the task computes the loss. It sees its own config section only.
`reference.py` holds the textbook equations these fused modules are tested against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqtool.schema import ModelConfig

# A stack's carried state: h alone (RNN, GRU, minGRU, minLSTM), or a tuple whose first tensor is h
# (LSTM: (h, c)). Each tensor is (num_layers * directions, batch, ...); see seqtool.cells.protocol.
RecurrentState = torch.Tensor | tuple[torch.Tensor, ...]

# Options a kind's model section may add (`embedding_size`, `output`, ...), and their values for a
# kind whose section does not have them.
_ABSENT = {"embedding_size": None, "tie_weights": False, "output": "full", "bidirectional": False, "pooling": "last"}


def model_option(config: ModelConfig, name: str) -> Any:
    """A model option of `config`, or its neutral value when the kind's model section lacks it."""
    return getattr(config, name, _ABSENT[name])


class SequenceModel(nn.Module):
    """Input layer -> dropout -> stacked recurrent layers -> dropout -> linear head.

    The input layer is an embedding for token ids (`vocab_size`), or nothing for real-valued
    features (`input_size`), which go straight into the recurrent layers.
    """

    def __init__(
        self,
        config: ModelConfig,
        output_size: int,
        vocab_size: int | None = None,
        input_size: int | None = None,
        cutoffs: list[int] | None = None,
    ):
        """`cutoffs` split the output vocabulary into frequency clusters for `output: adaptive`."""
        super().__init__()
        if (vocab_size is None) == (input_size is None):
            raise ValueError("give exactly one of vocab_size (tokens) and input_size (features)")
        self.config = config
        self.embedding = nn.Embedding(vocab_size, model_option(config, "embedding_size")) if vocab_size is not None else None
        self.dropout = nn.Dropout(config.dropout)
        self.recurrent = recurrent_layers(
            config, model_option(config, "embedding_size") if vocab_size is not None else input_size
        )
        # When a list: forward steps through time one cell call at a time and appends every
        # top-layer state to it, gradients retained (gradient-flow diagnostics; see `unrolled`).
        self.probe: list[RecurrentState] | None = None
        features = config.hidden_size * (2 if model_option(config, "bidirectional") else 1)
        # Grave et al. (2017), "Efficient softmax approximation for GPUs": frequent tokens in a
        # small head softmax, rare ones in clusters of lower dimension reached through it.
        self.adaptive = (
            nn.AdaptiveLogSoftmaxWithLoss(features, output_size, cutoffs, div_value=4.0)
            if model_option(config, "output") == "adaptive"
            else None
        )
        self.head = nn.Linear(features, output_size) if self.adaptive is None else None
        if model_option(config, "tie_weights"):
            # Press & Wolf (2017), "Using the Output Embedding to Improve Language Models".
            self.head.weight = self.embedding.weight

    def forward(
        self,
        inputs: torch.Tensor,
        state: RecurrentState | None = None,
        last_only: bool = False,
        lengths: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, RecurrentState | None]:
        """inputs: token ids (batch, time) or features (batch, time, input_size).

        Returns outputs (batch, time, output_size), or (batch, output_size) for the last time step
        only when `last_only` (a kind that reads the final state), and the state. With `lengths`,
        `inputs` are padded texts and the result is `pooled_logits` (and no state): training
        goes through `forward` so that DistributedDataParallel sees every call. With `targets`
        (batch, time) token ids, the result is their mean negative log-likelihood: the adaptive
        softmax computes it without ever forming the full (batch, time, vocabulary) logits.
        Without targets, an adaptive model returns log-probabilities in place of logits.
        """
        if lengths is not None:
            return self.pooled_logits(inputs, lengths), None
        if self.embedding is not None:
            inputs = self.dropout(self.embedding(inputs))  # (batch, time, embedding_size)
        if self.probe is None:
            hidden, state = self.recurrent(inputs, state)  # (batch, time, hidden_size)
        else:
            hidden, state = unrolled(self.recurrent, self.config, inputs, state, self.probe)
        if last_only:
            hidden = hidden[:, -1]  # (batch, hidden_size)
        hidden = self.dropout(hidden)
        if targets is not None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            if self.adaptive is not None:
                return self.adaptive(flat, targets.reshape(-1)).loss, state
            return nn.functional.cross_entropy(self.head(flat).float(), targets.reshape(-1)), state
        return self.output(hidden), state

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores over the outputs (logits, or log-probabilities for the adaptive softmax)."""
        if self.adaptive is not None:
            return self.adaptive.log_prob(hidden.reshape(-1, hidden.shape[-1])).reshape(*hidden.shape[:-1], -1)
        return self.head(hidden)

    def pooled_logits(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (batch, time) padded, lengths (batch,) -> logits (batch, output_size).

        The batch is packed, so the recurrent layers never read padding: a text gets the same
        logits alone or beside longer texts. Pooling reads the final state ("last"; for a
        bidirectional model, the forward direction's end and the backward direction's start), or
        the mean or max over the text's own time steps.
        """
        embedded = self.dropout(self.embedding(tokens))  # (batch, time, embedding_size)
        outputs, state = run_padded(self.recurrent, embedded, lengths)
        if model_option(self.config, "pooling") == "last":
            h = state[0] if isinstance(state, tuple) else state  # (layers * directions, batch, hidden)
            features = torch.cat([h[-2], h[-1]], dim=-1) if model_option(self.config, "bidirectional") else h[-1]
        else:
            features = pool_over_time(outputs, lengths.to(outputs.device), model_option(self.config, "pooling"))
        return self.head(self.dropout(features))


def recurrent_layers(config: ModelConfig, input_size: int) -> nn.Module:
    """The stack of `config.type`'s cell (from the cell registry) a model config describes, batch
    first, with nn.LSTM's interface (seqtool.cells.protocol)."""
    from seqtool.cells import registry

    return registry.cell(config.type).build(config, input_size)


def run_padded(stack: nn.Module, x: torch.Tensor, lengths: torch.Tensor, state: RecurrentState | None = None):
    """A stack over padded sequences x (batch, time, features) of `lengths`, as if each ran alone:
    outputs (batch, time, hidden * directions), zero at padding, and the final state. torch's
    fused modules read a packed batch; the other cells' stacks mask the padding themselves,
    which an exported graph can hold (a packed batch traces into ONNX only around torch's own
    RNN operators)."""
    if isinstance(stack, nn.RNNBase):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = stack(packed, state)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
        return outputs, final
    return stack.padded(x, lengths.to(x.device), state)


def pool_over_time(outputs: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean or max of (batch, time, features) over each sequence's own `lengths` steps, whatever
    lies beyond them (zeros from unpacking, or the exported graph's outputs over padding)."""
    mask = (torch.arange(outputs.shape[1], device=outputs.device)[None, :] < lengths[:, None]).unsqueeze(-1)
    if pooling == "mean":
        return (outputs * mask).sum(dim=1) / lengths[:, None].to(outputs.dtype)
    return outputs.masked_fill(~mask, float("-inf")).max(dim=1).values


def adaptive_cutoffs(counts: list[int], shares: tuple[float, ...] = (0.8, 0.95)) -> list[int]:
    """Cluster boundaries for the adaptive softmax from the training counts of ids 0, 1, ...
    (a vocabulary numbers tokens most frequent first, after <unk>): the head holds the ids that
    make up 80% of the training text, the first cluster the next 15%, the last one the rest.
    Deterministic in the counts, so a checkpoint's vocabulary gives back its model's shape."""
    cumulative = np.cumsum(np.asarray(counts, dtype=np.float64))
    cutoffs: list[int] = []
    for share in shares:
        cut = int(np.searchsorted(cumulative, share * cumulative[-1])) + 1
        cut = max(cut, 2, cutoffs[-1] + 1 if cutoffs else 0)
        if cut < len(counts) - 1:
            cutoffs.append(cut)
    return cutoffs or [max(1, len(counts) // 2)]


_LAYER_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def cell_function(config: ModelConfig):
    """The single-step kernel computing what one layer of the fused module computes per step."""
    if config.type == "rnn":
        return torch.rnn_tanh_cell if config.nonlinearity == "tanh" else torch.rnn_relu_cell
    return {"lstm": torch.lstm_cell, "gru": torch.gru_cell}[config.type]


def layer_weights(rnn: nn.Module, layer: int, reverse: bool = False) -> tuple[torch.Tensor, ...]:
    """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer (and direction) of a fused module."""
    suffix = "_reverse" if reverse else ""
    return tuple(getattr(rnn, f"{name}_l{layer}{suffix}") for name in _LAYER_PARAMETERS)


def layer_parameters(stack: nn.Module, layer: int, reverse: bool = False) -> list[nn.Parameter]:
    """The parameters of one layer (and direction) of any cell's stack."""
    if isinstance(stack, nn.RNNBase):
        return list(layer_weights(stack, layer, reverse))
    return stack.layer_parameters(layer, reverse)


def unrolled(
    rnn: nn.Module, config: ModelConfig, inputs: torch.Tensor, state: RecurrentState | None, probe: list[RecurrentState]
) -> tuple[torch.Tensor, RecurrentState]:
    """What the fused module computes, one time step at a time with the cell functions on the same
    weights, so that each top-layer state is a tensor of its own whose gradient can be read after
    backward: how much the loss still depends on step t, the vanishing (or exploding) gradient
    made visible. `probe` receives h_t, or (h_t, c_t) for an LSTM, whose memory is the cell state.
    Slow; for diagnostics in eval mode (no inter-layer dropout). A stack that is not torch's
    fused module steps by its own step form, and `probe` receives its top output."""
    if not isinstance(rnn, nn.RNNBase):
        return _stepped(rnn, inputs, state, probe)
    lstm = config.type == "lstm"
    cell = cell_function(config)
    batch, size = inputs.shape[0], config.hidden_size
    if state is None:
        zeros = inputs.new_zeros(config.num_layers, batch, size)
        state = (zeros, zeros) if lstm else zeros
    finals_h, finals_c = [], []
    x = inputs
    for k in range(config.num_layers):
        weights = layer_weights(rnn, k)
        h = state[0][k] if lstm else state[k]
        c = state[1][k] if lstm else None
        outputs = []
        for t in range(x.shape[1]):
            if lstm:
                h, c = cell(x[:, t], (h, c), *weights)
            else:
                h = cell(x[:, t], h, *weights)
            if k == config.num_layers - 1 and h.requires_grad:
                for part in (h, c) if lstm else (h,):
                    part.retain_grad()
                probe.append((h, c) if lstm else h)
            outputs.append(h)
        x = torch.stack(outputs, dim=1)
        finals_h.append(h)
        finals_c.append(c)
    return x, ((torch.stack(finals_h), torch.stack(finals_c)) if lstm else torch.stack(finals_h))


def _stepped(
    stack: nn.Module, inputs: torch.Tensor, state: RecurrentState | None, probe: list[RecurrentState]
) -> tuple[torch.Tensor, RecurrentState]:
    outputs = []
    for t in range(inputs.shape[1]):
        h, state = stack.step(inputs[:, t], state)
        if h.requires_grad:
            h.retain_grad()
            probe.append(h)
        outputs.append(h)
    return torch.stack(outputs, dim=1), state


def detach_state(state: RecurrentState | None) -> RecurrentState | None:
    """Cut the graph at a batch boundary (truncated BPTT) while keeping the state's values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
