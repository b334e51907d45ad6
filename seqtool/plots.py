"""PNG figures. matplotlib is imported only here, and only when a plot is asked for."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from seqtool.checkpoint import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())


def _label(axis, x: str, y: str, title: str, log_y: bool = False, legend_size: int = 8) -> None:
    """The finishing touches every line plot here shares."""
    if log_y:
        axis.set_yscale("log")
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.set_title(title)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=legend_size)


def forecast_plot(
    path: str | Path, history: pd.DataFrame | None, forecast: pd.DataFrame, targets: list[str], level: float | None
) -> None:
    """History (its recent part), the forecast and its interval, one panel per target."""
    plt = _pyplot()
    figure, axes = plt.subplots(len(targets), 1, figsize=(10, 3.2 * len(targets)), squeeze=False)
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
    _save(figure, path)
    plt.close(figure)


def backtest_plot(path: str | Path, backtest: dict[str, Any], level: float | None, split: str) -> None:
    """Actual values around the held-out part and the forecasts made from origins across it."""
    plt = _pyplot()
    prepared, origins, predicted, targets = backtest["prepared"], backtest["origins"], backtest["predicted"], backtest["targets"]
    horizon = predicted["point"].shape[1]
    index = prepared.index
    start = max(0, int(origins[0]) - 3 * horizon)
    stop = min(len(index), int(origins[-1]) + horizon)
    figure, axes = plt.subplots(len(targets), 1, figsize=(11, 3.2 * len(targets)), squeeze=False)
    for j, (axis, name) in enumerate(zip(axes[:, 0], targets, strict=True)):
        axis.plot(index[start:stop], prepared.values[start:stop, j], color="black", linewidth=1.2, label="actual")
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
    _save(figure, path)
    plt.close(figure)


MODEL_COLOURS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}


def compare_plot(
    path: str | Path, results: list[Any], summary: list[dict[str, Any]], curves: dict[str, list[dict]], sweep_key: str | None
) -> None:
    """Validation-loss curves of every variant on one axis (one colour per model, one line per
    seed); with a sweep, a second panel: the main metric against the swept value per model."""
    plt = _pyplot()
    panels = 2 if sweep_key else 1
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    curve_axis = axes[0, 0]
    labelled = set()
    for result in results:
        events = curves.get(result.run_dir, [])
        label = result.model if sweep_key is None else f"{result.model}, {sweep_key}={result.sweep_value}"
        colour = MODEL_COLOURS.get(result.model)
        shade = 1.0
        if sweep_key is not None:  # later sweep values darker
            values = [str(s["sweep_value"]) for s in summary if s["model"] == result.model]
            shade = 0.35 + 0.65 * (values.index(str(result.sweep_value)) + 1) / len(values)
        curve_axis.plot(
            [e["step"] for e in events],
            [e["loss"] for e in events],
            color=colour,
            alpha=shade,
            linewidth=1.4,
            label=None if label in labelled else label,
        )
        labelled.add(label)
    _label(curve_axis, "step", "validation loss", "validation loss", log_y=True, legend_size=7)
    if sweep_key is not None:
        axis = axes[0, 1]
        metric = summary[0]["main_metric"] or "best_val_loss"
        values = list(dict.fromkeys(str(s["sweep_value"]) for s in summary))
        for model in dict.fromkeys(s["model"] for s in summary):
            rows = [s for s in summary if s["model"] == model]
            x = [values.index(str(s["sweep_value"])) for s in rows]
            key = "main_value" if summary[0]["main_metric"] else "best_val_loss"  # the best checkpoint's, as evaluate says
            y = [s[key] if s[key] is not None else float("nan") for s in rows]
            spread = [s[f"{key}_sd"] or 0.0 for s in rows]
            axis.errorbar(x, y, yerr=spread, color=MODEL_COLOURS.get(model), marker="o", capsize=3, label=model)
        if metric == "error_vs_chance":
            axis.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="chance")
        shown = [s["main_value"] for s in summary if s["main_value"] is not None]
        if shown and min(shown) > 0 and max(shown) / min(shown) > 20:  # solved vs chance spans decades
            axis.set_yscale("log")
        axis.set_xticks(range(len(values)), values)
        _label(axis, sweep_key, f"{metric} (best checkpoint)", f"{metric} by {sweep_key}")
    _save(figure, path)
    plt.close(figure)


def curves_plot(path: str | Path, runs: dict[str, tuple[list[dict], str | None]]) -> None:
    """Training and validation loss of each run against the step (log scale), and beside them
    the runs' main validation metric: `runs` maps a run's name to (metrics.jsonl events, metric)."""
    plt = _pyplot()
    metrics = {metric for _, metric in runs.values() if metric}
    panels = 1 + len(metrics)
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    loss_axis = axes[0, 0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (name, (events, metric)) in enumerate(runs.items()):
        colour = colours[n % len(colours)]
        train = [e for e in events if e.get("split") == "train" and "event" not in e]
        val = [e for e in events if e.get("split") == "val"]
        loss_axis.plot([e["step"] for e in train], [e["loss"] for e in train], color=colour, alpha=0.45, linewidth=1)
        loss_axis.plot([e["step"] for e in val], [e["loss"] for e in val], color=colour, marker=".", linewidth=1.8, label=name)
        for axis, shown in zip(axes[0, 1:], sorted(metrics), strict=True):
            if shown == metric:
                points = [e for e in val if e.get(metric) is not None]
                axis.plot([e["step"] for e in points], [e[metric] for e in points], color=colour, marker=".", label=name)
    _label(loss_axis, "step", "loss", "loss (thin: training, thick: validation)", log_y=True)
    for axis, metric in zip(axes[0, 1:], sorted(metrics), strict=True):
        _label(axis, "step", metric, f"validation {metric}")
    _save(figure, path)
    plt.close(figure)


def grad_flow_plot(path: str | Path, runs: dict[str, list[dict]]) -> None:
    """|dL/dh_t| against t (log scale) for each run: its first logged evaluation dashed, its last
    solid. A vanilla RNN's curve falls by orders of magnitude towards early t (vanishing
    gradient); an LSTM's stays flat, which is what lets it learn long-range dependencies."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (name, events) in enumerate(runs.items()):
        colour = colours[n % len(colours)]
        shown = [events[0], events[-1]] if len(events) > 1 else events[-1:]
        for event, style in zip(shown, ("--", "-")[-len(shown) :], strict=True):
            values = event["dl_dh"]
            axis.plot(range(1, len(values) + 1), values, style, color=colour, label=f"{name}, step {event['step']}")
    _label(
        axis,
        "time step t",
        "|dL/dh_t| (mean over the batch)",
        "gradient flow: how much the loss still depends on each step's state",
        log_y=True,
    )
    _save(figure, path)
    plt.close(figure)
