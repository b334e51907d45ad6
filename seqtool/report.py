"""What the CLI shows: its rich tables, and how an error or an interruption ends the process.

`main` (in `seqtool.cli`) maps exceptions to exit codes here and nowhere else: a `SeqtoolError`
is one `Error: ...` line and exit 2 (the traceback with `--debug`), an interrupted training run
exits 130 or 143 with the command that continues it."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from seqtool.errors import SeqtoolError, TrainingInterrupted

EXIT_USAGE = 2
debug = {"on": False}  # --debug, anywhere on the line


# ---- ending the process --------------------------------------------------------------------------


def debug_first(args: list[str]) -> list[str]:
    """`--debug` moved to the front, where typer reads it: users type it after the command."""
    return ["--debug"] + [a for a in args if a != "--debug"] if "--debug" in args else args


def user_error(exc: SeqtoolError) -> NoReturn:
    """One `Error:` line on stderr (the traceback first with --debug), exit 2."""
    if debug["on"]:
        traceback.print_exc()
    hint = "" if debug["on"] else " (run with --debug for the traceback)"
    print(f"Error: {exc}{hint}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def interrupted(exc: TrainingInterrupted) -> NoReturn:
    """Training stopped by a signal, its state saved: say how to continue, exit 128 + signal."""
    if not exc.quiet:
        print(f"Interrupted: {exc}; continue with: {exc.resume_command}", file=sys.stderr)
    sys.exit(exc.exit_code)


class PipeSafe(io.TextIOBase):
    """stdout for a long command whose reader may leave (`seqtool train ... | head`): once the
    pipe is closed, output is dropped (the descriptor points at /dev/null, so neither later
    writes nor the interpreter's final flush fail) and the command carries on to its end."""

    def __init__(self, stream: TextIO):
        self.stream, self.gone = stream, False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self._reader_left()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._reader_left()

    def _reader_left(self) -> None:
        self.gone = True
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


def print_table(table: Any) -> None:
    """A table on stdout, whole: in a terminal, at the terminal's width; in a file or a pipe
    (where rich would assume 80 columns and cut or wrap cells), at its natural width."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(80, Console(width=100_000).measure(table).maximum))
    console.print(table)


# ---- tables --------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def split_title(data: Path | None, split: str) -> str:
    """Which data a table scores, and whether that data also chose the checkpoint."""
    if data:
        return str(data)
    if split == "test":
        return "the test split (held out: it did not choose the checkpoint)"
    return "the validation split (it chose the best checkpoint: the figures flatter the model; set a test part to avoid that)"


def metrics_table(metrics: dict[str, float], baselines: tuple[str, ...], title: str) -> Table:
    """The model's metrics beside each baseline's: `mase` next to `naive_mase`, and so on;
    integer metrics are counts, named in the title."""
    counts = {k: v for k, v in metrics.items() if isinstance(v, int)}
    own = [k for k, v in metrics.items() if not isinstance(v, int) and not any(k.startswith(b + "_") for b in baselines)]
    table = Table(title=f"Evaluation on {title}" + "".join(f", {v:,} {k.replace('_', ' ')}" for k, v in counts.items()))
    table.add_column("metric")
    table.add_column("model", justify="right", style="bold")
    for name in baselines:
        table.add_column(name.replace("_", "-"), justify="right")
    for metric in own:
        cells = [metrics.get(metric)] + [metrics.get(f"{b}_{metric}") for b in baselines]
        table.add_row(metric, *("-" if v is None else f"{v:.4f}" for v in cells))
    return table


_STATUS_COLOURS = {"finished": "green", "running": "cyan", "interrupted": "yellow", "diverged": "red", "damaged": "red"}


def runs_table(found: list[Any], folder: Path) -> Table:
    """`seqtool runs`: one row per run, its status coloured."""
    table = Table(title=f"Runs in {folder}", box=box.SIMPLE_HEAD)
    for i, header in enumerate(("run", "task", "model", "steps", "val loss", "at best", "time")):
        table.add_column(header, justify="right" if i >= 3 else "left")
    table.add_column("status", no_wrap=True, min_width=len("interrupted"))  # never cut the answer people look for
    for run in found:
        short = run.main_metric_short or run.main_metric
        table.add_row(
            run.name,
            run.task,
            run.model,
            f"{run.steps:,}",
            f"{run.best_val_loss:.4f}" if run.best_val_loss is not None else "-",
            f"{short} {run.main_value:#.4g}" if run.main_value is not None else "-",
            duration(run.wall_time_s),
            f"[{_STATUS_COLOURS[run.status]}]{run.status}[/]",
        )
    return table


def _spread(row: dict, name: str, digits: str = ".3g") -> str:
    value, sd = row.get(name), row.get(f"{name}_sd")
    if value is None:
        return "-"
    return f"{value:{digits}}" + (f" ± {sd:.2g}" if sd else "")


def compare_table(summary: list[dict], sweep_key: str | None, task: str) -> Table:
    """Without a sweep: one row per model. With one: rows are the swept values, columns the
    models, cells the main metric (mean +- spread over seeds)."""
    if sweep_key is not None:
        return _sweep_table(summary, sweep_key, task)
    table = Table(
        title=f"Comparison ({task}; best checkpoint, as evaluate reports it, and final step; mean ± sd over seeds)",
        box=box.SIMPLE_HEAD,
    )
    short = summary[0].get("main_metric_short") or summary[0]["main_metric"] or "val loss"
    headers = (
        "model",
        "best val loss",
        f"{short} at best",
        "final val loss",
        f"final {short}",
        "params",
        "per s",
        "time",
        "diverged",
    )
    for header in headers:
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in summary:
        table.add_row(
            row["model"],
            _spread(row, "best_val_loss"),
            _spread(row, "main_value"),
            _spread(row, "final_val_loss"),
            _spread(row, "final_main_value"),
            f"{row['parameters']:,}" if row["parameters"] else "-",
            f"{row['throughput']:,.0f}" if row["throughput"] else "-",
            duration(row["wall_time_s"]),
            f"[red]{row['diverged']}[/]" if row["diverged"] else "0",
        )
    return table


def _sweep_table(summary: list[dict], sweep_key: str, task: str) -> Table:
    metric = summary[0]["main_metric"] or "val loss"
    table = Table(
        title=f"{metric} by {sweep_key} ({task}; best checkpoint, as evaluate reports it; mean ± sd over seeds)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column(sweep_key)
    models = list(dict.fromkeys(row["model"] for row in summary))
    for model in models:
        table.add_column(model, justify="right")
    for value in dict.fromkeys(str(row["sweep_value"]) for row in summary):
        cells = []
        for model in models:
            row = next(r for r in summary if str(r["sweep_value"]) == value and r["model"] == model)
            cells.append(_spread(row, "main_value") + (" [red]diverged[/]" if row["diverged"] else ""))
        table.add_row(value, *cells)
    return table


def export_tables(result: Any) -> list[Table]:
    """`seqtool export`: each written graph's inputs and outputs."""
    tables = []
    for part, path in result.files.items():
        table = Table(title=f"{path} ({result.task}{', ' + part if part else ''})", box=box.SIMPLE_HEAD, title_justify="left")
        for header in ("", "name", "dtype", "shape", "meaning"):
            table.add_column(header)
        inputs, outputs = result.graphs[part]
        for role, specs in (("input", inputs), ("output", outputs)):
            for spec in specs:
                table.add_row(role, spec["name"], spec["dtype"], f"({', '.join(spec['shape'])})", spec["meaning"])
        tables.append(table)
    return tables


def export_summary(result: Any, fmt: str) -> str:
    written = " and ".join(f"{path} ({path.stat().st_size / 1e6:.2f} MB)" for path in result.files.values())
    return (
        f"Checked with {'onnxruntime' if fmt == 'onnx' else 'torch.jit.load'}: max abs difference from PyTorch "
        f"{result.max_abs_diff:.2g} (limit {result.tolerance:g})"
        + (", and greedy decoding through the parts equals seqtool's" if len(result.files) > 1 else "")
        + f".\nWrote {written}, and {result.metadata_path}"
        + (f"\nNote: {result.note}" if result.note else "")
    )


def cells_table(cells: list[dict[str, Any]]) -> Table:
    """`seqtool cells`: every installed cell, what it supports, and a plug-in's load error."""
    table = Table(title="Recurrent cells (model.type: NAME in a config)", box=box.SIMPLE_HEAD, title_justify="left")
    for header in ("name", "description", "state", "bidirectional", "carried state", "ONNX", "options", "from"):
        table.add_column(header, overflow="fold")
    for cell in cells:
        if cell["error"]:
            table.add_row(cell["name"], f"[red]{cell['error']}[/]", "", "", "", "", "", cell["origin"])
            continue
        yes = {True: "yes", False: "no"}
        table.add_row(
            cell["name"],
            cell["summary"],
            ", ".join(cell["state"]),
            yes[cell["bidirectional"]],
            yes[cell["carried_state"]],
            yes[cell["onnx"]],
            ", ".join(cell["options"]) or "-",
            cell["origin"],
        )
    return table


def tasks_table(kinds: list[dict[str, Any]]) -> Table:
    """`seqtool tasks`: every installed kind, where it comes from, and a plug-in's load error."""
    table = Table(title="Task kinds (task: NAME in a config)", box=box.SIMPLE_HEAD, title_justify="left")
    for header in ("name", "description", "main metric", "--init-from runs of", "from"):
        table.add_column(header, overflow="fold")
    for kind in kinds:
        problem = f"[red]{kind['error']}[/]" if kind["error"] else kind["description"]
        starts = ", ".join(kind["init_from"]) or "-"
        table.add_row(kind["name"], problem, kind["main_metric"] or "-", starts, kind["origin"])
    return table
