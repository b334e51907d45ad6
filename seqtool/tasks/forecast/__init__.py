"""Forecasting CSV time series: direct multi-step prediction from a context window.

For an origin t the model reads rows [t - context_length, t) of every input column and predicts
the target columns at rows [t, t + horizon) in one shot. The network (`network.py`)
normalises each window itself: by default its targets are taken relative to the last observed
value, so the network forecasts the change from "now": a series that trends beyond its training
range (airline passengers) still looks familiar to it, and a network that learns nothing falls
back to the naive forecast.

The split is chronological (train | val | test), the scaler is fitted on the training rows only,
and evaluation is a rolling-origin backtest over the held-out tail, in the data's own units,
beside three baselines: naive, seasonal naive and a linear autoregression.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from rich.markup import escape

from seqtool.checkpoint import atomic_write_text
from seqtool.data import csvfile
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.schema import Config, Where
from seqtool.signature import Signature, tensor_spec
from seqtool.tasks import BadInput, Example, MainMetric, PredictOption, ServeSpec, Starter, Unsuitable, WindowedTask, to_device
from seqtool.tasks.forecast import conformal, series
from seqtool.tasks.forecast.config import (
    ForecastData,
    ForecastModel,
    ForecastTraining,
    check_forecast_config,
)
from seqtool.tasks.forecast.export import ForecastGraph
from seqtool.tasks.forecast.metrics import (
    directional_metrics,
    forecast_metrics,
    linear_forecast,
    majority_direction,
    mase_scale,
    naive_forecast,
    seasonal_naive_forecast,
    z_scale,
)
from seqtool.tasks.forecast.network import ForecastNetwork, NetworkInputs, point_and_interval
from seqtool.tasks.forecast.starter import starter_config

HISTORY_TAIL = 200  # rows of target history kept in the checkpoint for plots


@dataclass
class PreparedSeries:
    """A cleaned series: `values` (rows, columns), targets first, in original units or (with
    `data.target_transform`) the targets as changes; `levels` (rows, targets) are the targets'
    own values, which forecasts are scored and written in."""

    values: np.ndarray
    levels: np.ndarray
    columns: list[str]
    index: pd.Index  # DatetimeIndex, or a RangeIndex when the CSV has no date column
    frequency: str | None
    source: str
    repairs: dict[str, int]  # what was filled or dropped, by name (`ForecastTask.data_report`)
    future: np.ndarray | None = None  # data.future_features' values after the last row (predict)


class ForecastTask(WindowedTask):
    name = "forecast"
    description = "multi-step forecasts of CSV time series, backtested beside naive, seasonal and linear baselines"
    data_schema = ForecastData
    model_schema = ForecastModel
    training_schema = ForecastTraining
    reads = "its inputs are real-valued rows, not tokens, and it reads fixed context windows"
    main_metric = MainMetric("mase", "mase")
    baselines = ("naive", "seasonal_naive", "linear")
    predict_hint = "--horizon N --output forecast.csv"
    predict_options = (
        PredictOption("--data", Path, "CSV whose last rows are the context", "the training data's end"),
        PredictOption("--horizon", int, "steps to forecast (at most the model's)", "the model's horizon", min=1),
        PredictOption("--output", Path, "write the forecast CSV here", "stdout"),
        PredictOption("--plot", Path, "draw history, forecast and interval to this PNG", "no plot"),
        PredictOption("--series", str, "many series: forecast (and draw) only these, comma-separated", "every series"),
    )
    evaluate_options = (
        PredictOption("--per-series", Path, "many series: write every series' metrics to this CSV", "no file"),
        PredictOption(
            "--series", str, "many series: draw these in --plot, comma-separated", "the worst, median and best by MASE"
        ),
    )

    def __new__(cls, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None) -> ForecastTask:
        """A config with `data.series_column` makes the many-series variant (`panel.py`): the same
        kind and config section, with the data laid out series after series."""
        if cls is ForecastTask and config.data.series_column:
            from seqtool.tasks.forecast.panel import PanelForecastTask

            cls = PanelForecastTask
        return super().__new__(cls)

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        super().__init__(config, artifacts, cluster)
        self.data = config.data
        self.notes: list[str] = []  # said below evaluate's table (`evaluation_notes`)
        self.artifacts_ = dict(artifacts) if artifacts else None
        self.scaler = series.Scaler.from_dict(artifacts["scaler"]) if artifacts and "scaler" in artifacts else None
        self.train_inputs: np.ndarray | None = None  # scaled (rows, columns) of the training data file
        self.train_origins = np.empty(0, dtype=np.int64)
        self.order = np.empty(0, dtype=np.int64)
        self.prepared: PreparedSeries | None = None
        self._categories: dict[str, list[str]] = {}
        self._eval_cache: dict[str, Any] = {}

    @classmethod
    def check_config(cls, config: Config, where: Where) -> None:
        check_forecast_config(config, where)

    @classmethod
    def starter(cls, path: Path, frame: Any | None) -> Starter:
        if frame is None:
            raise Unsuitable(f"{path} is not a CSV or TSV; a forecast reads a table with one row per time step")
        return starter_config(path, frame)

    @classmethod
    def example(cls, folder: Path) -> Example:
        """Two daily seasonal series (period 20, opposite trends) through the segmented,
        channel-independent network with the parallel decoder and RevIN: every option at once."""
        rng = np.random.default_rng(0)
        t = np.arange(300)
        wave = 3 * np.sin(2 * np.pi * t / 20)
        frame = pd.DataFrame(
            {
                "Date": pd.date_range("2020-01-01", periods=300, freq="D").strftime("%Y-%m-%d"),
                "Value": (10 + 0.02 * t + wave + rng.normal(0, 0.3, 300)).round(4),
                "Other": (30 - 0.01 * t - 1.5 * wave + rng.normal(0, 0.3, 300)).round(4),
            }
        )
        frame.to_csv(folder / "series.csv", index=False)
        bad_cell = frame.astype(str)
        bad_cell.loc[58, "Value"] = "12,5x"
        config = {
            "task": cls.name,
            "seed": 3,
            "data": {"path": str(folder / "series.csv"), "date_column": "Date", "target": ["Value", "Other"]},
            "model": {"type": "gru", "hidden_size": 16, "num_layers": 1, "dropout": 0.1, "segment_length": 8}
            | {"decoder": "parallel", "channels": "independent", "window_norm": "revin"},
            "training": {"batch_size": 16, "lr": 0.01},
        }
        config["data"] |= {"context_length": 40, "horizon": 10, "seasonality": 20}
        bad = (
            BadInput("missing column", "column 'Price' (data.target) not found", overrides=("data.target=[Price]",)),
            BadInput("bad cell", "row 60, column 'Value'", files={"series.csv": bad_cell.to_csv(index=False)}),
            BadInput("header only", "header but no rows", files={"series.csv": "Date,Value,Other\n"}),
            BadInput("series shorter than a window", "fewer than data.context_length", overrides=("data.context_length=400",)),
            BadInput("segment not dividing the context", "not a multiple of", overrides=("model.segment_length=7",)),
        )
        return Example(config, ("--horizon", "5"), None, bad, serve_request={"horizon": 5})

    # ---- data ----------------------------------------------------------------------------------

    @property
    def n_targets(self) -> int:
        return len(self.data.target)

    @property
    def future_columns(self) -> tuple[int, ...]:
        """Input columns of `data.future_features` (after the targets and features)."""
        first = self.n_targets + len(self.data.features)
        return tuple(range(first, first + len(self.data.future_features)))

    @property
    def window_rows(self) -> int:
        """Rows of a model input window: the context, and the horizon when future covariates are read."""
        return self.data.context_length + (self.data.horizon if self.data.future_features else 0)

    def _prepare(self, path: str, whole: bool = False) -> PreparedSeries:
        """CSV -> cleaned values. Column layout and categories come from the checkpoint when
        there is one, so evaluation and prediction see exactly the training columns. Only the
        first `data.max_rows` rows are kept unless `whole` (a forecast beyond the data's end)."""
        data = self.data
        source = str(path)
        frame = csvfile.read_csv(path)
        date_columns = data.date_column or []
        csvfile.check_columns(
            frame,
            {"target": data.target, "features": data.features, "future_features": data.future_features}
            | {"categorical": data.categorical, "date_column": date_columns},
            source,
        )
        frequency, gaps = None, 0
        frame = frame.assign(_row=np.arange(len(frame), dtype=np.float64))  # CSV positions, for error messages
        if date_columns:
            dates = series.parse_dates(frame, date_columns, source)
            frame, index = series.order_by_time(frame, dates, source)
            frequency = self.artifacts_["frequency"] if self.artifacts_ else series.infer_frequency(index, data.frequency, source)
            frame, gaps = series.regular_index(frame, index, frequency, source)
        if data.max_rows is not None and not whole:
            frame = frame.iloc[: data.max_rows]
        positions = np.nan_to_num(frame["_row"].to_numpy(), nan=0).astype(np.int64)
        numeric = series.numeric_columns(frame, data.target + data.features + data.future_features, source, positions)
        future = None
        if whole and data.future_features:  # a forecast beyond the data reads the covariates' future rows
            numeric, future = series.split_future(numeric, data.target, data.future_features, source, positions)
        numeric, filled = series.fill_missing(numeric, data.missing, source)
        parts = [numeric]
        categories = dict(self.artifacts_["categories"]) if self.artifacts_ else {}
        for column in data.categorical:
            if column not in categories:
                categories[column] = sorted(frame[column].dropna().astype(str).unique().tolist())
            parts.append(series.one_hot(frame.loc[numeric.index], column, categories[column]))
        if data.calendar_features:
            if frequency is None:
                raise SeqtoolError("data.calendar_features needs data.date_column")
            parts.append(series.calendar_features(pd.DatetimeIndex(numeric.index), frequency))
        table = pd.concat(parts, axis=1)
        self._categories = categories
        repairs = {"missing_timestamps_filled": gaps, **filled}
        values, index = table.to_numpy(np.float64), table.index
        levels = values[:, : self.n_targets]
        if data.target_transform != "none":
            rows = frame.loc[numeric.index, "_row"].to_numpy(np.float64)
            values, levels = series.to_changes(values, self.n_targets, data.target_transform, data.target, source, rows)
            index = index[1:]
        return PreparedSeries(values, levels, list(table.columns), index, frequency, source, repairs, future)

    def data_report(self) -> dict[str, int]:
        """Timestamps missing from the file (rows inserted), and cells filled or rows dropped by
        `data.missing`, per column, in the training file."""
        return dict(getattr(self, "repairs", {}))

    def _model_inputs(self, values: np.ndarray) -> np.ndarray:
        """Scaled values as float32, the precision the model computes in (half the memory)."""
        return self.scaler.transform(values).astype(np.float32)

    def _split_bounds(self, rows: int) -> tuple[int, int]:
        """End of the training rows and end of the validation rows (the test rows follow)."""
        n_val, n_test = self.data.split_sizes(rows)
        return rows - n_val - n_test, rows - n_test

    def load_training_data(self) -> None:
        data = self.data
        prepared = self._prepare(data.path)
        self.repairs = prepared.repairs
        train_end, _ = self._split_bounds(len(prepared.values))
        needed = data.context_length + data.horizon
        if train_end < needed:
            raise SeqtoolError(
                f"{prepared.source}: the training part has {train_end} rows, fewer than data.context_length + "
                f"data.horizon = {needed}; lower them or give a longer series"
            )
        if self.scaler is None:
            with np.errstate(over="ignore", invalid="ignore"):
                self.scaler = series.Scaler.fit(prepared.values[:train_end], data.scaler)
            broken = ~(np.isfinite(self.scaler.shift) & np.isfinite(self.scaler.scale))
            if broken.any():
                column = prepared.columns[int(np.flatnonzero(broken)[0])]
                raise SeqtoolError(f"{prepared.source}: column '{column}' has values too large to scale (float64 overflow)")
        self.train_inputs = self._model_inputs(prepared.values)
        self.train_origins = series.window_origins(0, train_end, data.context_length, data.horizon)
        self._check_eval_rows(prepared, "val")
        self.prepared = prepared
        m = data.seasonality or (series.seasonality_from_frequency(prepared.frequency) if prepared.frequency else None)
        self.artifacts_ = {
            "columns": prepared.columns,
            "categories": self._categories,
            "frequency": prepared.frequency,
            "scaler": self.scaler.to_dict(),
            "seasonality": m,
            "last_context": self.train_inputs[-data.context_length :].tolist(),
            "last_index": str(prepared.index[-1]),
            "history_tail": {  # for plots of forecasts made without --data
                "index": [str(i) for i in prepared.index[-HISTORY_TAIL:]],
                "values": prepared.levels[-HISTORY_TAIL:].tolist(),
            },
            "date_name": (data.date_column[0] if len(data.date_column) == 1 else "date") if data.date_column else None,
        }

    def _check_eval_rows(self, prepared: PreparedSeries, split: str) -> None:
        train_end, val_end = self._split_bounds(len(prepared.values))
        start, stop = (train_end, val_end) if split == "val" else (val_end, len(prepared.values))
        if stop - start < self.data.horizon:
            raise SeqtoolError(
                f"{prepared.source}: the {split} part has {stop - start} rows, fewer than data.horizon = "
                f"{self.data.horizon}; raise data.{split}_rows (or data.{split}_fraction) or lower the horizon"
            )

    def artifacts(self) -> dict[str, Any]:
        return self.artifacts_

    # ---- model and training ------------------------------------------------------------------

    @property
    def outputs_per_step(self) -> int:
        loss = self.config.training.loss
        return {"gaussian_nll": 2, "quantile": len(self.config.training.quantiles)}.get(loss, 1)

    def build_model(self) -> ForecastNetwork:
        columns, loss = len(self.artifacts_["columns"]), self.config.training.loss or "mse"
        inputs = NetworkInputs(self.data.series_column is not None, self.future_columns, self.series_count)
        return ForecastNetwork(self.config.model, columns, self.n_targets, self.data.horizon, loss, self.outputs_per_step, inputs)

    @property
    def series_count(self) -> int:
        """Series the network embeds (`model.series_embedding`); 0 for one series."""
        return 0

    def sample_count(self) -> int:
        return len(self.train_origins)  # windows are shuffled; the split itself stays chronological

    def units_per_step(self) -> int:
        return min(self.config.training.batch_size, len(self.train_origins))

    def _windows(self, inputs: np.ndarray, origins: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled model inputs (batch, context, columns) and targets (batch, horizon, targets):
        copies of the batch's windows only, gathered through a strided view of `inputs`."""
        k, context, horizon = self.n_targets, self.data.context_length, self.data.horizon
        x = np.ascontiguousarray(series.gather_windows(inputs, origins, -context, self.window_rows))
        y = np.ascontiguousarray(series.gather_windows(inputs[:, :k], origins, 0, horizon))
        return torch.from_numpy(x), torch.from_numpy(y)

    def _outputs(self, model: ForecastNetwork, x: torch.Tensor) -> torch.Tensor:
        return model(x).float()  # (batch, horizon, targets, outputs_per_step), scaled units

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """out (batch, horizon, targets, outputs_per_step), y (batch, horizon, targets), both scaled;
        for gaussian_nll out holds mean and variance."""
        loss = self.config.training.loss or "mse"
        if loss == "mse":
            return F.mse_loss(out[..., 0], y)
        if loss == "mae":
            return F.l1_loss(out[..., 0], y)
        if loss == "huber":
            return F.huber_loss(out[..., 0], y, delta=1.0)
        if loss == "gaussian_nll":
            return F.gaussian_nll_loss(out[..., 0], y, out[..., 1])
        levels = torch.tensor(self.config.training.quantiles, device=out.device)
        error = y.unsqueeze(-1) - out  # (batch, horizon, targets, quantiles)
        return torch.maximum(levels * error, (levels - 1) * error).mean()  # pinball loss

    def training_loss(self, model: ForecastNetwork, batch_index: int, device: torch.device) -> torch.Tensor:
        rows, share = self.batch_rows(batch_index)
        x, y = self._windows(self.train_inputs, self.train_origins[rows])
        return self._loss(self._outputs(model, to_device(x, device)), to_device(y, device)) * share

    # ---- forecasting -------------------------------------------------------------------------

    def _point_and_interval(self, out: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Point forecast and 80% (or outermost-quantile) interval, all (batch, horizon, targets)."""
        parts = point_and_interval(out, self.config.training.loss or "mse", self.config.training.quantiles)
        return tuple(None if part is None else part.numpy() for part in parts)  # type: ignore[return-value]

    @property
    def interval_level(self) -> float | None:
        loss = self.config.training.loss
        if self.config.training.intervals == "conformal":
            return self.config.training.interval_level
        if loss == "gaussian_nll":
            return 0.8
        if loss == "quantile":
            return self.config.training.quantiles[-1] - self.config.training.quantiles[0]
        return None

    @torch.no_grad()
    def forecast(
        self, model: ForecastNetwork, inputs: np.ndarray, origins: np.ndarray, device: torch.device, to_units: Any = None
    ) -> dict[str, np.ndarray]:
        """Forecasts in original units for each origin: point, lower, upper (batch, horizon,
        targets), the loss's own interval (conformal bounds are added by the caller).
        `to_units(values, origins)` maps scaled outputs to units (default: the scaler's inverse)."""
        results: dict[str, list[np.ndarray]] = {"point": [], "lower": [], "upper": []}
        k, context = self.n_targets, self.data.context_length
        to_units = to_units or (lambda values, _: self.scaler.inverse(values, slice(0, k)))
        for start in range(0, len(origins), 1024):
            chunk = origins[start : start + 1024]
            x = torch.from_numpy(np.ascontiguousarray(series.gather_windows(inputs, chunk, -context, self.window_rows)))
            point, lower, upper = self._point_and_interval(self._outputs(model, to_device(x, device)).cpu())
            for name, values in (("point", point), ("lower", lower), ("upper", upper)):
                if values is not None:
                    results[name].append(to_units(values, chunk))
        return {name: np.concatenate(parts) for name, parts in results.items() if parts}

    @torch.no_grad()
    def _mean_loss(self, model: ForecastNetwork, inputs: np.ndarray, origins: np.ndarray, device: torch.device) -> float:
        """The training loss over the windows at `origins`, in scaled units."""
        total = 0.0
        for start in range(0, len(origins), 1024):
            x, y = self._windows(inputs, origins[start : start + 1024])
            total += self._loss(self._outputs(model, to_device(x, device)), to_device(y, device)).item() * len(x)
        return total / len(origins)

    def _conformal(self, predicted: dict[str, np.ndarray], unit: np.ndarray) -> dict[str, np.ndarray]:
        """The forecasts with conformal bounds, when the config asks for them."""
        if self.config.training.intervals != "conformal":
            return predicted
        return predicted | conformal.bounds(predicted["point"], unit, self._calibration())

    def _calibration(self) -> dict[str, Any]:
        """The conformal calibration of the last validation pass (it travels in the checkpoint)."""
        calibration = (self.artifacts_ or {}).get("conformal")
        if calibration is None:
            raise SeqtoolError("this model has no conformal calibration yet: it is made by each validation pass in training")
        warning = conformal.note(calibration)
        if warning and warning not in self.notes:
            self.notes.append(warning)
        return calibration

    def evaluation_notes(self, metrics: dict[str, float]) -> list[Any]:
        notes = [f"[yellow]Note:[/] {escape(note)}" for note in self.notes]
        level = self.interval_level
        if level is not None and f"coverage_{round(100 * level)}" in metrics:
            name = round(100 * level)
            notes.append(
                f"coverage_{name}: the share of actual values inside the {name}% interval (nominal {level:.2f}); "
                f"width_{name}: its mean width, in the data's units"
            )
        return notes

    # ---- evaluation --------------------------------------------------------------------------

    def _eval_setup(self, split: str, data_path: str | None) -> dict[str, Any]:
        """Data, origins and baselines of a split, computed once per (split, file)."""
        key = f"{split}:{data_path}"
        if key in self._eval_cache:
            return self._eval_cache[key]
        if data_path is None and self.prepared is not None:
            prepared = self.prepared
        else:
            try:
                prepared = self._prepare(data_path or self.data.path)
            except SeqtoolError as exc:
                hint = "" if data_path else " (the run's data; pass --data FILE to evaluate on another file)"
                raise SeqtoolError(f"{exc}{hint}") from None
        if split == "test" and self.data.split_sizes(len(prepared.values))[1] == 0:
            raise SeqtoolError("no test split in this run's data (set data.test_rows or data.test_fraction)")
        self._check_eval_rows(prepared, split)
        train_end, val_end = self._split_bounds(len(prepared.values))
        start, stop = (train_end, val_end) if split == "val" else (val_end, len(prepared.values))
        context, horizon = self.data.context_length, self.data.horizon
        origins = series.window_origins(start, stop, context, horizon, self.data.backtest_stride)
        actual_series = prepared.levels
        m = self.artifacts_["seasonality"] or 1
        setup = {
            "prepared": prepared,
            "inputs": self.train_inputs if prepared is self.prepared else self._model_inputs(prepared.values),
            "origins": origins,
            "actual": series.gather_windows(actual_series, origins, 0, horizon),  # (origins, horizon, targets)
            "mase_scale": mase_scale(actual_series[:train_end], m),
            "z_scale": z_scale(actual_series[:train_end]),
            "baselines": {
                "naive": naive_forecast(actual_series, origins, horizon),
                "seasonal_naive": seasonal_naive_forecast(actual_series, origins, horizon, m),
                "linear": linear_forecast(actual_series, train_end, origins, context, horizon),
            },
            "majority": majority_direction(actual_series[:train_end]),
        }
        self._eval_cache[key] = setup
        return setup

    def evaluate(
        self, model: ForecastNetwork, split: str, device: torch.device, data_path: str | None = None
    ) -> dict[str, float]:
        for option in ("per_series", "series"):
            if self.evaluation_options.get(option):
                flag = "--" + option.replace("_", "-")
                raise SeqtoolError(f"{flag} applies to a model of many series (data.series_column); this one forecasts one")
        setup = self._eval_setup(split, data_path)
        inputs, origins, last = setup["inputs"], setup["origins"], setup["prepared"].levels[setup["origins"] - 1]
        predicted = self._forecast_levels(model, inputs, origins, last, device, setup["actual"] if split == "val" else None)
        metrics = {"loss": self._mean_loss(model, inputs, origins, device)}
        metrics.update(forecast_metrics(setup["actual"], predicted["point"], setup["mase_scale"], setup["z_scale"]))
        if "lower" in predicted:
            level = round(100 * self.interval_level)
            inside = (setup["actual"] >= predicted["lower"]) & (setup["actual"] <= predicted["upper"])
            metrics[f"coverage_{level}"] = float(inside.mean())
            metrics[f"width_{level}"] = float((predicted["upper"] - predicted["lower"]).mean())
        for name, forecast in setup["baselines"].items():
            metrics.update(
                {
                    f"{name}_{k}": v
                    for k, v in forecast_metrics(setup["actual"], forecast, setup["mase_scale"], setup["z_scale"]).items()
                }
            )
        if self.data.target_transform != "none":
            metrics |= directional_metrics(
                setup["actual"], predicted["point"], last, setup["baselines"]["naive"], setup["majority"]
            )
        metrics["origins"] = len(origins)
        return metrics

    def _forecast_levels(
        self,
        model: ForecastNetwork,
        inputs: np.ndarray,
        origins: np.ndarray,
        last: np.ndarray,
        device: torch.device,
        calibrate_on: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Forecasts at each origin in the targets' own units: changes (`data.target_transform`)
        compounded onto the last observed level `last` (origins, targets), and conformal bounds,
        calibrated first on `calibrate_on` (the actual values of validation windows) when given."""
        kind = self.data.target_transform
        predicted = self.forecast(model, inputs, origins, device)
        if kind != "none":
            predicted = {name: series.to_levels(values, last, kind) for name, values in predicted.items()}
        unit = self.scaler.scale[: self.n_targets]
        if calibrate_on is not None and self.config.training.intervals == "conformal":
            log = kind == "log_return"
            self.artifacts_["conformal"] = conformal.calibrate(calibrate_on, predicted["point"], unit, self.interval_level, log)
        return self._conformal(predicted, unit)

    # ---- prediction beyond the data ------------------------------------------------------------

    def predict_future(self, model: ForecastNetwork, data_path: str | None, horizon: int | None) -> pd.DataFrame:
        """Forecast the steps after the last row of `data_path` (or of the training data, whose
        last context window travels in the checkpoint)."""
        horizon = self._horizon(horizon)
        if data_path:
            prepared = self._prepare(data_path, whole=True)
            if len(prepared.values) < self.data.context_length:
                raise SeqtoolError(
                    f"{data_path}: {len(prepared.values)} rows, fewer than data.context_length = {self.data.context_length}"
                )
            inputs, last, last_level = self._model_inputs(prepared.values), prepared.index[-1], prepared.levels[-1]
        else:
            inputs = np.asarray(self.artifacts_["last_context"], dtype=np.float32)
            last = self.artifacts_["last_index"]
            last_level = np.asarray(self.artifacts_["history_tail"]["values"][-1], dtype=np.float64)
        origin = np.array([len(inputs)], dtype=np.int64)
        ahead = self._future_rows(data_path, prepared.future if data_path else None, inputs.shape[1])
        padded = np.concatenate([inputs, ahead])  # the future: its known covariates, zeros elsewhere
        predicted = self._forecast_levels(model, padded, origin, last_level[None], torch.device("cpu"))
        frequency = self.artifacts_["frequency"]
        if frequency:
            future = series.continue_dates(pd.Timestamp(last), frequency, horizon)
            table = pd.DataFrame({self.artifacts_["date_name"]: future.strftime(date_format(future))})
        else:
            table = pd.DataFrame({"step": np.arange(1, horizon + 1)})
        for j, name in enumerate(self.data.target):
            table[name] = predicted["point"][0, :horizon, j]
            if "lower" in predicted:
                table[f"{name}_lower"] = predicted["lower"][0, :horizon, j]
                table[f"{name}_upper"] = predicted["upper"][0, :horizon, j]
        return table

    def _horizon(self, asked: int | None) -> int:
        """The steps a forecast beyond the data covers: as asked (`--horizon`), at most the model's."""
        if asked is not None and asked > self.data.horizon:
            raise SeqtoolError(f"--horizon {asked} is beyond the model's horizon of {self.data.horizon} steps (data.horizon)")
        return asked or self.data.horizon

    def _future_rows(self, data_path: str | None, future: np.ndarray | None, columns: int) -> np.ndarray:
        """The horizon rows after the data's end as model inputs: `data.future_features` scaled
        (their values must be given), zeros elsewhere (nothing else is read there)."""
        rows = np.zeros((self.data.horizon, columns), dtype=np.float32)
        if not self.data.future_features:
            return rows
        names = ", ".join(self.data.future_features)
        given = 0 if future is None else len(future)
        if given < self.data.horizon:
            where = f"{data_path} has {given}" if data_path else "without --data there are none"
            raise SeqtoolError(
                f"this model reads data.future_features ({names}) over the horizon: it needs their values for the next "
                f"{self.data.horizon} rows, as rows with an empty target after the last observed one; {where}"
            )
        rows[:, list(self.future_columns)] = self._scale_columns(future[: self.data.horizon], self.future_columns)
        return rows

    def _scale_columns(self, values: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
        """Raw values of some input columns, scaled as the training inputs were."""
        index = list(columns)
        return (values - self.scaler.shift[index]) / self.scaler.scale[index]

    def history(self, data_path: str | None) -> pd.DataFrame | None:
        """Target history for a plot: from the CSV, or the training data's tail kept in the checkpoint
        (None for checkpoints written before seqtool kept it)."""
        if data_path:
            prepared = self._prepare(data_path, whole=True)
            return pd.DataFrame(prepared.levels, index=prepared.index, columns=self.data.target)
        tail = self.artifacts_.get("history_tail")
        if tail is None:
            return None
        index = pd.DatetimeIndex(tail["index"]) if self.artifacts_["frequency"] else pd.Index([int(i) for i in tail["index"]])
        return pd.DataFrame(tail["values"], index=index, columns=self.data.target)

    def evaluation_plot(self, model: ForecastNetwork, split: str, data_path: str | None, path: Path) -> None:
        """The backtest: actual values of the split and non-overlapping forecasts across it."""
        from seqtool.tasks.forecast.plots import backtest_plot

        setup = self._eval_setup(split, data_path)
        horizon = self.data.horizon
        origins = setup["origins"][:: max(1, horizon // self.data.backtest_stride)]
        last = setup["prepared"].levels[origins - 1]
        predicted = self._forecast_levels(model, setup["inputs"], origins, last, torch.device("cpu"))
        backtest = {"prepared": setup["prepared"], "origins": origins, "predicted": predicted, "targets": self.data.target}
        backtest_plot(path, backtest, self.interval_level, split)

    def predict(self, model: ForecastNetwork, options: dict[str, Any], out: TextIO) -> None:
        """The forecast CSV on stdout or in `--output`, and its plot with `--plot`."""
        from rich.console import Console

        if options.get("series"):
            raise SeqtoolError("--series applies to a model of many series (data.series_column); this one forecasts one")
        data = str(options["data"]) if options["data"] else None
        table = self.predict_future(model, data, options["horizon"])
        text = table.to_csv(index=False, float_format="%.6g")
        if options["output"]:
            atomic_write_text(options["output"], text)
            Console(stderr=True).print(f"Forecast of {len(table)} steps written to {options['output']}")
        else:
            out.write(text)
        if options["plot"]:
            from seqtool.tasks.forecast.plots import forecast_plot

            forecast_plot(options["plot"], self.history(data), table, self.data.target, self.interval_level)
            Console(stderr=True).print(f"Forecast plot written to {options['plot']}")

    def predict_api(self, model: ForecastNetwork, data: Any, options: dict[str, Any]) -> pd.DataFrame:
        """`predict(data=CSV or None, horizon=...)`: the forecast table."""
        unknown = sorted(set(options) - {"horizon"})
        if unknown:
            raise SeqtoolError(f"predict() options {unknown} do not apply to a forecast model (it takes data and horizon)")
        return self.predict_future(model, str(data) if data else None, options.get("horizon"))

    def serve_spec(self) -> ServeSpec:
        from seqtool.tasks.forecast.serve import spec

        return spec(self)

    def export_signature(self, model: ForecastNetwork, generator: torch.Generator) -> Signature:
        """context (batch, context_length, columns), scaled -> forecast[, lower, upper] (batch,
        horizon, targets), scaled. Window normalisation, segments, channels, the decoder and the
        interval arithmetic are in the graph; the affine scaler is in the metadata, because
        applying it inside would make float32 rounding depend on the data's units."""
        data, training = self.data, self.config.training
        graph = ForecastGraph(model, training.loss or "mse", training.quantiles)
        # The training data's last context window (it travels in the checkpoint), and noisy copies.
        last = torch.tensor(self.artifacts_["last_context"], dtype=torch.float32)[None]  # (1, context, columns)
        if data.future_features:  # and the horizon rows the future covariates are read from
            last = torch.cat([last, torch.zeros(1, data.horizon, last.shape[2])], dim=1)

        def batch(size: int) -> torch.Tensor:
            noise = 0.1 * torch.randn(size - 1, *last.shape[1:], generator=generator)
            return torch.cat([last, last + noise])

        example, check = batch(2), batch(5)
        origins = np.array([data.context_length], dtype=np.int64)
        expected_parts: list[list[np.ndarray]] = []
        with torch.no_grad():
            for row in check.numpy():
                padded = np.concatenate([row, np.zeros((data.horizon, row.shape[1]), dtype=np.float32)])
                x, _ = self._windows(padded, origins)
                expected_parts.append([p for p in self._point_and_interval(self._outputs(model, x)) if p is not None])
        expected = tuple(torch.from_numpy(np.concatenate(group)) for group in zip(*expected_parts, strict=True))
        shape = ["batch", "horizon", "targets"]
        outputs = [tensor_spec("forecast", "float32", shape, "point forecast, scaled units")]
        if len(expected) == 3:
            level = round(100 * self.interval_level)
            outputs += [
                tensor_spec("lower", "float32", shape, f"lower bound of the {level}% interval, scaled units"),
                tensor_spec("upper", "float32", shape, f"upper bound of the {level}% interval, scaled units"),
            ]
        meaning = "the last context_length rows, scaled (see scaler)"
        if data.future_features:
            meaning += "; then horizon rows holding data.future_features' known values (scaled), zeros elsewhere"
        rows = "context_length + horizon" if data.future_features else "context_length"
        inputs = [tensor_spec("context", "float32", ["batch", rows, "columns"], meaning)]
        axes = {"context": {0: "batch"}} | {spec["name"]: {0: "batch"} for spec in outputs}
        return Signature(graph, (example,), (check,), expected, inputs, outputs, axes)

    def export_metadata(self) -> dict[str, Any]:
        data, artifacts = self.data, self.artifacts_
        scaler = artifacts["scaler"]
        return {
            "columns": list(artifacts["columns"]),
            "targets": list(data.target),
            "context_length": data.context_length,
            "horizon": data.horizon,
            "frequency": artifacts["frequency"],
            "columns_how": "targets first, then data.features; a categorical column c becomes one column 'c=value' per "
            "value in categories (1.0 where the row has that value, else 0.0); calendar columns <cycle>_sin/_cos are "
            "sin/cos(2 pi x / period) of hour (x = hour + minute / 60, period 24), dayofweek (Monday = 0, period 7) and "
            "month (x = month - 1 + (day - 1) / 31, period 12)",
            "categories": artifacts["categories"],
            "calendar_features": data.calendar_features,
            "last_context": artifacts["last_context"],  # scaled: input for a forecast after the training data's end
            "last_index": artifacts["last_index"],
            "interval_level": self.interval_level,
            "scaler": {
                "kind": scaler["kind"],
                "shift": scaler["shift"],
                "scale": scaler["scale"],
                "how": "input: (value - shift[j]) / scale[j] for column j of columns; "
                "output: value * scale[j] + shift[j] for target j (the first len(targets) columns)",
            },
        }


def date_format(index: pd.DatetimeIndex) -> str:
    has_time = (index.hour != 0).any() or (index.minute != 0).any()
    return "%Y-%m-%d %H:%M:%S" if has_time else "%Y-%m-%d"


# ---- metrics and baselines (pure numpy) ---------------------------------------------------------
