"""docs/config.md, generated from the config schemas: `python scripts/config_reference.py` writes
it, and `tests/test_config.py` fails when the file is stale."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

from seqtool.schema import ModelConfig, TrainingConfig
from seqtool.tasks import DEFAULT_KIND, Task, entries, task_class

TARGET = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + " or null"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(annotation, str(annotation))


def _default_of(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    return "`null`" if value is None else f"`{json.dumps(value)}`"


def _section_rows(cls: type, prefix: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        limits = [
            f"{words} {f.metadata[key]}"
            for key, words in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
            if key in f.metadata
        ]
        meaning = f.metadata.get("help", "") + (f" ({', '.join(limits)})" if limits else "")
        rows.append(f"| `{prefix}{f.name}` | {_type_name(hints[f.name])} | {_default_of(f)} | {meaning} |")
    return rows


def _own_rows(cls: type, base: type, prefix: str) -> list[str]:
    """Rows of the keys `cls` adds to the shared section `base`."""
    shared = {f.name for f in dataclasses.fields(base)}
    return [row for f, row in zip(dataclasses.fields(cls), _section_rows(cls, prefix), strict=True) if f.name not in shared]


def _kind_reference(kind: type[Task]) -> list[str]:
    header = "| key | type | default | meaning |\n|---|---|---|---|"
    parts = ["", f"## `task: {kind.name}`", "", kind.description + ".", "", "`data`:", "", header]
    parts += _section_rows(kind.data_schema, "data.")
    for section, cls, base in (("model", kind.model_schema, ModelConfig), ("training", kind.training_schema, TrainingConfig)):
        rows = _own_rows(cls, base, f"{section}.")
        parts += ["", f"`{section}`, besides the shared keys:", "", header, *rows] if rows else []
    if kind.not_read:
        parts += ["", "Shared keys it does not read (an error when given): " + ", ".join(f"`{k}`" for k in kind.not_read) + "."]
    return parts


def reference_markdown() -> str:
    """docs/config.md, generated from the schemas of seqtool's own kinds (a test fails when the
    file is stale)."""
    header = "| key | type | default | meaning |\n|---|---|---|---|"
    own = [name for name, entry in entries().items() if entry.origin.split()[0] == "seqtool"]
    parts = [
        "# Config reference",
        "",
        "Generated from the config schemas by `python scripts/config_reference.py`; do not edit by hand.",
        "Every key can be set in the YAML file or overridden on the command line as `section.key=value`",
        "(values read as YAML). Unknown keys are errors, and so are keys of another task kind and keys a",
        "kind does not read. Each kind defines its `data` section and may add keys to `model` and `training`.",
        "",
        "## Top level",
        "",
        header,
        f'| `task` | one of {", ".join(f"`{n}`" for n in own)} (or a plug-in\'s) | `"{DEFAULT_KIND}"` '
        "| what to learn; picks the `data` section below |",
        "| `seed` | integer | `1234` | seed for every random number generator |",
        "",
        "## `model` (every kind)",
        "",
        header,
        *_section_rows(ModelConfig, "model."),
        "",
        "## `training` (every kind)",
        "",
        header,
        *_section_rows(TrainingConfig, "training."),
    ]
    for name in own:
        parts += _kind_reference(task_class(name))
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    TARGET.write_text(reference_markdown(), encoding="utf-8")
    print(f"wrote {TARGET}")
