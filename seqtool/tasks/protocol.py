"""The task protocol: what a task kind is, in one file whose docstrings are the reference.

A task kind tells the shared engine how to load data, make batches, compute the loss and
metrics, and predict; it also owns its config section, its `predict` options, how `evaluate`
shows it, its export signature, what `seqtool init` looks for, its main metric and its plots.
`docs/tasks.md` is generated from the `Task` class below (`python scripts/tasks_reference.py`),
so what a plug-in author reads there is what this file says.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from seqtool.errors import SeqtoolError
from seqtool.schema import Config, ModelConfig, TrainingConfig, Where

if TYPE_CHECKING:  # torch is imported where it is used, so `runs` and `--help` never load it
    import torch

    from seqtool.distributed import Cluster


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

    @property
    def name(self) -> str:
        """The key of its value in `options`: `top_k` for `--top-k`."""
        return self.flag.lstrip("-").replace("-", "_")


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
    serve_request: dict[str, Any] | None = None  # a JSON body for `POST /predict`, for a kind that serves


class Task:
    """What the engine needs from a task kind. Subclass it, fill in the class attributes, and
    implement the methods without a default; those with one are optional."""

    # ---- declared by each kind -----------------------------------------------------------------
    name: ClassVar[str]  # as in `task: NAME` and the entry point's name
    description: ClassVar[str]  # one line, for `seqtool tasks`
    data_schema: ClassVar[type]  # dataclass of the `data` section (built with `seqtool.schema.option`)
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
        self.evaluation_options: dict[str, Any] = {o.name: None for o in self.evaluate_options}

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
    def serves(cls) -> bool:
        return cls.serve_spec is not Task.serve_spec

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
