"""`seqtool init FILE`: look at a data file and write a commented starter config next to it.

Each task kind says what it looks for (`Task.starter`); the kind whose guess fits the file best
wins, and every guess is said out loud. `--task` asks one kind only.
"""

from __future__ import annotations

from pathlib import Path

from seqtool.checkpoint import atomic_write_text
from seqtool.data import csvfile
from seqtool.errors import SeqtoolError
from seqtool.tasks import Starter, Unsuitable, names, task_class


def guess(path: Path, task: str | None) -> Starter:
    """The starter config of the kind that fits the file best (or of `task`)."""
    frame = csvfile.read_csv(path) if path.suffix.lower() in (".csv", ".tsv") else None
    if task is not None:
        return task_class(task).starter(path, frame)  # Unsuitable: its reason is the error
    proposals, reasons = [], []
    for name in names():
        try:
            proposals.append(task_class(name).starter(path, frame))
        except Unsuitable as exc:
            reasons.append(f"{name}: {exc}")
    if not proposals:
        raise SeqtoolError(f"no task kind recognises {path} ({'; '.join(reasons)}); use --task to choose one")
    return max(proposals, key=lambda starter: starter.fit)


def write_starter_config(path: str | Path, task: str | None = None) -> tuple[Path, list[str]]:
    """Write `<file>.yaml` next to the data file (never over an existing one)."""
    path = Path(path)
    if task is not None and task not in names():
        raise SeqtoolError(f"--task must be one of {', '.join(names())}, got {task!r}")
    if not path.is_file():
        raise SeqtoolError(f"data file not found: {path}")
    target = path.with_suffix(".yaml")
    if target.exists():
        raise SeqtoolError(f"{target} already exists; seqtool init never overwrites a config")
    starter = guess(path, task)
    atomic_write_text(target, starter.text)
    return target, starter.reasons
