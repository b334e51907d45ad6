"""Task kinds, and the registry that finds them.

A task kind tells the shared engine how to load data, make batches, compute the loss and metrics,
and predict; it also owns its config section, its `predict` options, how `evaluate` shows it, its
export signature, what `seqtool init` looks for, its main metric and its plots. The rest of
seqtool reaches a kind only through this module: no other module names one.

Kinds are found through the entry-point group `seqtool.tasks`, the standard Python plug-in
mechanism. seqtool's own kinds are declared in its pyproject.toml exactly as a third-party
package declares its own (docs/tasks.md walks through one). Reading the registry imports no
kind and no torch; a kind's module is imported when it is first used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from seqtool.config import Config, ModelConfig, TrainingConfig, Where
from seqtool.errors import SeqtoolError

if TYPE_CHECKING:  # torch is imported where it is used, so `runs` and `--help` never load it
    import torch

    from seqtool.distributed import Cluster

ENTRY_POINT_GROUP = "seqtool.tasks"
DEFAULT_KIND = "language_model"  # the kind of a config without a `task` key (seqtool began as char-rnn)


@dataclass(frozen=True)
class MainMetric:
    """The metric that says most about a kind: shown beside the validation loss in training,
    `runs`, `compare` and `plot`. `reference` draws a line (such as chance) in compare plots."""

    name: str
    short: str
    reference: float | None = None
    reference_label: str = ""


@dataclass(frozen=True)
class ServeSpec:
    """A kind's HTTP interface for `seqtool serve`. `predict` answers several requests at once
    (in order); requests whose `batch_key` is equal may share one call, and a kind without a key
    answers each alone. `stream`, for kinds that generate, yields the text pieces of `POST
    /generate` as they come."""

    request: type  # pydantic model of POST /predict's JSON body
    response: type  # pydantic model of its answer
    predict: Callable[[torch.nn.Module, list[Any]], list[Any]]
    batch_key: Callable[[Any], Any] | None = None
    stream_request: type | None = None  # pydantic model of POST /generate's body
    stream: Callable[[torch.nn.Module, Any], Iterator[str]] | None = None


@dataclass(frozen=True)
class PredictOption:
    """One `seqtool predict` (or `seqtool evaluate`) option of a kind. Left out, its value is
    None, so the kind can tell an option given from one left out and apply its own default."""

    flag: str  # "--horizon"
    type: type  # int, float, str or Path
    help: str
    default: str  # what happens when it is left out, for the help
    min: float | None = None


@dataclass(frozen=True)
class Starter:
    """A starter config `seqtool init` proposes for a data file: the kind with the highest
    `fit` wins (3: its column names say it is for the kind; 2: the file looks made for it;
    1: it could be read so)."""

    fit: int
    text: str
    reasons: list[str]


class Unsuitable(SeqtoolError):
    """Raised by `Task.starter`: the file does not suit the kind. `seqtool init` then asks the
    other kinds, or, with `--task`, shows the reason as the error."""


@dataclass(frozen=True)
class BadInput:
    """A mistake a user makes with a kind's job, and a fragment of the one-line error it must give
    (exit 2, no traceback, no run written): `overrides` on the example config, `files` written
    into the example's folder first (name -> text or bytes)."""

    what: str
    message: str
    overrides: tuple[str, ...] = ()
    files: dict[str, str | bytes] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    """A small job of a kind, for the conformance checks (`seqtool.testing`): its data written
    into a folder, a config that trains in seconds on a budget of `training.max_steps`, the
    arguments `seqtool predict RUN` takes for it (with text for stdin, if it reads any), and the
    bad inputs it must refuse."""

    config: dict[str, Any]
    predict_args: tuple[str, ...] = ()
    predict_stdin: str | None = None
    bad_inputs: tuple[BadInput, ...] = ()


class Task:
    """What the engine needs from a task kind. Subclass it, fill in the class attributes, and
    implement the methods without a default; those with one are optional."""

    # ---- declared by each kind -----------------------------------------------------------------
    name: ClassVar[str]  # as in `task: NAME` and the entry point's name
    description: ClassVar[str]  # one line, for `seqtool tasks`
    data_schema: ClassVar[type]  # dataclass of the `data` section (built with `seqtool.config.option`)
    model_schema: ClassVar[type] = ModelConfig  # a subclass adds the kind's own model keys
    training_schema: ClassVar[type] = TrainingConfig  # likewise for training keys
    reads: ClassVar[str]  # what its data is, said when a key of another kind is given to it
    main_metric: ClassVar[MainMetric | None] = None
    unit: ClassVar[str] = "samples"  # what throughput counts: "tok" or "samples"
    baselines: ClassVar[tuple[str, ...]] = ()  # names prefixing baseline metrics in `evaluate`
    timing_metrics: ClassVar[tuple[str, ...]] = ()  # metrics of speed: they differ run to run (the kit skips them)
    predict_options: ClassVar[tuple[PredictOption, ...]] = ()
    evaluate_options: ClassVar[tuple[PredictOption, ...]] = ()  # `seqtool evaluate` options after the checkpoint
    predict_arguments: ClassVar[str | None] = None  # name of the list of plain arguments predict takes (speech: "paths")
    predict_hint: ClassVar[str | None] = None  # typical predict options, for the "Next:" line after training
    not_predictable: ClassVar[str | None] = None  # why `predict` does not apply, if it does not
    not_exportable: ClassVar[str] = "it defines no export signature"
    not_read: ClassVar[dict[str, str]] = {}  # keys of the shared model/training schema it ignores, and why

    config: Config
    cluster: Cluster  # which shard of each global batch this process trains on
    cache_dir: Path | None = None  # where derived data (token files of large corpora) may be cached

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        from seqtool.distributed import Cluster

        self.config = config
        self.cluster = cluster or Cluster()
        # `seqtool evaluate`'s values of `evaluate_options` (all None in training's validation).
        self.evaluation_options: dict[str, Any] = {_option_name(o.flag): None for o in self.evaluate_options}

    # ---- config --------------------------------------------------------------------------------

    @classmethod
    def unread_keys(cls, config: dict[str, Any]) -> dict[str, str]:
        """Dotted keys of its schemas that this config mapping does not read, and why (a key may
        depend on the data section: `model.embedding_size` for real-valued inputs)."""
        return dict(cls.not_read)

    @classmethod
    def check_config(cls, config: Config, where: Where) -> None:
        """Rules that involve more than one key of this kind's sections."""

    @classmethod
    def migrate_stored(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A config stored by an earlier version (checkpoint, run directory), brought up to date
        before validation: a key added since gets the value that reproduces what it trained with."""
        return config

    @classmethod
    def starter(cls, path: Path, frame: Any | None) -> Starter:
        """A starter config for a data file (`frame`: the CSV read, None for other files); raises
        `Unsuitable` saying why when the file does not suit this kind."""
        raise Unsuitable(f"seqtool init cannot propose a {cls.name} config; write one by hand (docs/tasks.md)")

    @classmethod
    def example(cls, folder: Path) -> Example:
        """Write a small job's data into `folder` and describe it (the conformance kit runs it)."""
        raise NotImplementedError(f"task kind {cls.name} defines no example() for the conformance checks")

    # ---- training --------------------------------------------------------------------------------

    def load_training_data(self) -> None:
        """Read and encode the train and validation data (building vocabularies or scalers)."""
        raise NotImplementedError

    def artifacts(self) -> dict[str, Any]:
        """Everything besides weights that predicting needs (vocabulary, scalers), as plain data."""
        return {}

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def units_per_step(self) -> int:
        return self.config.training.batch_size

    def start_epoch(self, epoch: int) -> None:
        """Reset per-epoch state (the carried hidden state; shuffling order)."""

    def training_loss(self, model: torch.nn.Module, batch_index: int, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(
        self, model: torch.nn.Module, split: str, device: torch.device, data_path: str | None = None
    ) -> dict[str, float]:
        """Metrics of the model and of the kind's baselines on a split; `loss` is the one minimised.
        The engine calls it with the model in eval mode and gradients off."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Training state beyond model and optimiser that a resumed run needs (carried hidden state)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def move_state(self, device: torch.device) -> None:
        """Move restored training state (loaded on CPU) to the training device."""

    # ---- using a trained model -----------------------------------------------------------------

    def predict(self, model: torch.nn.Module, options: dict[str, Any], out: TextIO) -> None:
        """`seqtool predict`: `options` maps each of `predict_options` (by name without dashes,
        `top_k` for `--top-k`) to its value or None; results go to `out` (stdout)."""
        raise SeqtoolError(f"predict does not apply to a {self.name} model")

    def predict_api(self, model: torch.nn.Module, data: Any, options: dict[str, Any]) -> Any:
        """`seqtool.load(run).predict(data, **options)` in Python: the same, returned as objects."""
        raise SeqtoolError(f"predict() does not apply to a {self.name} model")

    def serve_spec(self) -> ServeSpec:
        """How `seqtool serve` offers the kind: its request and response schemas (pydantic) and
        how it answers a batch of requests. Only the server calls it (pydantic comes with fastapi)."""
        raise SeqtoolError(f"serve does not apply to a {self.name} model: the kind defines no request schema")

    def shown_apart(self, metric: str) -> bool:
        """Whether a metric stays out of `evaluate`'s table (shown in `evaluation_notes` instead)."""
        return "/" in metric

    def evaluation_notes(self, metrics: dict[str, float]) -> list[Any]:
        """Rich renderables `evaluate` prints below the metrics table (a confusion matrix)."""
        return []

    def evaluation_plot(self, model: torch.nn.Module, split: str, data_path: str | None, path: Path) -> None:
        """`evaluate --plot PATH`: a picture of the evaluation; the default says it has none."""
        raise SeqtoolError(f"--plot is not available for a {self.name} model: the kind draws no evaluation plot")

    @classmethod
    def draws_evaluation_plot(cls) -> bool:
        return cls.evaluation_plot is not Task.evaluation_plot

    @classmethod
    def exports(cls) -> bool:
        return cls.export_signature is not Task.export_signature

    def export_signature(self, model: torch.nn.Module, generator: torch.Generator) -> Any:
        """The inference graph, sample batches and names (`seqtool.signature.Signature`), or a
        dict of them when a deployment calls several graphs (part name -> Signature)."""
        raise SeqtoolError(f"export does not apply to a {self.name} model: {self.not_exportable}")

    def export_metadata(self) -> dict[str, Any]:
        """What a deployment needs besides the graph (vocabulary, scaler), as JSON data."""
        return {}

    def check_export(self, model: torch.nn.Module, run: Any) -> str | None:
        """For a kind whose `export_signature` is several parts (a dict): run its inference loop
        through the exported parts, `run(part, {input: array}) -> {output: array}`, and say how
        the result differs from seqtool's own (None when it does not)."""
        return None


class WindowedTask(Task):
    """Base for kinds whose batches are independent windows or texts, drawn in a fresh order
    each epoch: no state is carried from one batch to the next."""

    order: Any  # this epoch's sample order, set by `start_epoch`

    def sample_count(self) -> int:
        """Training samples in one epoch."""
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        return self.cluster.usable_batches(self.sample_count(), self.config.training.batch_size)

    def start_epoch(self, epoch: int) -> None:
        self.order = self.epoch_order(epoch)

    def epoch_order(self, epoch: int) -> Any:
        """The epoch's sample order: a permutation that depends on seed and epoch only, so a
        resumed run sees the same batches (a kind may override it: classify buckets by length)."""
        import torch

        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return torch.randperm(self.sample_count(), generator=generator).numpy()

    def length_bucketed_order(self, epoch: int, lengths: Any) -> Any:
        """An epoch order for variable-length samples: shuffle, sort by length within runs of 50
        batches so each batch holds samples of similar length (less work in packed recurrent
        layers), then shuffle the batches. Depends on seed and epoch only."""
        import numpy as np

        rng = np.random.default_rng(self.config.seed * 100_003 + epoch)
        size = self.config.training.batch_size
        order = rng.permutation(len(lengths))
        chunk = size * 50
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            order[start : start + chunk] = part[np.argsort(lengths[part], kind="stable")]
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        return np.concatenate([batches[i] for i in rng.permutation(len(batches))])

    def global_rows(self, batch_index: int) -> Any:
        """Every row of global batch `batch_index`, all processes' (for a loss weighted over it)."""
        size = self.config.training.batch_size
        return self.order[batch_index * size : (batch_index + 1) * size]

    def batch_rows(self, batch_index: int) -> tuple[Any, float]:
        """This process's rows of global batch `batch_index`, and its share of the batch."""
        return self.cluster.own_rows(self.global_rows(batch_index))


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch built on the host, on `device`. For CUDA the copy goes through pinned memory and
    does not block, so it overlaps the kernels still queued from the previous step; on the CPU
    the batch itself is returned (no copy)."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the block; the model's mode is restored after it."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


# ---- the registry --------------------------------------------------------------------------------


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
        try:
            cls = task_class(name)
            row.update(description=cls.description, main_metric=cls.main_metric.name if cls.main_metric else None)
            row["error"] = None
        except SeqtoolError as exc:
            row["error"] = str(exc)
        described.append(row)
    return described


def parse_options(kind: type[Task], args: list[str], checkpoint: str, command: str = "predict") -> dict[str, Any]:
    """`seqtool predict` (or `evaluate`) arguments after the checkpoint, read against the kind's
    `predict_options` (or `evaluate_options`), as `--flag VALUE` or `--flag=VALUE`: a name
    (`top_k` for `--top-k`) -> value, None when not given. An option of another kind is named as such."""
    declared = _declared(kind, command)
    own = {option.flag: option for option in declared}
    values: dict[str, Any] = {_option_name(flag): None for flag in own}
    positional = kind.predict_arguments if command == "predict" else None
    if positional:
        values[positional] = []
    rest = list(args)
    while rest:
        flag, given, text = rest.pop(0).partition("=")
        if positional and not flag.startswith("-"):
            values[positional].append(flag + given + text)
            continue
        if flag not in own:
            raise _foreign_option(kind, flag, checkpoint, command)
        if not given:
            if not rest:
                raise SeqtoolError(f"{flag} needs a value")
            text = rest.pop(0)
        values[_option_name(flag)] = _option_value(own[flag], text)
    return values


def _declared(kind: type[Task], command: str) -> tuple[PredictOption, ...]:
    return kind.predict_options if command == "predict" else kind.evaluate_options


def _option_name(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _foreign_option(kind: type[Task], flag: str, checkpoint: str, command: str) -> SeqtoolError:
    if not flag.startswith("-"):
        return SeqtoolError(f"unexpected argument {flag!r} after the checkpoint {checkpoint}")
    owners = [name for name in names() if any(option.flag == flag for option in _declared(task_class(name), command))]
    if owners:
        return SeqtoolError(f"{command} {flag} applies to {' and '.join(owners)} models; {checkpoint} is a {kind.name} model")
    listed = ", ".join(option.flag for option in _declared(kind, command)) or "none"
    return SeqtoolError(f"no such {command} option {flag} for a {kind.name} model (its options: {listed})")


def _option_value(option: PredictOption, text: str) -> Any:
    """The option's value as its type, checked against its minimum."""
    try:
        value = option.type(text)
    except ValueError:
        raise SeqtoolError(f"{option.flag} must be {'an integer' if option.type is int else 'a number'}, got {text!r}") from None
    if option.min is not None and value < option.min:
        raise SeqtoolError(f"{option.flag} must be at least {option.min:g}, got {text}")
    return value
