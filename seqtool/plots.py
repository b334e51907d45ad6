"""PNG figures. matplotlib is imported only when a plot is asked for, and each figure is drawn
on an Agg canvas of its own: matplotlib's process-wide backend (a notebook's, say) is never set
or read, and no figure is registered with pyplot, so none needs closing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from seqtool.cells import registry as cells
from seqtool.checkpoint import atomic_write_bytes
from seqtool.metrics import TRAIN, VAL, Event, of_split


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8), **options: Any) -> tuple[Any, Any]:
    """A new figure and its axes (as `pyplot.subplots` gives them), on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(nrows, ncols, **options)


def colour_cycle() -> list[str]:
    """The colours matplotlib's style gives lines, in order."""
    from matplotlib import rcParams

    return rcParams["axes.prop_cycle"].by_key()["color"]


def save_png(figure, path: str | Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())


def label_axis(axis, x: str, y: str, title: str, log_y: bool = False, legend_size: int = 8) -> None:
    """The finishing touches every line plot here shares."""
    if log_y:
        axis.set_yscale("log")
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.set_title(title)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=legend_size)


def compare_plot(
    path: str | Path, results: list[Any], summary: list[dict[str, Any]], curves: dict[str, list[Event]], sweep_key: str | None
) -> None:
    """Validation-loss curves of every variant on one axis (one colour per model, one line per
    seed); with a sweep, a second panel: the main metric against the swept value per model."""
    panels = 2 if sweep_key else 1
    figure, axes = subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    curve_axis = axes[0, 0]
    labelled = set()
    for result in results:
        events = curves.get(result.run_dir, [])
        label = result.model if sweep_key is None else f"{result.model}, {sweep_key}={result.sweep_value}"
        colour = cells.colour(result.model)
        shade = 1.0
        if sweep_key is not None:  # later sweep values darker
            values = [str(s["sweep_value"]) for s in summary if s["model"] == result.model]
            shade = 0.35 + 0.65 * (values.index(str(result.sweep_value)) + 1) / len(values)
        curve_axis.plot(
            [e.step for e in events],
            [e.loss for e in events],
            color=colour,
            alpha=shade,
            linewidth=1.4,
            label=None if label in labelled else label,
        )
        labelled.add(label)
    label_axis(curve_axis, "step", "validation loss", "validation loss", log_y=True, legend_size=7)
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
            axis.errorbar(x, y, yerr=spread, color=cells.colour(model), marker="o", capsize=3, label=model)
        if summary[0].get("main_reference") is not None:  # such as chance's error
            reference = summary[0]["main_reference"]
            axis.axhline(reference, color="grey", linestyle="--", linewidth=1, label=summary[0]["main_reference_label"] or None)
        shown = [s["main_value"] for s in summary if s["main_value"] is not None]
        if shown and min(shown) > 0 and max(shown) / min(shown) > 20:  # solved vs chance spans decades
            axis.set_yscale("log")
        axis.set_xticks(range(len(values)), values)
        label_axis(axis, sweep_key, f"{metric} (best checkpoint)", f"{metric} by {sweep_key}")
    save_png(figure, path)


def curves_plot(path: str | Path, runs: dict[str, tuple[list[Event], str | None]]) -> None:
    """Training and validation loss of each run against the step (log scale), and beside them
    the runs' main validation metric: `runs` maps a run's name to (metrics.jsonl events, metric)."""
    metrics = {metric for _, metric in runs.values() if metric}
    panels = 1 + len(metrics)
    figure, axes = subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    loss_axis = axes[0, 0]
    colours = colour_cycle()
    for n, (name, (events, metric)) in enumerate(runs.items()):
        colour = colours[n % len(colours)]
        train, val = of_split(events, TRAIN), of_split(events, VAL)
        loss_axis.plot([e.step for e in train], [e.loss for e in train], color=colour, alpha=0.45, linewidth=1)
        loss_axis.plot([e.step for e in val], [e.loss for e in val], color=colour, marker=".", linewidth=1.8, label=name)
        for axis, shown in zip(axes[0, 1:], sorted(metrics), strict=True):
            if shown == metric:
                points = [e for e in val if e.get(metric) is not None]
                axis.plot([e.step for e in points], [e.get(metric) for e in points], color=colour, marker=".", label=name)
    label_axis(loss_axis, "step", "loss", "loss (thin: training, thick: validation)", log_y=True)
    for axis, metric in zip(axes[0, 1:], sorted(metrics), strict=True):
        label_axis(axis, "step", metric, f"validation {metric}")
    save_png(figure, path)


def grad_flow_plot(path: str | Path, runs: dict[str, list[Event]]) -> None:
    """|dL/dh_t| against t (log scale) for each run: its first logged evaluation dashed, its last
    solid. A vanilla RNN's curve falls by orders of magnitude towards early t (vanishing
    gradient); an LSTM's stays flat, which is what lets it learn long-range dependencies."""
    figure, axis = subplots(figsize=(8, 4.5))
    colours = colour_cycle()
    for n, (name, events) in enumerate(runs.items()):
        colour = colours[n % len(colours)]
        shown = [events[0], events[-1]] if len(events) > 1 else events[-1:]
        for event, style in zip(shown, ("--", "-")[-len(shown) :], strict=True):
            values = event.get("dl_dh")
            axis.plot(range(1, len(values) + 1), values, style, color=colour, label=f"{name}, step {event.step}")
    label_axis(
        axis,
        "time step t",
        "|dL/dh_t| (mean over the batch)",
        "gradient flow: how much the loss still depends on each step's state",
        log_y=True,
    )
    save_png(figure, path)
