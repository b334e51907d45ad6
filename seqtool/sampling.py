"""Drawing the next token from a model's scores, cheaply enough for one token at a time.

The Gumbel-max trick: with g = -log(-log U) for uniform U, argmax(scores / T + g) is a sample
of softmax(scores / T), and so is argmax(scores + T * g). The noise does not depend on the
scores, so it is drawn for a block of steps at once; each step then costs one addition and one
argmax, with no probabilities, no normalisation and no copy of the distribution.
"""

from __future__ import annotations

import math

import torch

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
