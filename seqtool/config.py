"""Typed configuration: YAML in, validated dataclasses out, before any data is read.

Three habits keep configs honest:
- YAML is read with YAML 1.2 scalars: `1e-3` is a float and `yes`/`on` stay strings, so a value
  means what it looks like (PyYAML's default 1.1 rules turn `1e-3` into a string).
- Every value then passes through the schema's type: `"0.002"` becomes 0.002, `"abc"` for a float
  is an error naming the dotted key and where it came from (file or command-line override).
- Unknown keys are errors with a "did you mean" suggestion, never warnings; so are keys of
  another task kind, and keys the kind does not read (`Task.unread_keys`).

The shared sections are defined here (`ModelConfig`, `TrainingConfig`); each task kind brings its
`data` schema and may extend the shared ones with keys of its own (`seqtool.tasks`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from seqtool.errors import SeqtoolError

ModelType = Literal["rnn", "lstm", "gru"]


def option(default: Any, help: str, **checks: Any) -> Any:
    """A config key: a dataclass field with its help text and range checks (`ge`, `gt`, `le`, `lt`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **checks})
    return field(default=default, metadata={"help": help, **checks})


@dataclass
class ModelConfig:
    """The recurrent cell and its stack: the keys every kind reads."""

    type: ModelType = option("lstm", "recurrent cell: rnn (Elman), lstm or gru")
    hidden_size: int = option(256, "units per recurrent layer", ge=1)
    num_layers: int = option(2, "stacked recurrent layers", ge=1)
    dropout: float = option(0.2, "dropout on embeddings, between layers and before the head", ge=0.0, lt=1.0)
    nonlinearity: Literal["tanh", "relu"] = option("tanh", "activation f of the vanilla RNN (type: rnn only)")
    forget_bias: float = option(
        1.0, "type: lstm only: initial forget-gate bias (1.0: remember by default, Jozefowicz et al. 2015)"
    )


@dataclass
class TokenModelConfig(ModelConfig):
    """The model section of kinds whose inputs are token ids."""

    embedding_size: int = option(64, "size of the token embedding", ge=1)


@dataclass
class TrainingConfig:
    batch_size: int = option(64, "sequences per batch", ge=1)
    epochs: int | None = option(10, "passes over the training data", ge=1)
    max_steps: int | None = option(None, "stop after this many optimiser steps", ge=1)
    max_time: str | None = option(None, 'wall-clock budget such as "10m", "90s", "1h30m"')
    lr: float = option(0.002, "peak learning rate", gt=0.0)
    optimizer: Literal["adamw", "adam", "sgd"] = option("adamw", "optimiser")
    weight_decay: float = option(0.0, "decoupled weight decay (adamw) or L2 penalty", ge=0.0)
    scheduler: Literal["cosine", "linear", "constant"] = option("cosine", "learning-rate decay after warm-up")
    warmup_steps: int = option(0, "linear warm-up steps", ge=0)
    grad_clip: float | None = option(1.0, "clip the global gradient norm (null: off)", gt=0.0)
    eval_every: int = option(200, "evaluate and checkpoint every N steps", ge=1)
    log_every: int = option(20, "log training loss every N steps", ge=1)
    early_stopping_patience: int | None = option(None, "stop after N evaluations without improvement", ge=1)
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    precision: Literal["fp32", "bf16"] = option("fp32", "bf16 uses autocast where the device supports it")
    log_grad_flow: bool = option(
        False,
        "at each evaluation, log |dL/dh_t| for every time step t of one batch and the gradient norm (seqtool plot --grad-flow)",
    )
    compile: bool = option(False, "train through torch.compile (slower first steps; see the README for when it pays)")
    log: list[Literal["jsonl", "csv", "tensorboard"]] = option(
        ["jsonl"], "metric sinks: metrics.jsonl always, plus csv and tensorboard"
    )
    on_nan: Literal["stop", "skip_batch"] = option("stop", "a non-finite loss or gradient stops training, or skips that batch")


@dataclass
class Config:
    task: str = field(metadata={"help": "what to learn: a task kind (seqtool tasks lists them)"})
    seed: int = option(1234, "seed for every random number generator")
    data: Any = None  # the kind's data schema
    model: ModelConfig = field(default_factory=ModelConfig)  # or the kind's subclass of it
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Every key this task reads (what a run directory's config.yaml holds: a file that
        trains again as it is, so keys the task does not read are left out)."""
        data = dataclasses.asdict(self)
        unread = _kind(self.task).unread_keys(data)
        for section in ("model", "training"):
            data[section] = {k: v for k, v in data[section].items() if f"{section}.{k}" not in unread}
        return data


def model_label(model: dict[str, Any]) -> str:
    """How a model is named to people: "lstm 2x384", "bidirectional gru 1x128"."""
    kind = f"bidirectional {model.get('type', '?')}" if model.get("bidirectional") else str(model.get("type", "?"))
    return f"{kind} {model.get('num_layers', '?')}x{model.get('hidden_size', '?')}"


# Budget keys may change when a run is resumed; everything else must match the checkpoint.
BUDGET_KEYS = ("training.epochs", "training.max_steps", "training.max_time", "training.early_stopping_patience")


# --------------------------------------------------------------------------------------------
# YAML with YAML 1.2 scalars


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader whose booleans are only true/false and whose floats include `1e-3`."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def _float_or_int(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    text = loader.construct_scalar(node)
    if re.fullmatch(r"[-+]?[0-9]+", str(text)):
        return int(text)
    return yaml.SafeLoader.construct_yaml_float(loader, node)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _float_or_int)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Yaml12Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SeqtoolError(f"{source}{where}: invalid YAML: {problem}") from exc


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


# --------------------------------------------------------------------------------------------
# Durations


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")


@functools.lru_cache(maxsize=64)  # the training loop asks every step
def parse_duration(value: str | float | int) -> float:
    """Seconds in "10m", "90s", "1h30m" or a plain number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be positive")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return parse_duration(float(text))
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(f'{value!r} is not a duration such as "10m", "90s" or "1h30m"')
    seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


# --------------------------------------------------------------------------------------------
# Validation


class Where:
    """Says where a dotted key came from: the config file, or a command-line override."""

    def __init__(self, source: str, overridden: set[str]):
        self.source = source
        self.overridden = overridden

    def __call__(self, path: str) -> str:
        given = next((key for key in sorted(self.overridden) if key == path or key.startswith(path + ".")), None)
        if given is not None:  # `trainig.lr=...` put the unknown section 'trainig' there
            return f"command-line override '{given}'"
        return f"{self.source}: '{path}'"


def _kind(name: str) -> Any:
    """The task kind class `name` (imported here, not at the top: the kinds import this module)."""
    from seqtool.tasks import task_class

    return task_class(name)


def _default_kind() -> str:
    """The kind of a config without a `task` key."""
    from seqtool.tasks import DEFAULT_KIND

    return DEFAULT_KIND


def _kind_names() -> list[str]:
    from seqtool.tasks import names

    return names()


def _sections(kind: Any) -> dict[str, type]:
    return {"data": kind.data_schema, "model": kind.model_schema, "training": kind.training_schema}


def _all_keys() -> list[str]:
    keys = [f.name for f in dataclasses.fields(Config)]
    for name in _kind_names():
        for section, cls in _sections(_kind(name)).items():
            keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return sorted(set(keys))


# Names people type from other tools, and the key that means the same here.
_SYNONYMS = {
    "learning_rate": "lr",
    "hidden": "hidden_size",
    "hidden_dim": "hidden_size",
    "units": "hidden_size",
    "layers": "num_layers",
    "n_layers": "num_layers",
    "cell": "type",
    "rnn_type": "type",
    "embedding_dim": "embedding_size",
    "emb_size": "embedding_size",
    "steps": "max_steps",
    "max_epochs": "epochs",
    "num_epochs": "epochs",
    "clip": "grad_clip",
    "gradient_clip": "grad_clip",
    "bptt": "seq_len",
    "sequence_length": "seq_len",
    "patience": "early_stopping_patience",
    "lookback": "context_length",
    "window": "context_length",
    "prediction_length": "horizon",
}


def _closest(name: str, valid_here: list[str]) -> str | None:
    """The valid key nearest to a misspelt one, reading misspelt synonyms (`lerning_rate`) too."""
    close = difflib.get_close_matches(name, valid_here, n=1, cutoff=0.6)
    if close:
        return close[0]
    synonyms = [word for word, key in _SYNONYMS.items() if key in valid_here]
    meant = difflib.get_close_matches(name, synonyms, n=1, cutoff=0.75)
    return _SYNONYMS[meant[0]] if meant else None


def _suggest(path: str, valid_here: list[str]) -> str:
    name = path.rsplit(".", 1)[-1]
    closest = _closest(name, valid_here)
    close = [closest] if closest else []
    if close:
        prefix = path.rsplit(".", 1)[0] + "." if "." in path else ""
        return f" (did you mean '{prefix}{close[0]}'?)"
    elsewhere = [k for k in _all_keys() if k.rsplit(".", 1)[-1] == name]
    if elsewhere:
        return f" (did you mean '{elsewhere[0]}'?)"
    return f" (valid keys: {', '.join(valid_here)})"


def _unknown_key(where: Where, path: str, valid_here: list[str]) -> SeqtoolError:
    place = where(path)
    named = place if place.endswith(f"'{path}'") else f"{place}: '{path}'"  # 'trainig' inside 'trainig.lr'
    return SeqtoolError(f"{named} is not a known key{_suggest(path, valid_here)}")


def _coerce(value: Any, annotation: Any, path: str, where: Where) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, path, where)
    if origin is list:
        (inner,) = args
        items = value if isinstance(value, list) else [value]
        return [_coerce(item, inner, f"{path}[{i}]", where) for i, item in enumerate(items)]
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        hint = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise SeqtoolError(f"{where(path)} must be one of {', '.join(map(str, args))}, got {value!r}{suggestion}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
            return value.lower() in ("true", "yes", "on")
        raise SeqtoolError(f"{where(path)} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise SeqtoolError(f"{where(path)} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.strip().replace("_", ""))
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise SeqtoolError(f"{where(path)} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise SeqtoolError(f"{where(path)} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            result = float(value)
        else:
            try:
                result = float(str(value).strip())
            except ValueError:
                raise SeqtoolError(f"{where(path)} must be a number, got {value!r}") from None
        if result != result or result in (float("inf"), float("-inf")):
            raise SeqtoolError(f"{where(path)} must be a finite number, got {value!r}")
        return result
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise SeqtoolError(f"{where(path)} must be a string, got {value!r}")
    raise TypeError(f"unsupported schema type {annotation!r} at {path}")  # a bug in the schema


def _check_range(value: Any, meta: typing.Mapping[str, Any], path: str, where: Where) -> None:
    if value is None:
        return
    for key, ok, words in (
        ("ge", lambda v, b: v >= b, "at least"),
        ("gt", lambda v, b: v > b, "greater than"),
        ("le", lambda v, b: v <= b, "at most"),
        ("lt", lambda v, b: v < b, "less than"),
    ):
        if key in meta and not ok(value, meta[key]):
            raise SeqtoolError(f"{where(path)} must be {words} {meta[key]}, got {value!r}")


def _foreign_key(path: str, kind: Any, where: Where) -> SeqtoolError | None:
    """The error for a key of another kind's section ("applies to task: ..."), if it is one."""
    section, name = path.split(".", 1)
    owners = [
        other
        for other in _kind_names()
        if other != kind.name and name in {f.name for f in dataclasses.fields(_sections(_kind(other))[section])}
    ]
    if not owners:
        return None
    return SeqtoolError(f"{where(path)} applies to task: {', '.join(owners)}, not {kind.name} ({kind.reads})")


def _build_section(cls: type, raw: Any, prefix: str, where: Where, kind: Any) -> Any:
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
        value = _coerce(raw[f.name], hints[f.name], path, where)
        _check_range(value, f.metadata, path, where)
        values[f.name] = value
    return cls(**values)


def _check_applicable(raw: dict[str, Any], kind: Any, where: Where) -> None:
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
    top = [f.name for f in dataclasses.fields(Config)]
    for key in raw:
        if key not in top:
            raise _unknown_key(where, str(key), top)
    task = _coerce(raw.get("task", _default_kind()), str, "task", where)
    if task not in _kind_names():
        hint = difflib.get_close_matches(task, _kind_names(), n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else " (seqtool tasks lists the installed kinds)"
        raise SeqtoolError(f"{where('task')} must be one of {', '.join(_kind_names())}, got {task!r}{suggestion}")
    kind = _kind(task)
    config = Config(
        task=task,
        seed=_coerce(raw.get("seed", 1234), int, "seed", where),
        **{name: _build_section(cls, raw.get(name), name, where, kind) for name, cls in _sections(kind).items()},
    )
    _check_applicable(raw, kind, where)
    _check_shared(config, where)
    kind.check_config(config, where)
    return config


def check_split_fractions(data: Any, where: Where) -> None:
    """A kind's `val_fraction` and `test_fraction` must leave at least 10% for training."""
    if data.val_fraction + data.test_fraction >= 0.9:
        raise SeqtoolError(f"{where('data.val_fraction')}: val_fraction + test_fraction leaves under 10% for training")


def check_text_files(data: Any, where: Where) -> None:
    """A data section that takes one file split by fractions (`path`) or separate files
    (`train` with `val`, optionally `test`)."""
    if data.path and data.train:
        raise SeqtoolError(f"{where('data.path')} and data.train are exclusive: give one text file or separate files")
    if not data.path and not data.train:
        raise SeqtoolError(f"{where('data.path')} is missing: give data.path, or data.train with data.val")
    if data.train and not data.val:
        raise SeqtoolError(f"{where('data.val')} is missing: data.train needs a validation file")
    if data.path:
        check_split_fractions(data, where)


def _check_shared(config: Config, where: Where) -> None:
    """Rules of the shared sections that involve more than one key."""
    model, training = config.model, config.training
    if model.forget_bias != 1.0 and model.type != "lstm":
        raise SeqtoolError(f"{where('model.forget_bias')} applies to model.type=lstm only (got type {model.type})")
    if model.nonlinearity != "tanh" and model.type != "rnn":
        raise SeqtoolError(f"{where('model.nonlinearity')} applies to model.type=rnn only (got type {model.type})")
    if training.epochs is None and training.max_steps is None and training.max_time is None:
        raise SeqtoolError(f"{where('training.epochs')}: set at least one budget: epochs, max_steps or max_time")
    if training.max_time is not None:
        try:
            parse_duration(training.max_time)
        except ValueError as exc:
            raise SeqtoolError(f"{where('training.max_time')}: {exc}") from None
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", training.device):
        raise SeqtoolError(f"{where('training.device')} must be auto, cpu, cuda, cuda:N or mps, got {training.device!r}")


# --------------------------------------------------------------------------------------------
# Files and overrides


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> set[str]:
    """Apply `a.b=value` strings in place (values parsed as YAML); return the dotted keys set."""
    touched = set()
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
            raise SeqtoolError(f"override {item!r} is not KEY=VALUE with a dotted key, e.g. training.lr=0.001")
        value = parse_yaml(text, f"override {item!r}") if text.strip() else None
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SeqtoolError(f"override {item!r}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
        touched.add(key)
    return touched


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SeqtoolError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise SeqtoolError(f"config path is a directory, not a YAML file: {path}") from None
    except UnicodeDecodeError as exc:
        raise SeqtoolError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
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
    if not isinstance(data, dict) or data.get("task", _default_kind()) not in _kind_names():
        return data  # build_config says what is wrong with it
    kind = _kind(data.get("task", _default_kind()))
    unread = kind.unread_keys(data)
    sections = {}
    for section, cls in _sections(kind).items():
        if section != "data" and isinstance(data.get(section), dict):
            known = {f.name for f in dataclasses.fields(cls)}
            sections[section] = {k: v for k, v in data[section].items() if k in known and f"{section}.{k}" not in unread}
    return kind.migrate_stored({**data, **sections})


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


# --------------------------------------------------------------------------------------------
# Reference documentation


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


def _kind_reference(kind: Any) -> list[str]:
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
    """docs/config.md, generated from the schemas of seqtool's own kinds (scripts/config_reference.py
    writes it; a test fails when the file is stale)."""
    from seqtool.tasks import entries

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
        f'| `task` | one of {", ".join(f"`{n}`" for n in own)} (or a plug-in\'s) | `"{_default_kind()}"` '
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
        parts += _kind_reference(_kind(name))
    return "\n".join(parts) + "\n"
