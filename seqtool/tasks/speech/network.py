"""The speech recogniser: a recurrent stack over log-mel frames with a CTC head (Graves et al.
2006, 2013), and its decoders.

- Frame stacking: `frame_stack` consecutive frames are concatenated into one (a 2-3x shorter
  sequence makes the RNN faster, and CTC still has frames enough for every character).
- The stack is the shared RNN/LSTM/GRU (bidirectional by default) over packed sequences, so
  padding never changes an output; a linear head scores the characters and the CTC blank (id 0).
- SpecAugment-style masking (Park et al. 2019) in training: random bands of mel channels and
  random spans of frames set to zero (the features' mean, as they are normalised).
- Decoding: greedy (the best label per frame, repeats merged, blanks dropped) and CTC prefix
  beam search, which sums over the alignments of each prefix instead of keeping one.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from seqtool.models import model_option, recurrent_layers, run_padded

BLANK = 0  # the CTC blank's id; characters are 1..V


class SpeechNetwork(nn.Module):
    """features (batch, frames, n_mels) with lengths -> log-probabilities (batch, frames / stack, 1 + characters)."""

    def __init__(self, config, n_mels: int, characters: int):
        super().__init__()
        self.config, self.stack = config, config.frame_stack
        self.recurrent = recurrent_layers(config, n_mels * self.stack)
        directions = 2 if model_option(config, "bidirectional") else 1
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size * directions, characters + 1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.stack - 1, self.stack, rounding_mode="floor")

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Pad to a whole number of windows and concatenate each window's frames, in shape
        # arithmetic that tracing records, so an exported graph takes any number of frames.
        batch, frames, bands = features.shape
        windows = (frames + self.stack - 1) // self.stack
        padded = nn.functional.pad(features, (0, 0, 0, self.stack - 1))[:, : windows * self.stack]
        stacked = padded.reshape(batch, windows, bands * self.stack)
        out_lengths = self.output_lengths(lengths)
        outputs, _ = run_padded(self.recurrent, self.dropout(stacked), out_lengths)
        return torch.log_softmax(self.head(self.dropout(outputs)).float(), dim=-1), out_lengths


def ctc_steps_needed(text: str) -> int:
    """The fewest output steps CTC needs for a transcript: a step per character, and a blank
    between each pair of equal neighbours ("ll" in "hello")."""
    return len(text) + sum(a == b for a, b in itertools.pairwise(text))


def clip_seed(seed: int, epoch: int, clip: int) -> int:
    """The seed of one clip's augmentation in one epoch: a hash of (seed, epoch, clip) by numpy's
    SeedSequence, so that no two clips or epochs share one however large the set (a linear
    formula collided once a set held more clips than its epoch stride)."""
    return int(np.random.SeedSequence((seed, epoch, clip)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def spec_augment(
    features: torch.Tensor, lengths: torch.Tensor, bands: tuple[int, int], spans: tuple[int, int], seeds: list[int]
) -> torch.Tensor:
    """A copy with `bands[0]` bands of up to `bands[1]` mel channels and `spans[0]` spans of up
    to `spans[1]` frames (within each utterance) set to 0. Row i's masks come from `seeds[i]`
    alone, so an utterance is masked alike in any batch and on any process."""
    masked = features.clone()
    channels = features.shape[2]
    for row, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(seed)
        for _ in range(bands[0]):
            width = int(torch.randint(0, bands[1] + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, channels - width), (1,), generator=generator))
            masked[row, :, start : start + width] = 0.0
        for _ in range(spans[0]):
            width = int(torch.randint(0, spans[1] + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, int(lengths[row]) - width), (1,), generator=generator))
            masked[row, start : start + width, :] = 0.0
    return masked


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Per utterance: the likeliest label of each frame, repeats merged, blanks dropped."""
    best = log_probs.argmax(-1).tolist()
    decoded = []
    for labels, length in zip(best, lengths.tolist(), strict=True):
        out, previous = [], BLANK
        for label in labels[:length]:
            if label != previous and label != BLANK:
                out.append(label)
            previous = label
        decoded.append(out)
    return decoded


def prefix_beam_search(log_probs: torch.Tensor, beam_size: int) -> list[int]:
    """CTC prefix beam search over one utterance's (frames, labels) log-probabilities: each
    prefix keeps the probability of its alignments ending in a blank and in its last label."""
    neg_inf = -math.inf
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg_inf)}  # prefix -> (log p blank-ended, label-ended)
    frames = log_probs.tolist()
    for frame in frames:
        candidates = sorted(range(len(frame)), key=lambda label: -frame[label])[: beam_size + 1]
        grown: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [neg_inf, neg_inf])
        for prefix, (blank_ended, label_ended) in beams.items():
            total = _add(blank_ended, label_ended)
            for label in candidates:
                p = frame[label]
                if label == BLANK:
                    grown[prefix][0] = _add(grown[prefix][0], total + p)
                    continue
                extended = prefix + (label,)
                if prefix and prefix[-1] == label:  # a repeat needs a blank between; else it merges
                    grown[extended][1] = _add(grown[extended][1], blank_ended + p)
                    grown[prefix][1] = _add(grown[prefix][1], label_ended + p)
                else:
                    grown[extended][1] = _add(grown[extended][1], total + p)
        ranked = sorted(grown.items(), key=lambda item: -_add(*item[1]))[:beam_size]
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked}
    return list(max(beams.items(), key=lambda item: _add(*item[1]))[0])


def _add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high = max(a, b)
    return high + math.log1p(math.exp(-abs(a - b)))
