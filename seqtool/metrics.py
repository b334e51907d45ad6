"""The run directory's record: `metrics.jsonl` (one event per line) and the end-of-run summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from seqtool.checkpoint import atomic_write_text

METRICS_FILE = "metrics.jsonl"
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
    """Append-only JSON-lines log; each line has at least step, epoch, split, loss, lr, elapsed_s."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE

    def write(self, event: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: _clean(v) for k, v in event.items()}) + "\n")

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


def write_summary(run_dir: Path, summary: dict[str, Any]) -> str:
    """Write summary.json and a short human-readable summary.txt; return the text."""
    atomic_write_text(Path(run_dir) / SUMMARY_JSON, json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2) + "\n")
    width = max(len(k) for k in summary)
    lines = []
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.0f}"
        lines.append(f"{key.replace('_', ' '):<{width}}  {value}")
    text = "\n".join(lines) + "\n"
    atomic_write_text(Path(run_dir) / SUMMARY_TEXT, text)
    return text
