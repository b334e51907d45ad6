"""`training.ema_decay`: an exponential moving average of the weights, the model that is evaluated,
checkpointed and used for predictions.

The average smooths out the noise of the last steps' updates: it behaves like an ensemble of the
recent checkpoints at the cost of one model (Polyak averaging; the Transformer and most NMT
toolkits decode with it). Each optimiser step t moves every averaged weight towards the trained
one by 1 - d_t, with d_t = min(decay, (1 + t) / (10 + t)): early in training the average follows
the weights closely, so a short run is not dominated by its random start.

A checkpoint stores the average as its `model` (what `predict`, `export`, `evaluate` and
`--init-from` read) and the trained weights as `training_weights` (what `--resume` continues).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

TRAINING_WEIGHTS = "training_weights"  # the checkpoint key of the weights the optimiser trains


class WeightAverage:
    """The averaged copy of a model's floating-point parameters (buffers are taken as they are)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.averaged = {name: p.detach().clone() for name, p in model.named_parameters() if p.is_floating_point()}

    def update(self, model: torch.nn.Module, step: int) -> None:
        """After optimiser step `step` (1 for the first)."""
        weight = 1.0 - min(self.decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in self.averaged:
                    self.averaged[name].lerp_(p.detach(), weight)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, and its trained ones again after."""
        trained = {name: p.detach().clone() for name, p in model.named_parameters() if name in self.averaged}
        self._copy_into(model, self.averaged)
        try:
            yield
        finally:
            self._copy_into(model, trained)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged weights in place of the trained ones."""
        return {name: self.averaged.get(name, value).clone() for name, value in model.state_dict().items()}

    def load_state_dict(self, averaged: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, value in self.averaged.items():
                value.copy_(averaged[name])

    @staticmethod
    def _copy_into(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in weights:
                    p.copy_(weights[name])
