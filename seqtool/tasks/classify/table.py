"""Text + label tables for classification: tokenize a whole column at once, encode to a padded
id matrix with lengths, split with class ratios kept. Pure functions, no torch.

Tokenizing runs column-wise through pandas' string methods (the regex engine does the work), so
100k rows take about a second rather than a Python loop per character.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqtool.data.text import WORD_PATTERN, Vocabulary


def tokenize_column(texts: pd.Series, tokenizer: str, lowercase: bool) -> pd.Series:
    """Each text as a list of tokens (words and punctuation marks, or characters)."""
    texts = texts.astype(str)
    if lowercase:
        texts = texts.str.lower()
    if tokenizer == "char":
        return texts.map(list)
    return texts.str.findall(WORD_PATTERN)


def build_vocabulary(tokens: pd.Series, tokenizer: str, min_freq: int) -> Vocabulary:
    counts = tokens.explode().dropna().value_counts()
    return Vocabulary.from_counts(tokenizer, counts.index.tolist(), counts.to_numpy().tolist(), min_freq)


def encode_column(tokens: pd.Series, vocabulary: Vocabulary, max_length: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Token lists -> ids (rows, longest kept length) padded with 0, lengths (rows,), and how many
    texts were cut to `max_length`. Unknown tokens map to <unk> (0 as well: padding is never
    read, since batches are packed by length)."""
    full_lengths = tokens.str.len().to_numpy()
    lengths = np.minimum(full_lengths, max_length)
    kept = tokens.str[:max_length]
    flat = kept.explode().dropna()
    ids = flat.map(vocabulary.ids).fillna(0).to_numpy(np.int64)
    rows = np.repeat(np.arange(len(tokens)), lengths)
    columns = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position within its row
    matrix = np.zeros((len(tokens), max(int(lengths.max(initial=0)), 1)), dtype=np.int64)
    matrix[rows, columns] = ids
    return matrix, lengths.astype(np.int64), int((full_lengths > max_length).sum())


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Row indices of train, val and test, each class split in the same proportions."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        n_val, n_test = round(len(rows) * val_fraction), round(len(rows) * test_fraction)
        parts[1].append(rows[:n_val])
        parts[2].append(rows[n_val : n_val + n_test])
        parts[0].append(rows[n_val + n_test :])
    return tuple(np.sort(np.concatenate(p)) if p else np.empty(0, dtype=np.int64) for p in parts)
