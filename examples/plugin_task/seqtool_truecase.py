"""Truecasing as a seqtool task kind: give back the capital letters of lower-cased text.

A bidirectional RNN reads a window of lower-cased characters and says, for each, whether it was a
capital. It is scored on letters only, by the F1 of the capitals, beside a rule baseline (capitalise
each line's first letter, the first after . ! or ?, and the word "i"). Predict truecases stdin or
a file. This module is the whole plug-in; its entry point in pyproject.toml lets seqtool find it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from seqtool.data.text import read_text
from seqtool.errors import SeqtoolError
from seqtool.models import recurrent_layers
from seqtool.schema import TokenModelConfig, Where, check_split_fractions, option
from seqtool.tasks import BadInput, Example, MainMetric, PredictOption, WindowedTask, to_device

_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])|\b(i)\b", re.MULTILINE)


@dataclass
class TruecaseData:
    path: str | None = option(None, "a UTF-8 text file, split by position into train, validation and test")
    max_chars: int | None = option(None, "read only the first N characters", ge=1000)
    window: int = option(128, "characters per training sample", ge=8)
    val_fraction: float = option(0.1, "tail held out for validation", gt=0.0, lt=1.0)
    test_fraction: float = option(0.1, "tail held out for testing (after validation)", ge=0.0, lt=1.0)


@dataclass
class TruecaseModel(TokenModelConfig):
    bidirectional: bool = option(True, "read each window in both directions")


class Truecaser(nn.Module):
    """character ids (batch, time) -> logit of "was a capital" (batch, time)."""

    def __init__(self, config: TruecaseModel, vocabulary: int):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, config.embedding_size)
        self.recurrent = recurrent_layers(config, config.embedding_size)
        self.head = nn.Linear(config.hidden_size * (2 if config.bidirectional else 1), 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        states, _ = self.recurrent(self.embedding(ids))
        return self.head(states)[..., 0]


def rule_capitals(lower: str) -> np.ndarray:
    """The baseline: which characters the sentence-start rule capitalises."""
    marks = np.zeros(len(lower), dtype=bool)
    for match in _SENTENCE_START.finditer(lower):
        marks[match.start(2) if match.group(2) else match.start(3)] = True
    return marks


def capital_scores(truth: np.ndarray, guess: np.ndarray, letters: np.ndarray) -> dict[str, float]:
    truth, guess = truth[letters], guess[letters]
    hits = (truth & guess).sum()
    precision, recall = hits / max(guess.sum(), 1), hits / max(truth.sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"accuracy": (truth == guess).mean(), "upper_f1": f1, "upper_recall": recall}  # seqtool makes them floats


class TruecaseTask(WindowedTask):
    name = "truecase"
    description = "restore the capital letters of lower-cased text (example plug-in: seqtool-truecase)"
    data_schema = TruecaseData
    model_schema = TruecaseModel
    reads = "it reads windows of characters and tags each one"
    main_metric = MainMetric("upper_f1", "F1")
    baselines = ("rule",)
    predict_options = (PredictOption("--data", Path, "text file to truecase", "lines on stdin"),)
    predict_hint = "--data notes.txt"
    not_exportable = "the example plug-in keeps to training, evaluation and predict"

    def __init__(self, config: Any, artifacts: dict[str, Any] | None = None, cluster: Any = None):
        super().__init__(config, artifacts, cluster)
        self.chars: list[str] | None = list(artifacts["chars"]) if artifacts else None
        self.splits: dict[str, str] = {}

    @classmethod
    def check_config(cls, config: Any, where: Where) -> None:
        if not config.data.path:
            raise SeqtoolError(f"{where('data.path')} is missing: the text file to learn casing from")
        check_split_fractions(config.data, where)  # seqtool's rule: under 10% for training is an error

    def _read(self) -> str:
        data = self.config.data
        text = read_text(data.path)[: data.max_chars]
        if len(text) < 20 * data.window:
            raise SeqtoolError(f"{data.path}: {len(text):,} characters, fewer than 20 windows of data.window={data.window}")
        return text

    def load_training_data(self) -> None:
        data, text = self.config.data, self._read()
        val_start = round(len(text) * (1 - data.val_fraction - data.test_fraction))
        test_start = round(len(text) * (1 - data.test_fraction))
        self.splits = {"train": text[:val_start], "val": text[val_start:test_start], "test": text[test_start:]}
        self.chars = self.chars or ["<unk>", *sorted(set(self.splits["train"].lower()))]
        self.train_ids, self.train_caps = self._encode(self.splits["train"])

    def _encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Windows of lower-cased character ids and of capital flags, (windows, window) each."""
        index = {c: i for i, c in enumerate(self.chars)}
        ids = np.array([index.get(c, 0) for c in text.lower()], dtype=np.int64)
        caps = np.array([c != c.lower() for c in text], dtype=np.float32)
        width = self.config.data.window
        return ids[: len(text) // width * width].reshape(-1, width), caps[: len(text) // width * width].reshape(-1, width)

    def artifacts(self) -> dict[str, Any]:
        return {"chars": self.chars}  # plain data: checkpoints never hold code

    def build_model(self) -> Truecaser:
        return Truecaser(self.config.model, len(self.chars))

    def sample_count(self) -> int:  # the engine shuffles, batches and shards them
        return len(self.train_ids)

    def training_loss(self, model: Truecaser, batch_index: int, device: torch.device) -> torch.Tensor:
        rows, share = self.batch_rows(batch_index)
        logits = model(to_device(torch.from_numpy(self.train_ids[rows]), device))
        target = to_device(torch.from_numpy(self.train_caps[rows]), device)
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), target) * share

    def _capitals(self, model: Truecaser, lower: str) -> tuple[np.ndarray, torch.Tensor]:
        """Which characters of a lower-cased text the model capitalises, and its logits."""
        index = {c: i for i, c in enumerate(self.chars)}
        ids = torch.tensor([[index.get(c, 0) for c in lower]], dtype=torch.int64)
        logits = model(ids.to(next(model.parameters()).device))[0].float().cpu()  # the engine turned gradients off
        return (logits > 0).numpy(), logits

    def evaluate(self, model: Truecaser, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
        if not self.splits:
            self.load_training_data()
        text = read_text(data_path) if data_path else self.splits.get(split, "")
        if not text:
            raise SeqtoolError(f"no {split} text in this run's data (set data.test_fraction)")
        lower, truth = text.lower(), np.array([c != c.lower() for c in text])
        guess, logits = self._capitals(model, lower)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(truth.astype(np.float32)))
        letters = np.array([c.isalpha() for c in lower])
        rule = {f"rule_{k}": v for k, v in capital_scores(truth, rule_capitals(lower), letters).items()}
        return {"loss": float(loss), **capital_scores(truth, guess, letters), **rule, "letters": int(letters.sum())}

    def truecase(self, model: Truecaser, text: str) -> str:
        """The text with the capitals the model gives it; read after a line break, as in training."""
        lower = "\n" + text.lower()
        capitals, _ = self._capitals(model, lower)
        return "".join(c.upper() if up else c for c, up in zip(lower, capitals, strict=True))[1:]

    def predict(self, model: Truecaser, options: dict[str, Any], out: TextIO) -> None:
        if options["data"] is not None:
            out.write(self.truecase(model, read_text(options["data"])))  # a file it cannot read is one Error: line
            return
        if sys.stdin.isatty():
            raise SeqtoolError("give --data FILE, or pipe text on stdin: echo 'where art thou' | seqtool predict RUN")
        for line in sys.stdin:
            out.write(self.truecase(model, line.rstrip("\n")) + "\n")
            out.flush()

    def predict_api(self, model: Truecaser, data: Any, options: dict[str, Any]) -> str | list[str]:
        if options or not isinstance(data, (str, list)):
            raise SeqtoolError("predict() of a truecase model takes a text, or a list of texts")
        return self.truecase(model, data) if isinstance(data, str) else [self.truecase(model, t) for t in data]

    @classmethod
    def example(cls, folder: Path) -> Example:
        names = ["Romeo", "Juliet", "Paris", "Verona", "Mantua"]
        rng = np.random.default_rng(0)
        lines = [f"{rng.choice(names).upper()}:\nthen {rng.choice(names)} went to {rng.choice(names)} today." for _ in range(300)]
        (folder / "plays.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / "notes.txt").write_text("juliet: we met in verona. romeo went to mantua\n", encoding="utf-8")
        config = {
            "task": "truecase",
            "seed": 3,
            "data": {"path": str(folder / "plays.txt"), "window": 32},
            "model": {"hidden_size": 16, "num_layers": 1, "embedding_size": 8, "dropout": 0.1},
            "training": {"batch_size": 8, "epochs": None, "max_steps": 30, "lr": 0.01, "eval_every": 10, "device": "cpu"},
        }
        bad = (
            BadInput("missing text file", "data file not found", overrides=(f"data.path={folder / 'none.txt'}",)),
            BadInput("too short a text", "fewer than 20 windows", files={"plays.txt": "Too short.\n"}),
            BadInput("not UTF-8", "not UTF-8 text", files={"plays.txt": b"\xff\xfe" * 2000}),
        )
        return Example(config, ("--data", str(folder / "notes.txt")), "juliet met romeo\n", bad)
