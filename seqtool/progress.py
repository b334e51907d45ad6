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


BAR_UNITS = 1000  # the bar shows the share of the budget used, in thousandths
RATE_SMOOTHING = 0.3  # weight of the newest log interval in the displayed throughput


def _figure(value: float | None) -> str:
    """A loss for the display; "-" until there is one (never "nan", which reads as divergence)."""
    return "-" if value is None or value != value else f"{value:.4f}"


class EtaEstimate:
    """Seconds left, from the budget used since the first measurement.

    The first log interval is left out (start-up and first-call costs make it slow, and an ETA
    drawn from it is wild); evaluations count, as they do in the wait. Under `max_time` the
    fraction is the time used, so the estimate is simply the time left.
    """

    def __init__(self) -> None:
        self.origin: tuple[float, float] | None = None
        self.last: float | None = None

    def update(self, elapsed_s: float, fraction: float) -> float | None:
        if self.origin is None:
            self.origin = (elapsed_s, fraction)
            return None
        start_s, start_fraction = self.origin
        if fraction > start_fraction and elapsed_s > start_s:
            self.last = (elapsed_s - start_s) * max(0.0, 1.0 - fraction) / (fraction - start_fraction)
        return self.last


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
        self.rate: float | None = None  # smoothed throughput
        self.eta = EtaEstimate()

    def start(self, total_steps: int | None, first_step: int) -> None:
        if not self.live:
            return
        self.progress = Progress(
            TextColumn("step {task.fields[step]}/{task.fields[total_text]}"),
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
            total=BAR_UNITS,
            completed=0,
            step=first_step,
            total_text=total_steps if total_steps is not None else "?",
            epoch="-",
            loss="-",
            val=_figure(self.val_loss),
            rate="-",
            eta="-",
        )

    def update(
        self, step: int, epoch: float, loss: float | None, rate: float | None, fraction: float, elapsed_s: float, log_line: bool
    ) -> None:
        """`fraction`: the share of the budget used, by whichever budget (steps, epochs or time)
        is nearest its end; `rate` is the last log interval's throughput (None before the first)."""
        if rate is not None and log_line:
            self.rate = rate if self.rate is None else RATE_SMOOTHING * rate + (1 - RATE_SMOOTHING) * self.rate
        eta = self.eta.update(elapsed_s, fraction) if log_line else self.eta.last
        fields = dict(
            step=step,
            epoch=f"{epoch:.2f}",
            loss=_figure(loss),
            val=_figure(self.val_loss),
            rate=f"{self.rate:,.0f} {self.unit}/s" if self.rate is not None else "-",
            eta=format_seconds(eta) if eta is not None else "-",
        )
        if self.progress is not None:
            self.progress.update(self.bar, completed=min(fraction, 1.0) * BAR_UNITS, **fields)
        elif log_line:
            self.console.print(
                f"step {step} | epoch {fields['epoch']} | loss {fields['loss']} | val {fields['val']} | "
                f"{fields['rate']} | ETA {fields['eta']}",
                highlight=False,
            )

    def evaluated(self, step: int, metrics: dict[str, float], improved: bool, main_metric: str | None = None) -> None:
        """One line per evaluation: the validation loss, and the task's main metric beside it."""
        self.val_loss = metrics["loss"]
        if self.progress is not None:
            self.progress.update(self.bar, val=_figure(self.val_loss))
        mark = " (best)" if improved else ""
        value = metrics.get(main_metric) if main_metric else None
        extra = f" | {main_metric} {value:#.4g}" if isinstance(value, (int, float)) else ""
        self.message(f"step {step} | val loss {metrics['loss']:.4f}{extra}{mark}")

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
