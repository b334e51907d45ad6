"""Synthetic long-range memory tasks: the RNN/LSTM overview's RNN-vs-LSTM table (docs/rnn-lstm-overview.md), measurable.

- adding (Hochreiter & Schmidhuber 1997; Le et al. 2015): each step carries a number in [0, 1)
  and a marker; two steps are marked, one in each half of the sequence, and the target is the
  sum of their numbers (regression, MSE). Always answering the mean sum scores MSE 1/6: chance.
- copy (Arjovsky et al. 2016): `symbols` random symbols, then `length` blanks, then a go marker;
  while reading `symbols` more blanks the model must output the symbols in order. Accuracy over
  the recalled symbols; chance is 1/alphabet.
- parity: `length` random bits; the label is their XOR (classification). Chance is 1/2.

The samples are generated from the seed alone, so every machine and every run sees the same
data; the split is by position (train, then val, then test). Each metric comes with its chance
baseline (`chance_mse` or `chance_accuracy`) and `error_vs_chance`: the model's error as a share
of chance's (1.0 = learnt nothing, 0.0 = solved), the one number a length sweep compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.models import SequenceModel
from seqtool.schema import Config, SplitData, TokenModelConfig, Where, option
from seqtool.tasks import BadInput, Example, MainMetric, WindowedTask, to_device

EVAL_BATCH = 1024


@dataclass
class LongRangeData(SplitData):
    """Generated samples, split at random (seeded)."""

    synthetic: Literal["adding", "copy", "parity"] = option(
        "adding", "adding: sum of two marked numbers (MSE); copy: recall symbols after a delay; parity: XOR of bits"
    )
    length: int = option(100, "time steps between what must be remembered and when it is asked for", ge=2)
    samples: int = option(20000, "sequences generated from the seed (train + val + test)", ge=10)
    symbols: int = option(10, "copy: symbols to remember", ge=1)
    alphabet: int = option(8, "copy: distinct symbols", ge=2)


def generate(
    kind: str, samples: int, length: int, seed: int, symbols: int = 10, alphabet: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of a synthetic task, deterministic in its arguments.

    adding: inputs (samples, length, 2) float32 [number, marker], targets (samples,) float32.
    copy: inputs (samples, symbols + length + symbols) token ids (blank = alphabet, go =
    alphabet + 1), targets (samples, symbols). parity: inputs (samples, length) bits, targets
    (samples,) XOR of the bits.
    """
    rng = np.random.default_rng([seed, length])
    rows = np.arange(samples)
    if kind == "adding":
        numbers = rng.random((samples, length), dtype=np.float32)
        half = length // 2
        first, second = rng.integers(0, half, samples), rng.integers(half, length, samples)
        markers = np.zeros((samples, length), dtype=np.float32)
        markers[rows, first] = markers[rows, second] = 1.0
        return np.stack([numbers, markers], axis=-1), numbers[rows, first] + numbers[rows, second]
    if kind == "copy":
        remembered = rng.integers(0, alphabet, (samples, symbols))
        inputs = np.full((samples, symbols + length + symbols), alphabet, dtype=np.int64)
        inputs[:, :symbols] = remembered
        inputs[:, symbols + length - 1] = alphabet + 1  # go: the last of the delay's steps
        return inputs, remembered
    if kind == "parity":
        bits = rng.integers(0, 2, (samples, length))
        return bits, bits.sum(axis=1) % 2
    raise ValueError(f"unknown synthetic task {kind!r}")


class LongRangeTask(WindowedTask):
    name = "long_range"
    description = "synthetic memory benchmarks (adding, copy, parity) that show how far back each cell remembers"
    data_schema = LongRangeData
    model_schema = TokenModelConfig
    reads = "its sequences are generated whole"
    main_metric = MainMetric("error_vs_chance", "err/chance", reference=1.0, reference_label="chance")
    baselines = ("chance",)
    not_predictable = "its data is synthetic, generated from the config's seed; use seqtool evaluate"
    not_exportable = "it is a benchmark on synthetic data"

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        super().__init__(config, artifacts, cluster)
        self.data = config.data
        self.splits: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self.order = np.empty(0, dtype=np.int64)

    @classmethod
    def unread_keys(cls, config: dict[str, Any]) -> dict[str, str]:
        data = config.get("data")
        if (data.get("synthetic", "adding") if isinstance(data, dict) else "adding") == "adding":
            return {"model.embedding_size": "does not apply to data.synthetic: adding (its inputs are real numbers)"}
        return {}

    @classmethod
    def check_config(cls, config: Config, where: Where) -> None:
        config.data.check(where)

    @classmethod
    def example(cls, folder: Path) -> Example:
        """The copy task, short: recall 3 symbols after 10 blanks (its data is generated)."""
        config = {
            "task": cls.name,
            "seed": 2,
            "data": {"synthetic": "copy", "length": 10, "samples": 400, "symbols": 3, "alphabet": 4, "test_fraction": 0.1},
            "model": {"hidden_size": 16, "num_layers": 1, "embedding_size": 8, "dropout": 0.0},
            "training": {"batch_size": 16, "lr": 0.01},
        }
        bad = (
            BadInput(
                "an embedding for real numbers", "does not apply to data.synthetic: adding", overrides=("data.synthetic=adding",)
            ),
            BadInput("no training samples left", "leaves under 10% for training", overrides=("data.val_fraction=0.85",)),
            BadInput("unknown benchmark", "must be one of adding, copy, parity", overrides=("data.synthetic=sorting",)),
        )
        return Example(config, (), None, bad)

    @property
    def regression(self) -> bool:
        return self.data.synthetic == "adding"

    def load_training_data(self) -> None:
        d = self.data
        inputs, targets = generate(d.synthetic, d.samples, d.length, self.config.seed, d.symbols, d.alphabet)
        n_val, n_test = round(d.samples * d.val_fraction), round(d.samples * d.test_fraction)
        n_train = d.samples - n_val - n_test
        if n_val == 0:
            raise SeqtoolError(f"data.samples={d.samples} with val_fraction={d.val_fraction} leaves no validation samples")
        bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, d.samples)}
        self.splits = {name: (inputs[a:b], targets[a:b]) for name, (a, b) in bounds.items() if b > a}

    def artifacts(self) -> dict[str, Any]:
        return {}  # the config regenerates the data

    # ---- model and training ------------------------------------------------------------------

    def build_model(self) -> SequenceModel:
        d, model = self.data, self.config.model
        if d.synthetic == "adding":
            return SequenceModel(model, output_size=1, input_size=2)
        if d.synthetic == "copy":
            return SequenceModel(model, output_size=d.alphabet, vocab_size=d.alphabet + 2)
        return SequenceModel(model, output_size=2, vocab_size=2)

    def sample_count(self) -> int:
        return len(self.splits["train"][1])

    def units_per_step(self) -> int:
        return min(self.config.training.batch_size, len(self.splits["train"][1]))

    def _outputs(self, model: SequenceModel, inputs: torch.Tensor) -> torch.Tensor:
        """adding: (batch,) sums; copy: (batch, symbols, alphabet) logits; parity: (batch, 2) logits."""
        if self.data.synthetic == "copy":
            out, _ = model(inputs)
            return out[:, -self.data.symbols :].float()
        out, _ = model(inputs, last_only=True)
        return out[:, 0].float() if self.regression else out.float()

    def _loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return F.mse_loss(out, targets)
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1))

    def training_loss(self, model: SequenceModel, batch_index: int, device: torch.device) -> torch.Tensor:
        rows, share = self.batch_rows(batch_index)
        inputs, targets = self.splits["train"]
        x, y = torch.from_numpy(inputs[rows]), torch.from_numpy(targets[rows])
        return self._loss(self._outputs(model, to_device(x, device)), to_device(y, device)) * share

    # ---- evaluation --------------------------------------------------------------------------

    def evaluate(self, model: SequenceModel, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
        if data_path is not None:
            raise SeqtoolError("--data does not apply to task: long_range (its data is generated from the config's seed)")
        if self.splits is None:
            self.load_training_data()
        if split not in self.splits:
            raise SeqtoolError(f"no {split} split in this run's data (set data.test_fraction)")
        inputs, targets = self.splits[split]
        outputs = []
        for start in range(0, len(targets), EVAL_BATCH):
            x = to_device(torch.from_numpy(inputs[start : start + EVAL_BATCH]), device)
            outputs.append(self._outputs(model, x).cpu())
        out, y = torch.cat(outputs), torch.from_numpy(targets)
        metrics = {"loss": self._loss(out, y).item()}
        train_targets = self.splits["train"][1]
        if self.regression:
            chance = float(np.mean((targets - train_targets.mean()) ** 2))  # always answering the training mean
            metrics.update(mse=metrics["loss"], chance_loss=chance, chance_mse=chance, error_vs_chance=metrics["loss"] / chance)
        else:
            accuracy = (out.argmax(-1) == y).float().mean().item()
            frequencies = np.bincount(train_targets.reshape(-1), minlength=out.shape[-1]) + 1.0
            frequencies /= frequencies.sum()
            chance = float(np.mean(targets.reshape(-1) == frequencies.argmax()))  # always the commonest answer
            chance_loss = float(-np.log(frequencies[targets.reshape(-1)]).mean())
            metrics.update(
                accuracy=accuracy,
                chance_loss=chance_loss,
                chance_accuracy=chance,
                error_vs_chance=(1.0 - accuracy) / max(1.0 - chance, 1e-12),
            )
        metrics["samples"] = len(targets)
        return metrics
