"""Typed configuration: YAML in, validated dataclasses out, before any data is read.

Three habits keep configs honest:
- YAML is read with YAML 1.2 scalars: `1e-3` is a float and `yes`/`on` stay strings, so a value
  means what it looks like (PyYAML's default 1.1 rules turn `1e-3` into a string).
- Every value then passes through the schema's type: `"0.002"` becomes 0.002, `"abc"` for a float
  is an error naming the dotted key and where it came from (file or command-line override).
- Unknown keys are errors with a "did you mean" suggestion, never warnings; so are keys that the
  task kind does not read (`APPLIES_TO`).
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

TaskName = Literal["language_model", "forecast", "classify", "long_range"]
ModelType = Literal["rnn", "lstm", "gru"]


def _field(default: Any, help: str, **checks: Any) -> Any:
    """A dataclass field with its help text and range checks (`ge`, `gt`, `le`, `lt`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **checks})
    return field(default=default, metadata={"help": help, **checks})


@dataclass
class LanguageModelData:
    path: str | None = _field(None, "one text file, split into train/val(/test) by position")
    train: str | None = _field(None, "training text file (instead of path)")
    val: str | None = _field(None, "validation text file (with train)")
    test: str | None = _field(None, "test text file (with train)")
    tokenizer: Literal["char", "word"] = _field("char", "char: one token per character; word: words and punctuation")
    val_fraction: float = _field(0.1, "tail of `path` held out for validation", gt=0.0, lt=1.0)
    test_fraction: float = _field(0.0, "tail of `path` held out for testing (after val)", ge=0.0, lt=1.0)
    min_freq: int = _field(1, "word tokenizer: rarer words become `<unk>`", ge=1)


@dataclass
class ForecastData:
    path: str | None = _field(None, "CSV file with one row per time step")
    date_column: list[str] | None = _field(None, "date column, or its parts such as [year, month, day, hour]")
    frequency: str | None = _field(None, "pandas frequency (D, h, MS, ...); inferred from the dates if absent")
    target: list[str] = _field([], "column(s) to forecast")
    features: list[str] = _field([], "extra numeric input columns (past covariates)")
    categorical: list[str] = _field([], "extra categorical input columns, one-hot encoded")
    calendar_features: bool = _field(False, "add sin/cos of hour, weekday and month derived from the dates")
    context_length: int = _field(24, "input window: time steps the model sees", ge=1)
    horizon: int = _field(12, "time steps predicted at once (direct multi-step)", ge=1)
    val_fraction: float = _field(0.2, "chronological tail held out for validation", gt=0.0, lt=1.0)
    test_fraction: float = _field(0.0, "chronological tail held out for testing (after val)", ge=0.0, lt=1.0)
    scaler: Literal["standard", "minmax", "none"] = _field("standard", "per-column scaling, fitted on the training part only")
    missing: Literal["interpolate", "ffill", "drop", "error"] = _field("interpolate", "what to do with empty or NA cells")
    seasonality: int | None = _field(
        None, "seasonal period for seasonal-naive and MASE; inferred from the frequency if absent", ge=1
    )
    backtest_stride: int = _field(1, "distance between forecast origins in the backtest", ge=1)
    max_rows: int | None = _field(
        None,
        "split and train on the first N rows only (in time order; the long-horizon ETT protocol uses 14400); "
        "predict still reads the whole file",
        ge=1,
    )


@dataclass
class ClassifyData:
    path: str | None = _field(None, "one CSV file, split into train/val(/test) with class ratios kept")
    train: str | None = _field(None, "training CSV (instead of path)")
    val: str | None = _field(None, "validation CSV (with train)")
    test: str | None = _field(None, "test CSV (with train)")
    text_column: str = _field("text", "column holding the text")
    label_column: str = _field("label", "column holding the class label (strings or integers)")
    tokenizer: Literal["word", "char"] = _field("word", "word: words and punctuation marks; char: characters")
    lowercase: bool = _field(True, "lower-case texts before tokenizing")
    max_length: int = _field(256, "longer texts are truncated to this many tokens", ge=1)
    min_freq: int = _field(2, "rarer tokens map to `<unk>`", ge=1)
    val_fraction: float = _field(0.1, "share of `path` held out for validation (stratified)", gt=0.0, lt=1.0)
    test_fraction: float = _field(0.0, "share of `path` held out for testing (stratified)", ge=0.0, lt=1.0)


@dataclass
class LongRangeData:
    synthetic: Literal["adding", "copy", "parity"] = _field(
        "adding", "adding: sum of two marked numbers (MSE); copy: recall symbols after a delay; parity: XOR of bits"
    )
    length: int = _field(100, "time steps between what must be remembered and when it is asked for", ge=2)
    samples: int = _field(20000, "sequences generated from the seed (train + val + test)", ge=10)
    symbols: int = _field(10, "copy: symbols to remember", ge=1)
    alphabet: int = _field(8, "copy: distinct symbols", ge=2)
    val_fraction: float = _field(0.1, "share of the samples held out for validation", gt=0.0, lt=1.0)
    test_fraction: float = _field(0.0, "share of the samples held out for testing", ge=0.0, lt=1.0)


@dataclass
class ModelConfig:
    type: ModelType = _field("lstm", "recurrent cell: rnn (Elman), lstm or gru")
    hidden_size: int = _field(256, "units per recurrent layer", ge=1)
    num_layers: int = _field(2, "stacked recurrent layers", ge=1)
    dropout: float = _field(0.2, "dropout on embeddings, between layers and before the head", ge=0.0, lt=1.0)
    embedding_size: int = _field(64, "size of the token embedding", ge=1)
    nonlinearity: Literal["tanh", "relu"] = _field("tanh", "activation f of the vanilla RNN (type: rnn only)")
    tie_weights: bool = _field(False, "share the embedding and output matrices (needs embedding_size == hidden_size)")
    output: Literal["full", "adaptive"] = _field(
        "full", "language models: full softmax, or adaptive softmax (faster for vocabularies of 10k+ words)"
    )
    bidirectional: bool = _field(False, "classify: read the text in both directions")
    pooling: Literal["last", "mean", "max"] = _field("last", "classify: final state, or mean/max over time steps")
    forget_bias: float = _field(
        1.0, "type: lstm only: initial forget-gate bias (1.0: remember by default, Jozefowicz et al. 2015)"
    )
    segment_length: int | None = _field(
        None,
        "forecast: read the context in segments of this many rows, each embedded by one linear layer, so the cell "
        "runs context_length / segment_length steps (SegRNN); must divide data.context_length; null: row by row",
        ge=1,
    )
    decoder: Literal["head", "parallel"] = _field(
        "head",
        "forecast: head maps the final state to the whole horizon in one linear layer; parallel takes one more cell "
        "step per output segment, all at once, fed learned position (and channel) embeddings (SegRNN)",
    )
    channels: Literal["mixed", "independent"] = _field(
        "mixed",
        "forecast: mixed reads all columns together (covariates need it); independent runs every target column "
        "as its own univariate series through shared weights",
    )
    window_norm: Literal["last", "revin", "none"] = _field(
        "last",
        "forecast: per-window normalisation of the targets, undone on the output: last subtracts the last "
        "observed value, revin the window's mean and standard deviation (Kim et al. 2022)",
    )
    revin_affine: bool = _field(False, "forecast, window_norm: revin only: a learned per-target affine after normalising")


# Measured in benchmarks/fresh_state.py (docs/benchmarks.md): without resets a char LSTM meets a
# zero state once an epoch and generates garbage from a fresh prompt.
STATE_RESET_DEFAULT = 0.3


@dataclass
class TrainingConfig:
    batch_size: int = _field(64, "sequences per batch", ge=1)
    seq_len: int = _field(128, "time steps per batch (truncated BPTT length)", ge=1)
    epochs: int | None = _field(10, "passes over the training data", ge=1)
    max_steps: int | None = _field(None, "stop after this many optimiser steps", ge=1)
    max_time: str | None = _field(None, 'wall-clock budget such as "10m", "90s", "1h30m"')
    lr: float = _field(0.002, "peak learning rate", gt=0.0)
    optimizer: Literal["adamw", "adam", "sgd"] = _field("adamw", "optimiser")
    weight_decay: float = _field(0.0, "decoupled weight decay (adamw) or L2 penalty", ge=0.0)
    scheduler: Literal["cosine", "linear", "constant"] = _field("cosine", "learning-rate decay after warm-up")
    warmup_steps: int = _field(0, "linear warm-up steps", ge=0)
    grad_clip: float | None = _field(1.0, "clip the global gradient norm (null: off)", gt=0.0)
    eval_every: int = _field(200, "evaluate and checkpoint every N steps", ge=1)
    log_every: int = _field(20, "log training loss every N steps", ge=1)
    early_stopping_patience: int | None = _field(None, "stop after N evaluations without improvement", ge=1)
    device: str = _field("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    precision: Literal["fp32", "bf16"] = _field("fp32", "bf16 uses autocast where the device supports it")
    log_grad_flow: bool = _field(
        False,
        "at each evaluation, log |dL/dh_t| for every time step t of one batch and the gradient norm (seqtool plot --grad-flow)",
    )
    compile: bool = _field(False, "train through torch.compile (slower first steps; see the README for when it pays)")
    loss: Literal["mse", "mae", "huber", "gaussian_nll", "quantile"] | None = _field(
        None, "forecast loss (default mse); gaussian_nll and quantile give prediction intervals"
    )
    quantiles: list[float] = _field([0.1, 0.5, 0.9], "levels predicted with loss: quantile (outermost = interval)")
    log: list[Literal["jsonl", "csv", "tensorboard"]] = _field(
        ["jsonl"], "metric sinks: metrics.jsonl always, plus csv and tensorboard"
    )
    on_nan: Literal["stop", "skip_batch"] = _field("stop", "a non-finite loss or gradient stops training, or skips that batch")
    class_weights: Literal["none", "balanced"] = _field("none", "classify: balanced weighs classes by inverse frequency")
    state_reset: float = _field(
        STATE_RESET_DEFAULT,
        "language models: chance per row and batch that the carried hidden state restarts from zero, "
        "so that the model also learns to read from a fresh state (a prompt)",
        ge=0.0,
        le=1.0,
    )


DATA_SCHEMAS: dict[str, type] = {
    "language_model": LanguageModelData,
    "forecast": ForecastData,
    "classify": ClassifyData,
    "long_range": LongRangeData,
}


@dataclass
class Config:
    task: TaskName = _field("language_model", "what to learn")
    seed: int = _field(1234, "seed for every random number generator")
    data: Any = None
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Every key this task reads (what a run directory's config.yaml holds: a file that
        trains again as it is, so keys the task does not read are left out)."""
        data = dataclasses.asdict(self)
        for section in ("model", "training"):
            data[section] = {k: v for k, v in data[section].items() if _reason_not_read(f"{section}.{k}", data) is None}
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


class _Where:
    """Says where a dotted key came from: the config file, or a command-line override."""

    def __init__(self, source: str, overridden: set[str]):
        self.source = source
        self.overridden = overridden

    def __call__(self, path: str) -> str:
        given = next((key for key in sorted(self.overridden) if key == path or key.startswith(path + ".")), None)
        if given is not None:  # `trainig.lr=...` put the unknown section 'trainig' there
            return f"command-line override '{given}'"
        return f"{self.source}: '{path}'"


def _all_keys() -> list[str]:
    keys = [f.name for f in dataclasses.fields(Config)]
    for section, cls in (("model", ModelConfig), ("training", TrainingConfig)):
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    for cls in DATA_SCHEMAS.values():
        keys += [f"data.{f.name}" for f in dataclasses.fields(cls)]
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


def _unknown_key(where: _Where, path: str, valid_here: list[str]) -> SeqtoolError:
    place = where(path)
    named = place if place.endswith(f"'{path}'") else f"{place}: '{path}'"  # 'trainig' inside 'trainig.lr'
    return SeqtoolError(f"{named} is not a known key{_suggest(path, valid_here)}")


def _coerce(value: Any, annotation: Any, path: str, where: _Where) -> Any:
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


def _check_range(value: Any, meta: typing.Mapping[str, Any], path: str, where: _Where) -> None:
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


def _build_section(cls: type, raw: Any, prefix: str, where: _Where) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SeqtoolError(f"{where(prefix)} must be a mapping of keys to values, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            path = f"{prefix}.{key}"
            raise _unknown_key(where, path, names)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        path = f"{prefix}.{f.name}"
        value = _coerce(raw[f.name], hints[f.name], path, where)
        _check_range(value, f.metadata, path, where)
        values[f.name] = value
    return cls(**values)


# Keys of the shared `model` and `training` sections that only some task kinds read. Given for
# another kind, such a key would be silently ignored, so it is an error. (Run configs stored by
# earlier versions list every key; `_migrate_stored` drops the ones their task does not read.)
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "model.embedding_size": ("language_model", "classify", "long_range"),
    "model.tie_weights": ("language_model",),
    "model.output": ("language_model",),
    "model.bidirectional": ("classify",),
    "model.pooling": ("classify",),
    **{f"model.{key}": ("forecast",) for key in ("segment_length", "decoder", "channels", "window_norm", "revin_affine")},
    "training.seq_len": ("language_model",),
    "training.state_reset": ("language_model",),
    "training.loss": ("forecast",),
    "training.quantiles": ("forecast",),
    "training.class_weights": ("classify",),
    "training.log_grad_flow": ("language_model", "forecast", "long_range"),
}
_WHY_NOT = {
    "forecast": "its inputs are real-valued rows, not tokens, and it reads fixed context windows",
    "classify": "it reads whole texts, padded per batch",
    "long_range": "its sequences are generated whole",
    "language_model": "it reads a token stream in BPTT windows",
}


def _reason_not_read(path: str, config: dict[str, Any]) -> str | None:
    """Why the task kind of a config mapping (raw, stored or `Config.to_dict`) does not read the
    shared key `path`; None when it does."""
    task = config.get("task", "language_model")
    data = config.get("data")
    synthetic = data.get("synthetic", "adding") if isinstance(data, dict) else None
    if path == "model.embedding_size" and task == "long_range" and synthetic == "adding":
        return "does not apply to data.synthetic: adding (its inputs are real numbers)"
    kinds = APPLIES_TO.get(path)
    if kinds is not None and task in _WHY_NOT and task not in kinds:
        return f"applies to task: {', '.join(kinds)}, not {task} ({_WHY_NOT[task]})"
    return None


def _check_applicable(raw: dict[str, Any], where: _Where) -> None:
    """Every key given in `model` and `training` must be one this task kind reads."""
    for section in ("model", "training"):
        given = raw.get(section)
        for key in given if isinstance(given, dict) else ():
            reason = _reason_not_read(f"{section}.{key}", raw)
            if reason is not None:
                raise SeqtoolError(f"{where(f'{section}.{key}')} {reason}")


def build_config(raw: Any, source: str, overridden: set[str] | None = None) -> Config:
    """Validate a parsed YAML mapping into a `Config`; every error names key and source."""
    where = _Where(source, overridden or set())
    if raw is None:
        raise SeqtoolError(f"{source}: the config is empty")
    if not isinstance(raw, dict):
        raise SeqtoolError(f"{source}: the config must be a mapping of keys to values")
    top = [f.name for f in dataclasses.fields(Config)]
    for key in raw:
        if key not in top:
            raise _unknown_key(where, str(key), top)
    task = _coerce(raw.get("task", "language_model"), TaskName, "task", where)
    seed = _coerce(raw.get("seed", 1234), int, "seed", where)
    config = Config(
        task=task,
        seed=seed,
        data=_build_section(DATA_SCHEMAS[task], raw.get("data"), "data", where),
        model=_build_section(ModelConfig, raw.get("model"), "model", where),
        training=_build_section(TrainingConfig, raw.get("training"), "training", where),
    )
    _check_applicable(raw, where)
    _check_consistency(config, where)
    return config


def _check_consistency(config: Config, where: _Where) -> None:
    """Rules that involve more than one key."""
    data, model, training = config.data, config.model, config.training
    if isinstance(data, (LanguageModelData, ClassifyData)):
        if data.path and data.train:
            raise SeqtoolError(f"{where('data.path')} and data.train are exclusive: give one text file or separate files")
        if not data.path and not data.train:
            raise SeqtoolError(f"{where('data.path')} is missing: give data.path, or data.train with data.val")
        if data.train and not data.val:
            raise SeqtoolError(f"{where('data.val')} is missing: data.train needs a validation file")
        if data.path and data.val_fraction + data.test_fraction >= 0.9:
            raise SeqtoolError(f"{where('data.val_fraction')}: val_fraction + test_fraction leaves under 10% for training")
    if isinstance(data, ForecastData):
        if not data.path:
            raise SeqtoolError(f"{where('data.path')} is missing: the CSV file to forecast")
        if not data.target:
            raise SeqtoolError(f"{where('data.target')} is missing: the column(s) to forecast")
        if data.val_fraction + data.test_fraction >= 0.9:
            raise SeqtoolError(f"{where('data.val_fraction')}: val_fraction + test_fraction leaves under 10% for training")
        if training.loss == "quantile":
            qs = training.quantiles
            if len(qs) < 2 or any(not 0 < q < 1 for q in qs) or qs != sorted(set(qs)):
                raise SeqtoolError(
                    f"{where('training.quantiles')} must be at least two increasing levels between 0 and 1, got {qs}"
                )
        _check_forecast_model(data, model, where)
    if isinstance(data, LongRangeData) and data.val_fraction + data.test_fraction >= 0.9:
        raise SeqtoolError(f"{where('data.val_fraction')}: val_fraction + test_fraction leaves under 10% for training")
    if model.forget_bias != 1.0 and model.type != "lstm":
        raise SeqtoolError(f"{where('model.forget_bias')} applies to model.type=lstm only (got type {model.type})")
    if model.output == "adaptive" and model.tie_weights:
        raise SeqtoolError(
            f"{where('model.tie_weights')} needs model.output: full (the adaptive softmax splits the output matrix in clusters)"
        )
    if model.tie_weights and model.embedding_size != model.hidden_size:
        raise SeqtoolError(
            f"{where('model.tie_weights')} needs model.embedding_size == model.hidden_size "
            f"(got {model.embedding_size} and {model.hidden_size})"
        )
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


def _check_forecast_model(data: ForecastData, model: ModelConfig, where: _Where) -> None:
    """The forecast network's options against each other and against the data section."""
    w = model.segment_length
    if w is not None and data.context_length % w:
        below, above = data.context_length // w * w, (data.context_length // w + 1) * w
        fits = f"{below} or {above}" if below else str(above)
        raise SeqtoolError(
            f"{where('model.segment_length')}: data.context_length {data.context_length} is not a multiple of "
            f"model.segment_length {w}; seqtool does not pad the context (padding would invent rows): use "
            f"data.context_length {fits}, or a segment length that divides it"
        )
    covariates = [key for key in ("features", "categorical") if getattr(data, key)]
    covariates += ["calendar_features"] if data.calendar_features else []
    if model.channels == "independent" and covariates:
        keys = ", ".join(f"data.{key}" for key in covariates)
        raise SeqtoolError(
            f"{where('model.channels')}: independent reads each target column alone, so covariates ({keys}) "
            "would never reach the network; use model.channels: mixed, or move them to data.target"
        )
    if model.revin_affine and model.window_norm != "revin":
        raise SeqtoolError(f"{where('model.revin_affine')} applies to model.window_norm: revin (got {model.window_norm})")


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
    """Stored configs of earlier versions: before `training.state_reset`, language models never
    reset their carried state; and they listed every shared key, read by their task or not."""
    if not isinstance(data, dict):
        return data
    sections = {
        section: {k: v for k, v in data[section].items() if _reason_not_read(f"{section}.{k}", data) is None}
        for section in ("model", "training")
        if isinstance(data.get(section), dict)
    }
    training = sections.get("training")
    if training is not None and data.get("task", "language_model") == "language_model" and "state_reset" not in training:
        training["state_reset"] = 0.0
    return {**data, **sections}


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


def reference_markdown() -> str:
    """docs/config.md, generated from the schema (scripts/config_reference.py writes it; a test
    fails when the file is stale)."""
    header = "| key | type | default | meaning |\n|---|---|---|---|"
    parts = [
        "# Config reference",
        "",
        "Generated from `seqtool/config.py` by `python scripts/config_reference.py`; do not edit by hand.",
        "Every key can be set in the YAML file or overridden on the command line as `section.key=value`",
        "(values read as YAML). Unknown keys are errors, and so are keys the task does not read (a key",
        "marked for some tasks only, given for another).",
        "",
        "## Top level",
        "",
        header,
        "| `task` | " + _type_name(TaskName) + ' | `"language_model"` | what to learn; picks the `data` section below |',
        "| `seed` | integer | `1234` | seed for every random number generator |",
    ]
    for task, cls in DATA_SCHEMAS.items():
        parts += ["", f"## `data` for `task: {task}`", "", header, *_section_rows(cls, "data.")]
    parts += ["", "## `model`", "", header, *_section_rows(ModelConfig, "model.")]
    parts += ["", "## `training`", "", header, *_section_rows(TrainingConfig, "training.")]
    return "\n".join(parts) + "\n"
