"""What is in a runs folder: one summary per run directory, read from its small text files only
(config.yaml, metrics.jsonl, summary.json and the lock), so listing is fast and needs no torch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from seqtool.checkpoint import BEST, LAST, read_header
from seqtool.lock import is_locked
from seqtool.schema import model_label

if TYPE_CHECKING:
    from seqtool.tasks import MainMetric
from seqtool.metrics import CONFIG_FILE, DIVERGED, METRICS_FILE, RUN_RECORD, SUMMARY_JSON, VAL, Event, MetricsLog, of_split


@dataclass
class RunInfo:
    name: str
    path: str
    task: str
    model: str
    steps: int
    best_val_loss: float | None
    main_metric: str | None  # the kind's main metric, shown beside the validation loss
    main_metric_short: str | None  # its short name for table headers
    main_value: float | None
    wall_time_s: float | None
    parameters: int | None
    status: str  # finished | running | interrupted | diverged | damaged

    def to_dict(self) -> dict:
        return asdict(self)


def list_runs(folder: str | Path) -> list[RunInfo]:
    """Every run directory directly under `folder` (a directory with a config.yaml and metrics)."""
    folder = Path(folder)
    runs = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (path / CONFIG_FILE).is_file():
            runs.append(describe_run(path))
    return runs


def describe_run(path: Path) -> RunInfo:
    try:
        config = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        config = {}
    events = MetricsLog(path).read() if (path / METRICS_FILE).exists() else []
    headers = {name: read_header(path / name) for name in (BEST, LAST) if (path / name).exists()}  # None: no header
    task = str(config.get("task", "?"))
    val = [e for e in of_split(events, VAL) if isinstance(e.loss, (int, float))]
    best = min(val, key=lambda e: e.loss) if val else None
    main = main_metric(path, task)
    metric = main.name if main else None
    summary = _read_json(path / SUMMARY_JSON)
    wall = summary.get("wall_time_s") if summary else (events[-1].elapsed_s if events else None)
    return RunInfo(
        name=path.name,
        path=str(path),
        task=task,
        model=model_label(config.get("model") or {}),
        steps=_steps(headers, events),
        best_val_loss=best.loss if best else None,
        main_metric=metric,
        main_metric_short=main.short if main else None,
        main_value=best.get(metric) if best and metric else None,
        wall_time_s=wall,
        parameters=summary.get("parameters") if summary else None,
        status=_status(path, events, summary, headers),
    )


def main_metric(path: Path, task: str) -> MainMetric | None:
    """The run's main metric, as its run.json records it (see `seqtool.tasks.kind_record`)."""
    from seqtool.tasks import recorded_main_metric

    return recorded_main_metric(_read_json(path / RUN_RECORD), task)


def _steps(headers: dict[str, dict | None], events: list[Event]) -> int:
    """Where the run stands: its last checkpoint's step (where --resume continues), which an
    interrupted run saves after its last logged event; else the last logged step."""
    header = headers.get(LAST)
    if header is not None and header["intact"] and "step" in header:
        return int(header["step"])
    return events[-1].step if events else 0


def _status(path: Path, events: list[Event], summary: dict | None, headers: dict[str, dict | None]) -> str:
    """running, damaged (a checkpoint cut short or without its header: a size check only, no
    torch and no read of the payload; evaluate and --resume verify the checksum), diverged,
    finished or interrupted."""
    if is_locked(path):
        return "running"
    if any(header is None or not header["intact"] for header in headers.values()):
        return "damaged"
    if events and events[-1].event == DIVERGED:
        return "diverged"
    if summary is not None:
        return "finished"
    return "interrupted"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
