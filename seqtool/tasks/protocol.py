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
    """The metric's name in `evaluate --json` (`mase`)."""
    short: str
    """Its label in narrow tables (`MASE`)."""
    reference: float | None = None
    """A value to draw as a line in compare plots (chance accuracy), if any."""
    reference_label: str = ""
    """The line's label."""


@dataclass(frozen=True)
class ServeSpec:
    """A kind's HTTP interface for `seqtool serve`. `predict` answers several requests at once
    (in order); requests whose `batch_key` is equal may share one call, and a kind without a key
    answers each alone. `stream`, for kinds that generate, yields the text pieces of `POST
    /generate` as they come."""

    request: type
    """The pydantic model of `POST /predict`'s JSON body."""
    response: type
    """The pydantic model of its answer."""
    predict: Callable[[torch.nn.Module, list[Any]], list[Any]]
    """`predict(model, requests) -> responses`, one per request, in order."""
    batch_key: Callable[[Any], Any] | None = None
    """Requests with equal keys may share one `predict` call; None: each is answered alone."""
    stream_request: type | None = None
    """The pydantic model of `POST /generate`'s body, for a kind that generates."""
    stream: Callable[[torch.nn.Module, Any], Iterator[str]] | None = None
    """`stream(model, request)`: the text pieces of `POST /generate`, as they come."""


@dataclass(frozen=True)
class PredictOption:
    """One `seqtool predict` (or `seqtool evaluate`) option of a kind. Left out, its value is
    None, so the kind can tell an option given from one left out and apply its own default."""

    flag: str
    """The option as typed: `--horizon`."""
    type: type
    """`int`, `float`, `str` or `Path`: the value is converted to it (an error says so when it cannot be)."""
    help: str
    """One line for `--help`."""
    default: str
    """What happens when it is left out, for the help (the value is None then)."""
    min: float | None = None
    """The smallest value accepted, if any."""

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
    """3: its column names say it is for the kind; 2: the file looks made for it; 1: it could be read so."""
    text: str
    """The config file's text, commented."""
    reasons: list[str]
    """What was guessed and why, one line each (printed by `seqtool init`)."""


class Unsuitable(SeqtoolError):
    """Raised by `Task.starter`: the file does not suit the kind. `seqtool init` then asks the
    other kinds, or, with `--task`, shows the reason as the error."""


@dataclass(frozen=True)
class BadInput:
    """A mistake a user makes with a kind's job, and a fragment of the one-line error it must give
    (exit 2, no traceback, no run written): `overrides` on the example config, `files` written
    into the example's folder first (name -> text or bytes)."""

    what: str
    """What the mistake is, for the kit's failure message."""
    message: str
    """A fragment the one `Error:` line must contain."""
    overrides: tuple[str, ...] = ()
    """`KEY=VALUE` overrides on the example config."""
    files: dict[str, str | bytes] = dataclasses.field(default_factory=dict)
    """Files written into the example's folder first: name -> text or bytes."""


@dataclass(frozen=True)
class Phase:
    """A run trained before the kind's own, in a subfolder of its run directory (a classifier's
    language model, `training.pretrain`): an ordinary run of its config that `--resume` continues
    where it stopped. Its events are copied into the run's metrics.jsonl marked with its name, and
    its best checkpoint reaches the kind's model through `Task.initialise_from`."""

    name: str
    """The subfolder, and the `phase` of its events in metrics.jsonl ("pretrain-forward")."""
    config: dict[str, Any]
    """What it trains, as a config file would hold it (a config of one of the kind's
    `init_sources`); the engine validates it as it does a file."""
    description: str
    """For the line announcing it ("forward language model on 9,596 training texts")."""
    init_from: tuple[str, ...] = ()
    """Earlier phases whose best checkpoints start it (`--init-from` of its own kind)."""
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    """Files the phases read, by name in the run directory, written before the first phase runs."""


@dataclass(frozen=True)
class Example:
    """A small job of a kind, for the conformance checks (`seqtool.testing`): its data written
    into a folder, a config that trains in seconds on a budget of `training.max_steps`, the
    arguments `seqtool predict RUN` takes for it (with text for stdin, if it reads any), and the
    bad inputs it must refuse."""

    config: dict[str, Any]
    """The config, as a mapping; the kit sets its budget (`max_steps`, evaluation every 2 steps)."""
    predict_args: tuple[str, ...] = ()
    """The arguments `seqtool predict RUN` takes for the example."""
    predict_stdin: str | None = None
    """Lines for predict to read from stdin, for a kind that reads any: as many lines must come out."""
    bad_inputs: tuple[BadInput, ...] = ()
    """The mistakes the kind must refuse in one line, leaving an existing run untouched."""
    serve_request: dict[str, Any] | None = None
    """A JSON body for `POST /predict`, for a kind that serves."""


class Task:
    """What the engine needs from a task kind. Subclass it (or `WindowedTask`), fill in the class
    attributes, and implement the methods marked required; the others have defaults.

    One object serves one run. The engine makes it with `Task(config, artifacts, cluster)` and
    then, to train, calls `load_training_data`, `build_model`, `steps_per_epoch` and, per step,
    `start_epoch` (at each epoch's start) and `training_loss`; to validate, `evaluate`. To use a
    trained model (`evaluate`, `predict`, `export`, `serve`, the Python API) it makes the object
    from the checkpoint's config and artifacts and never calls `load_training_data`: those
    commands read only the data they score or the input they are given.
    """

    # ---- declared by each kind -----------------------------------------------------------------

    name: ClassVar[str]
    """The kind's name, as in `task: NAME`; it must equal the entry point's name."""
    description: ClassVar[str]
    """One line, for `seqtool tasks` and the served app's title."""
    data_schema: ClassVar[type]
    """The dataclass of the `data` section, its fields made with `seqtool.schema.option(default,
    help, ge=..., gt=..., le=..., lt=...)`. Subclass `seqtool.schema.SplitData` (fractions) or
    `FileSplitData` (one `path` split by fractions, or `train`/`val`/`test` files) to get the
    fraction checks and `evaluate`'s default split: the test part when `has_test_split()`."""
    model_schema: ClassVar[type] = ModelConfig
    """The `model` section: `ModelConfig` (cell type, sizes, dropout), `TokenModelConfig` (adds
    `embedding_size`), or a subclass adding the kind's own keys."""
    training_schema: ClassVar[type] = TrainingConfig
    """The `training` section: `TrainingConfig`, or a subclass adding the kind's own keys."""
    reads: ClassVar[str]
    """What its data is, in the error for a key of another kind ("it reads windows of a CSV")."""
    main_metric: ClassVar[MainMetric | None] = None
    """The metric shown beside the validation loss in training, `runs`, `compare` and `plot`."""
    unit: ClassVar[str] = "samples"
    """What throughput counts (`{unit}_per_s` in metrics.jsonl, the bar's rate): "tok" or "samples"."""
    baselines: ClassVar[tuple[str, ...]] = ()
    """Names prefixing the baselines' metrics in `evaluate`: `naive` for `naive_mase` beside
    `mase`. The table puts each beside the model's metric of the same name."""
    timing_metrics: ClassVar[tuple[str, ...]] = ()
    """Metrics of speed (`real_time_factor`): they differ run to run, so the kit's equality checks
    leave them out."""
    predict_options: ClassVar[tuple[PredictOption, ...]] = ()
    """The options `seqtool predict RUN` takes after the checkpoint (listed by `predict --help`)."""
    evaluate_options: ClassVar[tuple[PredictOption, ...]] = ()
    """The options `seqtool evaluate RUN` takes after the checkpoint (`--beam-size`); their values
    are in `self.evaluation_options` when `evaluate` runs, all None during training."""
    predict_arguments: ClassVar[str | None] = None
    """The name under which `predict` receives plain arguments after the checkpoint, as a list
    (speech: "paths", for `seqtool predict RUN a.wav b.wav`); None: it takes none."""
    predict_hint: ClassVar[str | None] = None
    """Typical predict options, for the "Next:" line printed after training (`--horizon 12`)."""
    not_predictable: ClassVar[str | None] = None
    """Why `predict` does not apply, when it does not (the refusal names it)."""
    not_exportable: ClassVar[str] = "it defines no export signature"
    """Why `export` does not apply, for a kind without `export_signature`."""
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    """Modules the kind needs beyond seqtool's own dependencies, each with the extra that brings
    it: `(("sacrebleu", "seq2seq"),)`. A run checks them before it trains, in one line."""
    not_read: ClassVar[dict[str, str]] = {}
    """Keys of the shared `model`/`training` sections the kind ignores, and why: giving one is an
    error, never a silent no-op (`unread_keys` when it depends on the data section)."""
    init_sources: ClassVar[dict[str, str]] = {}
    """Other kinds whose runs `seqtool train --init-from RUN` may start this kind from, each with
    what is copied (`{"language_model": "the embedding and the recurrent layers"}`); `seqtool
    tasks` lists them. A run of the kind's own always may (all its weights, vocabulary and
    scalers). `initialise_from` does the copying."""

    config: Config
    """The run's validated config."""
    cluster: Cluster
    """Which share of each global batch this process trains on (all of it without torchrun)."""
    reporting: bool = False
    """True while `seqtool evaluate` (or the API's `evaluate`) scores the model, False in
    training's periodic validation: a kind may add slow baselines (statistical peers) only then."""
    cache_dir: Path | None = None
    """A folder for derived data worth keeping between runs (token files of large corpora,
    audio features), set by the engine beside the run directory; None when there is none."""

    # ---- making one ---------------------------------------------------------------------------

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        """`artifacts` are what `artifacts()` returned when the checkpoint was written: None for a
        fresh run, the checkpoint's for `--resume`, `--init-from` and every use of a trained model.
        Restore them here (vocabulary, labels, scaler) and keep them: a resumed or fine-tuned run
        must map data to the same ids the weights were trained on, so `load_training_data` builds
        them only when there are none. A subclass calls `super().__init__(config, artifacts, cluster)`."""
        from seqtool.distributed import Cluster

        self.config = config
        self.cluster = cluster or Cluster()
        self.evaluation_options: dict[str, Any] = {o.name: None for o in self.evaluate_options}

    # ---- config --------------------------------------------------------------------------------

    @classmethod
    def unread_keys(cls, config: dict[str, Any]) -> dict[str, str]:
        """Dotted keys of the shared sections that this config mapping does not read, and why (a
        key may depend on the data section: `model.embedding_size` for real-valued inputs)."""
        return dict(cls.not_read)

    @classmethod
    def check_config(cls, config: Config, where: Where) -> None:
        """Rules that involve more than one key, checked before any data is read; raise
        `SeqtoolError` naming the key with `where("data.path")` (the file or override it came
        from). A data schema built on `SplitData` checks itself with `config.data.check(where)`."""

    @classmethod
    def migrate_stored(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A config stored by an earlier version (checkpoint, run directory), brought up to date
        before validation: a key added since gets the value that reproduces what it trained with."""
        return config

    @classmethod
    def starter(cls, path: Path, frame: Any | None) -> Starter:
        """A starter config for `seqtool init` (`frame`: the CSV read, None for other files); raise
        `Unsuitable` saying why when the file does not suit this kind."""
        raise Unsuitable(f"seqtool init cannot propose a {cls.name} config; write one by hand (docs/tasks.md)")

    @classmethod
    def example(cls, folder: Path) -> Example:
        """Write a small job's data into `folder` and describe it: the conformance kit runs it."""
        raise NotImplementedError(f"task kind {cls.name} defines no example() for the conformance checks")

    # ---- training --------------------------------------------------------------------------------

    def load_training_data(self) -> None:
        """Read and encode the training and validation data (and the test part, if
        any), building the artifacts (vocabulary, scaler) when `__init__` got none. Fit anything
        learnt from data on the training part only. Called only to train."""
        raise NotImplementedError

    def data_report(self) -> dict[str, int]:
        """What reading the training data repaired, filled, cut or dropped, as counts by name
        (`missing_timestamps_filled`, `source_truncated_pairs`): the trainer prints each count
        that is not zero once the data is read, and keeps them all in summary.json under `data`,
        so that nothing is changed silently."""
        return {}

    def artifacts(self) -> dict[str, Any]:
        """Everything besides weights that using the model needs (vocabulary, labels, scaler), as
        plain data: lists, dicts, strings and numbers (checkpoints never hold code)."""
        return {}

    def build_model(self) -> torch.nn.Module:
        """The network, from the config and the artifacts (vocabulary sizes).
        `seqtool.models.recurrent_layers(config.model, input_size)` builds the RNN/LSTM/GRU stack a
        model section describes. To log the gradient flow (`training.log_grad_flow`) the model
        has a `probe` attribute: None, or a list the forward pass appends each step's state to."""
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one pass over the training data, the same in every process: the
        epoch budget and the progress display count with it (`WindowedTask` defines it)."""
        raise NotImplementedError

    def units_per_step(self) -> int:
        """How many `unit`s one step trains on, over all processes (the throughput figure)."""
        return self.config.training.batch_size

    def start_epoch(self, epoch: int) -> None:
        """Called before the first step of each epoch (and on resume, before the carried state
        is restored): reset per-epoch state, draw the epoch's order from seed and epoch only."""

    def training_loss(self, model: torch.nn.Module, batch_index: int, device: torch.device) -> torch.Tensor:
        """The loss of global batch `batch_index` of the epoch, as this process sees it.
        Gradients are averaged over processes, so return this process's share of the global
        batch's loss: the mean over its rows times the share `batch_rows` gives (1.0 in one
        process). A loss summed over tokens is divided by the global batch's count
        (`global_rows`) and multiplied by `cluster.world_size`, so that two processes take the
        step one process takes. `WindowedTask` defines `steps_per_epoch`, `start_epoch` and the
        rows of each batch."""
        raise NotImplementedError

    def evaluate(
        self, model: torch.nn.Module, split: str, device: torch.device, data_path: str | None = None
    ) -> dict[str, float]:
        """Metrics of the model and the kind's baselines on `split` ("val" or "test"), or on
        the file `data_path` (`evaluate --data`: read it as the run's data was read, with the
        stored artifacts). `loss` is the one training minimises and checkpoints choose by;
        `<baseline>_<metric>` stand beside `<metric>`. Values are numbers; an integer is a count
        (shown in the table's title, "2,000 utterances"). Runs in eval mode without gradients, at
        the run's precision; in `seqtool evaluate`, without `load_training_data` having run."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Training state beyond the model and optimiser that a resumed run needs (the carried
        hidden state), as tensors and plain data; each process saves its own."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (loaded on the CPU)."""

    def move_state(self, device: torch.device) -> None:
        """Move state restored by `load_state_dict` to the training device."""

    # ---- using a trained model -----------------------------------------------------------------

    def parameter_groups(self, model: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
        """The model's parameters in groups that may learn at different rates (`lr_scales`), the
        first the one whose rate training logs; by default one group of them all."""
        return [list(model.parameters())]

    def lr_scales(self, step: int) -> list[float]:
        """Each group's share of the scheduled learning rate at `step`: 0 keeps a group frozen.
        A resumed run must get the same scales at the same step (no state of their own)."""
        return [1.0]

    def pretraining(self, folder: Path) -> list[Phase]:
        """Runs to train before this one, in order, in subfolders of `folder` (the run directory),
        each named by its `Phase`; their best checkpoints then go to `initialise_from`. Called
        after `load_training_data` when the kind's own training has not started yet (a fresh run,
        or a resumed one interrupted in a phase). By default none."""
        return []

    def initialise_from(self, model: torch.nn.Module, sources: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """`--init-from` runs of the kinds in `init_sources`, each as (where it is, its checkpoint
        payload): copy what fits into `model`, which was built from this run's own data (its own
        vocabulary), and return lines saying what was copied, mapped and left fresh. A mismatch
        (cell, sizes, tokenizer, direction) raises SeqtoolError naming both sides; nothing has
        been written yet. Called only for kinds that declare `init_sources`."""
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, options: dict[str, Any], out: TextIO) -> None:
        """`seqtool predict`: `options` maps each of `predict_options` by `PredictOption.name` to its
        value, None when left out (and `predict_arguments`, if declared, to a list); results go to
        `out` (stdout). Runs in eval mode without gradients."""
        raise SeqtoolError(f"predict does not apply to a {self.name} model")

    def predict_api(self, model: torch.nn.Module, data: Any, options: dict[str, Any]) -> Any:
        """`seqtool.load(run).predict(data, **options)` in Python: the same, returned as objects."""
        raise SeqtoolError(f"predict() does not apply to a {self.name} model")

    def serve_spec(self) -> ServeSpec:
        """How `seqtool serve` offers the kind: its request and response schemas (pydantic) and
        how it answers a batch of requests. Only the server calls it (pydantic comes with fastapi,
        so import it in the kind's serve module, not at the top of the kind's package)."""
        raise SeqtoolError(f"serve does not apply to a {self.name} model: the kind defines no request schema")

    def shown_apart(self, metric: str) -> bool:
        """Whether a metric stays out of `evaluate`'s table (shown in `evaluation_notes` instead);
        by default those with a "/" in the name (`precision/pos`)."""
        return "/" in metric

    def evaluation_notes(self, metrics: dict[str, float]) -> list[Any]:
        """Rich renderables `evaluate` prints below the metrics table (a confusion matrix)."""
        return []

    def evaluation_plot(self, model: torch.nn.Module, split: str, data_path: str | None, path: Path) -> None:
        """`evaluate --plot PATH`: a picture of the evaluation; the default says it has none."""
        raise SeqtoolError(f"--plot is not available for a {self.name} model: the kind draws no evaluation plot")

    @classmethod
    def draws_evaluation_plot(cls) -> bool:
        """Whether the kind defines `evaluation_plot` (compare draws one per variant then)."""
        return cls.evaluation_plot is not Task.evaluation_plot

    @classmethod
    def serves(cls) -> bool:
        """Whether the kind defines `serve_spec` (the kit's serve check, `seqtool serve`)."""
        return cls.serve_spec is not Task.serve_spec

    @classmethod
    def exports(cls) -> bool:
        """Whether the kind defines `export_signature` (the kit's export check, `seqtool export`)."""
        return cls.export_signature is not Task.export_signature

    def export_signature(self, model: torch.nn.Module, generator: torch.Generator) -> Any:
        """The inference graph with sample batches and names (`seqtool.signature.Signature`), or a
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
    """Base for kinds whose samples are independent (windows, texts, pairs, clips), drawn in a
    fresh order each epoch: no state is carried from one batch to the next. It cuts the epoch's
    order into global batches and gives each process its contiguous share of every batch."""

    order: Any
    """This epoch's sample order (an array of sample indices), set by `start_epoch`."""

    def sample_count(self) -> int:
        """Training samples in one epoch."""
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        """Global batches per epoch; a last batch too small to give every process a row is dropped."""
        return self.cluster.usable_batches(self.sample_count(), self.config.training.batch_size)

    def start_epoch(self, epoch: int) -> None:
        """Draws the epoch's order (`epoch_order`)."""
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
        """Every sample of global batch `batch_index`, all processes' (for a loss weighted over
        the whole batch: class weights, a sum over tokens)."""
        size = self.config.training.batch_size
        return self.order[batch_index * size : (batch_index + 1) * size]

    def batch_rows(self, batch_index: int) -> tuple[Any, float]:
        """This process's samples of global batch `batch_index`, and its share: multiply the mean
        loss over these samples by it (see `training_loss`)."""
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
