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
    example: tuple[torch.Tensor, ...]
    check: tuple[torch.Tensor, ...]
    expected: tuple[torch.Tensor, ...]  # seqtool's own inference code on the check batch
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    dynamic_axes: dict[str, dict[int, str]]


def tensor_spec(name: str, dtype: str, shape: list[str], meaning: str) -> dict[str, Any]:
    """One input or output of an exported graph, as the metadata JSON lists it."""
    return {"name": name, "dtype": dtype, "shape": shape, "meaning": meaning}
