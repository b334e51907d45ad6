"""The seq2seq kind's figure: where the decoder looked in the source for each output token."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqtool.plots import save_png, subplots


def alignment_plot(path: str | Path, weights: np.ndarray, source: list[str], output: list[str]) -> None:
    """A heat map of the attention weights (output tokens down, source tokens across): a good
    translation of similar word order shows a near-diagonal band."""
    width, height = max(4.0, 0.45 * len(source) + 2.0), max(3.0, 0.38 * len(output) + 1.8)
    figure, axis = subplots(figsize=(min(width, 24.0), min(height, 24.0)))
    image = axis.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    axis.set_xticks(range(len(source)), source, rotation=60, ha="right", fontsize=9)
    axis.set_yticks(range(len(output)), output, fontsize=9)
    axis.set_xlabel("source")
    axis.set_ylabel("output")
    axis.set_title("attention alignment")
    figure.colorbar(image, ax=axis, fraction=0.04, pad=0.02, label="weight")
    save_png(figure, path)
