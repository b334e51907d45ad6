"""Typed configuration: the schemas of the shared sections and the rules for reading values.

This module is the floor the rest of seqtool stands on: it imports nothing from seqtool but
`errors`, so task kinds, models and the engine all import their schemas from here.
Building a whole config (which needs the registry of kinds) is `seqtool.configure`'s job.

Three habits keep configs honest:
- YAML is read with YAML 1.2 scalars: `1e-3` is a float and `yes`/`on` stay strings, so a value
  means what it looks like (PyYAML's default 1.1 rules turn `1e-3` into a string).
- Every value then passes through the schema's type: `"0.002"` becomes 0.002, `"abc"` for a float
  is an error naming the dotted key and where it came from (file or command-line override).
- Unknown keys are errors with a "did you mean" suggestion, never warnings; so are keys of
  another task kind, and keys the kind does not read (`Task.unread_keys`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from seqtool.errors import SeqtoolError


def option(default: Any, help: str, **checks: Any) -> Any:
    """A config key: a dataclass field with its help text and range checks (`ge`, `gt`, `le`, `lt`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **checks})
    return field(default=default, metadata={"help": help, **checks})


@dataclass
class ModelConfig:
    """The recurrent cell and its stack: the keys every kind reads."""

    type: str = option("lstm", "recurrent cell: rnn (Elman), lstm, gru, mingru, minlstm, or a plug-in's (seqtool cells)")
    hidden_size: int = option(256, "units per recurrent layer", ge=1)
    num_layers: int = option(2, "stacked recurrent layers", ge=1)
    dropout: float = option(0.2, "dropout on embeddings, between layers and before the head", ge=0.0, lt=1.0)
    nonlinearity: Literal["tanh", "relu"] = option("tanh", "activation f of the vanilla RNN (type: rnn only)")
    forget_bias: float = option(
        1.0, "type: lstm only: initial forget-gate bias (1.0: remember by default, Jozefowicz et al. 2015)"
    )
    candidate_activation: Literal["g", "identity"] = option(
        "g", "type: mingru or minlstm only: g (the paper's, positive states, log-space scan) or identity for h~"
    )
    normalise_gates: bool = option(True, "type: minlstm only: divide the forget and input gates by their sum")
    heads: int = option(4, "type: slstm or mlstm only: heads (blocks of the recurrent weights; mlstm: memories)", ge=1)


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
    ema_decay: float | None = option(
        None,
        "evaluate, save and predict with an exponential moving average of the weights, moved this much less "
        "than all the way each step (0.999: about the last 1,000 steps); null: the trained weights",
        gt=0.0,
        lt=1.0,
    )
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
    deterministic: bool = option(
        False,
        "deterministic algorithms (torch.use_deterministic_algorithms, deterministic cuDNN): reruns on a GPU give the "
        "same weights bit for bit, at a cost in speed; an operation without a deterministic kernel is an error. "
        "CPU runs are deterministic either way",
    )


@dataclass
class Config:
    task: str = field(metadata={"help": "what to learn: a task kind (seqtool tasks lists them)"})
    seed: int = option(1234, "seed for every random number generator")
    data: Any = None  # the kind's data schema
    model: ModelConfig = field(default_factory=ModelConfig)  # or the kind's subclass of it
    training: TrainingConfig = field(default_factory=TrainingConfig)
    # Dotted keys of the shared sections the kind does not read, and why (`Task.unread_keys`),
    # set when the config is built: `to_dict` leaves them out.
    unread: dict[str, str] = field(default_factory=dict, repr=False, compare=False, metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        """Every key this task reads (what a run directory's config.yaml holds: a file that
        trains again as it is, so keys the task does not read are left out)."""
        data = {f.name: dataclasses.asdict(self)[f.name] for f in dataclasses.fields(self) if not f.metadata.get("internal")}
        for section in ("model", "training"):
            data[section] = {k: v for k, v in data[section].items() if f"{section}.{k}" not in self.unread}
        return data


def model_label(model: dict[str, Any]) -> str:
    """How a model is named to people: "lstm 2x384", "bidirectional gru 1x128"."""
    kind = f"bidirectional {model.get('type', '?')}" if model.get("bidirectional") else str(model.get("type", "?"))
    return f"{kind} {model.get('num_layers', '?')}x{model.get('hidden_size', '?')}"


# Budget keys may change when a run is resumed; everything else must match the checkpoint.
BUDGET_KEYS = ("training.epochs", "training.max_steps", "training.max_time", "training.early_stopping_patience")


# --------------------------------------------------------------------------------------------
# Data sections split into training, validation and test parts


def val_fraction_option(default: float = 0.1) -> Any:
    return option(default, "share of the data held out for validation (how each kind draws it: its page)", gt=0.0, lt=1.0)


def test_fraction_option(default: float = 0.0) -> Any:
    return option(default, "share of the data held out for testing, drawn as validation is", ge=0.0, lt=1.0)


def check_split_fractions(data: Any, where: Where) -> None:
    """`val_fraction` and `test_fraction` must leave at least 10% for training."""
    if data.val_fraction + data.test_fraction >= 0.9:
        raise SeqtoolError(f"{where('data.val_fraction')}: val_fraction + test_fraction leaves under 10% for training")


def check_text_files(data: Any, where: Where) -> None:
    """One file split by fractions (`path`), or separate files (`train` with `val`, optionally `test`)."""
    if data.path and data.train:
        raise SeqtoolError(f"{where('data.path')} and data.train are exclusive: give one file or separate files")
    if not data.path and not data.train:
        raise SeqtoolError(f"{where('data.path')} is missing: give data.path, or data.train with data.val")
    if data.train and not data.val:
        raise SeqtoolError(f"{where('data.val')} is missing: data.train needs a validation file")
    if data.path:
        check_split_fractions(data, where)


@dataclass
class SplitData:
    """A data section whose samples are split by fractions into training, validation and test
    parts. A kind's data schema that subclasses it gets `evaluate`'s default split (the test part
    when there is one, since it chose nothing) and the fraction checks; a kind with other
    defaults declares the field again with `val_fraction_option(0.2)` or `test_fraction_option(0.1)`."""

    val_fraction: float = val_fraction_option()
    test_fraction: float = test_fraction_option()

    def has_test_split(self) -> bool:
        return self.test_fraction > 0

    def check(self, where: Where) -> None:
        check_split_fractions(self, where)


@dataclass
class _Files:
    path: str | None = option(None, "one file, split into training, validation and test parts by the fractions")
    train: str | None = option(None, "training file (instead of path)")
    val: str | None = option(None, "validation file (with train)")
    test: str | None = option(None, "test file (with train)")


@dataclass
class FileSplitData(SplitData, _Files):
    """A data section read from one file split by fractions (`path`), or from separate files
    (`train` with `val`, optionally `test`)."""

    def has_test_split(self) -> bool:
        return bool(self.test) or (bool(self.path) and self.test_fraction > 0)

    def check(self, where: Where) -> None:
        check_text_files(self, where)


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
# Values


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


# Names people type from other tools, and the key that means the same here.
SYNONYMS = {
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


def closest_key(name: str, valid_here: list[str]) -> str | None:
    """The valid key nearest to a misspelt one, reading misspelt synonyms (`lerning_rate`) too."""
    close = difflib.get_close_matches(name, valid_here, n=1, cutoff=0.6)
    if close:
        return close[0]
    synonyms = [word for word, key in SYNONYMS.items() if key in valid_here]
    meant = difflib.get_close_matches(name, synonyms, n=1, cutoff=0.75)
    return SYNONYMS[meant[0]] if meant else None


def coerce(value: Any, annotation: Any, path: str, where: Where) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(value, inner, path, where)
    if origin is list:
        (inner,) = args
        items = value if isinstance(value, list) else [value]
        return [coerce(item, inner, f"{path}[{i}]", where) for i, item in enumerate(items)]
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


def check_range(value: Any, meta: typing.Mapping[str, Any], path: str, where: Where) -> None:
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


def check_shared(config: Config, where: Where) -> None:
    """Rules of the shared sections that involve more than one key."""
    training = config.training
    if training.epochs is None and training.max_steps is None and training.max_time is None:
        raise SeqtoolError(f"{where('training.epochs')}: set at least one budget: epochs, max_steps or max_time")
    if training.max_time is not None:
        try:
            parse_duration(training.max_time)
        except ValueError as exc:
            raise SeqtoolError(f"{where('training.max_time')}: {exc}") from None
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", training.device):
        raise SeqtoolError(f"{where('training.device')} must be auto, cpu, cuda, cuda:N or mps, got {training.device!r}")


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


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat
