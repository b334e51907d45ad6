"""Generation, one token at a time: stepping a trained model cheaply (`CellStepper`) and
drawing the next token from its scores (`TokenSampler`).

The Gumbel-max trick: with g = -log(-log U) for uniform U, argmax(scores / T + g) is a sample
of softmax(scores / T), and so is argmax(scores + T * g). The noise does not depend on the
scores, so it is drawn for a block of steps at once; each step then costs one addition and one
argmax, with no probabilities, no normalisation and no copy of the distribution.
"""

from __future__ import annotations

import math

import torch

from seqtool.models import RecurrentState, SequenceModel, cell_function, layer_weights

NOISE_FLOATS = 1 << 22  # noise drawn ahead: 16 MB, enough for hundreds of steps of a char model


class TokenSampler:
    """Samples (batch,) token ids from (batch, vocab) scores (logits or log-probabilities).

    `temperature` 0 is greedy decoding; `top_k` keeps the k best-scored tokens; `banned` ids are
    never drawn (`<unk>`: a generated text should not contain it).
    """

    def __init__(
        self,
        batch: int,
        vocab_size: int,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator,
        banned: tuple[int, ...] = (0,),
    ):
        self.shape = (batch, vocab_size)
        self.temperature = temperature
        self.top_k = top_k if top_k is not None and top_k < vocab_size else None
        self.generator = generator
        self.banned = list(banned)
        self.block = max(1, min(512, NOISE_FLOATS // (batch * vocab_size)))
        self.noise = torch.empty(0, *self.shape)
        self.used = self.drawn = 0  # rows of `noise` consumed and available (ints: no tensor call per step)
        self.ban = torch.zeros(vocab_size)
        self.ban[self.banned] = -math.inf

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        if self.top_k is not None:
            kth = torch.topk(scores, self.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, -math.inf)
        if self.temperature == 0:
            return (scores + self.ban).argmax(dim=-1)
        if self.used == self.drawn:
            self._draw()
        noise = self.noise[self.used]
        self.used += 1
        return (scores + noise).argmax(dim=-1)

    def _draw(self) -> None:
        """The next block of steps' noise, scaled by the temperature, banned ids at -inf."""
        uniform = torch.rand(self.block, *self.shape, generator=self.generator)
        self.noise = uniform.log_().neg_().log_().neg_().mul_(self.temperature)
        self.noise[..., self.banned] = -math.inf
        self.used, self.drawn = 0, self.block


class CellStepper:
    """Advance a trained SequenceModel one token at a time, fast.

    A fused nn.LSTM call for a single time step costs about 1 ms on CPU, mostly fixed overhead;
    the per-layer cell kernels (`torch.lstm_cell` and friends) on the same weights are several
    times faster, which is what makes interactive generation run at thousands of tokens/s. A
    stack of any other cell steps by its own step form (seqtool.cells.stack.LayerStack.step).
    """

    def __init__(self, model: SequenceModel):
        config = model.config
        self.kind = config.type
        self.stack = None if isinstance(model.recurrent, torch.nn.RNNBase) else model.recurrent
        if self.stack is None:
            self.cell = cell_function(config)
            self.layers = [layer_weights(model.recurrent, k) for k in range(config.num_layers)]
        self.embedding = model.embedding.weight
        self.adaptive = model.adaptive
        if self.adaptive is None:
            self.head_weight_t = model.head.weight.t()
            self.head_bias = model.head.bias

    def split_state(self, state: RecurrentState, streams: int = 1) -> list:
        """Fused state (num_layers, 1, hidden) -> one state per layer, repeated for `streams`
        continuations of the same prompt (a stack of another cell: its whole state, repeated)."""
        if self.stack is not None:
            parts = tuple(p.repeat(1, streams, *[1] * (p.dim() - 2)) for p in (state if isinstance(state, tuple) else (state,)))
            return [parts if isinstance(state, tuple) else parts[0]]
        if isinstance(state, tuple):
            return [(state[0][k].repeat(streams, 1), state[1][k].repeat(streams, 1)) for k in range(len(self.layers))]
        return [state[k].repeat(streams, 1) for k in range(len(self.layers))]

    def step(self, token_ids: torch.Tensor, layer_states: list) -> torch.Tensor:
        """token_ids (batch,) -> scores (batch, vocab): logits, or log-probabilities for the
        adaptive softmax; `layer_states` is updated in place."""
        x = self.embedding[token_ids]  # (batch, embedding_size)
        if self.stack is not None:
            x, layer_states[0] = self.stack.step(x, layer_states[0])
        else:
            for k, weights in enumerate(self.layers):
                layer_states[k] = self.cell(x, layer_states[k], *weights)
                x = layer_states[k][0] if self.kind == "lstm" else layer_states[k]
        if self.adaptive is not None:
            return self.adaptive.log_prob(x)
        return torch.addmm(self.head_bias, x, self.head_weight_t)
