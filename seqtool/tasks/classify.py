"""Sequence classification from a CSV of texts and labels (sentiment analysis and the like).

Texts are tokenized and encoded once into a padded id matrix with lengths. A batch is packed by
length before the recurrent layers, so padding never changes a prediction; the model pools the
states (last, mean or max) into class logits. The split keeps class ratios, the vocabulary and the
label set travel in the checkpoint, and evaluation reports accuracy, macro-F1, per-class precision
and recall and the confusion matrix beside the majority-class baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from seqtool.config import Config
from seqtool.data import csvfile, table
from seqtool.data.text import Vocabulary
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.models import SequenceModel
from seqtool.tasks import WindowedTask, to_device

EVAL_BATCH = 256


@dataclass
class EncodedTexts:
    ids: np.ndarray  # (rows, longest length) padded with 0
    lengths: np.ndarray  # (rows,)
    labels: np.ndarray | None  # (rows,) class indices, None for unlabelled text
    truncated: int  # texts cut to data.max_length
    source: str


class ClassifyTask(WindowedTask):
    unit = "samples"
    baselines = ("majority",)

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        self.config = config
        self.cluster = cluster or Cluster()  # which shard of each global batch this process trains on
        self.data = config.data
        self.vocabulary = Vocabulary.from_dict(artifacts["vocabulary"]) if artifacts else None
        self.labels: list[str] | None = list(artifacts["labels"]) if artifacts else None
        self.majority: int | None = artifacts["majority"] if artifacts else None
        self.train: EncodedTexts | None = None
        self.val: EncodedTexts | None = None
        self.order = np.empty(0, dtype=np.int64)
        self.class_weights: torch.Tensor | None = None

    # ---- data --------------------------------------------------------------------------------

    def _read(self, path: str, need_labels: bool = True) -> pd.DataFrame:
        frame = csvfile.read_csv(path)
        wanted = {"text_column": [self.data.text_column]}
        if need_labels:
            wanted["label_column"] = [self.data.label_column]
        csvfile.check_columns(frame, wanted, str(path))
        text = frame[self.data.text_column]
        empty = text.isna() | (text.astype(str).str.strip() == "")
        if empty.any():
            row = csvfile.csv_row(np.flatnonzero(empty.to_numpy())[0])
            raise SeqtoolError(f"{path}: row {row}: empty text in column '{self.data.text_column}'")
        if need_labels:
            missing = frame[self.data.label_column].isna()
            if missing.any():
                row = csvfile.csv_row(np.flatnonzero(missing.to_numpy())[0])
                raise SeqtoolError(f"{path}: row {row}: missing label in column '{self.data.label_column}'")
        return frame

    def encode(
        self, texts: pd.Series, source: str, labels: pd.Series | None = None, tokens: pd.Series | None = None
    ) -> EncodedTexts:
        """Ids, lengths and label ids; `tokens` when the texts were already tokenized."""
        if tokens is None:
            tokens = table.tokenize_column(texts, self.data.tokenizer, self.data.lowercase)
        ids, lengths, truncated = table.encode_column(tokens, self.vocabulary, self.data.max_length)
        if (lengths == 0).any():
            i = int(np.flatnonzero(lengths == 0)[0])
            raise SeqtoolError(f"{source}: {_where(texts, i, source)}: the text {texts.iloc[i]!r} has no tokens")
        return EncodedTexts(ids, lengths, None if labels is None else self._label_ids(labels, source), truncated, source)

    def _label_ids(self, labels: pd.Series, source: str) -> np.ndarray:
        names = _label_strings(labels)
        index = {name: i for i, name in enumerate(self.labels)}
        unknown = ~names.isin(list(index))
        if unknown.any():
            i = int(np.flatnonzero(unknown.to_numpy())[0])
            raise SeqtoolError(
                f"{source}: {_where(labels, i, source)}: label {names.iloc[i]!r} was never seen in training "
                f"(known labels: {', '.join(self.labels)})"
            )
        return names.map(index).to_numpy(np.int64)

    def _split_frames(self) -> dict[str, tuple[str, pd.DataFrame]]:
        data = self.data
        if data.path:
            frame = self._read(data.path)
            labels = _label_strings(frame[data.label_column]).to_numpy()
            train, val, test = table.stratified_split(labels, data.val_fraction, data.test_fraction, self.config.seed)
            splits = {"train": (data.path, frame.iloc[train]), "val": (data.path, frame.iloc[val])}
            if len(test):
                splits["test"] = (data.path, frame.iloc[test])
            return splits
        splits = {"train": (data.train, self._read(data.train)), "val": (data.val, self._read(data.val))}
        if data.test:
            splits["test"] = (data.test, self._read(data.test))
        return splits

    def load_training_data(self) -> None:
        data = self.data
        splits = self._split_frames()
        source, train = splits["train"]
        if self.labels is None:
            self.labels = sorted(_label_strings(train[data.label_column]).unique().tolist())
        if len(self.labels) < 2:
            raise SeqtoolError(
                f"{source}: column '{data.label_column}' has a single label {self.labels}; classification needs two or more"
            )
        tokens = table.tokenize_column(train[data.text_column], data.tokenizer, data.lowercase)  # once, for both uses
        if self.vocabulary is None:
            self.vocabulary = table.build_vocabulary(tokens, data.tokenizer, data.min_freq)
        self.train = self.encode(train[data.text_column], source, train[data.label_column], tokens)
        val_source, val = splits["val"]
        if len(val) == 0:
            raise SeqtoolError(f"{val_source}: the validation part is empty; raise data.val_fraction or add rows")
        self.val = self.encode(val[data.text_column], val_source, val[data.label_column])
        counts = np.bincount(self.train.labels, minlength=len(self.labels))
        if self.majority is None:
            self.majority = int(counts.argmax())
        if self.config.training.class_weights == "balanced":
            weights = len(self.train.labels) / (len(self.labels) * np.maximum(counts, 1))
            self.class_weights = torch.tensor(weights, dtype=torch.float32)

    def artifacts(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary.to_dict(), "labels": self.labels, "majority": self.majority}

    # ---- model and training ------------------------------------------------------------------

    def build_model(self) -> SequenceModel:
        return SequenceModel(self.config.model, output_size=len(self.labels), vocab_size=len(self.vocabulary))

    def steps_per_epoch(self) -> int:
        return self.cluster.usable_batches(len(self.train.lengths), self.config.training.batch_size)

    def units_per_step(self) -> int:
        return min(self.config.training.batch_size, len(self.train.lengths))

    def start_epoch(self, epoch: int) -> None:
        """Shuffle, then sort by length within runs of 50 batches so each batch holds texts of
        similar length (less work in the packed recurrent layers), then shuffle the batches.
        Depends on seed and epoch only, so a resumed run sees the same batches."""
        rng = np.random.default_rng(self.config.seed * 100_003 + epoch)
        size = self.config.training.batch_size
        order = rng.permutation(len(self.train.lengths))
        chunk = size * 50
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            order[start : start + chunk] = part[np.argsort(self.train.lengths[part], kind="stable")]
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        self.order = np.concatenate([batches[i] for i in rng.permutation(len(batches))])

    def _batch(self, encoded: EncodedTexts, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = encoded.lengths[rows]
        tokens = to_device(torch.from_numpy(encoded.ids[rows, : lengths.max()]), device)  # (batch, longest in batch)
        return tokens, torch.from_numpy(lengths)

    def training_loss(self, model: SequenceModel, batch_index: int, device: torch.device) -> torch.Tensor:
        size = self.config.training.batch_size
        rows = self.order[batch_index * size : (batch_index + 1) * size]
        mine, share = self.cluster.own_rows(rows)
        tokens, lengths = self._batch(self.train, mine, device)
        logits, _ = model(tokens, lengths=lengths)
        labels = to_device(torch.from_numpy(self.train.labels[mine]), device)
        if self.class_weights is None:
            return F.cross_entropy(logits.float(), labels) * share
        # Weighted mean over the whole global batch: this rank's weighted sum over all ranks' weight.
        weights = self.class_weights.to(device)
        total_weight = self.class_weights[torch.from_numpy(self.train.labels[rows])].sum().to(device)
        losses = F.cross_entropy(logits.float(), labels, weight=weights, reduction="none")
        return losses.sum() / total_weight * self.cluster.world_size

    # ---- inference and evaluation ------------------------------------------------------------

    @torch.no_grad()
    def probabilities(self, model: SequenceModel, encoded: EncodedTexts, device: torch.device) -> np.ndarray:
        """Class probabilities (rows, classes), computed in batches of similar length."""
        was_training = model.training
        model.eval()
        order = np.argsort(encoded.lengths, kind="stable")
        result = np.empty((len(order), len(self.labels)), dtype=np.float64)
        for start in range(0, len(order), EVAL_BATCH):
            rows = order[start : start + EVAL_BATCH]
            tokens, lengths = self._batch(encoded, rows, device)
            result[rows] = torch.softmax(model.classify(tokens, lengths).float(), dim=-1).cpu().numpy()
        model.train(was_training)
        return result

    def _eval_data(self, split: str, data_path: str | None) -> EncodedTexts:
        if data_path:
            frame = self._read(data_path)
            return self.encode(frame[self.data.text_column], data_path, frame[self.data.label_column])
        if split == "val" and self.val is not None:
            return self.val
        try:
            splits = self._split_frames()
        except SeqtoolError as exc:
            raise SeqtoolError(f"{exc} (the run's data; pass --data FILE to evaluate on another file)") from None
        if split not in splits:
            raise SeqtoolError(f"no {split} split in this run's data (set data.test_fraction or data.test, or pass --data FILE)")
        source, frame = splits[split]
        return self.encode(frame[self.data.text_column], source, frame[self.data.label_column])

    def evaluate(self, model: SequenceModel, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
        encoded = self._eval_data(split, data_path)
        probabilities = self.probabilities(model, encoded, device)
        truth = encoded.labels
        loss = float(-np.log(np.maximum(probabilities[np.arange(len(truth)), truth], 1e-12)).mean())
        predicted = probabilities.argmax(axis=1)
        metrics: dict[str, float] = {"loss": loss}
        metrics.update(classification_metrics(truth, predicted, self.labels))
        majority = np.full_like(truth, self.majority)
        metrics.update({f"majority_{k}": v for k, v in classification_metrics(truth, majority, self.labels).items()})
        confusion = np.zeros((len(self.labels), len(self.labels)), dtype=np.int64)
        np.add.at(confusion, (truth, predicted), 1)
        for i, true_label in enumerate(self.labels):
            for j, predicted_label in enumerate(self.labels):
                metrics[f"confusion/{true_label}/{predicted_label}"] = int(confusion[i, j])
        metrics["samples"] = len(truth)
        metrics["truncated_texts"] = encoded.truncated
        return metrics

    # ---- prediction --------------------------------------------------------------------------

    def predict_frame(self, model: SequenceModel, data_path: str) -> pd.DataFrame:
        """The CSV's rows with the predicted `label` and a `prob_<label>` column per class."""
        frame = self._read(data_path, need_labels=False)
        probabilities = self.probabilities(model, self.encode(frame[self.data.text_column], data_path), torch.device("cpu"))
        out = frame.rename(columns={"label": "label_given"}) if "label" in frame.columns else frame.copy()
        out["label"] = [self.labels[i] for i in probabilities.argmax(axis=1)]
        for j, name in enumerate(self.labels):
            out[f"prob_{name}"] = probabilities[:, j].round(6)
        return out

    def predict_texts(self, model: SequenceModel, texts: list[str]) -> list[tuple[str, float]]:
        """(label, probability) for each text."""
        probabilities = self.probabilities(model, self.encode(pd.Series(texts), "stdin"), torch.device("cpu"))
        best = probabilities.argmax(axis=1)
        return [(self.labels[i], float(probabilities[n, i])) for n, i in enumerate(best)]


def _where(column: pd.Series, position: int, source: str) -> str:
    """'row N' of the CSV file (rows keep their file index through splits), or 'line N' of stdin."""
    if source == "stdin":
        return f"line {position + 1}"
    return f"row {csvfile.csv_row(column.index[position])}"


def _label_strings(labels: pd.Series) -> pd.Series:
    """Labels as strings; integer labels read as floats (1.0) because of a missing cell stay "1"."""
    if pd.api.types.is_float_dtype(labels) and (labels.dropna() % 1 == 0).all() and (labels.dropna().abs() < 2**53).all():
        labels = labels.astype("Int64")
    return labels.astype(str).str.strip()


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision and recall (0 where undefined)."""
    metrics = {"accuracy": float((truth == predicted).mean())}
    f1s = []
    per_class = {}
    for i, name in enumerate(labels):
        true_positive = int(((predicted == i) & (truth == i)).sum())
        predicted_i, actual_i = int((predicted == i).sum()), int((truth == i).sum())
        precision = true_positive / predicted_i if predicted_i else 0.0
        recall = true_positive / actual_i if actual_i else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        per_class[f"precision_{name}"], per_class[f"recall_{name}"] = precision, recall
    metrics["macro_f1"] = float(np.mean(f1s))
    metrics.update(per_class)
    return metrics
