"""Sequence classification from a CSV of texts and labels (sentiment analysis and the like).

Texts are tokenized and encoded once into a padded id matrix with lengths. A batch is packed by
length before the recurrent layers, so padding never changes a prediction; the model pools the
states (last, mean or max) into class logits. The split keeps class ratios, the vocabulary and the
label set travel in the checkpoint, and evaluation reports accuracy, macro-F1, per-class precision
and recall and the confusion matrix beside the majority-class baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from seqtool.checkpoint import atomic_write_text
from seqtool.data import csvfile, sniff
from seqtool.data.text import Vocabulary, vocabulary_metadata
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.models import SequenceModel, layer_parameters
from seqtool.schema import Config, Where, parse_duration
from seqtool.signature import Signature, tensor_spec
from seqtool.tasks import (
    BadInput,
    Example,
    MainMetric,
    Phase,
    PredictOption,
    ServeSpec,
    Starter,
    Unsuitable,
    WindowedTask,
    seeding,
    to_device,
)
from seqtool.tasks.classify import ngram, pretraining, table
from seqtool.tasks.classify.config import PRETRAIN_KEYS, ClassifyData, ClassifyModel, ClassifyTraining, starter_config
from seqtool.tasks.classify.export import ClassifierGraph
from seqtool.tasks.classify.metrics import classification_metrics

EVAL_BATCH = 256


@dataclass
class EncodedTexts:
    ids: np.ndarray  # (rows, longest length) padded with 0
    lengths: np.ndarray  # (rows,)
    labels: np.ndarray | None  # (rows,) class indices, None for unlabelled text
    truncated: int  # texts cut to data.max_length
    source: str
    texts: pd.Series | None = None  # the raw texts, for the n-gram baseline


class ClassifyTask(WindowedTask):
    name = "classify"
    description = "labels for texts from a CSV (sentiment and the like), beside the majority class and an n-gram linear model"
    data_schema = ClassifyData
    model_schema = ClassifyModel
    training_schema = ClassifyTraining
    reads = "it reads whole texts, padded per batch"
    main_metric = MainMetric("accuracy", "acc")
    baselines = ("majority", "ngram")
    predict_hint = "--data texts.csv --output labelled.csv"
    predict_options = (
        PredictOption("--data", Path, "CSV of texts to label", "text lines on stdin"),
        PredictOption("--output", Path, "write the labelled CSV here", "stdout"),
    )
    not_read: ClassVar[dict[str, str]] = {
        "training.log_grad_flow": "does not apply to task: classify (its packed batches have no per-step states to probe)"
    }
    init_sources: ClassVar[dict[str, str]] = {"language_model": seeding.COPIED}

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        super().__init__(config, artifacts, cluster)
        self.data = config.data
        self.vocabulary = Vocabulary.from_dict(artifacts["vocabulary"]) if artifacts else None
        self.labels: list[str] | None = list(artifacts["labels"]) if artifacts else None
        self.majority: int | None = artifacts["majority"] if artifacts else None
        stored_ngram = (artifacts or {}).get("ngram")  # absent from runs of earlier versions
        self.ngram: ngram.NgramModel | None = ngram.NgramModel.from_dict(stored_ngram) if stored_ngram else None
        self._ngram_cache: dict[str, Any] = {}
        if config.model.ngram_weight > 0:  # evaluate shows the network alone beside the product
            self.baselines = ("network", *ClassifyTask.baselines)
        self.train: EncodedTexts | None = None
        self.val: EncodedTexts | None = None
        self.order = np.empty(0, dtype=np.int64)
        stored_weights = (artifacts or {}).get("class_weights")  # absent from runs of earlier versions
        self.class_weights: torch.Tensor | None = None if stored_weights is None else torch.tensor(stored_weights)

    @classmethod
    def check_config(cls, config: Config, where: Where) -> None:
        config.data.check(where)
        if config.training.pretrain == "none":
            defaults = ClassifyTraining()
            for key in PRETRAIN_KEYS:
                if getattr(config.training, key) != getattr(defaults, key):
                    raise SeqtoolError(f"{where(f'training.{key}')} applies with training.pretrain: language_model only")
            if config.data.unlabelled:
                raise SeqtoolError(f"{where('data.unlabelled')} is read by training.pretrain: language_model only")
        elif config.model.bidirectional and config.model.num_layers > 1:
            raise SeqtoolError(
                f"{where('training.pretrain')}: a bidirectional classifier of {config.model.num_layers} layers feeds both "
                "directions into its upper layers, which no language model's layers fit; use model.num_layers: 1, or "
                "model.bidirectional: false"
            )
        elif config.training.pretrain_max_time is not None:
            try:
                parse_duration(config.training.pretrain_max_time)
            except ValueError as exc:
                raise SeqtoolError(f"{where('training.pretrain_max_time')}: {exc}") from None
        if config.training.pretrain_epochs is None and config.training.pretrain_max_time is None:
            raise SeqtoolError(f"{where('training.pretrain_epochs')} or training.pretrain_max_time must bound pretraining")

    @classmethod
    def starter(cls, path: Path, frame: Any | None) -> Starter:
        if frame is None:
            raise Unsuitable(f"{path} is not a CSV or TSV; a classifier reads a table of texts and labels")
        texts = sniff.text_columns(frame)
        if not texts:
            raise Unsuitable(f"{path}: no column holds text (strings averaging over 20 characters)")
        return starter_config(path, frame, texts)

    @classmethod
    def example(cls, folder: Path) -> Example:
        """The label is the first word of a long text, classes unbalanced and weighted, and the
        last batch of each epoch short (184 training texts in batches of 32)."""
        rng = np.random.default_rng(0)
        filler = "the a of and to in is it that was for on with as by this at from or an be".split()
        first = np.where(rng.random(230) < 0.3, "good", "bad")
        texts = [f"{word} " + " ".join(rng.choice(filler, 20)) for word in first]
        frame = pd.DataFrame({"review": texts, "sentiment": np.where(first == "good", "pos", "neg")})
        frame.to_csv(folder / "reviews.csv", index=False)
        frame[["review"]].head(5).to_csv(folder / "unlabelled.csv", index=False)
        empty_text = frame.copy()
        empty_text.loc[7, "review"] = ""
        config = {
            "task": cls.name,
            "seed": 5,
            "data": {"path": str(folder / "reviews.csv"), "text_column": "review", "label_column": "sentiment"}
            | {"min_freq": 1, "val_fraction": 0.2},
            "model": {"hidden_size": 16, "num_layers": 1, "embedding_size": 16, "dropout": 0.1, "bidirectional": True},
            "training": {"batch_size": 32, "lr": 0.01, "class_weights": "balanced"},
        }
        bad = (
            BadInput(
                "missing label column", "column 'stars' (data.label_column) not found", overrides=("data.label_column=stars",)
            ),
            BadInput("empty text", "row 9: empty text in column 'review'", files={"reviews.csv": empty_text.to_csv(index=False)}),
            BadInput("one label only", "single label", files={"reviews.csv": frame.assign(sentiment="pos").to_csv(index=False)}),
            BadInput("empty file", "empty", files={"reviews.csv": ""}),
        )
        serve = {"texts": ["good the a of and", "bad it was"]}
        return Example(config, ("--data", str(folder / "unlabelled.csv")), "good the a of and\nbad it was\n", bad, serve)

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
        label_ids = None if labels is None else self._label_ids(labels, source)
        return EncodedTexts(ids, lengths, label_ids, truncated, source, texts)

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
        if self.ngram is None:  # fitted once, alongside training; a resumed run keeps the first
            same = (data.tokenizer, data.lowercase) == ("word", True)  # the network's tokens are the baseline's words
            words = tokens if same else ngram.word_tokens(train[data.text_column])
            val_words = ngram.word_tokens(val[data.text_column])
            self.ngram = ngram.fit(words, self.train.labels, val_words, self.val.labels, len(self.labels), self.config.seed)
        if self.config.training.class_weights == "balanced" and self.class_weights is None:
            weights = len(self.train.labels) / (len(self.labels) * np.maximum(counts, 1))
            self.class_weights = torch.tensor(weights, dtype=torch.float32)

    def artifacts(self) -> dict[str, Any]:
        """The vocabulary, labels and majority class, and the class weights training used (so that
        `seqtool evaluate` scores the same weighted loss that chose the checkpoint)."""
        weights = None if self.class_weights is None else self.class_weights.tolist()
        return {
            "vocabulary": self.vocabulary.to_dict(),
            "labels": self.labels,
            "majority": self.majority,
            "class_weights": weights,
            "ngram": None if self.ngram is None else self.ngram.to_dict(),
        }

    # ---- model and training ------------------------------------------------------------------

    def build_model(self) -> SequenceModel:
        return SequenceModel(self.config.model, output_size=len(self.labels), vocab_size=len(self.vocabulary))

    def pretraining(self, folder: Path) -> list[Phase]:
        """training.pretrain: language_model (see `seqtool.tasks.classify.pretraining`)."""
        if self.config.training.pretrain == "none":
            return []
        return pretraining.phases(self.config, self.train.texts, folder)

    @property
    def _layered(self) -> bool:
        """Whether fine-tuning treats layers apart (per-layer rates or gradual unfreezing)."""
        training = self.config.training
        return training.layer_lr_decay != 1.0 or training.unfreeze_every is not None

    def parameter_groups(self, model: SequenceModel) -> list[list[torch.nn.Parameter]]:
        """With per-layer rates or gradual unfreezing: the head, each recurrent layer from the top
        (both directions together), then the embedding; else one group."""
        if not self._layered:
            return super().parameter_groups(model)
        directions = (False, True) if self.config.model.bidirectional else (False,)
        layers = [
            [weight for reverse in directions for weight in layer_parameters(model.recurrent, k, reverse)]
            for k in reversed(range(self.config.model.num_layers))
        ]
        return [list(model.head.parameters()), *layers, list(model.embedding.parameters())]

    def lr_scales(self, step: int) -> list[float]:
        """Group d (0: the head) learns at 1 / layer_lr_decay**d of the rate, once unfrozen (at
        step d x unfreeze_every)."""
        if not self._layered:
            return [1.0]
        training = self.config.training
        every = training.unfreeze_every
        depths = range(self.config.model.num_layers + 2)
        return [0.0 if every and step < d * every else training.layer_lr_decay**-d for d in depths]

    def initialise_from(self, model: SequenceModel, sources: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """From language models (see `seqtool.tasks.seeding`)."""
        vocabulary, data = self.vocabulary, self.config.data
        reader = seeding.Reader(
            "classifier",
            self.config.model,
            data.tokenizer,
            "data.tokenizer",
            vocabulary.tokens,
            vocabulary.counts,
            "embedding.weight",
            "recurrent.",
        )
        return seeding.seed(model, reader, sources)

    def sample_count(self) -> int:
        return len(self.train.lengths)

    def units_per_step(self) -> int:
        return min(self.config.training.batch_size, len(self.train.lengths))

    def epoch_order(self, epoch: int) -> np.ndarray:
        return self.length_bucketed_order(epoch, self.train.lengths)

    def _batch(self, encoded: EncodedTexts, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = encoded.lengths[rows]
        tokens = to_device(torch.from_numpy(encoded.ids[rows, : lengths.max()]), device)  # (batch, longest in batch)
        return tokens, torch.from_numpy(lengths)

    def training_loss(self, model: SequenceModel, batch_index: int, device: torch.device) -> torch.Tensor:
        rows = self.global_rows(batch_index)  # all processes' rows: their weight below
        mine, share = self.batch_rows(batch_index)
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
    def network_probabilities(self, model: SequenceModel, encoded: EncodedTexts, device: torch.device) -> np.ndarray:
        """The network's class probabilities (rows, classes), computed in batches of similar length."""
        order = np.argsort(encoded.lengths, kind="stable")
        result = np.empty((len(order), len(self.labels)), dtype=np.float64)
        for start in range(0, len(order), EVAL_BATCH):
            rows = order[start : start + EVAL_BATCH]
            tokens, lengths = self._batch(encoded, rows, device)
            result[rows] = torch.softmax(model.pooled_logits(tokens, lengths).float(), dim=-1).cpu().numpy()
        return result

    def probabilities(self, model: SequenceModel, encoded: EncodedTexts, device: torch.device) -> np.ndarray:
        """The class probabilities that predict, serve and evaluate use: the network's alone, or with
        `model.ngram_weight` w > 0 a product of experts with the n-gram baseline, p_net^(1-w) * p_ngram^w
        renormalised. The two err on different texts (word order against exact phrases), so the
        product beats both on sentence polarity (docs/benchmarks.md)."""
        return self._combined(self.network_probabilities(model, encoded, device), encoded)

    def _combined(self, network: np.ndarray, encoded: EncodedTexts) -> np.ndarray:
        weight = self.config.model.ngram_weight
        if weight == 0:
            return network
        logs = (1 - weight) * np.log(np.maximum(network, 1e-12)) + weight * np.log(self._ngram_probabilities(encoded))
        exp = np.exp(logs - logs.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

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

    def _ngram_probabilities(self, encoded: EncodedTexts) -> np.ndarray:
        """The n-gram baseline's class probabilities for a set of texts, computed once per set
        (training's validation passes score the same texts again and again)."""
        if self._ngram_cache.get("texts") is not encoded:
            self._ngram_cache = {"texts": encoded, "probabilities": self.ngram.probabilities(ngram.word_tokens(encoded.texts))}
        return self._ngram_cache["probabilities"]

    def evaluate(self, model: SequenceModel, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
        encoded = self._eval_data(split, data_path)
        network = self.network_probabilities(model, encoded, device)
        probabilities = self._combined(network, encoded)
        truth = encoded.labels
        nll = -np.log(np.maximum(network[np.arange(len(truth)), truth], 1e-12))
        # The objective training minimises, so the best checkpoint is chosen on it: the network's
        # own (the product's would choose a barely trained network, whose near-uniform answer
        # softens the n-gram model's overconfidence); with class weights, the weighted mean (as
        # torch's weighted cross-entropy), else the plain mean.
        weights = np.ones(len(self.labels)) if self.class_weights is None else self.class_weights.numpy().astype(np.float64)
        loss = float((weights[truth] * nll).sum() / weights[truth].sum())
        predicted = probabilities.argmax(axis=1)
        metrics: dict[str, float] = {"loss": loss}
        metrics.update(classification_metrics(truth, predicted, self.labels))
        majority = np.full_like(truth, self.majority)
        metrics.update({f"majority_{k}": v for k, v in classification_metrics(truth, majority, self.labels).items()})
        if self.config.model.ngram_weight > 0:
            alone = network.argmax(axis=1)
            metrics.update({f"network_{k}": v for k, v in classification_metrics(truth, alone, self.labels).items()})
        if self.ngram is not None:
            guessed = self._ngram_probabilities(encoded).argmax(axis=1)
            metrics.update({f"ngram_{k}": v for k, v in classification_metrics(truth, guessed, self.labels).items()})
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

    # ---- predict, evaluate's extras, export ------------------------------------------------------

    def predict(self, model: SequenceModel, options: dict[str, Any], out: TextIO) -> None:
        """A CSV in, the CSV with predictions out; or text lines on stdin, `label<TAB>probability` out."""
        import sys

        from rich.console import Console

        data, output = options["data"], options["output"]
        if data is not None:
            text = self.predict_frame(model, str(data)).to_csv(index=False)
            if output:
                atomic_write_text(output, text)
                Console(stderr=True).print(f"Predictions for {text.count(chr(10)) - 1} rows written to {output}")
            else:
                out.write(text)
            return
        if output is not None:
            raise SeqtoolError("--output needs --data CSV (text from stdin is answered on stdout)")
        if sys.stdin.isatty():
            raise SeqtoolError("give --data CSV, or pipe text lines on stdin: echo 'a wonderful film' | seqtool predict RUN")
        for line in sys.stdin:  # one answer per line, so that `paste` lines them up; blank in, blank out
            text = line.rstrip("\r\n")
            if text.strip():
                ((label, probability),) = self.predict_texts(model, [text])
                out.write(f"{label}\t{probability:.4f}\n")
            else:
                out.write("\n")
            out.flush()

    def predict_api(self, model: SequenceModel, data: Any, options: dict[str, Any]) -> Any:
        """`predict(CSV)`: the rows with labels and probabilities; `predict(["text", ...])`:
        (label, probability) pairs."""
        if options:
            raise SeqtoolError(f"predict() options {sorted(options)} do not apply to a classify model (it takes data)")
        if isinstance(data, list):
            return self.predict_texts(model, data)
        if data is None:
            raise SeqtoolError("predict() of a classifier needs data: a CSV path or a list of texts")
        return self.predict_frame(model, str(data))

    def serve_spec(self) -> ServeSpec:
        from seqtool.tasks.classify.serve import spec

        return spec(self)

    def shown_apart(self, metric: str) -> bool:
        return super().shown_apart(metric) or metric == "truncated_texts"

    def evaluation_notes(self, metrics: dict[str, float]) -> list[Any]:
        """The confusion matrix (rows: true label; columns: predicted), and how many texts were cut."""
        from rich.table import Table

        confusion = {k: v for k, v in metrics.items() if k.startswith("confusion/")}
        labels = list(dict.fromkeys(k.split("/")[1] for k in confusion))
        table = Table(title="Confusion matrix (rows: true, columns: predicted)")
        table.add_column("true \\ predicted")
        for label in labels:
            table.add_column(label, justify="right")
        for true in labels:
            table.add_row(true, *(f"{confusion[f'confusion/{true}/{p}']:,}" for p in labels))
        notes: list[Any] = [table] if confusion else []
        if metrics.get("truncated_texts"):
            notes.append(f"{metrics['truncated_texts']:,} texts were longer than data.max_length and were truncated.")
        return notes

    def export_signature(self, model: SequenceModel, generator: torch.Generator) -> Signature:
        """(tokens, lengths) -> (logits, probabilities). Training packs variable-length batches, which
        neither ONNX nor tracing can express; the graph runs over the padded batch and masks instead."""
        vocab = len(self.vocabulary)

        def batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            lengths_t = torch.tensor(lengths, dtype=torch.int64)
            tokens = torch.randint(0, vocab, (len(lengths), max(lengths)), generator=generator)
            tokens[torch.arange(max(lengths))[None, :] >= lengths_t[:, None]] = 0  # padding, as seqtool encodes it
            return tokens, lengths_t

        example = batch([6, 3])
        check = batch([1, 19, 7, 19, 12])
        with torch.no_grad():
            logits = model.pooled_logits(*check)  # the packed path that training and `predict` use
        inputs = [
            tensor_spec("tokens", "int64", ["batch", "time"], "token ids, padded with 0 after each text's end"),
            tensor_spec("lengths", "int64", ["batch"], "tokens in each text (1 <= length <= time)"),
        ]
        outputs = [
            tensor_spec("logits", "float32", ["batch", "labels"], "class scores"),
            tensor_spec("probabilities", "float32", ["batch", "labels"], "softmax of the logits"),
        ]
        axes = {"tokens": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}}
        return Signature(ClassifierGraph(model), example, check, (logits, torch.softmax(logits, dim=-1)), inputs, outputs, axes)

    def export_metadata(self) -> dict[str, Any]:
        data = self.data
        return {
            "vocabulary": vocabulary_metadata(self.vocabulary, data.tokenizer, data.lowercase),
            "labels": list(self.labels),
            "max_length": data.max_length,
            "text_column": data.text_column,
            **self._ngram_note(),
        }

    def _ngram_note(self) -> dict[str, Any]:
        weight = self.config.model.ngram_weight
        if weight == 0:
            return {}
        return {
            "ngram_weight": weight,
            "note": f"the graph is the network alone: seqtool's predictions multiply its probabilities with the n-gram "
            f"baseline's (model.ngram_weight {weight:g}), which the graph does not hold",
        }


def _where(column: pd.Series, position: int, source: str) -> str:
    """'row N' of the CSV file (rows keep their file index through splits), 'line N' of stdin, or
    'texts[N]' of a served request."""
    if source == "stdin":
        return f"line {position + 1}"
    if source == "request":
        return f"texts[{position}]"
    return f"row {csvfile.csv_row(column.index[position])}"


def _label_strings(labels: pd.Series) -> pd.Series:
    """Labels as strings; integer labels read as floats (1.0) because of a missing cell stay "1"."""
    if pd.api.types.is_float_dtype(labels) and (labels.dropna() % 1 == 0).all() and (labels.dropna().abs() < 2**53).all():
        labels = labels.astype("Int64")
    return labels.astype(str).str.strip()
