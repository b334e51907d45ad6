"""What a task kind hands `seqtool export`: its inference graph, with sample batches and names.

The exporter traces `graph` on `example`, runs the exported file on `check` (other shapes) in its
own runtime, and compares the result with `expected`, which the kind computes with the same code
that `predict` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Signature:
    """The graph, example inputs to trace it with, a check batch of other shapes, and names."""

    graph: nn.Module
    """The module to trace: inputs as tensors in, outputs as a tuple of tensors out."""
    example: tuple[torch.Tensor, ...]
    """Inputs to trace it with."""
    check: tuple[torch.Tensor, ...]
    """Inputs of other shapes (batch, length) to run the exported file on."""
    expected: tuple[torch.Tensor, ...]
    """seqtool's own inference code (what `predict` runs) on the check inputs."""
    inputs: list[dict[str, Any]]
    """One `tensor_spec` per input, in order: the metadata JSON lists them."""
    outputs: list[dict[str, Any]]
    """One `tensor_spec` per output, in order."""
    dynamic_axes: dict[str, dict[int, str]]
    """For each input and output name, its axes that vary: `{"tokens": {0: "batch", 1: "time"}}`."""


def tensor_spec(name: str, dtype: str, shape: list[str], meaning: str) -> dict[str, Any]:
    """One input or output of an exported graph, as the metadata JSON lists it."""
    return {"name": name, "dtype": dtype, "shape": shape, "meaning": meaning}


def reads_every_input(output: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """`output` plus zero times every input: a state part the cell does not read (the mLSTM's h,
    carried for the kinds that pool it) stays an input of the exported graph, which ONNX would
    otherwise drop, so a deployment feeds every state part back alike."""
    return output + sum(0.0 * part.reshape(-1)[:1].sum() for part in inputs)
