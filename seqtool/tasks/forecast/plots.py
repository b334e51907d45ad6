"""The forecast kind's figures: a forecast beyond the data, and the backtest on a held-out part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from seqtool.plots import save_png, subplots


def forecast_plot(
    path: str | Path, history: pd.DataFrame | None, forecast: pd.DataFrame, targets: list[str], level: float | None
) -> None:
    """History (its recent part), the forecast and its interval, one panel per target."""
    figure, axes = subplots(len(targets), 1, figsize=(10, 3.2 * len(targets)), squeeze=False)
    if forecast.columns[0] == "step":  # no dates: steps after the last history row
        x_future = forecast["step"] + (history.index[-1] if history is not None else 0)
    else:
        x_future = pd.to_datetime(forecast.iloc[:, 0])
    for axis, name in zip(axes[:, 0], targets, strict=True):
        if history is not None:
            recent = history[name].iloc[-max(4 * len(forecast), 48) :]
            axis.plot(recent.index, recent.to_numpy(), color="black", linewidth=1.2, label="history")
        axis.plot(x_future, forecast[name], color="tab:blue", linewidth=1.8, marker=".", label="forecast")
        if f"{name}_lower" in forecast:
            axis.fill_between(
                x_future,
                forecast[f"{name}_lower"],
                forecast[f"{name}_upper"],
                color="tab:blue",
                alpha=0.2,
                label=f"{round(100 * level)}% interval",
            )
        axis.set_title(name)
        axis.legend(loc="upper left")
        axis.grid(alpha=0.3)
    figure.autofmt_xdate()
    save_png(figure, path)


def backtest_plot(path: str | Path, backtest: dict[str, Any], level: float | None, split: str) -> None:
    """Actual values around the held-out part and the forecasts made from origins across it."""
    prepared, origins, predicted, targets = backtest["prepared"], backtest["origins"], backtest["predicted"], backtest["targets"]
    horizon = predicted["point"].shape[1]
    index = prepared.index
    start = max(0, int(origins[0]) - 3 * horizon)
    stop = min(len(index), int(origins[-1]) + horizon)
    figure, axes = subplots(len(targets), 1, figsize=(11, 3.2 * len(targets)), squeeze=False)
    for j, (axis, name) in enumerate(zip(axes[:, 0], targets, strict=True)):
        axis.plot(index[start:stop], prepared.levels[start:stop, j], color="black", linewidth=1.2, label="actual")
        for n, origin in enumerate(origins):
            steps = index[origin : origin + horizon]
            axis.plot(
                steps,
                predicted["point"][n, : len(steps), j],
                color="tab:orange",
                linewidth=1.6,
                label="forecast" if n == 0 else None,
            )
            if "lower" in predicted:
                axis.fill_between(
                    steps,
                    predicted["lower"][n, : len(steps), j],
                    predicted["upper"][n, : len(steps), j],
                    color="tab:orange",
                    alpha=0.2,
                    label=f"{round(100 * level)}% interval" if n == 0 else None,
                )
        axis.axvline(index[int(origins[0])], color="grey", linestyle="--", linewidth=1)
        axis.set_title(f"{name}: backtest on the {split} part (forecasts of {horizon} steps from successive origins)")
        axis.legend(loc="upper left")
        axis.grid(alpha=0.3)
    figure.autofmt_xdate()
    save_png(figure, path)


def series_grid_plot(path: str | Path, panels: list[dict[str, Any]], level: float | None, title: str) -> None:
    """A grid of series, one panel each: its recent history, the actual values after the origin
    (when known) and the forecast with its interval. Each dict holds `name`, `history` and
    `forecast` as (x, values) pairs, optionally `actual`, `lower`, `upper` and `caption`."""
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = subplots(rows, columns, figsize=(5.2 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, item in zip(axes.flat, panels, strict=False):
        axis.plot(*item["history"], color="black", linewidth=1.2, label="history")
        if "actual" in item:
            axis.plot(*item["actual"], color="black", linewidth=1.2, linestyle="--", marker=".", label="actual")
        x, point = item["forecast"]
        axis.plot(x, point, color="tab:orange", linewidth=1.8, marker=".", label="forecast")
        if "lower" in item:
            axis.fill_between(
                x, item["lower"], item["upper"], color="tab:orange", alpha=0.2, label=f"{round(100 * level)}% interval"
            )
        axis.set_title(f"{item['name']}{' (' + item['caption'] + ')' if item.get('caption') else ''}", fontsize=9)
        axis.grid(alpha=0.3)
        axis.tick_params(labelsize=7)
    axes.flat[0].legend(loc="upper left", fontsize=7)
    figure.suptitle(title)
    figure.autofmt_xdate()
    save_png(figure, path)
