"""The starter configs `seqtool init` writes for a CSV of time series: one series (a row per time
step), or many in long format (a series column, a date column, values)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from seqtool.data import sniff
from seqtool.tasks import Starter, Unsuitable
from seqtool.tasks.forecast import series


def starter_config(path: Path, frame: pd.DataFrame) -> Starter:
    """A series config: the numeric columns, with their dates, frequency and season when there are dates."""
    dates = sniff.date_columns(frame)
    numeric = [c for c in sniff.numeric_columns(frame) if c not in dates and not sniff.is_row_number(frame[c])]
    identifier = series_column(frame, dates)
    if identifier is not None:
        return panel_starter(path, frame, dates, identifier, [c for c in numeric if c != identifier])
    if not numeric:
        raise Unsuitable(f"{path}: no numeric column to forecast")
    target = "Close" if "Close" in numeric else numeric[0]  # OHLCV files forecast the close
    features = [c for c in numeric if c != target]
    categorical = [
        c for c in frame.columns if c not in dates + numeric and sniff.is_strings(frame[c]) and 2 <= frame[c].nunique() <= 20
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
    # A test tail after validation when it can hold a whole window (it chooses nothing): the
    # smallest share, in steps of 5%, of at least 10% and at most 20%.
    share = math.ceil(max(0.1, (context + horizon) / rows) * 20) / 20
    test = share if share <= 0.2 else 0.0
    reasons.append(f"a test tail of {test:.0%} for evaluate" if test else "too short a series for a test tail")
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
  val_fraction: 0.2         # the chronological tail held out: it chooses the checkpoint
{f"  test_fraction: {test:g}       # the last rows, after validation: they choose nothing{chr(10)}" if test else ""}  scaler: standard          # fitted on the training part only
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
    return Starter(1, body, reasons)


# The forecast horizon of the M4 competition for each frequency (Makridakis et al. 2020).
M4_HORIZONS = {"Y": 6, "A": 6, "Q": 8, "M": 18, "W": 13, "D": 14, "B": 14, "H": 48}
SERIES_NAMES = ("unique_id", "series", "series_id", "id", "item", "item_id", "sku", "store_item", "ticker", "symbol")


def series_column(frame: pd.DataFrame, dates: list[str]) -> str | None:
    """The column that tells many series apart in a long table: dates repeat across the file but
    never within one of its values. Conventional names first (unique_id, series, id, ...)."""
    if not dates or len(frame) < 4:
        return None
    stamp = frame[dates].astype(str).agg(" ".join, axis=1)
    if not stamp.duplicated().any():
        return None
    named = sorted(frame.columns, key=lambda c: (str(c).lower() not in SERIES_NAMES, list(frame.columns).index(c)))
    for column in named:
        values = frame[column]
        if column in dates or values.isna().any() or pd.api.types.is_float_dtype(values):
            continue
        if 2 <= values.nunique() <= len(frame) // 2 and not pd.DataFrame({"id": values, "t": stamp}).duplicated().any():
            return column
    return None


def panel_starter(path: Path, frame: pd.DataFrame, dates: list[str], identifier: str, numeric: list[str]) -> Starter:
    """A many-series config: the M4 horizon for the frequency, a context the series can fill, the
    last horizon rows of every series for validation and for test, and a network and budget for
    the data's size. Columns constant within every series are static."""
    if not numeric:
        raise Unsuitable(f"{path}: no numeric column to forecast beside the series column '{identifier}'")
    groups = frame.groupby(identifier, sort=False)
    constant = [c for c in frame.columns if c not in dates + [identifier] and (groups[c].nunique(dropna=False) <= 1).all()]
    target = next((c for c in numeric if c not in constant), None)
    if target is None:
        raise Unsuitable(f"{path}: every numeric column is constant within each series; nothing to forecast")
    features = [c for c in numeric if c not in constant + [target]]
    parsed = series.parse_dates(frame, dates, str(path))
    codes = frame[identifier].astype(str).to_numpy()
    longest = pd.Series(codes).value_counts().index[0]
    frequency = series.infer_frequency(pd.DatetimeIndex(np.sort(parsed[codes == longest].to_numpy())), None, str(path))
    base = pd.tseries.frequencies.to_offset(frequency).rule_code.upper().split("-")[0].rstrip("SE") or "D"
    season = series.seasonality_from_frequency(frequency)
    lengths = groups.size().to_numpy()
    horizon = M4_HORIZONS.get(base[:1] if base[:1] in M4_HORIZONS else base, season or 12)
    median = int(np.median(lengths))
    context = max(2, min(3 * horizon, median - 2 * horizon))
    size = _network_size(len(frame))
    reasons = [
        f"column '{identifier}' tells {len(lengths):,} series apart (lengths {lengths.min()}-{lengths.max()}, median {median})",
        f"forecasting '{target}'"
        + (f" from {features}" if features else "")
        + (f"; static per series: {constant}" if constant else ""),
        f"dates in {dates}: frequency {frequency}; horizon {horizon} (the M4 convention), context {context}",
        f"the last {horizon} rows of every series for validation, and the last {horizon} for test",
    ]
    date_line = f"[{', '.join(dates)}]" if len(dates) > 1 else dates[0]
    body = f"""# Starter config written by `seqtool init {path}`; edit freely. Reference: docs/config.md
# Many series in one file: one network learns from all of them (docs/forecasting.md).
task: forecast
seed: 1234
data:
  path: {path}
  series_column: {identifier}
  date_column: {date_line}
  target: {target}
  features: [{", ".join(features)}]
  static: [{", ".join(constant)}]
  context_length: {context}        # rows the model reads (a shorter series is padded and masked)
  horizon: {horizon}               # rows it forecasts at once
  val_rows: {horizon}              # the last rows of every series before the test part: they choose the checkpoint
  test_rows: {horizon}             # the last rows of every series: they choose nothing
  scaler: step              # per series: its mean absolute step, MASE's unit
  seasonality: {season or "null"}
model:
  type: lstm
  hidden_size: {size["hidden"]}
  num_layers: {size["layers"]}
  dropout: 0.1
  window_norm: revin        # each window by its own mean and spread (observed rows only)
training:
  loss: mae                 # MASE is an absolute error: train on one
  intervals: conformal      # calibrated on the validation rows of every series
  batch_size: {size["batch"]}
  epochs: null
  max_steps: {size["steps"]}
  lr: 3e-3
  eval_every: {size["eval"]}
"""
    return Starter(3 if str(identifier).lower() in SERIES_NAMES else 2, body, reasons)


def _network_size(rows: int) -> dict[str, int]:
    """A network and a budget that suit a panel of `rows` rows in all."""
    if rows < 20_000:
        return {"hidden": 32, "layers": 1, "batch": 64, "steps": 1500, "eval": 100}
    if rows < 500_000:
        return {"hidden": 64, "layers": 2, "batch": 128, "steps": 4000, "eval": 250}
    return {"hidden": 128, "layers": 2, "batch": 256, "steps": 10000, "eval": 500}
