"""The classifier's config sections, and the starter config `seqtool init` proposes for a CSV of texts and labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from seqtool.schema import FileSplitData, TokenModelConfig, TrainingConfig, option
from seqtool.tasks import Starter, Unsuitable


@dataclass
class ClassifyData(FileSplitData):
    """A CSV of texts and labels; `path` is split with each class's share kept (stratified)."""

    text_column: str = option("text", "column holding the text")
    label_column: str = option("label", "column holding the class label (strings or integers)")
    tokenizer: Literal["word", "char"] = option("word", "word: words and punctuation marks; char: characters")
    lowercase: bool = option(True, "lower-case texts before tokenizing")
    max_length: int = option(256, "longer texts are truncated to this many tokens", ge=1)
    min_freq: int = option(2, "rarer tokens map to `<unk>`", ge=1)
    unlabelled: str | None = option(
        None,
        "more texts for training.pretrain's language model only (never labelled, never scored): a text file of one "
        "text per line, or a CSV/TSV with the text column",
    )


@dataclass
class ClassifyModel(TokenModelConfig):
    bidirectional: bool = option(False, "read the text in both directions")
    pooling: Literal["last", "mean", "max"] = option("last", "final state, or mean/max over time steps")
    ngram_weight: float = option(
        0.0,
        "predict with the network's class probabilities times the n-gram baseline's, p_net^(1-w) * p_ngram^w "
        "renormalised (a product of experts; 0.5: their geometric mean); 0: the network alone",
        ge=0.0,
        lt=1.0,
    )


PRETRAIN_KEYS = ("pretrain_epochs", "pretrain_max_time", "pretrain_lr", "pretrain_batch_size", "pretrain_seq_len")


@dataclass
class ClassifyTraining(TrainingConfig):
    class_weights: Literal["none", "balanced"] = option("none", "balanced weighs classes by inverse frequency")
    pretrain: Literal["none", "language_model"] = option(
        "none",
        "language_model: first train a language model of the classifier's shape on the training texts (and "
        "data.unlabelled; a backward one too for a bidirectional classifier), then fine-tune it as the classifier, "
        "in one run directory",
    )
    pretrain_epochs: int | None = option(10, "passes over the pretraining texts, per language model", ge=1)
    pretrain_max_time: str | None = option(None, 'wall-clock budget per language model, such as "3m"')
    pretrain_lr: float = option(0.003, "the language model's peak learning rate", gt=0.0)
    pretrain_batch_size: int = option(32, "the language model's parallel streams of text", ge=1)
    pretrain_seq_len: int = option(64, "the language model's truncated-BPTT length", ge=1)
    layer_lr_decay: float = option(
        1.0,
        "per-layer learning rates (ULMFiT's discriminative fine-tuning): each layer below the head, down to the "
        "embedding, learns this many times slower than the one above it; 1: one rate for all",
        ge=1.0,
    )
    unfreeze_every: int | None = option(
        None,
        "gradual unfreezing: at first only the head learns, and every this many steps the next layer down joins "
        "(the top recurrent layer, ..., the embedding); null: all learn from the start",
        ge=1,
    )


def starter_config(path: Path, frame: pd.DataFrame, text_columns: list[str]) -> Starter:
    """The longest text column, and the column of fewest distinct values beside it as the label."""
    text = max(text_columns, key=lambda c: frame[c].astype(str).str.len().mean())
    candidates = [c for c in frame.columns if c != text and 2 <= frame[c].nunique() <= min(50, max(2, len(frame) // 10))]
    if not candidates:
        raise Unsuitable(f"{path}: no label column (2 to 50 distinct values) beside the text column '{text}'")
    label = min(candidates, key=lambda c: frame[c].nunique())
    classes = frame[label].nunique()
    counts = frame[label].value_counts()
    balanced = counts.min() / counts.max() > 0.5
    test = 0.1 if counts.min() >= 20 else 0.0  # every class keeps two or more rows in a stratified tenth
    reasons = [
        f"column '{text}' holds text (mean {frame[text].astype(str).str.len().mean():.0f} characters)",
        f"column '{label}' has {classes} distinct values: the label",
        f"{len(frame):,} rows; classes {'balanced' if balanced else 'imbalanced: class_weights balanced'}",
        "a stratified test part (10%) that chooses nothing, for evaluate" if test else "too few rows of a class for a test part",
    ]
    body = f"""# Starter config written by `seqtool init {path}`; edit freely. Reference: docs/config.md
task: classify
seed: 1234
data:
  path: {path}
  text_column: {text}
  label_column: {label}
  tokenizer: word          # or char
  lowercase: true
  max_length: 256          # longer texts are truncated
  min_freq: 2              # rarer words map to <unk>
  val_fraction: 0.1        # stratified; it chooses the checkpoint
{f"  test_fraction: {test}       # stratified; it chooses nothing{chr(10)}" if test else ""}model:
  type: gru
  hidden_size: 128
  num_layers: 1
  bidirectional: false
  pooling: max             # last | mean | max
  embedding_size: 128
  dropout: 0.5
  ngram_weight: 0.5        # predict with the network times the n-gram baseline (0: the network alone)
training:
  batch_size: 64
  epochs: 20
  max_time: 9m             # whichever budget comes first
  lr: 3e-3
  weight_decay: 0.1
  ema_decay: 0.998         # evaluate and predict with an average of the recent weights
  class_weights: {"none" if balanced else "balanced"}
  eval_every: 100
  early_stopping_patience: 10
"""
    return Starter(2, body, reasons)
