"""The search space of `seqtool tune`: a small YAML of dotted config keys, each with its range.

    model.hidden_size: {int: [32, 256], log: true}
    model.num_layers: {int: [1, 3]}
    training.lr: {float: [1e-4, 1e-2], log: true}
    model.dropout: {float: [0.0, 0.5], step: 0.1}
    model.type: [rnn, lstm, gru]

A list is a categorical choice. The space is checked against the config schema before any trial
runs: every key must be one the config's kind reads (with the same did-you-mean errors as an
override), and every bound and choice must be a value the schema accepts.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtool.configure import build_config, load_config, read_config_file
from seqtool.errors import SeqtoolError
from seqtool.schema import apply_overrides, parse_yaml

RANGE_KINDS = ("int", "float")
RANGE_OPTIONS = {"log", "step"}


@dataclass(frozen=True)
class Dimension:
    """One searched key: an int or float range (optionally log-scaled or stepped), or choices."""

    key: str
    kind: str  # int | float | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def extremes(self) -> list[Any]:
        """The values that validating against the schema must try: both bounds, or every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return " | ".join(map(str, self.choices))
        scale = ", log" if self.log else (f", step {self.step:g}" if self.step else "")
        return f"{self.kind} {self.low:g} .. {self.high:g}{scale}"


def read_space(path: Path) -> list[Dimension]:
    """The dimensions of a space file; a malformed entry is an error naming the file and key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SeqtoolError(f"search space file not found: {path}") from None
    raw = parse_yaml(text, str(path))
    if not isinstance(raw, dict) or not raw:
        raise SeqtoolError(
            f"{path}: the search space must map dotted config keys to ranges, e.g. 'training.lr: {{float: [1e-4, 1e-2], log: true}}'"
        )
    return [_dimension(str(key), spec, f"{path}: {key}") for key, spec in raw.items()]


def _dimension(key: str, spec: Any, where: str) -> Dimension:
    if isinstance(spec, list):
        if not spec or len(set(map(repr, spec))) != len(spec):
            raise SeqtoolError(f"{where}: a list of choices must be non-empty, each choice once; got {spec!r}")
        return Dimension(key, "categorical", choices=tuple(spec))
    if not isinstance(spec, dict):
        raise SeqtoolError(f"{where}: give a list of choices or {{int: [low, high]}} / {{float: [low, high]}}; got {spec!r}")
    kinds = [k for k in spec if k in RANGE_KINDS]
    unknown = [k for k in spec if k not in RANGE_KINDS and k not in RANGE_OPTIONS]
    if unknown or len(kinds) != 1:
        raise SeqtoolError(
            f"{where}: a range is exactly one of int or float, with optional log and step; got keys {', '.join(map(str, spec))}"
        )
    kind, bounds = kinds[0], spec[kinds[0]]
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b, kind) for b in bounds)):
        raise SeqtoolError(f"{where}: {kind} takes [low, high] as {'integers' if kind == 'int' else 'numbers'}; got {bounds!r}")
    low, high = bounds
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise SeqtoolError(f"{where}: log is true or false; got {log!r}")
    if not low < high:
        raise SeqtoolError(f"{where}: low must be below high; got [{low}, {high}]")
    if log and low <= 0:
        raise SeqtoolError(f"{where}: a log-scaled range needs low > 0; got {low}")
    if step is not None and (log or not _is_number(step, kind) or step <= 0):
        raise SeqtoolError(f"{where}: step is a positive {kind}, and not combined with log; got {step!r}")
    return Dimension(key, kind, float(low), float(high), log, None if step is None else float(step))


def _is_number(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def as_override(key: str, value: Any) -> str:
    """A sampled value as a dotted override (`training.lr=0.00123`), as `train` takes it."""
    if isinstance(value, float):
        return f"{key}={value!r}"
    return f"{key}={'null' if value is None else str(value).lower() if isinstance(value, bool) else value}"


def check_space(config: Path, overrides: list[str], dimensions: list[Dimension], space: Path) -> None:
    """Every key is one the config's kind reads and every bound or choice a value its schema
    accepts, each tried alone against the config with the overrides; no key is both fixed by an
    override and searched."""
    fixed = {item.partition("=")[0].strip() for item in overrides}
    load_config(config, overrides)  # the config itself first: its own errors are not the space's
    raw = read_config_file(config)  # read once; each value is tried on a copy
    for dimension in dimensions:
        if dimension.key in fixed:
            raise SeqtoolError(f"{space}: {dimension.key} is both searched and set by an override; drop one")
        for value in dimension.extremes():
            value = int(value) if dimension.kind == "int" else value
            tried, with_value = copy.deepcopy(raw), [*overrides, as_override(dimension.key, value)]
            try:
                build_config(tried, str(config), apply_overrides(tried, with_value))
            except SeqtoolError as exc:
                raise SeqtoolError(f"search space {space}: {exc}") from None
