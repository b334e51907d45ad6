"""Many series in one long CSV (a series column, a date column, values): read, check, order and
regularise every series, and lay them out for one network. Pure numpy and pandas, no torch.

The pipeline, vectorised over series (a Python loop runs only over series that need repair):

    read_csv -> series ids (factorised in order of first appearance) -> parse_dates
    -> refuse a date repeated within a series -> sort by (series, date)
    -> numeric cells (a bad cell is an error naming row and column)
    -> regularise each series on the frequency (insert missing timestamps) -> fill_missing
    -> one-hot and calendar columns -> static columns (one value per series)

`Layout` then places the series one after another in one array, each behind `pad` empty rows, so
a window of a series shorter than the context reads padding (with the observed indicator 0)
instead of its neighbour, and a strided view over the one array serves every window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from seqtool.data import csvfile
from seqtool.data.csvfile import csv_row
from seqtool.errors import SeqtoolError
from seqtool.tasks.forecast import series
from seqtool.tasks.forecast.config import ForecastData


@dataclass
class Panel:
    """Every series' rows in time order, series after series: series i is rows
    `starts[i]:starts[i + 1]` of `values` (targets first, then features, one-hot and calendar)."""

    names: list[str]
    values: np.ndarray  # (rows, columns) float64, original units
    starts: np.ndarray  # (series + 1,) int64
    dates: pd.DatetimeIndex | None  # per row; None without a date column (steps are numbered)
    columns: list[str]
    frequency: str | None
    source: str
    repairs: dict[str, int]
    static: np.ndarray  # (series, static columns) float64
    static_columns: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)  # of the categorical and static columns
    future: np.ndarray | None = None  # (series, horizon, future features): values after each series' end

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    def series_of_rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.names)), self.lengths)


def read_panel(path: str, data: ForecastData, known: dict[str, Any] | None, future: bool = False) -> Panel:
    """The long CSV at `path` as a Panel. `known` (from a checkpoint) fixes the frequency and the
    categories, so another file is encoded exactly as the training file was. With `future` (a
    forecast beyond the data), each series' trailing rows with empty targets hold the known future
    values of `data.future_features` (`Panel.future`)."""
    source = str(path)
    frame = csvfile.read_csv(path)
    columns = {"series_column": [data.series_column], "target": data.target, "features": data.features}
    columns |= {"future_features": data.future_features}
    columns |= {"categorical": data.categorical, "static": data.static, "date_column": data.date_column or []}
    csvfile.check_columns(frame, columns, source)
    frame = frame.assign(_row=np.arange(len(frame)))
    ids = frame[data.series_column]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise SeqtoolError(f"{source}: row {csv_row(row)}, column '{data.series_column}' (data.series_column) is empty")
    codes, names = pd.factorize(ids.astype(str), sort=False)
    dates = series.parse_dates(frame, data.date_column, source) if data.date_column else None
    if dates is not None:
        _refuse_repeated_dates(codes, dates, names, source)
        order = np.lexsort((dates.to_numpy(), codes))
    else:
        order = np.argsort(codes, kind="stable")  # file order within each series
    frame, codes = frame.iloc[order].reset_index(drop=True), codes[order]
    positions = frame["_row"].to_numpy()
    numeric = series.numeric_columns(frame, data.target + data.features + data.future_features, source, positions)
    ahead = None
    if future and data.future_features:
        kept, ahead = _split_future(numeric, codes, names, data, source, positions)
        frame, numeric, codes = frame.iloc[kept].reset_index(drop=True), numeric.iloc[kept].reset_index(drop=True), codes[kept]
        dates = None if dates is None else pd.Series(dates.to_numpy()[order][kept])
        order = np.arange(len(kept))
    frequency, index = None, None
    if dates is not None:
        index = pd.DatetimeIndex(dates.to_numpy()[order])
        frequency = known["frequency"] if known else _panel_frequency(index, codes, data.frequency, source)
    repairs: dict[str, int] = {}
    numeric, frame, codes, index = _regularise(numeric, frame, codes, index, frequency, names, data, repairs, source)
    categories = dict(known["categories"]) if known else {}
    parts = [numeric.reset_index(drop=True)]
    for column in data.categorical:
        categories.setdefault(column, sorted(frame[column].dropna().astype(str).unique().tolist()))
        parts.append(series.one_hot(frame, column, categories[column]).reset_index(drop=True))
    if data.calendar_features:
        if index is None:
            raise SeqtoolError("data.calendar_features needs data.date_column")
        parts.append(series.calendar_features(index, frequency).reset_index(drop=True))
    table = pd.concat(parts, axis=1)
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(names)))]).astype(np.int64)
    static, static_columns = _static_columns(frame, codes, starts, data, categories, names, source)
    return Panel(
        [str(n) for n in names], table.to_numpy(np.float64), starts, index, list(table.columns), frequency, source,
        repairs, static, static_columns, categories, ahead,
    )  # fmt: skip


def _split_future(
    numeric: pd.DataFrame, codes: np.ndarray, names: pd.Index, data: ForecastData, source: str, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The rows to keep (up to each series' last observed target) and the next `data.horizon`
    future rows' `data.future_features` values of every series (series, horizon, features). A
    series with fewer future rows, or an empty future cell, is an error naming it."""
    observed = ~numeric[data.target].isna().all(axis=1).to_numpy()
    count = len(names)
    last = np.full(count, -1)
    np.maximum.at(last, codes, np.where(observed, np.arange(len(codes)), -1))
    is_future = np.arange(len(codes)) > last[codes]
    ahead = np.zeros((count, data.horizon, len(data.future_features)))
    values = numeric[data.future_features].to_numpy(np.float64)
    for i in range(count):
        rows = np.flatnonzero(is_future & (codes == i))[: data.horizon]
        if len(rows) < data.horizon or np.isnan(values[rows]).any():
            what = (
                f"has {len(rows)} rows"
                if len(rows) < data.horizon
                else f"has an empty cell (row {csv_row(int(positions[rows[np.isnan(values[rows]).any(axis=1)][0]]))})"
            )
            raise SeqtoolError(
                f"{source}: series '{names[i]}' {what} after its last target value; a forecast needs the next "
                f"{data.horizon} rows of data.future_features ({', '.join(data.future_features)}), with empty targets"
            )
        ahead[i] = values[rows]
    return np.flatnonzero(~is_future), ahead


def _refuse_repeated_dates(codes: np.ndarray, dates: pd.Series, names: pd.Index, source: str) -> None:
    """A date twice in one series is an error naming the series, the date and both rows."""
    keys = pd.DataFrame({"series": codes, "date": dates.to_numpy()})
    repeated = keys.duplicated(keep=False).to_numpy()
    if repeated.any():
        first = int(np.flatnonzero(repeated)[0])
        same = np.flatnonzero((keys["series"] == codes[first]).to_numpy() & (keys["date"] == keys["date"][first]).to_numpy())
        raise SeqtoolError(
            f"{source}: series '{names[codes[first]]}' repeats date {keys['date'][first]} at rows "
            f"{csv_row(same[0])} and {csv_row(same[1])}"
        )


def _panel_frequency(index: pd.DatetimeIndex, codes: np.ndarray, given: str | None, source: str) -> str:
    """The frequency as given, or inferred from the longest series."""
    if given:
        return series.infer_frequency(index, given, source)
    longest = np.bincount(codes).argmax()
    return series.infer_frequency(index[codes == longest], None, f"{source} (its longest series)")


def _regularise(
    numeric: pd.DataFrame,
    frame: pd.DataFrame,
    codes: np.ndarray,
    index: pd.DatetimeIndex | None,
    frequency: str | None,
    names: pd.Index,
    data: ForecastData,
    repairs: dict[str, int],
    source: str,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, pd.DatetimeIndex | None]:
    """Insert the timestamps missing inside each series, then fill empty cells by `data.missing`,
    series by series; only the series that need it are touched. The counts go to `repairs`."""
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(names)))])
    holes = numeric.isna().any(axis=1).to_numpy()
    pieces: list[tuple[pd.DataFrame, pd.DataFrame, pd.DatetimeIndex | None]] = []
    changed = False
    for i in range(len(names)):
        rows = slice(starts[i], starts[i + 1])
        values, part, dates = numeric.iloc[rows], frame.iloc[rows], None if index is None else index[rows]
        reindexed = False
        if dates is not None:
            full = pd.date_range(dates[0], dates[-1], freq=frequency)
            if len(full) != len(dates) or not (full == dates).all():
                if not dates.isin(full).all():
                    raise SeqtoolError(
                        f"{source}: series '{names[i]}': timestamp {dates[~dates.isin(full)][0]} does not fall on the "
                        f"frequency {frequency}; set data.frequency"
                    )
                # the inserted rows take the row before's labels (categorical, static); their values stay empty
                values, part = values.set_index(dates).reindex(full), part.set_index(dates).reindex(full).ffill()
                repairs["missing_timestamps_filled"] = repairs.get("missing_timestamps_filled", 0) + len(full) - len(dates)
                dates, changed, reindexed = full, True, True
        if reindexed or holes[rows].any():
            values, filled = series.fill_missing(values, data.missing, f"{source}: series '{names[i]}'")
            for name, count in filled.items():
                repairs[name] = repairs.get(name, 0) + count
            if len(values) != len(part):  # data.missing: drop
                part = part.loc[values.index]
                dates = None if dates is None else pd.DatetimeIndex(values.index)
            changed = True
        pieces.append((values, part, dates))
    if not changed:
        return numeric, frame, codes, index
    numeric = pd.concat([p[0].reset_index(drop=True) for p in pieces], ignore_index=True)
    frame = pd.concat([p[1].reset_index(drop=True) for p in pieces], ignore_index=True)
    codes = np.repeat(np.arange(len(names)), [len(p[0]) for p in pieces])
    index = None if index is None else pd.DatetimeIndex(np.concatenate([p[2].to_numpy() for p in pieces]))
    return numeric, frame, codes, index


def _static_columns(
    frame: pd.DataFrame,
    codes: np.ndarray,
    starts: np.ndarray,
    data: ForecastData,
    categories: dict[str, list[str]],
    names: pd.Index,
    source: str,
) -> tuple[np.ndarray, list[str]]:
    """One row per series of the `data.static` columns: a number as it is, a category one-hot.
    A value that changes within a series is an error naming it."""
    parts, labels = [], []
    first = starts[:-1]
    for column in data.static:
        values = frame[column]
        changes = values.astype(str).to_numpy() != values.astype(str).to_numpy()[starts[codes]]
        if changes.any():
            row = int(np.flatnonzero(changes)[0])
            raise SeqtoolError(
                f"{source}: column '{column}' (data.static) changes within series '{names[codes[row]]}' at row "
                f"{csv_row(int(frame['_row'].iloc[row]))}: {values.iloc[row]!r}"
            )
        numbers = pd.to_numeric(values.iloc[first], errors="coerce")
        if numbers.notna().all():
            parts.append(numbers.to_numpy(np.float64)[:, None])
            labels.append(column)
            continue
        categories.setdefault(column, sorted(values.dropna().astype(str).unique().tolist()))
        encoded = series.one_hot(frame.iloc[first], column, categories[column])
        parts.append(encoded.to_numpy(np.float64))
        labels += list(encoded.columns)
    static = np.concatenate(parts, axis=1) if parts else np.zeros((len(first), 0))
    return static, labels


@dataclass
class Layout:
    """The series one after another in one array, each behind `pad` rows of padding: series i's
    observed rows are `offsets[i]:offsets[i] + lengths[i]`. `train`, `val` and `test` give the
    row counts of each part per series (the test part last)."""

    offsets: np.ndarray
    lengths: np.ndarray
    pad: int
    rows: int
    val: np.ndarray
    test: np.ndarray

    @classmethod
    def build(cls, lengths: np.ndarray, pad: int, data: ForecastData) -> Layout:
        lengths = lengths.astype(np.int64)
        offsets = np.cumsum(lengths + pad) - lengths
        val, test = data.split_sizes(lengths)
        return cls(offsets, lengths, pad, int((lengths + pad).sum()), np.asarray(val), np.asarray(test))

    @property
    def train(self) -> np.ndarray:
        return self.lengths - self.val - self.test

    def place(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """`values` (observed rows, columns) in the padded layout; padding rows hold `fill`."""
        out = np.full((self.rows, values.shape[1]), fill, dtype=values.dtype)
        out[self.observed_rows()] = values
        return out

    def observed_rows(self) -> np.ndarray:
        """Position in the layout of each observed row, series after series."""
        series_of_row = np.repeat(np.arange(len(self.lengths)), self.lengths)
        return np.arange(int(self.lengths.sum())) + self.pad * (series_of_row + 1)

    def series_of(self, origins: np.ndarray) -> np.ndarray:
        """The series each origin (a row position in the layout) belongs to."""
        return np.searchsorted(self.offsets, origins, side="right") - 1

    def train_origins(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Every training window: origins t with at least one observed row before t and the
        horizon inside the series' training rows; and the count per series."""
        counts = np.maximum(self.train - horizon, 0)
        return _ranges(self.offsets + 1, counts, 1), counts

    def split_origins(self, split: str, horizon: int, stride: int) -> np.ndarray:
        """Backtest origins of a held-out part, aligned to its end (the last window ends on the
        part's last row, as the Monash and M4 protocols hold out the last `horizon` rows), every
        `stride` rows back while the window stays inside the part. A series without training
        rows has none (nothing scales it)."""
        end = self.offsets + self.lengths - (self.test if split == "val" else 0)
        size = self.val if split == "val" else self.test
        start = np.maximum(end - size, self.offsets + 1)
        counts = np.where((end - horizon >= start) & (self.train >= 1), (end - horizon - start) // stride + 1, 0)
        first = end - horizon - (counts - 1) * stride
        return _ranges(first, counts, stride)


def _ranges(first: np.ndarray, counts: np.ndarray, step: int) -> np.ndarray:
    """Concatenated arithmetic ranges first[i], first[i] + step, ... (counts[i] values each)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.repeat(np.asarray(first, dtype=np.int64), counts)
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return starts + within * step


def per_series_scaler(values: np.ndarray, layout: Layout, kind: str, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift and scale (series, columns) of the first `columns` columns, fitted on each series'
    training rows only: series of every scale share one network. A series whose training rows
    do not vary keeps scale 1 (or its mean absolute value, when that is larger)."""
    n = len(layout.lengths)
    train = np.maximum(layout.train, 0)
    train_rows = _ranges(np.cumsum(layout.lengths) - layout.lengths, train, 1)
    series_of_row = np.repeat(np.arange(n), train)
    part = values[train_rows, :columns]
    count = np.maximum(np.bincount(series_of_row, minlength=n), 1)[:, None]
    total = np.stack([np.bincount(series_of_row, part[:, j], minlength=n) for j in range(columns)], axis=1)
    mean = total / count
    if kind == "none":
        return np.zeros((n, columns)), np.ones((n, columns))
    if kind == "step":
        steps = np.abs(np.diff(part, axis=0))
        same = series_of_row[1:] == series_of_row[:-1]  # a change between two series is no step
        moves = np.stack([np.bincount(series_of_row[1:][same], steps[same, j], minlength=n) for j in range(columns)], axis=1)
        moved = np.maximum(np.bincount(series_of_row[1:][same], minlength=n), 1)[:, None]
        shift, scale = mean, moves / moved
    elif kind == "minmax":
        low, high = np.full((n, columns), np.inf), np.full((n, columns), -np.inf)
        np.minimum.at(low, series_of_row, part)
        np.maximum.at(high, series_of_row, part)
        shift, scale = np.where(np.isfinite(low), low, 0.0), np.where(np.isfinite(high), high - low, 0.0)
    else:
        squares = np.stack([np.bincount(series_of_row, part[:, j] ** 2, minlength=n) for j in range(columns)], axis=1)
        shift, scale = mean, np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    flat = scale <= 1e-9 * np.maximum(np.abs(mean), 1e-12)
    return shift, np.where(flat, np.maximum(np.abs(mean), 1.0), scale)
