"""Many series in one long CSV, one global network across them (DeepAR's setting).

`data.series_column` turns a forecast config into this variant of the kind (`ForecastTask`
builds it): the same network, losses, intervals and config keys, with the data laid out series
after series (`panel_data.Layout`):

- every series is scaled by its own training rows (`data.scaler`, per series), so series of
  every scale share one network; static columns are scaled across series;
- a series shorter than the context is padded in front and an observed-indicator column (0 on
  padding, 1 on data) tells the network which rows are real, as DeepAR does; nothing is dropped;
- each epoch draws at most `data.windows_per_series` training windows from every series (default:
  as many as the median series has), fresh each epoch, so long series do not drown out short ones;
- the held-out parts are the last rows of every series (`data.val_rows`, `data.test_rows`), the
  origins aligned to their end, and each metric is computed per series and then averaged over
  series (the Monash archive's protocol), beside naive, seasonal naive and linear per series, and
  statsforecast's AutoETS and AutoTheta in `seqtool evaluate` when `seqtool[stats]` is installed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch

from seqtool.checkpoint import atomic_write_text
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.schema import Config
from seqtool.tasks import ServeSpec
from seqtool.tasks.forecast import ForecastTask, conformal, date_format, series, statistical
from seqtool.tasks.forecast.metrics import (
    history_scales,
    linear_per_series,
    mean_over_series,
    per_series_metrics,
    seasonal_naive_in_series,
)
from seqtool.tasks.forecast.network import ForecastNetwork
from seqtool.tasks.forecast.panel_data import Layout, Panel, per_series_scaler, read_panel

SHOWN = 5  # series named in a warning, at most


@dataclass
class Arranged:
    """A panel in the network's layout: `inputs` scaled (float32) with the static and observed
    columns, `raw` the targets in original units, each series' target shift and scale, and its
    `unit`: the mean absolute step of its training rows, which conformal scores are divided by
    (so a smooth series gets a narrow interval and a jumpy one a wide one)."""

    panel: Panel
    layout: Layout
    inputs: np.ndarray
    raw: np.ndarray
    shift: np.ndarray  # (series, scaled columns): targets, features, future features
    scale: np.ndarray
    unit: np.ndarray


class PanelForecastTask(ForecastTask):
    """The forecast kind on many series (see the module's docstring)."""

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        super().__init__(config, artifacts, cluster)
        self.arranged: Arranged | None = None
        self.window_counts = np.empty(0, dtype=np.int64)
        self.per_series: pd.DataFrame | None = None  # the last evaluation's metrics per series

    # ---- data ----------------------------------------------------------------------------------

    def _read(self, path: str | None, future: bool = False) -> Panel:
        try:
            return read_panel(path or self.data.path, self.data, self.artifacts_, future)
        except SeqtoolError as exc:
            hint = "" if path else " (the run's data; pass --data FILE to use another file)"
            raise SeqtoolError(f"{exc}{hint}" if self.artifacts_ else str(exc)) from None

    def _arrange(self, panel: Panel) -> Arranged:
        """Scale every series by its own training rows and lay the series out for the network."""
        data, k = self.data, self.n_targets
        layout = Layout.build(panel.lengths, data.context_length, data)
        scaled = k + len(data.features) + len(data.future_features)
        shift, scale = per_series_scaler(panel.values, layout, data.scaler, scaled)
        owner = panel.series_of_rows()
        values = panel.values.copy()
        values[:, :scaled] = (values[:, :scaled] - shift[owner]) / scale[owner]
        columns = [values, self._scaled_static(panel)[owner]]
        if self.series_count:  # each row's series id (0: a series the training file did not have)
            known = {name: i + 1 for i, name in enumerate(self.artifacts_["series_names"])}
            columns.append(np.array([known.get(name, 0) for name in panel.names], dtype=np.float64)[owner][:, None])
        columns.append(np.ones((len(values), 1)))  # observed
        inputs = layout.place(np.concatenate(columns, axis=1).astype(np.float32))
        raw = layout.place(panel.values[:, :k])
        steps, _ = history_scales(raw, layout.offsets + np.maximum(layout.train, 0), layout.offsets, 1)
        unit = np.where(np.isfinite(steps), steps, scale[:, :k])
        return Arranged(panel, layout, inputs, raw, shift, scale, unit)

    def _scaled_static(self, panel: Panel) -> np.ndarray:
        """Static columns standardised across the training file's series."""
        return (panel.static - np.asarray(self.artifacts_["static_shift"])) / np.asarray(self.artifacts_["static_scale"])

    def load_training_data(self) -> None:
        data = self.data
        panel = self._read(None)
        self.repairs = dict(panel.repairs)
        if not self.artifacts_:
            spread = panel.static.std(axis=0)
            columns = panel.columns + panel.static_columns + (["series_id"] if self.config.model.series_embedding else [])
            columns += ["observed"]
            self.artifacts_ = {
                "columns": columns,
                "categories": panel.categories,
                "frequency": panel.frequency,
                "seasonality": data.seasonality
                or (series.seasonality_from_frequency(panel.frequency) if panel.frequency else None),
                "static_shift": panel.static.mean(axis=0).tolist(),
                "static_scale": np.where(spread > 1e-12, spread, 1.0).tolist(),
                "date_name": (data.date_column[0] if len(data.date_column) == 1 else "date") if data.date_column else None,
                "series_column": data.series_column,
                "series_names": panel.names if self.config.model.series_embedding else [],
            }
        self.arranged = arranged = self._arrange(panel)
        self._refuse_hopeless(panel, arranged.layout)
        self.train_inputs = arranged.inputs
        self.train_origins, self.window_counts = arranged.layout.train_origins(data.horizon)
        if not len(self.train_origins):
            raise SeqtoolError(
                f"{panel.source}: no series has data.horizon = {data.horizon} training rows after its first row; "
                "lower the horizon or data.val_rows / data.test_rows"
            )
        self.repairs["series"] = len(panel.names)

    def _refuse_hopeless(self, panel: Panel, layout: Layout) -> None:
        """A series with no row before its held-out parts cannot be forecast at all: an error when
        that is every series, else one warning naming them (they stay out of every metric)."""
        hopeless = np.flatnonzero(layout.train < 1)
        if not len(hopeless):
            return
        held = "data.val_rows + data.test_rows" if self.data.val_rows or self.data.test_rows else "the held-out rows"
        names = ", ".join(f"'{panel.names[i]}'" for i in hopeless[:SHOWN]) + (" ..." if len(hopeless) > SHOWN else "")
        message = f"{panel.source}: {len(hopeless)} series have no rows before {held}, too little history to forecast: {names}"
        if len(hopeless) == len(panel.names):
            raise SeqtoolError(message)
        print(f"Warning: {message}; they are left out of training and evaluation", file=sys.stderr)
        self.repairs["series_too_short"] = len(hopeless)

    # ---- training --------------------------------------------------------------------------------

    @property
    def series_count(self) -> int:
        """Series of the training file, embedded with `model.series_embedding` (0 without one)."""
        return len(self.artifacts_.get("series_names", [])) if self.config.model.series_embedding else 0

    @property
    def windows_per_series(self) -> int:
        """The per-series cap on windows drawn each epoch (the rule in the module's docstring)."""
        counts = self.window_counts[self.window_counts > 0]
        return self.data.windows_per_series or max(1, int(np.median(counts)))

    def sample_count(self) -> int:
        return int(np.minimum(self.window_counts, self.windows_per_series).sum())

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Indices into the training windows: every series' windows when it has at most the cap,
        else the cap drawn without replacement; shuffled. Depends on seed and epoch only."""
        rng = np.random.default_rng(self.config.seed * 100_003 + epoch)
        cap, counts = self.windows_per_series, self.window_counts
        firsts = np.cumsum(counts) - counts
        keep = [np.arange(f, f + c) for f, c in zip(firsts, counts, strict=True) if 0 < c <= cap]
        keep += [f + rng.choice(c, cap, replace=False) for f, c in zip(firsts, counts, strict=True) if c > cap]
        chosen = np.concatenate(keep) if keep else np.empty(0, dtype=np.int64)
        return chosen[rng.permutation(len(chosen))]

    # ---- evaluation --------------------------------------------------------------------------

    def _units(self, arranged: Arranged, series_of: Any = None) -> Any:
        """Scaled network outputs -> original units, by the series of each origin
        (`series_of(origins)`; by default, where the origins sit in the layout)."""
        series_of = series_of or arranged.layout.series_of

        def to_units(values: np.ndarray, origins: np.ndarray) -> np.ndarray:
            owner, k = series_of(origins), values.shape[2]
            return values * arranged.scale[owner, None, :k] + arranged.shift[owner, None, :k]

        return to_units

    def _eval_setup(self, split: str, data_path: str | None) -> dict[str, Any]:
        key = f"{split}:{data_path}:{self.reporting}"
        if key in self._eval_cache:
            return self._eval_cache[key]
        arranged = self.arranged if data_path is None and self.arranged else self._arrange(self._read(data_path))
        layout, data, raw = arranged.layout, self.data, arranged.raw
        if split == "test" and not layout.test.any():
            raise SeqtoolError("no test split in this run's data (set data.test_rows or data.test_fraction)")
        origins = layout.split_origins(split, data.horizon, data.backtest_stride)
        if not len(origins):
            raise SeqtoolError(
                f"{arranged.panel.source}: no series has a {split} part of data.horizon = {data.horizon} rows after a row "
                f"of history; raise data.{split}_rows or lower the horizon"
            )
        owner = layout.series_of(origins)
        m = self.artifacts_["seasonality"] or 1
        history_end = layout.offsets + layout.train + (layout.val if split == "test" else 0)
        scale, z = history_scales(raw, history_end, layout.offsets, m)
        baselines = {
            "naive": np.repeat(raw[origins - 1][:, None, :], data.horizon, axis=1),
            "seasonal_naive": seasonal_naive_in_series(raw, origins, layout.offsets[owner], data.horizon, m),
            "linear": linear_per_series(raw, layout.offsets, layout.train, origins, owner, data.context_length, data.horizon),
        }
        peers_note = None
        if self.reporting and self.n_targets == 1:
            if statistical.available():
                peers = statistical.peer_forecasts(
                    raw[:, 0], layout.offsets, origins, owner, data.horizon, data.backtest_stride, m
                )
                baselines |= {name: forecast[..., None] for name, forecast in peers.items()}
            else:
                peers_note = statistical.INSTALL_HINT
        evaluated = np.unique(owner)
        setup = {
            "arranged": arranged,
            "origins": origins,
            "owner": owner,
            "actual": series.gather_windows(raw, origins, 0, data.horizon),
            "scale": scale,
            "z": z,
            "baselines": baselines,
            "short": int((history_end - layout.offsets < data.context_length)[evaluated].sum()),
            "peers_note": peers_note,
        }
        self._eval_cache[key] = setup
        return setup

    def evaluate(
        self, model: ForecastNetwork, split: str, device: torch.device, data_path: str | None = None
    ) -> dict[str, float]:
        setup = self._eval_setup(split, data_path)
        arranged, origins, owner = setup["arranged"], setup["origins"], setup["owner"]
        count, actual = len(arranged.layout.lengths), setup["actual"]
        to_units = self._units(arranged)
        predicted = self.forecast(model, arranged.inputs, origins, device, to_units)
        unit = arranged.unit[owner][:, None, :]
        if self.config.training.intervals == "conformal" and split == "val":
            self.artifacts_["conformal"] = conformal.calibrate(actual, predicted["point"], unit, self.interval_level)
        predicted = self._conformal(predicted, unit)
        per_series = per_series_metrics(actual, predicted["point"], owner, count, setup["scale"], setup["z"])
        metrics = {"loss": self._mean_loss(model, arranged.inputs, origins, device)}
        metrics |= mean_over_series(per_series)
        metrics |= {"series": len(np.unique(owner)), "series_shorter_than_context": setup["short"]}
        if "lower" in predicted:
            metrics |= self._interval_metrics(actual, predicted, owner, count)
        for name, forecast in setup["baselines"].items():
            scores = per_series_metrics(actual, forecast, owner, count, setup["scale"], setup["z"])
            metrics |= {f"{name}_{metric}": value for metric, value in mean_over_series(scores).items()}
            per_series |= {f"{name}_{metric}": value for metric, value in scores.items()}
        self.baselines = tuple(setup["baselines"])
        names = arranged.panel.names
        self.per_series = pd.DataFrame({"series": names} | per_series).iloc[np.unique(owner)].reset_index(drop=True)
        self.notes = [setup["peers_note"]] if setup["peers_note"] else []
        self._write_per_series()
        return metrics

    def _interval_metrics(
        self, actual: np.ndarray, predicted: dict[str, np.ndarray], owner: np.ndarray, count: int
    ) -> dict[str, float]:
        """Coverage of the interval over every window, step and target, and its mean width per
        series (original units) averaged over series."""
        level = round(100 * self.interval_level)
        inside = (actual >= predicted["lower"]) & (actual <= predicted["upper"])
        width = (predicted["upper"] - predicted["lower"]).reshape(len(owner), -1).mean(axis=1)
        per_series = np.bincount(owner, width, minlength=count) / np.maximum(np.bincount(owner, minlength=count), 1)
        return {f"coverage_{level}": float(inside.mean()), f"width_{level}": float(per_series[np.unique(owner)].mean())}

    def _write_per_series(self) -> None:
        """`evaluate --per-series CSV`: every evaluated series' metrics, the baselines' beside."""
        path = self.evaluation_options.get("per_series")
        if path is not None and self.per_series is not None:
            atomic_write_text(path, self.per_series.to_csv(index=False, float_format="%.6g"))
            print(f"Metrics of {len(self.per_series)} series written to {path}", file=sys.stderr)

    # ---- prediction and plots ------------------------------------------------------------------

    def _chosen(self, panel: Panel, option: str | None) -> np.ndarray:
        """The series named in `--series A,B` (every series when None), as indices."""
        if option is None:
            return np.arange(len(panel.names))
        position = {name: i for i, name in enumerate(panel.names)}
        wanted = [name.strip() for name in option.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in position]
        if unknown or not wanted:
            shown = ", ".join(panel.names[:SHOWN]) + (" ..." if len(panel.names) > SHOWN else "")
            raise SeqtoolError(f"--series: {unknown[0] if unknown else option!r} is not a series of {panel.source} ({shown})")
        return np.array([position[name] for name in wanted])

    def _dates_after(self, panel: Panel, i: int, steps: int) -> np.ndarray:
        """The `steps` dates (or step numbers) after series i's last row."""
        if self.artifacts_["frequency"] and panel.dates is not None:
            future = series.continue_dates(panel.dates[panel.starts[i + 1] - 1], self.artifacts_["frequency"], steps)
            return future.to_numpy()
        return np.arange(panel.lengths[i] + 1, panel.lengths[i] + steps + 1)

    def predict_future(
        self, model: ForecastNetwork, data_path: str | None, horizon: int | None, names: str | None = None
    ) -> pd.DataFrame:
        """A long table of forecasts after every series' last row (or the named ones'): series,
        date (or step), forecast and interval columns, and target when there are several."""
        horizon = self._horizon(horizon)
        arranged = self._arrange(self._read(data_path, future=True))
        panel = arranged.panel
        chosen = self._chosen(panel, names)
        inputs, origins, to_units = self._final_windows(arranged, chosen)
        predicted = self.forecast(model, inputs, origins, torch.device("cpu"), to_units)
        predicted = self._conformal(predicted, arranged.unit[chosen][:, None, :])
        when = "date" if self.artifacts_["frequency"] and panel.dates is not None else "step"
        tables = []
        for j, target in enumerate(self.data.target):
            table = {"series": np.repeat(np.array(panel.names, dtype=object)[chosen], horizon)}
            table[when] = np.concatenate([self._dates_after(panel, i, horizon) for i in chosen])
            table |= {"target": target} if self.n_targets > 1 else {}
            for name, column in (("point", "forecast"), ("lower", "lower"), ("upper", "upper")):
                if name in predicted:
                    table[column] = predicted[name][:, :horizon, j].reshape(-1)
            tables.append(pd.DataFrame(table))
        result = pd.concat(tables, ignore_index=True)
        if when == "date":
            result["date"] = pd.DatetimeIndex(result["date"]).strftime(date_format(pd.DatetimeIndex(result["date"])))
        return result

    def _final_windows(self, arranged: Arranged, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        """Each chosen series' last context rows, then the horizon rows after its end (its future
        covariates, scaled by its own scaler; zeros elsewhere), one window after another; the
        windows' origins, and the map of their outputs to each series' units."""
        layout, context, horizon = arranged.layout, self.data.context_length, self.data.horizon
        ends = layout.offsets[chosen] + layout.lengths[chosen]
        window = context + horizon
        inputs = np.zeros((len(chosen) * window, arranged.inputs.shape[1]), dtype=np.float32)
        for n, end in enumerate(ends):
            inputs[n * window : n * window + context] = arranged.inputs[end - context : end]
        future = self.future_columns
        if future:
            values = arranged.panel.future[chosen]  # (series, horizon, features)
            index = list(future)
            scaled = (values - arranged.shift[chosen][:, None, index]) / arranged.scale[chosen][:, None, index]
            for n in range(len(chosen)):
                inputs[n * window + context : (n + 1) * window, index] = scaled[n]
        origins = np.arange(len(chosen)) * window + context
        return inputs, origins, self._units(arranged, lambda at: chosen[at // window])

    def predict(self, model: ForecastNetwork, options: dict[str, Any], out: TextIO) -> None:
        data = str(options["data"]) if options["data"] else None
        table = self.predict_future(model, data, options["horizon"], options.get("series"))
        text = table.to_csv(index=False, float_format="%.6g")
        if options["output"]:
            atomic_write_text(options["output"], text)
            print(f"Forecasts of {table['series'].nunique()} series written to {options['output']}", file=sys.stderr)
        else:
            out.write(text)
        if options["plot"]:
            self._predict_plot(options["plot"], data, table)
            print(f"Forecast plot written to {options['plot']}", file=sys.stderr)

    def _predict_plot(self, path: Path, data_path: str | None, table: pd.DataFrame) -> None:
        """The first six forecast series (or the named ones), each after its recent history."""
        from seqtool.tasks.forecast.plots import series_grid_plot

        panel = self._read(data_path)
        position = {name: i for i, name in enumerate(panel.names)}
        target = self.data.target[0]
        shown, items = table["series"].drop_duplicates().tolist()[:6], []
        for name in shown:
            i = position[name]
            rows = np.arange(max(panel.starts[i], panel.starts[i + 1] - 4 * self.data.horizon), panel.starts[i + 1])
            x = panel.dates[rows] if panel.dates is not None and "date" in table else rows - panel.starts[i] + 1
            part = table[(table["series"] == name) & ((table["target"] == target) if "target" in table else True)]
            future = pd.to_datetime(part["date"]) if "date" in table else part["step"]
            item = {"name": name, "history": (x, panel.values[rows, 0]), "forecast": (future, part["forecast"])}
            item |= {"lower": part["lower"], "upper": part["upper"]} if "lower" in part else {}
            items.append(item)
        series_grid_plot(path, items, self.interval_level, f"{target}: forecasts after the data's end")

    def evaluation_plot(self, model: ForecastNetwork, split: str, data_path: str | None, path: Path) -> None:
        """The worst, median and best series by MASE on the split (or those named in --series):
        history, the actual values and the forecast from the part's last origin."""
        from seqtool.tasks.forecast.plots import series_grid_plot

        setup = self._eval_setup(split, data_path)
        arranged, origins, owner = setup["arranged"], setup["origins"], setup["owner"]
        panel, layout = arranged.panel, arranged.layout
        if self.evaluation_options.get("series"):
            chosen, captions = self._chosen(panel, self.evaluation_options["series"]), {}
        else:
            chosen, captions = self._by_mase(model, split, data_path)
        last = np.array([origins[owner == i].max() if (owner == i).any() else -1 for i in chosen])
        predicted = self.forecast(model, arranged.inputs, last[last >= 0], torch.device("cpu"), self._units(arranged))
        predicted = self._conformal(predicted, arranged.unit[chosen[last >= 0]][:, None, :])
        horizon, items = self.data.horizon, []
        for n, (i, origin) in enumerate(zip(chosen[last >= 0], last[last >= 0], strict=True)):
            rows = np.arange(max(layout.offsets[i], origin - 4 * horizon), origin + horizon)
            dates = panel.dates[rows - layout.pad * (i + 1)] if panel.dates is not None else rows - layout.offsets[i] + 1
            past, future = dates[: origin - rows[0]], dates[origin - rows[0] :]
            item = {"name": panel.names[i], "caption": captions.get(i), "history": (past, arranged.raw[rows[0] : origin, 0])}
            item |= {
                "actual": (future, arranged.raw[origin : origin + horizon, 0]),
                "forecast": (future, predicted["point"][n, :, 0]),
            }
            item |= {"lower": predicted["lower"][n, :, 0], "upper": predicted["upper"][n, :, 0]} if "lower" in predicted else {}
            items.append(item)
        series_grid_plot(path, items, self.interval_level, f"{self.data.target[0]}: the {split} part's last window")

    def _by_mase(self, model: ForecastNetwork, split: str, data_path: str | None) -> tuple[np.ndarray, dict[int, str]]:
        """The worst, median and best series by MASE, and their captions."""
        if self.per_series is None:
            self.evaluate(model, split, torch.device("cpu"), data_path)
        scores = self.per_series.dropna(subset=["mase"]).sort_values("mase")
        position = {name: i for i, name in enumerate(self._eval_setup(split, data_path)["arranged"].panel.names)}
        picks = {"best": 0, "median": len(scores) // 2, "worst": len(scores) - 1}
        chosen, captions = [], {}
        for label, row in picks.items():
            i = position[scores["series"].iloc[row]]
            if i not in captions:
                chosen.append(i)
                captions[i] = f"{label}, MASE {scores['mase'].iloc[row]:.2f}"
        return np.array(chosen), captions

    def predict_api(self, model: ForecastNetwork, data: Any, options: dict[str, Any]) -> pd.DataFrame:
        """`predict(data=CSV or None, horizon=..., series="A,B")`: the long forecast table."""
        unknown = sorted(set(options) - {"horizon", "series"})
        if unknown:
            raise SeqtoolError(
                f"predict() options {unknown} do not apply to a forecast model (it takes data, horizon and series)"
            )
        return self.predict_future(model, str(data) if data else None, options.get("horizon"), options.get("series"))

    def serve_spec(self) -> ServeSpec:
        raise SeqtoolError(
            "seqtool serve does not serve many-series models yet: use seqtool predict, which writes every series' forecast"
        )

    def export_signature(self, model: ForecastNetwork, generator: torch.Generator) -> Any:
        raise SeqtoolError("seqtool export does not export many-series models yet (the per-series scaling is not in the graph)")
