"""The forecast kind's config section: its `data` schema, its own model and training keys, the
rules between them, and the starter config `seqtool init` writes for a time series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from seqtool.errors import SeqtoolError
from seqtool.schema import Config, ModelConfig, SplitData, TrainingConfig, Where, option


@dataclass
class ForecastData(SplitData):
    """A CSV with one row per time step, or many series in long format (`series_column`);
    validation (then test) is the chronological tail of every series."""

    path: str | None = option(None, "CSV file with one row per time step (per series, with series_column)")
    series_column: str | None = option(
        None, "column naming the series of each row: many series in one long table, one global model (docs: forecasting)"
    )
    date_column: list[str] | None = option(None, "date column, or its parts such as [year, month, day, hour]")
    frequency: str | None = option(None, "pandas frequency (D, h, MS, ...); inferred from the dates if absent")
    target: list[str] = option([], "column(s) to forecast")
    features: list[str] = option([], "extra numeric input columns (past covariates)")
    future_features: list[str] = option(
        [],
        "numeric columns known in advance (planned promotions, prices, holidays): read over the horizon too; "
        "predict needs their next horizon rows (rows with an empty target at the end of --data)",
    )
    categorical: list[str] = option([], "extra categorical input columns, one-hot encoded")
    calendar_features: bool = option(False, "add sin/cos of hour, weekday and month derived from the dates")
    context_length: int = option(24, "input window: time steps the model sees", ge=1)
    horizon: int = option(12, "time steps predicted at once (direct multi-step)", ge=1)
    val_fraction: float | None = option(
        None, "share of each series' rows held out for validation (default 0.2); exclusive with val_rows", gt=0.0, lt=1.0
    )
    test_fraction: float | None = option(
        None, "share of each series' last rows held out for testing (default 0); exclusive with test_rows", ge=0.0, lt=1.0
    )
    val_rows: int | None = option(None, "the last N rows of every series before the test part are validation", ge=1)
    test_rows: int | None = option(None, "the last N rows of every series are the test part", ge=1)
    static: list[str] = option([], "with series_column: per-series columns constant within a series (numeric or categorical)")
    windows_per_series: int | None = option(
        None,
        "with series_column: training windows drawn from each series per epoch, at most (null: the median "
        "series' count, so long series do not drown out short ones)",
        ge=1,
    )
    target_transform: Literal["none", "log_return", "difference"] = option(
        "none",
        "learn on log returns or differences of the target (prices); forecasts, intervals and the level metrics "
        "are mapped back to levels",
    )
    scaler: Literal["standard", "minmax", "step", "none"] = option(
        "standard",
        "per-column scaling (per series with series_column), fitted on the training rows only; step divides by the "
        "mean absolute one-step change (MASE's unit), so an absolute-error loss weighs series as MASE does",
    )
    missing: Literal["interpolate", "ffill", "drop", "error"] = option("interpolate", "what to do with empty or NA cells")
    seasonality: int | None = option(
        None, "seasonal period for seasonal-naive and MASE; inferred from the frequency if absent", ge=1
    )
    backtest_stride: int = option(1, "distance between forecast origins in the backtest", ge=1)
    max_rows: int | None = option(
        None,
        "split and train on the first N rows only (in time order; the long-horizon ETT protocol uses 14400); "
        "predict still reads the whole file",
        ge=1,
    )

    def has_test_split(self) -> bool:
        return bool(self.test_rows) or bool(self.test_fraction)

    def check(self, where: Where) -> None:
        """Rows or fractions, never both for the same part; fractions leave 10% for training."""
        for part in ("val", "test"):
            rows, fraction = getattr(self, f"{part}_rows"), getattr(self, f"{part}_fraction")
            if rows is not None and fraction is not None:
                raise SeqtoolError(
                    f"{where(f'data.{part}_rows')} and data.{part}_fraction are exclusive: hold out the last "
                    f"{rows} rows of every series, or a share of them, not both"
                )
        if (self.val_fraction or 0) + (self.test_fraction or 0) >= 0.9:
            raise SeqtoolError(f"{where('data.val_fraction')}: val_fraction + test_fraction leaves under 10% for training")

    def split_sizes(self, rows: int | np.ndarray) -> tuple[Any, Any]:
        """Validation and test rows at the end of a series of `rows` rows (or of each series)."""

        def size(count: int | None, fraction: float | None, default: float) -> Any:
            if count is not None:
                return np.minimum(count, rows) if isinstance(rows, np.ndarray) else min(count, rows)
            share = default if fraction is None else fraction
            return np.rint(rows * share).astype(np.int64) if isinstance(rows, np.ndarray) else round(rows * share)

        return size(self.val_rows, self.val_fraction, 0.2), size(self.test_rows, self.test_fraction, 0.0)


@dataclass
class ForecastModel(ModelConfig):
    segment_length: int | None = option(
        None,
        "read the context in segments of this many rows, each embedded by one linear layer, so the cell "
        "runs context_length / segment_length steps (SegRNN); must divide data.context_length; null: row by row",
        ge=1,
    )
    decoder: Literal["head", "parallel"] = option(
        "head",
        "head maps the final state to the whole horizon in one linear layer; parallel takes one more cell "
        "step per output segment, all at once, fed learned position (and channel) embeddings (SegRNN)",
    )
    channels: Literal["mixed", "independent"] = option(
        "mixed",
        "mixed reads all columns together (covariates need it); independent runs every target column "
        "as its own univariate series through shared weights",
    )
    window_norm: Literal["last", "revin", "none"] = option(
        "last",
        "per-window normalisation of the targets, undone on the output: last subtracts the last "
        "observed value, revin the window's mean and standard deviation (Kim et al. 2022)",
    )
    revin_affine: bool = option(False, "window_norm: revin only: a learned per-target affine after normalising")
    series_embedding: int | None = option(
        None, "with data.series_column: a learned embedding of this size per series, fed to the head", ge=1
    )


@dataclass
class ForecastTraining(TrainingConfig):
    loss: Literal["mse", "mae", "huber", "gaussian_nll", "quantile"] | None = option(
        None, "forecast loss (default mse); gaussian_nll and quantile give prediction intervals"
    )
    quantiles: list[float] = option([0.1, 0.5, 0.9], "levels predicted with loss: quantile (outermost = interval)")
    intervals: Literal["conformal"] | None = option(
        None,
        "conformal: intervals calibrated on the validation part's residuals, per horizon step, for any loss "
        "(null: the loss's own, gaussian_nll or quantile)",
    )
    interval_level: float = option(0.8, "nominal coverage of the conformal intervals", gt=0.0, lt=1.0)


def check_forecast_config(config: Config, where: Where) -> None:
    data, model, training = config.data, config.model, config.training
    if not data.path:
        raise SeqtoolError(f"{where('data.path')} is missing: the CSV file to forecast")
    if not data.target:
        raise SeqtoolError(f"{where('data.target')} is missing: the column(s) to forecast")
    data.check(where)
    if training.loss == "quantile":
        qs = training.quantiles
        if len(qs) < 2 or any(not 0 < q < 1 for q in qs) or qs != sorted(set(qs)):
            raise SeqtoolError(f"{where('training.quantiles')} must be at least two increasing levels between 0 and 1, got {qs}")
    _check_network(data, model, where)
    _check_panel_keys(data, where)
    if data.target_transform != "none" and training.loss in ("gaussian_nll", "quantile") and training.intervals is None:
        raise SeqtoolError(
            f"{where('training.loss')}: {training.loss} intervals of {data.target_transform} values do not map back to "
            "levels step by step; set training.intervals: conformal, which calibrates the intervals on the levels"
        )


def _check_panel_keys(data: ForecastData, where: Where) -> None:
    """Keys that only mean something for many series."""
    if data.series_column is None:
        for key in ("static", "windows_per_series"):
            if getattr(data, key):
                raise SeqtoolError(f"{where(f'data.{key}')} applies to many series in one file: set data.series_column")
        return
    if data.series_column in data.target + data.features + data.future_features + data.categorical + data.static:
        raise SeqtoolError(f"{where('data.series_column')}: '{data.series_column}' is also an input column")
    if data.max_rows is not None:
        raise SeqtoolError(f"{where('data.max_rows')} applies to one series; with data.series_column every series is read")
    if data.target_transform != "none":
        raise SeqtoolError(
            f"{where('data.target_transform')}: {data.target_transform} is read for one series (a price); with "
            "data.series_column each series is scaled by itself instead"
        )


def _check_network(data: ForecastData, model: ForecastModel, where: Where) -> None:
    """The forecast network's options against each other and against the data section."""
    w = model.segment_length
    if w is not None and data.context_length % w:
        below, above = data.context_length // w * w, (data.context_length // w + 1) * w
        fits = f"{below} or {above}" if below else str(above)
        raise SeqtoolError(
            f"{where('model.segment_length')}: data.context_length {data.context_length} is not a multiple of "
            f"model.segment_length {w}; seqtool does not pad the context (padding would invent rows): use "
            f"data.context_length {fits}, or a segment length that divides it"
        )
    covariates = [key for key in ("features", "future_features", "categorical") if getattr(data, key)]
    covariates += ["calendar_features"] if data.calendar_features else []
    if model.channels == "independent" and covariates:
        keys = ", ".join(f"data.{key}" for key in covariates)
        raise SeqtoolError(
            f"{where('model.channels')}: independent reads each target column alone, so covariates ({keys}) "
            "would never reach the network; use model.channels: mixed, or move them to data.target"
        )
    for key, wanted in (("data.future_features", data.future_features), ("model.series_embedding", model.series_embedding)):
        if wanted and model.decoder != "head":
            raise SeqtoolError(f"{where(key)} reaches the network through model.decoder: head (got {model.decoder})")
    if model.series_embedding and not data.series_column:
        raise SeqtoolError(f"{where('model.series_embedding')} embeds each of many series: set data.series_column")
    if model.revin_affine and model.window_norm != "revin":
        raise SeqtoolError(f"{where('model.revin_affine')} applies to model.window_norm: revin (got {model.window_norm})")
