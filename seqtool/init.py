"""`seqtool init FILE`: look at a data file and write a commented starter config next to it.

The guesses are simple and said out loud: a text file is a language-model corpus; a CSV with a long
text column and a low-cardinality column is a classification table; a CSV with a date column (or
year/month/day/hour parts) and numeric columns is a time series.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pandas as pd

from seqtool.checkpoint import atomic_write_text
from seqtool.data import csvfile, series
from seqtool.errors import SeqtoolError

_PARTS = ("year", "month", "day", "hour")


def _is_strings(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _numeric(frame: pd.DataFrame) -> list[str]:
    found = []
    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().mean() >= 0.9 and frame[column].notna().any():
            found.append(column)
    return found


def _is_row_number(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce")
    return bool(numbers.notna().all() and len(numbers) > 2 and (numbers.diff().dropna() == 1).all())


def _date_columns(frame: pd.DataFrame) -> list[str]:
    lower = {c.lower(): c for c in frame.columns}
    if all(p in lower for p in _PARTS[:3]):
        return [lower[p] for p in _PARTS if p in lower]
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        parsed = pd.to_datetime(frame[column].head(200).astype(str), errors="coerce", format="mixed")
        if parsed.notna().mean() >= 0.9:
            return [column]
    return []


def guess(path: Path, task: str | None) -> tuple[str, list[str]]:
    """The config text and the reasons for each guess."""
    if path.suffix.lower() != ".csv" and task in (None, "language_model"):
        return _language_model(path)
    frame = csvfile.read_csv(path)
    text_columns = [c for c in frame.columns if _is_strings(frame[c]) and frame[c].astype(str).str.len().mean() > 20]
    if task == "classify" or (task is None and text_columns):
        return _classify(path, frame, text_columns)
    return _forecast(path, frame)


MIN_CORPUS_CHARS = 1_000  # less is too little text to learn anything from
_SAMPLE_BYTES = 1 << 20


def _corpus_characters(path: Path) -> int:
    """Characters in a text corpus (estimated from its size beyond the first MiB); an empty,
    blank, binary or too short file is refused here, before any config is written."""
    with path.open("rb") as handle:
        head = handle.read(_SAMPLE_BYTES)
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        text = decoder.decode(head, final=len(head) < _SAMPLE_BYTES)  # a cut character at the end is fine
    except UnicodeDecodeError as exc:
        raise SeqtoolError(
            f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); init reads text corpora and CSV files"
        ) from None
    if not text.strip():
        raise SeqtoolError(f"{path}: the file is empty" + (" (only whitespace)" if head else ""))
    characters = len(text) if len(head) < _SAMPLE_BYTES else path.stat().st_size
    if characters < MIN_CORPUS_CHARS:
        raise SeqtoolError(
            f"{path}: only {characters:,} characters, too little text to train a language model on "
            f"(at least {MIN_CORPUS_CHARS:,})"
        )
    return characters


def _language_model(path: Path) -> tuple[str, list[str]]:
    characters = _corpus_characters(path)
    size = path.stat().st_size
    hidden = 128 if size < 200_000 else 256 if size < 2_000_000 else 384
    batch_size = min(32, int(characters * 0.9) // 129)  # the training part fills the batch's rows
    reasons = [
        f"{path.name} is not a CSV: a text corpus for a character-level language model",
        f"{size:,} bytes: hidden_size {hidden}" + (f", batch_size {batch_size} (a short text)" if batch_size < 32 else ""),
    ]
    text = f"""# Starter config written by `seqtool init {path}`; edit freely. Reference: docs/config.md
task: language_model
seed: 1234
data:
  path: {path}
  tokenizer: char          # or word (words, punctuation and line breaks)
  val_fraction: 0.1        # the last 10% of the text is held out
model:
  type: lstm               # rnn | lstm | gru
  hidden_size: {hidden}
  num_layers: 2
  dropout: 0.0
  embedding_size: 64
training:
  batch_size: {batch_size}
  seq_len: 128             # truncated-BPTT length
  epochs: 20
  max_time: 10m            # the first budget reached stops training
  lr: 3e-3
  warmup_steps: 50
  eval_every: 200
"""
    return text, reasons


def _classify(path: Path, frame: pd.DataFrame, text_columns: list[str]) -> tuple[str, list[str]]:
    if not text_columns:
        raise SeqtoolError(f"{path}: no column holds text (strings averaging over 20 characters)")
    text = max(text_columns, key=lambda c: frame[c].astype(str).str.len().mean())
    candidates = [c for c in frame.columns if c != text and 2 <= frame[c].nunique() <= min(50, max(2, len(frame) // 10))]
    if not candidates:
        raise SeqtoolError(f"{path}: no label column (2 to 50 distinct values) beside the text column '{text}'")
    label = min(candidates, key=lambda c: frame[c].nunique())
    classes = frame[label].nunique()
    counts = frame[label].value_counts()
    balanced = counts.min() / counts.max() > 0.5
    reasons = [
        f"column '{text}' holds text (mean {frame[text].astype(str).str.len().mean():.0f} characters)",
        f"column '{label}' has {classes} distinct values: the label",
        f"{len(frame):,} rows; classes {'balanced' if balanced else 'imbalanced: class_weights balanced'}",
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
  val_fraction: 0.1        # stratified
model:
  type: lstm
  hidden_size: 128
  num_layers: 1
  bidirectional: true
  pooling: max             # last | mean | max
  embedding_size: 128
  dropout: 0.5
training:
  batch_size: 64
  epochs: 12
  lr: 3e-3
  weight_decay: 0.1
  class_weights: {"none" if balanced else "balanced"}
  eval_every: 50
  early_stopping_patience: 6
"""
    return body, reasons


def _forecast(path: Path, frame: pd.DataFrame) -> tuple[str, list[str]]:
    dates = _date_columns(frame)
    numeric = [c for c in _numeric(frame) if c not in dates and not _is_row_number(frame[c])]
    if not numeric:
        raise SeqtoolError(f"{path}: no numeric column to forecast; use --task to choose the kind")
    target = "Close" if "Close" in numeric else numeric[0]  # OHLCV files forecast the close
    features = [c for c in numeric if c != target]
    categorical = [
        c for c in frame.columns if c not in dates + numeric and _is_strings(frame[c]) and 2 <= frame[c].nunique() <= 20
    ]
    reasons = [f"numeric columns {numeric}: forecasting '{target}'" + (f" from {features}" if features else "")]
    frequency, season = None, None
    if dates:
        parsed = series.parse_dates(frame, dates, str(path))
        ordered = pd.DatetimeIndex(np.sort(parsed.to_numpy()))
        frequency = series.infer_frequency(ordered.unique(), None, str(path))
        season = series.seasonality_from_frequency(frequency)
        reasons.append(f"dates in {dates}: frequency {frequency}, seasonality {season}")
    else:
        reasons.append("no date column: steps are numbered")
    if categorical:
        reasons.append(f"categorical columns {categorical}: one-hot encoded")
    rows = len(frame)
    horizon = max(1, min(season or 12, rows // 20))
    context = max(2 * horizon, min(2 * (season or 12), rows // 10))
    date_line = f"[{', '.join(dates)}]" if len(dates) > 1 else (dates[0] if dates else "null")
    body = f"""# Starter config written by `seqtool init {path}`; edit freely. Reference: docs/config.md
task: forecast
seed: 1234
data:
  path: {path}
  date_column: {date_line}
  target: {target}
  features: [{", ".join(features)}]
  categorical: [{", ".join(categorical)}]
  calendar_features: {"true" if dates else "false"}
  context_length: {context}        # rows the model reads
  horizon: {horizon}               # rows it forecasts at once
  val_fraction: 0.2         # the chronological tail held out
  scaler: standard          # fitted on the training part only
  missing: interpolate      # interpolate | ffill | drop | error
  seasonality: {season or "null"}
model:
  type: lstm
  hidden_size: 64
  num_layers: 2
  dropout: 0.1
training:
  loss: mse                 # gaussian_nll or quantile give prediction intervals
  batch_size: 64
  epochs: 30
  lr: 2e-3
  eval_every: 100
"""
    return body, reasons


def write_starter_config(path: str | Path, task: str | None = None) -> tuple[Path, list[str]]:
    """Write `<file>.yaml` next to the data file (never over an existing one)."""
    path = Path(path)
    if not path.is_file():
        raise SeqtoolError(f"data file not found: {path}")
    target = path.with_suffix(".yaml")
    if target.exists():
        raise SeqtoolError(f"{target} already exists; seqtool init never overwrites a config")
    text, reasons = guess(path, task)
    atomic_write_text(target, text)
    return target, reasons
