"""What the user watches while training: a live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingDisplay:
    """Shows step, epoch, train loss, val loss, throughput and ETA.

    On a terminal this is a rich progress bar refreshed in the background; when stdout is a
    file or a pipe it prints one line per log interval, so logs stay readable.
    """

    def __init__(self, console: Console, unit: str):
        self.console = console
        self.unit = unit
        self.live = console.is_terminal
        self.progress: Progress | None = None
        self.bar = None
        self.val_loss: float | None = None

    def start(self, total_steps: int | None, first_step: int) -> None:
        if not self.live:
            return
        self.progress = Progress(
            TextColumn("step {task.completed}/{task.fields[total_text]}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("epoch {task.fields[epoch]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.bar = self.progress.add_task(
            "train",
            total=total_steps,
            completed=first_step,
            total_text=total_steps if total_steps is not None else "?",
            epoch="-",
            loss="-",
            val="-",
            rate="-",
            eta="-",
        )

    def update(self, step: int, epoch: float, loss: float, rate: float, eta_s: float | None, log_line: bool) -> None:
        fields = dict(
            epoch=f"{epoch:.2f}",
            loss=f"{loss:.4f}",
            val=f"{self.val_loss:.4f}" if self.val_loss is not None else "-",
            rate=f"{rate:,.0f} {self.unit}/s",
            eta=format_seconds(eta_s) if eta_s is not None else "-",
        )
        if self.progress is not None:
            self.progress.update(self.bar, completed=step, **fields)
        elif log_line:
            self.console.print(
                f"step {step} | epoch {fields['epoch']} | loss {fields['loss']} | val {fields['val']} | "
                f"{fields['rate']} | ETA {fields['eta']}",
                highlight=False,
            )

    def evaluated(self, step: int, metrics: dict[str, float], improved: bool) -> None:
        self.val_loss = metrics["loss"]
        if self.progress is not None:
            self.progress.update(self.bar, val=f"{self.val_loss:.4f}")
        mark = " (best)" if improved else ""
        self.message(f"step {step} | val loss {metrics['loss']:.4f}{mark}")

    def message(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False)
        else:
            self.console.print(text, highlight=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class Stopwatch:
    """Training time across resumed sessions: time already spent plus this session's."""

    def __init__(self, already: float = 0.0):
        self.already = already
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return self.already + time.perf_counter() - self.started
