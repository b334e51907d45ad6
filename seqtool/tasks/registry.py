"""The registry: task kinds found through the entry-point group `seqtool.tasks`.

seqtool's own kinds are declared in its pyproject.toml exactly as a third-party package declares
its own, so nothing built-in is special. Reading the registry imports no kind and no torch; a
kind's module is imported when it is first used.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from seqtool.errors import SeqtoolError
from seqtool.tasks.protocol import MainMetric, Task

if TYPE_CHECKING:
    from seqtool.distributed import Cluster
    from seqtool.schema import Config

ENTRY_POINT_GROUP = "seqtool.tasks"
DEFAULT_KIND = "language_model"  # the kind of a config without a `task` key (seqtool began as char-rnn)


@dataclass(frozen=True)
class KindEntry:
    """A kind as declared, before its module is imported."""

    name: str
    target: str  # "module:Class"
    origin: str  # the distribution that declares it, with its version
    entry_point: metadata.EntryPoint


@functools.cache
def entries() -> dict[str, KindEntry]:
    """Every declared kind, by name, without importing any of them."""
    found: dict[str, KindEntry] = {}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(point, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else "unknown package"
        if point.name in found and found[point.name].target != point.value:
            raise SeqtoolError(
                f"task kind {point.name!r} is declared twice: by {found[point.name].origin} and by {origin}; uninstall one"
            )
        found[point.name] = KindEntry(point.name, point.value, origin, point)
    if not found:
        raise SeqtoolError(
            f"no task kinds found in the entry-point group {ENTRY_POINT_GROUP!r}: install seqtool (pip install -e .) "
            "rather than running it from a source folder"
        )
    return dict(sorted(found.items()))


def names() -> list[str]:
    return list(entries())


@functools.cache
def task_class(name: str) -> type[Task]:
    """The class of kind `name`, imported on first use and checked."""
    declared = entries()
    if name not in declared:
        raise SeqtoolError(f"unknown task kind {name!r}; installed: {', '.join(declared)} (see seqtool tasks)")
    entry = declared[name]
    try:
        cls = entry.entry_point.load()
    except Exception as exc:  # a broken plug-in is named, not shown as a traceback
        raise SeqtoolError(f"task kind {name!r} ({entry.target}, from {entry.origin}) failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise SeqtoolError(f"task kind {name!r} ({entry.target}, from {entry.origin}) is not a seqtool.tasks.Task subclass")
    if getattr(cls, "name", None) != name:
        raise SeqtoolError(f"task kind {name!r} ({entry.target}) declares name {getattr(cls, 'name', None)!r}; they must agree")
    return cls


def make_task(config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None) -> Task:
    """The task object for `config.task`; `artifacts` come from a checkpoint when there is one,
    `cluster` says which shard of each batch to train on (all of it in a single process)."""
    return task_class(config.task)(config, artifacts, cluster)


def kind_record(name: str) -> dict[str, Any]:
    """What a run directory's run.json says of its kind, so that `runs`, `compare` and `plot` read
    its main metric without importing it (and after its plug-in is uninstalled)."""
    cls = task_class(name)
    metric = cls.main_metric
    return {
        "name": name,
        "origin": entries()[name].origin,
        "main_metric": None if metric is None else dataclasses.asdict(metric),
    }


def recorded_main_metric(record: dict[str, Any] | None, name: str) -> MainMetric | None:
    """The main metric a run.json records for its kind; for runs recorded before seqtool wrote
    it, the installed kind's (None when that kind is not installed)."""
    if record and isinstance(record.get("kind"), dict):
        metric = record["kind"].get("main_metric")
        return MainMetric(**metric) if isinstance(metric, dict) else None
    try:
        return task_class(name).main_metric
    except SeqtoolError:
        return None


def describe_kinds() -> list[dict[str, Any]]:
    """Every declared kind with its description, main metric and origin (`seqtool tasks`); a
    plug-in that fails to load is listed with its error rather than stopping the listing."""
    described = []
    for name, entry in entries().items():
        row = {"name": name, "origin": entry.origin, "target": entry.target, "description": "", "main_metric": None}
        row["init_from"] = {}
        try:
            cls = task_class(name)
            row.update(description=cls.description, main_metric=cls.main_metric.name if cls.main_metric else None)
            row["init_from"] = {name: "all its weights", **cls.init_sources}
            row["error"] = None
        except SeqtoolError as exc:
            row["error"] = str(exc)
        described.append(row)
    return described
