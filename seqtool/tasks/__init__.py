"""Task kinds. Each tells the shared engine how to load data, make batches, compute the loss and
metrics, and predict; the engine itself knows nothing task-specific.

Adding a task kind means one module here and one line in `TASKS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from seqtool.config import Config
from seqtool.distributed import Cluster
from seqtool.models import SequenceModel


class Task(Protocol):
    """What the engine needs from a task kind."""

    config: Config
    unit: str  # what throughput counts: "tok" or "samples"
    baselines: tuple[str, ...]  # names prefixing baseline metrics in `evaluate`
    cluster: Cluster  # which shard of each global batch this process trains on
    cache_dir: Path | None  # where derived data (token files of large corpora) may be cached

    def load_training_data(self) -> None:
        """Read and encode the train and validation data (building vocabularies or scalers)."""

    def artifacts(self) -> dict[str, Any]:
        """Everything besides weights that predicting needs (vocabulary, scalers), as plain data."""

    def build_model(self) -> SequenceModel: ...

    def steps_per_epoch(self) -> int: ...

    def units_per_step(self) -> int: ...

    def start_epoch(self, epoch: int) -> None:
        """Reset per-epoch state (the carried hidden state; shuffling order)."""

    def training_loss(self, model: SequenceModel, batch_index: int, device: torch.device) -> torch.Tensor: ...

    def evaluate(self, model: SequenceModel, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
        """Metrics of the model and of the task's baselines on a split; `loss` is the one minimised."""

    def state_dict(self) -> dict[str, Any]:
        """Training state beyond model and optimiser that a resumed run needs (carried hidden state)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def move_state(self, device: torch.device) -> None:
        """Move restored training state (loaded on CPU) to the training device."""


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch built on the host, on `device`. For CUDA the copy goes through pinned memory and
    does not block, so it overlaps the kernels still queued from the previous step; on the CPU
    the batch itself is returned (no copy)."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


class WindowedTask:
    """Base for tasks whose batches are independent windows or texts: no state is carried from
    one batch to the next, so there is nothing beyond the epoch's order to save or restore."""

    cache_dir: Path | None = None  # unused: their data is read whole

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def move_state(self, device: torch.device) -> None:
        pass


TASKS = {
    "language_model": "seqtool.tasks.language_model:LanguageModelTask",
    "forecast": "seqtool.tasks.forecast:ForecastTask",
    "classify": "seqtool.tasks.classify:ClassifyTask",
    "long_range": "seqtool.tasks.long_range:LongRangeTask",
}


def make_task(config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None) -> Task:
    """The task object for `config.task`; `artifacts` come from a checkpoint when there is one,
    `cluster` says which shard of each batch to train on (all of it in a single process)."""
    import importlib

    module_name, class_name = TASKS[config.task].split(":")
    return getattr(importlib.import_module(module_name), class_name)(config, artifacts, cluster)
