"""The run directory's record: `metrics.jsonl` (one `Event` per line) and the end-of-run summary.

`Event` is the one type written there (by the trainer, through `MetricsLog.write`) and read back
by `runs`, `compare`, `plot` and the CLI: nothing else spells its keys.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtool.checkpoint import atomic_write_text
from seqtool.errors import SeqtoolError

METRICS_FILE = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
SUMMARY_TEXT = "summary.txt"
SUMMARY_JSON = "summary.json"
CONFIG_FILE = "config.yaml"
RUN_RECORD = "run.json"


TRAIN, VAL, GRAD_FLOW = "train", "val", "grad_flow"  # an event's split
SKIPPED_BATCH, DIVERGED = "skipped_batch", "diverged"  # a training event's `event`, for a non-finite batch
_FIXED = ("step", "epoch", "split", "loss", "lr", "elapsed_s", "event", "phase")


@dataclass
class Event:
    """One line of metrics.jsonl. `values` holds the rest: a validation event's metrics
    (perplexity, mase, ...), a training event's throughput (`tok_per_s`) and clipped steps, a
    gradient-flow event's `grad_norm` and `dl_dh` (one norm per time step)."""

    step: int
    split: str  # TRAIN, VAL or GRAD_FLOW
    epoch: float = 0.0
    elapsed_s: float | None = None
    loss: float | None = None
    lr: float | None = None
    event: str | None = None  # SKIPPED_BATCH or DIVERGED: a training batch whose loss was not finite
    values: dict[str, Any] = field(default_factory=dict)
    # A run trained before this one (`seqtool.tasks.Phase`, "pretrain-forward"), its steps its own;
    # None for the run's own events, the only ones curves, `runs` and `compare` read.
    phase: str | None = None

    def get(self, name: str) -> Any:
        """The loss or a value by name (a kind's main metric), None when absent."""
        return self.loss if name == "loss" else self.values.get(name)

    @property
    def throughput(self) -> float | None:
        """Units per second of a training event (`tok_per_s`, `samples_per_s`)."""
        return next((v for k, v in self.values.items() if k.endswith("_per_s")), None)

    def to_json(self) -> dict[str, Any]:
        """The flat JSON object of a line (the format every seqtool version wrote)."""
        fixed = {"step": self.step, "epoch": self.epoch, "split": self.split, "loss": self.loss, "lr": self.lr}
        fixed = {k: v for k, v in fixed.items() if v is not None or (k == "loss" and self.split != GRAD_FLOW)}
        event = {"event": self.event} if self.event else {}
        phase = {"phase": self.phase} if self.phase else {}
        return {**phase, **fixed, "elapsed_s": self.elapsed_s, **self.values, **event}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            step=int(data.get("step", 0)),
            split=str(data.get("split", "")),
            epoch=data.get("epoch", 0.0),
            elapsed_s=data.get("elapsed_s"),
            loss=data.get("loss"),
            lr=data.get("lr"),
            event=data.get("event"),
            values={k: v for k, v in data.items() if k not in _FIXED},
            phase=data.get("phase"),
        )


def of_split(events: list[Event], split: str) -> list[Event]:
    """The run's own events of a split (none of an earlier phase's); for TRAIN, the logged
    averages only (not skipped batches)."""
    return [e for e in events if e.split == split and not e.phase and not (split == TRAIN and e.event)]


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity; write them as null rather than produce invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Append-only JSON-lines log; each line has at least step, epoch, split, loss, lr, elapsed_s.

    `sinks` (training.log) may add `csv` (metrics.csv: one row per event and metric, so rows of
    train and validation events share one header) and `tensorboard` (event files under
    tensorboard/). metrics.jsonl is always written: other commands read it.
    """

    def __init__(self, run_dir: Path, sinks: list[str] | None = None, resume_step: int | None = None):
        self.path = Path(run_dir) / METRICS_FILE
        self.csv_path = Path(run_dir) / METRICS_CSV if "csv" in (sinks or []) else None
        self.tensorboard = _tensorboard_writer(Path(run_dir), resume_step) if "tensorboard" in (sinks or []) else None

    def write(self, event: Event) -> None:
        clean = {k: _clean(v) for k, v in event.to_json().items()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(clean) + "\n")
        if self.csv_path is not None:
            new = not self.csv_path.exists()
            with self.csv_path.open("a", encoding="utf-8") as handle:
                handle.write(("step,epoch,split,metric,value\n" if new else "") + _csv_rows(clean))
        if self.tensorboard is not None:
            for key, value in clean.items():
                if key not in ("step", "epoch", "split") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tensorboard.add_scalar(f"{clean['split']}/{key}", value, clean["step"])
            self.tensorboard.flush()

    def read(self) -> list[Event]:
        return [Event.from_json(line) for line in self._lines()]

    def _lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash mid-write
        return lines

    def truncate_after(self, step: int) -> None:
        """Drop events logged after `step`: a resumed run logs them again from its checkpoint
        (an earlier phase's events stay: their steps are their own)."""
        kept = [e for e in self._lines() if e.get("step", 0) <= step or e.get("phase")]
        atomic_write_text(self.path, "".join(json.dumps(e) + "\n" for e in kept))
        if self.csv_path is not None:
            atomic_write_text(self.csv_path, "step,epoch,split,metric,value\n" + "".join(_csv_rows(e) for e in kept))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


class NullLog:
    """The metrics log of a process that writes nothing (ranks other than 0 under torchrun)."""

    def write(self, event: Event) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass

    def close(self) -> None:
        pass


def _csv_rows(event: dict[str, Any]) -> str:
    head = f"{event.get('step')},{event.get('epoch')},{event.get('split')}"
    return "".join(
        f"{head},{key},{'' if value is None else value}\n"
        for key, value in event.items()
        if key not in ("step", "epoch", "split") and not isinstance(value, (str, list))
    )


def require_tensorboard():
    """TensorBoard's writer class, or a clear error saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SeqtoolError(
            "training.log includes tensorboard, but the tensorboard package is not installed: "
            "pip install 'seqtool[tensorboard]' (or remove tensorboard from training.log)"
        ) from None
    return SummaryWriter


def _tensorboard_writer(run_dir: Path, resume_step: int | None):
    SummaryWriter = require_tensorboard()
    # purge_step drops events a killed run logged after the checkpoint this run resumes from
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=None if resume_step is None else resume_step + 1)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> str:
    """Write summary.json and a short human-readable summary.txt; return the text."""
    atomic_write_text(Path(run_dir) / SUMMARY_JSON, json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2) + "\n")
    rows = [_summary_row(key, value) for key, value in summary.items()]
    width = max(len(label) for label, _ in rows)
    text = "".join(f"{label:<{width}}  {value}\n" for label, value in rows)
    atomic_write_text(Path(run_dir) / SUMMARY_TEXT, text)
    return text


def _summary_row(key: str, value: Any) -> tuple[str, str]:
    """A summary entry as a person writes it: "wall time 3:45", "parameters 1,903,554",
    "epochs 7.83", losses to four decimals."""
    if key == "wall_time_s" and isinstance(value, (int, float)):
        minutes, seconds = divmod(round(value), 60)
        hours, minutes = divmod(minutes, 60)
        return "wall time", f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    label = key.replace("_", " ")
    if isinstance(value, dict):  # counts by name: "data  3 missing timestamps filled, ..."
        return label, ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in value.items() if v) or "-"
    if isinstance(value, bool) or value is None:
        return label, "-" if value is None else str(value)
    if isinstance(value, int):
        return label, f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return label, str(value)
        if "loss" in key:
            return label, f"{value:.4f}"
        return label, f"{int(value):,}" if value.is_integer() else f"{value:,.3g}"
    return label, str(value)
