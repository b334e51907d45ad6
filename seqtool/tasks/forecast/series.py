"""CSV time series: parse, regularise, clean, encode, scale and window. Pure functions, no torch.

The pipeline a time-series config runs, in order:

    csvfile.read_csv -> parse_dates (one column or year/month/day/hour parts) -> sort, refuse duplicates
    -> regular_index (infer the frequency, insert rows for missing timestamps)
    -> numeric_columns (non-numeric cells are errors naming row and column)
    -> fill_missing (interpolate | ffill | drop | error) -> one_hot (categorical columns)
    -> calendar features -> split chronologically -> Scaler fitted on the training rows only
    -> windows (strided views: no copy per window)
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from seqtool.data.csvfile import csv_row
from seqtool.errors import SeqtoolError

_DATE_PARTS = ("year", "month", "day", "hour", "minute", "second")
_MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "?"})


def parse_dates(frame: pd.DataFrame, date_columns: list[str], source: str) -> pd.Series:
    """Timestamps from one column, or assembled from parts such as year, month, day, hour."""
    if len(date_columns) == 1:
        values = frame[date_columns[0]]
        parsed = pd.to_datetime(values.astype(str).str.strip(), errors="coerce", format="mixed")
    elif all(c.lower() in _DATE_PARTS for c in date_columns):
        parts = frame[date_columns].rename(columns={c: c.lower() for c in date_columns})
        parts = parts.apply(pd.to_numeric, errors="coerce")
        parsed = pd.to_datetime(parts, errors="coerce")
        values = frame[date_columns].astype(str).agg(" ".join, axis=1)
    else:
        values = frame[date_columns].astype(str).agg(" ".join, axis=1)
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    bad = parsed.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SeqtoolError(f"{source}: row {csv_row(i)}: cannot parse date {values.iloc[i]!r} in column {'/'.join(date_columns)}")
    return pd.Series(parsed.to_numpy(), index=frame.index)


def order_by_time(frame: pd.DataFrame, dates: pd.Series, source: str) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """Rows in time order (newest-first files, common for stock prices, are reversed); duplicate
    timestamps are an error naming both rows."""
    duplicated = dates.duplicated(keep=False).to_numpy()
    if duplicated.any():
        # The first repeated timestamp in the file, and the lines of its copies (not the first
        # two flagged rows: in a file out of time order those may be copies of two timestamps).
        value = dates.iloc[int(np.flatnonzero(duplicated)[0])]
        lines = [csv_row(i) for i in np.flatnonzero((dates == value).to_numpy())[:2]]
        raise SeqtoolError(f"{source}: duplicate timestamp {value} at rows {lines[0]} and {lines[1]}")
    order = np.argsort(dates.to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    return frame, pd.DatetimeIndex(dates.to_numpy()[order])


def infer_frequency(index: pd.DatetimeIndex, given: str | None, source: str) -> str:
    """The series' frequency: as given, as pandas infers it, or (when a few timestamps are
    missing, which defeats pandas) the most common frequency of short runs of the series."""
    if given:
        try:
            return pd.tseries.frequencies.to_offset(given).freqstr
        except ValueError:
            raise SeqtoolError(f"data.frequency: {given!r} is not a pandas frequency such as D, h, MS, W") from None
    if len(index) >= 3:
        freq = _infer_freq(index)
        if freq:
            return freq
        votes = Counter(_infer_freq(index[i : i + 8]) for i in range(0, len(index) - 8, 4))
        votes.pop(None, None)
        if votes:
            return votes.most_common(1)[0][0]
    raise SeqtoolError(f"{source}: cannot infer the series' frequency from its dates; set data.frequency (e.g. D, h, MS)")


def _infer_freq(index: pd.DatetimeIndex) -> str | None:
    """pandas' inference as a frequency string (newer pandas returns an offset object)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        freq = pd.infer_freq(index)
    return freq if freq is None or isinstance(freq, str) else freq.freqstr


def regular_index(frame: pd.DataFrame, index: pd.DatetimeIndex, freq: str, source: str) -> tuple[pd.DataFrame, int]:
    """Reindex onto the full regular range so every step is one period; returns the frame and
    how many timestamps were missing (their rows are empty until `fill_missing`)."""
    full = pd.date_range(index[0], index[-1], freq=freq)
    if len(full) == len(index) and (full == index).all():
        return frame.set_index(index), 0
    off_grid = ~index.isin(full)
    if off_grid.any():
        raise SeqtoolError(
            f"{source}: timestamp {index[off_grid][0]} does not fall on the series' frequency {freq}; set data.frequency"
        )
    frame = frame.set_index(index).reindex(full)
    return frame, len(full) - len(index)


def numeric_columns(frame: pd.DataFrame, columns: list[str], source: str, positions: np.ndarray | None = None) -> pd.DataFrame:
    """Columns as float64; empty or NA cells become NaN, anything else non-numeric is an error."""
    out = {}
    for column in columns:
        values = frame[column]
        numbers = pd.to_numeric(values, errors="coerce")
        unparsed = numbers.isna() & values.notna()  # only these cells can be a marker or an error
        bad = np.zeros(len(values), dtype=bool)
        if unparsed.any():
            cells = values[unparsed].astype(str).str.strip().str.lower()
            bad[unparsed.to_numpy()] = ~cells.isin(_MISSING_MARKERS).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            row = csv_row(positions[i]) if positions is not None else csv_row(i)
            raise SeqtoolError(f"{source}: row {row}, column '{column}': {values.iloc[i]!r} is not a number")
        numbers = numbers.astype("float64")
        if np.isinf(numbers.to_numpy()).any():
            i = int(np.flatnonzero(np.isinf(numbers.to_numpy()))[0])
            row = csv_row(positions[i]) if positions is not None else csv_row(i)
            raise SeqtoolError(f"{source}: row {row}, column '{column}': infinite value")
        out[column] = numbers
    return pd.DataFrame(out, index=frame.index)


def fill_missing(values: pd.DataFrame, policy: str, source: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Fill NaN cells: interpolate in time, carry forward, drop the rows, or refuse; and what was
    done, by column: `<column>_interpolated` (cells between two values), `<column>_edges_filled`
    (cells before the first value or after the last, which take the nearest one), `rows_dropped`."""
    missing = values.isna()
    if not missing.any().any():
        return values, {}
    if policy == "error":
        column = values.columns[missing.any()][0]
        when = values.index[values[column].isna()][0]
        raise SeqtoolError(f"{source}: missing value in column '{column}' at {when} (data.missing: error)")
    if policy == "drop":
        kept = values.dropna()
        return kept, {"rows_dropped": len(values) - len(kept)}
    filled = values.interpolate(method="linear", limit_direction="both") if policy == "interpolate" else values.ffill().bfill()
    empty = filled.columns[filled.isna().all()]
    if len(empty):
        raise SeqtoolError(f"{source}: column '{empty[0]}' has no values at all")
    report: dict[str, int] = {}
    for column in values.columns[missing.any()]:
        present = np.flatnonzero(~missing[column].to_numpy())
        edges = int(present[0] + (len(values) - 1 - present[-1]))
        interior = int(missing[column].sum()) - edges
        word = "interpolated" if policy == "interpolate" else "carried_forward"
        report.update({f"{column}_{word}": interior, f"{column}_edges_filled": edges})
    return filled, report


def one_hot(frame: pd.DataFrame, column: str, categories: list[str]) -> pd.DataFrame:
    """0/1 columns `column=value` for the known categories; unseen values get all zeros."""
    values = frame[column].astype(str)
    return pd.DataFrame({f"{column}={c}": (values == c).astype("float64") for c in categories}, index=frame.index)


def calendar_features(index: pd.DatetimeIndex, freq: str) -> pd.DataFrame:
    """Cyclical encodings (sin, cos) of the calendar cycles finer than the series spans:
    hour of day for sub-daily data, day of week for daily or finer, month of year for anything
    finer than yearly."""
    step = pd.tseries.frequencies.to_offset(freq)
    probe = pd.Timestamp("2000-01-01")
    seconds = ((probe + step) - probe).total_seconds()
    cycles = []
    if seconds < 86400:
        cycles.append(("hour", index.hour + index.minute / 60, 24))
    if seconds <= 86400:
        cycles.append(("dayofweek", index.day_of_week, 7))
    if seconds < 365 * 86400:
        cycles.append(("month", index.month - 1 + (index.day - 1) / 31, 12))
    out = {}
    for name, value, period in cycles:
        angle = 2 * np.pi * np.asarray(value, dtype=np.float64) / period
        out[f"{name}_sin"], out[f"{name}_cos"] = np.sin(angle), np.cos(angle)
    return pd.DataFrame(out, index=index)


def continue_dates(last: pd.Timestamp, freq: str, steps: int) -> pd.DatetimeIndex:
    """The `steps` timestamps after `last` at the series' frequency."""
    return pd.date_range(last, periods=steps + 1, freq=freq)[1:]


def seasonality_from_frequency(freq: str) -> int | None:
    """The usual seasonal period for a frequency: 12 for monthly, 24 for hourly, 7 for daily..."""
    base = pd.tseries.frequencies.to_offset(freq).rule_code.upper().rstrip("S").split("-")[0]
    return {"M": 12, "ME": 12, "MS": 12, "Q": 4, "QE": 4, "QS": 4, "H": 24, "D": 7, "B": 5, "W": 52, "T": 60, "MIN": 60}.get(base)


@dataclass
class Scaler:
    """Per-column affine scaling fitted on training rows only, so validation data never leaks
    into the inputs the model trains on."""

    kind: str
    shift: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, kind: str) -> Scaler:
        columns = values.shape[1]
        if kind == "standard":
            shift, scale = values.mean(axis=0), values.std(axis=0)
        elif kind == "minmax":
            shift, scale = values.min(axis=0), values.max(axis=0) - values.min(axis=0)
        elif kind == "step":
            shift, scale = values.mean(axis=0), np.abs(np.diff(values, axis=0)).mean(axis=0)
        else:
            shift, scale = np.zeros(columns), np.ones(columns)
        scale = np.where(scale > 1e-12, scale, 1.0)  # a constant column stays as it is
        return cls(kind, shift.astype(np.float64), scale.astype(np.float64))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.shift) / self.scale

    def inverse(self, values: np.ndarray, columns: slice | list[int] = slice(None)) -> np.ndarray:
        return values * self.scale[columns] + self.shift[columns]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        return cls(data["kind"], np.asarray(data["shift"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64))


def window_origins(start: int, stop: int, context_length: int, horizon: int, stride: int = 1) -> np.ndarray:
    """Forecast origins t whose context rows [t - context_length, t) exist and whose target rows
    [t, t + horizon) lie inside [start, stop).

    Rows 0..9, context_length 3, horizon 2, start 0, stop 10:

        t=3:  context 0 1 2 | targets 3 4
        t=4:  context 1 2 3 | targets 4 5
        ...
        t=8:  context 5 6 7 | targets 8 9
    """
    first = max(start, context_length)
    return np.arange(first, stop - horizon + 1, stride, dtype=np.int64)


def gather_windows(array: np.ndarray, origins: np.ndarray, offset: int, length: int) -> np.ndarray:
    """Rows [t + offset, t + offset + length) for each origin t: (len(origins), length, columns).

    Uses a strided view of `array`, so only the selected windows are copied, never all of them.
    """
    view = np.lib.stride_tricks.sliding_window_view(array, length, axis=0)  # (rows - length + 1, columns, length)
    return view[origins + offset].transpose(0, 2, 1)


def to_changes(
    values: np.ndarray, targets: int, kind: str, columns: list[str], source: str, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`data.target_transform`: the first `targets` columns as log returns (log p_t - log p_t-1)
    or differences, the first row dropped (it has no change); and the levels aligned with the
    rows left, which forecasts are mapped back onto. `rows` are the CSV rows, for errors."""
    levels = values[:, :targets]
    if kind == "log_return":
        bad = ~(levels > 0)
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            where = f"row {csv_row(int(rows[i]))}" if np.isfinite(rows[i]) else f"row {i + 1} of the series"
            raise SeqtoolError(
                f"{source}: {where}, column '{columns[j]}': {levels[i, j]:g} is not a positive price; "
                "data.target_transform: log_return needs every value above 0 (difference does not)"
            )
        changes = np.diff(np.log(levels), axis=0)
    else:
        changes = np.diff(levels, axis=0)
    out = values[1:].copy()
    out[:, :targets] = changes
    return out, levels[1:].copy()


def to_levels(changes: np.ndarray, last: np.ndarray, kind: str) -> np.ndarray:
    """Forecast changes (windows, horizon, targets) back to levels from each window's last
    observed level (windows, targets): compounded returns, or summed differences."""
    total = np.cumsum(changes, axis=1)
    if kind == "log_return":
        with np.errstate(over="ignore"):
            return last[:, None, :] * np.exp(total)
    return last[:, None, :] + total


def split_future(
    numeric: pd.DataFrame, targets: list[str], future: list[str], source: str, positions: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """For a forecast beyond the data: the trailing rows whose targets are all empty hold the known
    future values of `future` (`data.future_features`). Returns the rows before them and those
    values (rows, len(future)); an empty future cell is an error naming its row and column."""
    empty = numeric[targets].isna().all(axis=1).to_numpy()
    observed = np.flatnonzero(~empty)
    end = int(observed[-1]) + 1 if len(observed) else 0
    tail = numeric.iloc[end:][future]
    if tail.isna().any().any():
        i, j = (int(k) for k in np.argwhere(tail.isna().to_numpy())[0])
        raise SeqtoolError(
            f"{source}: row {csv_row(int(positions[end + i]))}, column '{future[j]}': empty, but a future row (after the "
            "last target value) must hold every data.future_features value"
        )
    return numeric.iloc[:end], tail.to_numpy(np.float64)
