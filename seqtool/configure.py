"""Building a config: a parsed YAML mapping checked against the schemas of its task kind.

This module stands above the registry (`seqtool.tasks`): it asks the kind named by `task` for
its sections, its rules (`Task.check_config`), the shared keys it does not read
(`Task.unread_keys`) and how to bring a stored config up to date (`Task.migrate_stored`). The
schemas and value rules themselves are in `seqtool.schema`, which the kinds import.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any

from seqtool.cells.registry import check_model_options
from seqtool.errors import SeqtoolError, reading_user_file
from seqtool.schema import Config, Where, apply_overrides, check_range, check_shared, closest_key, coerce, parse_yaml
from seqtool.tasks import DEFAULT_KIND, Task, names, task_class


def _all_keys() -> list[str]:
    keys = [f.name for f in dataclasses.fields(Config) if not f.metadata.get("internal")]
    for name in names():
        for section, cls in _sections(task_class(name)).items():
            keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return sorted(set(keys))


def _sections(kind: type[Task]) -> dict[str, type]:
    return {"data": kind.data_schema, "model": kind.model_schema, "training": kind.training_schema}


def _suggest(path: str, valid_here: list[str]) -> str:
    name = path.rsplit(".", 1)[-1]
    closest = closest_key(name, valid_here)
    if closest:
        prefix = path.rsplit(".", 1)[0] + "." if "." in path else ""
        return f" (did you mean '{prefix}{closest}'?)"
    elsewhere = [k for k in _all_keys() if k.rsplit(".", 1)[-1] == name]
    if elsewhere:
        return f" (did you mean '{elsewhere[0]}'?)"
    return f" (valid keys: {', '.join(valid_here)})"


def _unknown_key(where: Where, path: str, valid_here: list[str]) -> SeqtoolError:
    place = where(path)
    named = place if place.endswith(f"'{path}'") else f"{place}: '{path}'"  # 'trainig' inside 'trainig.lr'
    return SeqtoolError(f"{named} is not a known key{_suggest(path, valid_here)}")


def _foreign_key(path: str, kind: type[Task], where: Where) -> SeqtoolError | None:
    """The error for a key of another kind's section ("applies to task: ..."), if it is one."""
    section, name = path.split(".", 1)
    owners = [
        other
        for other in names()
        if other != kind.name and name in {f.name for f in dataclasses.fields(_sections(task_class(other))[section])}
    ]
    if not owners:
        return None
    return SeqtoolError(f"{where(path)} applies to task: {', '.join(owners)}, not {kind.name} ({kind.reads})")


def _build_section(cls: type, raw: Any, prefix: str, where: Where, kind: type[Task]) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SeqtoolError(f"{where(prefix)} must be a mapping of keys to values, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            path = f"{prefix}.{key}"
            raise _foreign_key(path, kind, where) or _unknown_key(where, path, names)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        path = f"{prefix}.{f.name}"
        value = coerce(raw[f.name], hints[f.name], path, where)
        check_range(value, f.metadata, path, where)
        values[f.name] = value
    return cls(**values)


def _check_applicable(raw: dict[str, Any], kind: type[Task], where: Where) -> None:
    """Every key given in `model` and `training` must be one this config's kind reads."""
    unread = kind.unread_keys(raw)
    for section in ("model", "training"):
        given = raw.get(section)
        for key in given if isinstance(given, dict) else ():
            reason = unread.get(f"{section}.{key}")
            if reason is not None:
                raise SeqtoolError(f"{where(f'{section}.{key}')} {reason}")


def build_config(raw: Any, source: str, overridden: set[str] | None = None) -> Config:
    """Validate a parsed YAML mapping into a `Config`; every error names key and source."""
    where = Where(source, overridden or set())
    if raw is None:
        raise SeqtoolError(f"{source}: the config is empty")
    if not isinstance(raw, dict):
        raise SeqtoolError(f"{source}: the config must be a mapping of keys to values")
    top = [f.name for f in dataclasses.fields(Config) if not f.metadata.get("internal")]
    for key in raw:
        if key not in top:
            raise _unknown_key(where, str(key), top)
    task = coerce(raw.get("task", DEFAULT_KIND), str, "task", where)
    if task not in names():
        hint = difflib.get_close_matches(task, names(), n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else " (seqtool tasks lists the installed kinds)"
        raise SeqtoolError(f"{where('task')} must be one of {', '.join(names())}, got {task!r}{suggestion}")
    kind = task_class(task)
    config = Config(
        task=task,
        seed=coerce(raw.get("seed", 1234), int, "seed", where),
        **{name: _build_section(cls, raw.get(name), name, where, kind) for name, cls in _sections(kind).items()},
    )
    config.unread = kind.unread_keys(config.to_dict())
    _check_applicable(raw, kind, where)
    check_shared(config, where)
    check_model_options(config.model, where)
    kind.check_config(config, where)
    return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    with reading_user_file(path, what="config", expected="a YAML file"):
        text = path.read_bytes().decode("utf-8")
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise SeqtoolError(f"{path}: the config file is empty")
    if not isinstance(raw, dict):
        raise SeqtoolError(f"{path}: the config must be a mapping of keys to values")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML file, apply dotted overrides and validate; no data is touched."""
    raw = read_config_file(path)
    touched = apply_overrides(raw, overrides or [])
    return build_config(raw, str(path), touched)


def config_from_dict(data: dict[str, Any], source: str = "checkpoint") -> Config:
    """A stored config (checkpoint, run directory) back into a `Config`; one written before a
    key existed gets the value that reproduces what it trained with."""
    return build_config(_migrate_stored(data), source)


def _migrate_stored(data: dict[str, Any]) -> dict[str, Any]:
    """Stored configs of earlier versions listed every key of the shared sections, read by their
    kind or not: those are dropped. The kind then migrates its own keys (`Task.migrate_stored`)."""
    if not isinstance(data, dict) or data.get("task", DEFAULT_KIND) not in names():
        return data  # build_config says what is wrong with it
    kind = task_class(data.get("task", DEFAULT_KIND))
    unread = kind.unread_keys(data)
    sections = {}
    for section, cls in _sections(kind).items():
        if section != "data" and isinstance(data.get(section), dict):
            known = {f.name for f in dataclasses.fields(cls)}
            sections[section] = {k: v for k, v in data[section].items() if k in known and f"{section}.{k}" not in unread}
    return kind.migrate_stored({**data, **sections})
