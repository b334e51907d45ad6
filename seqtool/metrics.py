"""The run directory's record: `metrics.jsonl` (one event per line) and the end-of-run summary."""

from __future__ import annotations

import json
import math
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

    def write(self, event: dict[str, Any]) -> None:
        clean = {k: _clean(v) for k, v in event.items()}
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

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        events = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash mid-write
        return events

    def truncate_after(self, step: int) -> None:
        """Drop events logged after `step`: a resumed run logs them again from its checkpoint."""
        kept = [e for e in self.read() if e.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(e) + "\n" for e in kept))
        if self.csv_path is not None:
            atomic_write_text(self.csv_path, "step,epoch,split,metric,value\n" + "".join(_csv_rows(e) for e in kept))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


class NullLog:
    """The metrics log of a process that writes nothing (ranks other than 0 under torchrun)."""

    def write(self, event: dict[str, Any]) -> None:
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
