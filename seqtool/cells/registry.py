"""The cell registry: recurrent cells found through the entry-point group `seqtool.cells`.

Reading the names imports no cell and no torch (the config checks `model.type` against them); a
cell's module is imported when the cell is first built or described.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from importlib import metadata
from typing import Any

from seqtool.cells.protocol import Cell
from seqtool.errors import SeqtoolError
from seqtool.schema import ModelConfig, Where

ENTRY_POINT_GROUP = "seqtool.cells"


@functools.cache
def entries() -> dict[str, metadata.EntryPoint]:
    """Every declared cell, by name, without importing any of them."""
    found: dict[str, metadata.EntryPoint] = {}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name in found and found[point.name].value != point.value:
            raise SeqtoolError(
                f"cell {point.name!r} is declared twice: by {_origin(found[point.name])} and by {_origin(point)}; uninstall one"
            )
        found[point.name] = point
    if not found:
        raise SeqtoolError(
            f"no cells found in the entry-point group {ENTRY_POINT_GROUP!r}: install seqtool (pip install -e .) "
            "rather than running it from a source folder"
        )
    return dict(sorted(found.items()))


def names() -> list[str]:
    return list(entries())


def _origin(point: metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown package"


def unknown_cell_message(name: str) -> str:
    """What is wrong with `model.type: name` when no such cell is installed."""
    hint = difflib.get_close_matches(name, names(), n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else " (seqtool cells lists them)"
    return f"must be one of the installed cells {', '.join(names())}, got {name!r}{suggestion}"


@functools.cache
def cell(name: str) -> Cell:
    """The cell `name`, imported on first use and checked."""
    declared = entries()
    if name not in declared:
        raise SeqtoolError(f"model.type {unknown_cell_message(name)}")
    point = declared[name]
    try:
        found = point.load()
    except Exception as exc:  # a broken plug-in is named, not shown as a traceback
        raise SeqtoolError(f"cell {name!r} ({point.value}, from {_origin(point)}) failed to load: {exc}") from exc
    if not isinstance(found, Cell):
        raise SeqtoolError(f"cell {name!r} ({point.value}, from {_origin(point)}) is not a seqtool.cells.Cell")
    if found.name != name:
        raise SeqtoolError(f"cell {name!r} ({point.value}) declares name {found.name!r}; they must agree")
    return found


def describe_cells() -> list[dict[str, Any]]:
    """Every declared cell with what it supports and where it comes from (`seqtool cells`); a
    plug-in that fails to load is listed with its error rather than stopping the listing."""
    described = []
    for name, point in entries().items():
        row: dict[str, Any] = {"name": name, "origin": _origin(point), "target": point.value, "error": None}
        try:
            found = cell(name)
        except SeqtoolError as exc:
            row["error"] = str(exc)
        else:
            row.update(
                summary=found.summary,
                state=[part.name for part in found.state],
                bidirectional=found.bidirectional,
                carried_state=found.carried_state,
                onnx=found.onnx,
                options=list(found.options),
            )
        described.append(row)
    return described


def colour(name: str) -> str | None:
    """The cell's plot colour, or None (matplotlib's next) for a cell that is not installed."""
    try:
        return cell(name).colour
    except SeqtoolError:
        return None


CELL_OPTIONS = ("nonlinearity", "forget_bias", "candidate_activation", "normalise_gates", "heads")  # keys one cell reads


def check_model_options(model: ModelConfig, where: Where) -> None:
    """`model.type` names an installed cell, no key of another cell is set, and heads divide the
    units. Loads the cell's module (a config that trains is about to build it anyway)."""
    if model.type not in names():
        raise SeqtoolError(f"{where('model.type')} {unknown_cell_message(model.type)}")
    reads = cell(model.type).options
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    for key in CELL_OPTIONS:
        if key not in reads and getattr(model, key) != defaults[key]:
            users = [name for name in names() if key in _options_of(name)]
            raise SeqtoolError(f"{where('model.' + key)} applies to model.type={' or '.join(users)} only (got type {model.type})")
    if "heads" in reads and model.hidden_size % model.heads:
        raise SeqtoolError(
            f"{where('model.hidden_size')} ({model.hidden_size}) must be a multiple of model.heads ({model.heads})"
        )


def _options_of(name: str) -> tuple[str, ...]:
    try:
        return cell(name).options
    except SeqtoolError:  # a broken plug-in does not stop naming the others
        return ()
