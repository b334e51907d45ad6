"""Sequence to sequence: translation, grapheme-to-phoneme, question answering.

A CSV or TSV holds a source and a target column. Each side has its own tokenizer (`char`, `word`,
`whitespace` for phoneme strings, or subword pieces, `bpe` or `unigram`, learned on the training
part: `subwords.py`) and vocabulary (or one shared). The network
(`network.py`) encodes the source and decodes the target with attention, teacher-forced
in training. Evaluation decodes for real (greedy, or beam search with `evaluate --beam-size`) and
scores the outputs with sacrebleu's BLEU, chrF and TER on the joined texts, exact match and token
error rate (edit distance over target tokens: the phoneme error rate for G2P; over words for
subword models), each beside two baselines: `copy` outputs the
source unchanged, `majority` the training data's most frequent target (the majority answer in QA).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from seqtool.checkpoint import atomic_write_text
from seqtool.data import csvfile, sniff, splits
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.schema import Config, Where
from seqtool.tasks import (
    BadInput,
    Example,
    MainMetric,
    PredictOption,
    ServeSpec,
    Starter,
    Unsuitable,
    WindowedTask,
    seeding,
    to_device,
)
from seqtool.tasks.seq2seq.config import (
    DEFAULT_VOCAB_SIZE,
    PAIR_NAMES,
    Seq2SeqData,
    Seq2SeqModel,
    Seq2SeqTraining,
    starter_config,
)
from seqtool.tasks.seq2seq.metrics import sequence_metrics
from seqtool.tasks.seq2seq.network import BOS, EOS, PAD, UNK, Seq2SeqNetwork
from seqtool.tasks.seq2seq.subwords import Subwords, learn
from seqtool.tasks.seq2seq.tokens import SUBWORD_TOKENIZERS, UNKNOWN, Codec

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]  # ids PAD, UNK, BOS, EOS
EVAL_BATCH = 128
LENGTH_QUANTILE = 0.995  # of the training pairs' target/source length ratios: the output length cap
LENGTH_SLACK = 10  # tokens an output may run past length_ratio x its source length


@dataclass
class Encoded:
    """A split's pairs as padded id matrices; targets end with </s>."""

    source: np.ndarray  # (pairs, max_source_length) int64
    source_lengths: np.ndarray
    target: np.ndarray  # (pairs, max_target_length + 1)
    target_lengths: np.ndarray
    sources: list[str]  # the texts, for the copy baseline and BLEU
    targets: list[str]
    truncated: int  # pairs cut on either side (at least)
    cut: dict[str, int]  # side -> texts longer than its max_*_length, cut to it
    longest: dict[str, int]  # side -> the longest text, in tokens


class Seq2SeqTask(WindowedTask):
    name = "seq2seq"
    description = "sequence to sequence with attention: translation, grapheme-to-phoneme, question answering"
    data_schema = Seq2SeqData
    requires = (("sacrebleu", "seq2seq"), ("sentencepiece", "seq2seq"))
    init_sources: ClassVar[dict[str, str]] = {"language_model": f"the encoder: {seeding.COPIED}, on the source side"}
    model_schema = Seq2SeqModel
    training_schema = Seq2SeqTraining
    reads = "it reads pairs of sequences, a source and a target"
    main_metric = MainMetric("bleu", "BLEU")
    baselines = ("copy", "majority")
    predict_hint = "--data pairs.csv --output out.csv"
    predict_options = (
        PredictOption("--data", Path, "CSV/TSV with the source column; a prediction column is added", "lines on stdin"),
        PredictOption("--output", Path, "write the CSV here", "stdout"),
        PredictOption("--max-length", int, "longest output in tokens", "data.max_target_length", min=1),
        PredictOption("--beam-size", int, "beam search with this many beams (1: greedy)", "model.beam_size", min=1),
        PredictOption("--n-best", int, "print the N best outputs (at most --beam-size) with their scores", "1", min=1),
        PredictOption(
            "--length-penalty", float, "beam search: GNMT length-penalty exponent (0: none)", "model.length_penalty", min=0.0
        ),
        PredictOption("--attention", Path, "draw the attention alignment of the first input to this PNG", "no plot"),
    )
    evaluate_options = (
        PredictOption(
            "--beam-size", int, "decode the split by beam search with this many beams (1: greedy)", "model.beam_size", min=1
        ),
        PredictOption(
            "--length-penalty", float, "beam search: GNMT length-penalty exponent (0: none)", "model.length_penalty", min=0.0
        ),
    )

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        super().__init__(config, artifacts, cluster)
        self.data = config.data
        self.vocab: dict[str, list[str]] | None = dict(artifacts["vocabulary"]) if artifacts else None
        # The training data's most frequent target: the `majority` baseline (the majority answer in QA).
        self.majority: str | None = artifacts.get("majority_target") if artifacts else None
        # Outputs stop at length_ratio x the source's tokens + LENGTH_SLACK (runs of earlier versions: no such cap).
        self.length_ratio: float | None = (artifacts or {}).get("length_ratio")
        self.splits: dict[str, Encoded] = {}
        self._indexes: dict[str, dict[str, int]] = {}
        stored = (artifacts or {}).get("tokenizers")  # absent from runs of earlier versions
        if stored is not None and stored != self._tokenizer_spec():
            raise SeqtoolError(
                f"the checkpoint's tokenizers ({_describe(stored)}) do not match this config's "
                f"({_describe(self._tokenizer_spec())}): its vocabulary and weights fit only its own"
            )
        self.subword_models: dict[str, str] = dict((artifacts or {}).get("subwords") or {})  # side -> base64 model
        self.codecs = {side: self._codec(side, self.subword_models.get(side)) for side in ("source", "target")}

    def _tokenizer_spec(self) -> dict[str, Any]:
        """What the vocabulary depends on, stored with the run and compared when a run starts from it."""
        data = self.data
        subword = {data.source_tokenizer, data.target_tokenizer} & set(SUBWORD_TOKENIZERS)
        return {
            "source": data.source_tokenizer,
            "target": data.target_tokenizer,
            "vocab_size": self._vocab_size() if subword else None,
            "shared": data.share_vocabulary,
        }

    def _vocab_size(self) -> int:
        return self.data.vocab_size or DEFAULT_VOCAB_SIZE

    def _codec(self, side: str, model: str | None) -> Codec:
        tokenizer = self.data.source_tokenizer if side == "source" else self.data.target_tokenizer
        return Codec(tokenizer, Subwords(model, "checkpoint") if model else None)

    @classmethod
    def check_config(cls, config: Config, where: Where) -> None:
        config.data.check(where)
        model = config.model
        if model.tie_embeddings and model.embedding_size != model.hidden_size:
            raise SeqtoolError(
                f"{where('model.tie_embeddings')} needs model.embedding_size == model.hidden_size "
                f"(got {model.embedding_size} and {model.hidden_size})"
            )
        data = config.data
        if data.share_vocabulary and data.source_tokenizer != data.target_tokenizer:
            raise SeqtoolError(f"{where('data.share_vocabulary')} needs the same tokenizer on both sides")
        sides = {data.source_tokenizer, data.target_tokenizer}
        if data.vocab_size is not None and not sides & set(SUBWORD_TOKENIZERS):
            raise SeqtoolError(f"{where('data.vocab_size')} applies to the subword tokenizers (bpe, unigram) only")
        if data.min_freq != 1 and sides <= set(SUBWORD_TOKENIZERS):
            raise SeqtoolError(
                f"{where('data.min_freq')} applies to char, word and whitespace tokenizers: a subword vocabulary "
                "has data.vocab_size pieces"
            )

    @classmethod
    def unread_keys(cls, config: dict[str, Any]) -> dict[str, str]:
        unread = super().unread_keys(config)
        model = config.get("model")
        if isinstance(model, dict) and model.get("attention") == "none":
            unread["model.copy_unknown"] = "needs attention: it copies the source token the attention points at"
        return unread

    @classmethod
    def migrate_stored(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Runs from before `model.copy_unknown` printed `<unk>`; they keep doing so."""
        model = config.get("model") or {}
        if "copy_unknown" not in model and model.get("attention") != "none":
            config = {**config, "model": {**model, "copy_unknown": False}}
        return config

    # ---- data --------------------------------------------------------------------------------------

    def _read(self, path: str, need_target: bool = True) -> pd.DataFrame:
        frame = csvfile.read_csv(path, strings=True)
        columns = {"source_column": [self.data.source_column]}
        if need_target:
            columns["target_column"] = [self.data.target_column]
        csvfile.check_columns(frame, columns, path)
        for column in [self.data.source_column] + ([self.data.target_column] if need_target else []):
            empty = np.flatnonzero(frame[column].str.strip().eq("").to_numpy())
            if len(empty):
                raise SeqtoolError(f"{path}: row {csvfile.csv_row(int(empty[0]))}: empty cell in column '{column}'")
        return frame

    def load_training_data(self) -> None:
        frames = splits.file_parts(self.data, self._read, self.config.seed)
        source, train = frames["train"]
        if len(train) < 2 or "val" not in frames:
            raise SeqtoolError(f"{source}: {len(train)} training pairs and no validation pairs; give more pairs")
        fresh = self.vocab is None  # a new run; a trained one keeps what it stored
        if fresh:
            self.vocab = self._build_vocabulary(train, source)
            self.majority = str(train[self.data.target_column].value_counts().index[0])
        self.splits = {split: self._encode(frame) for split, (_, frame) in frames.items()}
        self._refuse_mostly_cut(self.splits["train"], source)
        if fresh:
            train_pairs = self.splits["train"]
            ratios = train_pairs.target_lengths / np.maximum(train_pairs.source_lengths, 1)
            self.length_ratio = float(np.quantile(ratios, LENGTH_QUANTILE))

    def _refuse_mostly_cut(self, train: Encoded, source: str) -> None:
        """Training on the first tokens of most pairs is a config mistake, not data to learn."""
        for side, limit in (("source", self.data.max_source_length), ("target", self.data.max_target_length)):
            if train.cut[side] * 2 > len(train.sources):
                raise SeqtoolError(
                    f"{source}: {train.cut[side]:,} of {len(train.sources):,} training pairs have a {side} longer than "
                    f"data.max_{side}_length={limit} tokens (the longest has {train.longest[side]}); raise it"
                )

    def data_report(self) -> dict[str, int]:
        """Training pairs cut to `data.max_source_length` / `max_target_length`, per side."""
        train = getattr(self, "splits", {}).get("train")
        return {} if train is None else {f"{side}_truncated_pairs": count for side, count in train.cut.items()}

    def _build_vocabulary(self, frame: pd.DataFrame, source: str) -> dict[str, list[str]]:
        """Each side's tokens: a subword side's learned pieces (one model for both sides with
        data.share_vocabulary), a rule tokenizer's tokens seen `min_freq` times or more."""
        data = self.data
        columns = {"source": data.source_column, "target": data.target_column}
        texts = {side: frame[column].tolist() for side, column in columns.items()}
        if data.share_vocabulary:
            texts = {side: texts["source"] + texts["target"] for side in texts}
        vocabulary: dict[str, list[str]] = {}
        for side, codec in self.codecs.items():
            if codec.tokenizer in SUBWORD_TOKENIZERS:
                shared = data.share_vocabulary and side == "target"
                model = (
                    self.subword_models["source"] if shared else learn(texts[side], codec.tokenizer, self._vocab_size(), source)
                )
                self.subword_models[side] = model
                self.codecs[side] = Codec(codec.tokenizer, Subwords(model, source))
                vocabulary[side] = self.codecs[side].subwords.pieces()
                continue
            count = Counter(t for text in texts[side] for t in codec.tokens(text))
            vocabulary[side] = SPECIALS + sorted(
                (t for t, n in count.items() if n >= data.min_freq), key=lambda t: (-count[t], t)
            )
        return vocabulary

    def _index(self, side: str) -> dict[str, int]:
        """token -> id of one side, built once (predict encodes line by line)."""
        if side not in self._indexes:
            self._indexes[side] = {t: i for i, t in enumerate(self.vocab[side])}
        return self._indexes[side]

    def _ids(self, texts: list[str], side: str, limit: int, end: bool) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Padded ids (texts, limit [+1 for </s>]), lengths, how many texts were cut, and the
        longest text's length in tokens."""
        index, codec = self._index(side), self.codecs[side]
        ids = np.full((len(texts), limit + end), PAD, dtype=np.int64)
        lengths, cut, longest = np.zeros(len(texts), dtype=np.int64), 0, 0
        for row, text in enumerate(texts):
            tokens = [index.get(t, UNK) for t in codec.tokens(text)] or [UNK]
            cut += len(tokens) > limit
            longest = max(longest, len(tokens))
            tokens = tokens[:limit] + ([EOS] if end else [])
            ids[row, : len(tokens)] = tokens
            lengths[row] = len(tokens)
        return ids, lengths, cut, longest

    def _encode(self, frame: pd.DataFrame) -> Encoded:
        data = self.data
        sources, targets = frame[data.source_column].tolist(), frame[data.target_column].tolist()
        source, source_lengths, cut_source, longest_source = self._ids(sources, "source", data.max_source_length, end=False)
        target, target_lengths, cut_target, longest_target = self._ids(targets, "target", data.max_target_length, end=True)
        cut = {"source": cut_source, "target": cut_target}
        longest = {"source": longest_source, "target": longest_target}
        return Encoded(source, source_lengths, target, target_lengths, sources, targets, max(cut.values()), cut, longest)

    def artifacts(self) -> dict[str, Any]:
        return {
            "vocabulary": self.vocab,
            "majority_target": self.majority,
            "length_ratio": self.length_ratio,
            "tokenizers": self._tokenizer_spec(),
            "subwords": self.subword_models,
        }

    # ---- training ------------------------------------------------------------------------------------

    def initialise_from(self, model: Seq2SeqNetwork, sources: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """The encoder from language models of the source language (see `seqtool.tasks.seeding`)."""
        data = self.data
        reader = seeding.Reader(
            "encoder",
            self.config.model,
            data.source_tokenizer,
            "data.source_tokenizer",
            self.vocab["source"],
            None,
            "source_embedding.weight",
            "encoder.",
        )
        return seeding.seed(model, reader, sources)

    def build_model(self) -> Seq2SeqNetwork:
        sizes = len(self.vocab["source"]), len(self.vocab["target"])
        return Seq2SeqNetwork(self.config.model, *sizes, shared_vocabulary=self.data.share_vocabulary)

    def sample_count(self) -> int:
        return len(self.splits["train"].source_lengths)

    def epoch_order(self, epoch: int) -> np.ndarray:
        return self.length_bucketed_order(epoch, self.splits["train"].source_lengths)

    def _batch(self, encoded: Encoded, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
        s, t = encoded.source_lengths[rows], encoded.target_lengths[rows]
        source = to_device(torch.from_numpy(encoded.source[rows, : s.max()]), device)
        target = to_device(torch.from_numpy(encoded.target[rows, : t.max()]), device)
        target_in = torch.cat([torch.full_like(target[:, :1], BOS), target[:, :-1]], dim=1)
        return source, torch.from_numpy(s), target_in, target

    def _token_loss(self, model: Seq2SeqNetwork, encoded: Encoded, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """The summed cross-entropy over the target tokens of `rows` (padding ignored)."""
        source, lengths, target_in, target = self._batch(encoded, rows, device)
        scores = model(source, lengths, target_in)
        smoothing = self.config.training.label_smoothing
        flat = scores.float().reshape(-1, scores.shape[-1])
        return F.cross_entropy(flat, target.reshape(-1), ignore_index=PAD, reduction="sum", label_smoothing=smoothing)

    def training_loss(self, model: Seq2SeqNetwork, batch_index: int, device: torch.device) -> torch.Tensor:
        """The mean over the global batch's target tokens: this process's sum over all of them."""
        train = self.splits["train"]
        mine, _ = self.batch_rows(batch_index)
        tokens = float(train.target_lengths[self.global_rows(batch_index)].sum())
        return self._token_loss(model, train, mine, device) / tokens * self.cluster.world_size

    # ---- evaluation ----------------------------------------------------------------------------------

    def decode(
        self,
        model: Seq2SeqNetwork,
        texts: list[str],
        max_length: int,
        beam: tuple[int, int, float] | None = None,
        encoded: Encoded | None = None,
    ) -> list[list[tuple[float | None, str]]]:
        """Each text's outputs, joined, in batches of similar source length: greedy (one output, no
        score), or with `beam` = (beams, n_best, length-penalty exponent) the n_best best by beam
        search, with their scores. With `model.copy_unknown`, each `<unk>` written becomes the
        source token the attention points at (Luong et al. 2015). `encoded`: the texts' ids when
        the caller has them (evaluate's splits), so that they are not tokenized again."""
        if encoded is None:
            source, lengths, _, _ = self._ids(texts, "source", self.data.max_source_length, end=False)
        else:
            source, lengths = encoded.source, encoded.source_lengths
        caps = self._length_caps(lengths, max_length)
        order, device = np.argsort(lengths, kind="stable"), next(model.parameters()).device
        outputs: list[list[tuple[float | None, str]]] = [[] for _ in order]
        for start in range(0, len(order), EVAL_BATCH):
            rows = order[start : start + EVAL_BATCH]
            batch = to_device(torch.from_numpy(source[rows, : lengths[rows].max()]), device), torch.from_numpy(lengths[rows])
            limit = int(caps[rows].max())
            if beam is None:
                ids, _ = model.greedy(*batch, limit)
                found = [[(None, sequence[: sequence.index(EOS)] if EOS in sequence else sequence)] for sequence in ids.tolist()]
            else:
                found = [hypotheses[: beam[1]] for hypotheses in model.beam_search(*batch, limit, beam[0], beam[2], beam[1])]
            for row, hypotheses in zip(rows, found, strict=True):
                written = [(score, [i for i in ids if i not in (PAD, BOS)][: caps[row]]) for score, ids in hypotheses]
                read = source[row : row + 1, : lengths[row]]
                outputs[row] = [(score, self._output_text(model, texts[row], read, ids)) for score, ids in written]
        return outputs

    def _length_caps(self, lengths: np.ndarray, max_length: int) -> np.ndarray:
        """Each output's most tokens: `max_length`, and at most the training pairs' 99.5th-percentile
        target/source length ratio times its source length, plus 10. A model that falls into a loop
        ("Datei Datei Datei ...") stops near the longest plausible translation, not at max_length."""
        if self.length_ratio is None:
            return np.full(len(lengths), max_length)
        return np.minimum(max_length, np.ceil(self.length_ratio * lengths).astype(np.int64) + LENGTH_SLACK)

    def _output_text(self, model: Seq2SeqNetwork, text: str, read: np.ndarray, ids: list[int]) -> str:
        """An output's ids as text, each `<unk>` replaced by the source token it attended to most
        (with `model.copy_unknown`; a source token the vocabulary lacks is copied as written).
        `read`: the source's ids (1, its length)."""
        tokens = [self.vocab["target"][i] for i in ids]
        if UNK in ids and self.config.model.copy_unknown and self.config.model.attention != "none":
            device = next(model.parameters()).device
            length = torch.tensor([read.shape[1]])
            weights = model.align(to_device(torch.from_numpy(read), device), length, to_device(torch.tensor([ids]), device))
            pieces = self.codecs["source"].tokens(text)[: self.data.max_source_length] or [UNKNOWN]
            pointed = weights[0, : len(ids), : len(pieces)].argmax(dim=-1).tolist()
            tokens = [pieces[pointed[j]] if i == UNK else token for j, (i, token) in enumerate(zip(ids, tokens, strict=True))]
        return self.codecs["target"].join(tokens)

    def _eval_split(self, split: str, data_path: str | None) -> Encoded:
        if data_path:
            return self._encode(self._read(data_path))
        if not self.splits:
            try:
                self.load_training_data()
            except SeqtoolError as exc:
                raise SeqtoolError(f"{exc} (the run's data; pass --data FILE to evaluate on another file)") from None
        if split not in self.splits:
            raise SeqtoolError(f"no {split} split in this run's data (set data.test_fraction or data.test, or pass --data FILE)")
        return self.splits[split]

    def evaluate(self, model: Seq2SeqNetwork, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
        encoded = self._eval_split(split, data_path)
        rows = np.arange(len(encoded.source_lengths))
        nats = sum(
            float(self._token_loss(model, encoded, rows[i : i + EVAL_BATCH], device)) for i in range(0, len(rows), EVAL_BATCH)
        )
        decoded = self.decode(model, encoded.sources, self.data.max_target_length, self._beam(), encoded)
        hypotheses = [outputs[0][1] for outputs in decoded]
        codec = self.codecs["target"]
        references = [codec.normal(t) for t in encoded.targets]
        copies = [codec.normal(s) for s in encoded.sources]
        metrics = {"loss": nats / float(encoded.target_lengths.sum())}
        metrics.update(sequence_metrics(hypotheses, references, codec))
        metrics.update({f"copy_{k}": v for k, v in sequence_metrics(copies, references, codec).items()})
        if self.majority is not None:  # (runs trained before this baseline existed do not know it)
            majority = [codec.normal(self.majority)] * len(references)
            scored = sequence_metrics(majority, references, codec)
            metrics.update({f"majority_{k}": v for k, v in scored.items()})
        metrics["pairs"] = len(rows)
        metrics["truncated_pairs"] = encoded.truncated
        return metrics

    def _beam(self) -> tuple[int, int, float] | None:
        """`evaluate [--beam-size N] [--length-penalty A]`, each defaulting to the config's
        model.beam_size and model.length_penalty: (beams, 1 best, A), or None for greedy (1 beam)."""
        options, model = self.evaluation_options, self.config.model
        beams = options.get("beam_size") or model.beam_size
        penalty = options.get("length_penalty")
        if beams == 1:
            if penalty is not None:
                raise SeqtoolError("--length-penalty applies to beam search: give --beam-size too (or set model.beam_size)")
            return None
        return beams, 1, model.length_penalty if penalty is None else penalty

    def shown_apart(self, metric: str) -> bool:
        return super().shown_apart(metric) or metric == "truncated_pairs"

    def evaluation_notes(self, metrics: dict[str, float]) -> list[Any]:
        beam = self._beam()
        notes = [f"Decoded by beam search ({beam[0]} beams, length penalty {beam[2]:g})." if beam else "Decoded greedily."]
        cut = metrics.get("truncated_pairs")
        limits = f"data.max_source_length {self.data.max_source_length} / max_target_length {self.data.max_target_length}"
        return notes + ([f"{cut:,} pairs were longer than {limits} and were truncated."] if cut else [])

    # ---- predict ---------------------------------------------------------------------------------------

    def translate(self, model: Seq2SeqNetwork, texts: list[str], options: dict[str, Any]) -> list[list[tuple[float | None, str]]]:
        """Each text's outputs: greedy (one, no score) with one beam, else the n_best best by beam
        search with their scores. `beam_size` and `length_penalty` default to the config's
        model.beam_size and model.length_penalty; `n_best` alone asks for that many beams."""
        model_config = self.config.model
        n_best = options.get("n_best")
        beams = options.get("beam_size") or max(model_config.beam_size, n_best or 1)
        beam = None
        if beams > 1 or n_best is not None:
            n_best = n_best or 1
            if n_best > beams:
                raise SeqtoolError(f"--n-best {n_best} is more than --beam-size {beams}: a beam search keeps only that many")
            penalty = options.get("length_penalty")
            beam = (beams, n_best, model_config.length_penalty if penalty is None else penalty)
        return self.decode(model, texts, options.get("max_length") or self.data.max_target_length, beam)

    def _warn_unknown(self, texts: list[str]) -> None:
        """Source tokens the training data never had are read as <unk>: said on stderr, once per input."""
        known = set(self.vocab["source"])
        unknown = sorted({t for text in texts for t in self.codecs["source"].tokens(text)} - known)
        if unknown:
            shown = ", ".join(repr(t) for t in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            print(
                f"Warning: {len(unknown)} source token(s) not in the training vocabulary, read as <unk>: {shown}", file=sys.stderr
            )

    def predict(self, model: Seq2SeqNetwork, options: dict[str, Any], out: TextIO) -> None:
        """A CSV in, the CSV with a `prediction` column out; or lines on stdin, one output line each.
        Tokens the training data never had are read as <unk>, with a warning on stderr."""
        if options["attention"] is not None and self.config.model.attention == "none":
            raise SeqtoolError("--attention needs a model that attends; this one has model.attention: none")
        if options["data"] is not None:
            frame = self._read(str(options["data"]), need_target=False)
            self._warn_unknown(frame[self.data.source_column].tolist())
            outputs = self.translate(model, frame[self.data.source_column].tolist(), options)
            if options["attention"] is not None:
                self._draw_alignment(model, frame[self.data.source_column].iloc[0], outputs[0][0][1], options["attention"])
            for rank in range(max(len(o) for o in outputs)):
                suffix = "" if rank == 0 else f"_{rank + 1}"
                frame[f"prediction{suffix}"] = [o[rank][1] if rank < len(o) else "" for o in outputs]
                if outputs[0][0][0] is not None:
                    frame[f"score{suffix}"] = [round(o[rank][0], 4) if rank < len(o) else None for o in outputs]
            text = frame.to_csv(index=False, sep="\t" if Path(options["data"]).suffix.lower() == ".tsv" else ",")
            if options["output"]:
                atomic_write_text(options["output"], text)
            else:
                out.write(text)
            return
        if options["output"] is not None:
            raise SeqtoolError("--output needs --data CSV (lines from stdin are answered on stdout)")
        if sys.stdin.isatty():
            raise SeqtoolError("give --data CSV, or pipe lines on stdin: echo 'File not found' | seqtool predict RUN")
        for line in sys.stdin:  # one output per line, flushed: it streams through a pipe
            text = line.rstrip("\r\n")
            if not text.strip():
                out.write("\n")
                out.flush()
                continue
            self._warn_unknown([text])
            outputs = self.translate(model, [text], options)[0]
            if options["attention"] is not None:
                self._draw_alignment(model, text, outputs[0][1], options["attention"])
                options = {**options, "attention": None}  # the first input's only
            if options["n_best"] is not None and options["n_best"] > 1:  # the N best with scores, then a blank line
                out.write("".join(f"{output}\t{score:.4f}\n" for score, output in outputs) + "\n")
            else:
                out.write(outputs[0][1] + "\n")
            out.flush()

    def export_signature(self, model: Seq2SeqNetwork, generator: torch.Generator) -> dict[str, Any]:
        """Two graphs: `encoder` (source, lengths -> memory, mask, first state) and `decoder_step`
        (token, state[, feed], memory, mask -> logits, state[, feed][, attention])."""
        from seqtool.tasks.seq2seq.export import signatures

        return signatures(model, len(self.vocab["source"]), generator)

    def check_export(self, model: Seq2SeqNetwork, run: Any) -> str | None:
        from seqtool.tasks.seq2seq.export import check_greedy

        return check_greedy(model, len(self.vocab["source"]), run)

    def export_metadata(self) -> dict[str, Any]:
        data = self.data
        return {
            "vocabulary": {"source": self.vocab["source"], "target": self.vocab["target"]},
            "tokenizers": {"source": data.source_tokenizer, "target": data.target_tokenizer},
            **self._subword_metadata(),
            "special_ids": {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS},
            "max_source_length": data.max_source_length,
            "max_target_length": data.max_target_length,
            "length_ratio": self.length_ratio,
            "beam_size": self.config.model.beam_size,  # seqtool's own default; the graphs step one token at a time
            "decoding": "encode once; then feed <s>, and each step's argmax (greedy) with the returned state, until </s>, "
            f"max_target_length tokens, or ceil(length_ratio x source tokens) + {LENGTH_SLACK} tokens",
        }

    def _subword_metadata(self) -> dict[str, Any]:
        """The SentencePiece models of the subword sides, for a deployment to cut and join text exactly as seqtool does."""
        if not self.subword_models:
            return {}
        return {
            "subword_models": dict(self.subword_models),
            "subwords": "base64 of a SentencePiece model per side: sentencepiece.SentencePieceProcessor(model_proto="
            "base64.b64decode(...)); its encode(text, out_type=str) gives the pieces, looked up in the vocabulary; "
            "an output's pieces joined, with U+2581 read as a space, give the text",
        }

    def _draw_alignment(self, model: Seq2SeqNetwork, text: str, output: str, path: Path) -> None:
        """`predict --attention PNG`: where the decoder looked while writing `output` for `text`."""
        from seqtool.tasks.seq2seq.plots import alignment_plot

        source, lengths, _, _ = self._ids([text], "source", self.data.max_source_length, end=False)
        index = self._index("target")
        tokens = self.codecs["target"].output_tokens(output)[: self.data.max_target_length]
        ids = torch.tensor([index.get(t, UNK) for t in tokens], dtype=torch.long).view(1, -1)
        device = next(model.parameters()).device  # rows: <s> chooses tokens[0], ..., the last one </s>
        weights = model.align(to_device(torch.from_numpy(source), device), torch.from_numpy(lengths), ids.to(device))
        source_tokens = self.codecs["source"].tokens(text)[: self.data.max_source_length] or [UNKNOWN]
        alignment_plot(path, weights[0, :, : len(source_tokens)].float().cpu().numpy(), source_tokens, tokens + ["</s>"])
        print(f"Attention alignment of {text[:40]!r} written to {path}", file=sys.stderr)

    def predict_api(self, model: Seq2SeqNetwork, data: Any, options: dict[str, Any]) -> Any:
        """`predict(["source", ...], max_length=..., beam_size=...)`: the best output of each;
        `predict(CSV)`: the rows with a prediction column."""
        unknown = sorted(set(options) - {"max_length", "beam_size", "length_penalty"})
        if unknown:
            raise SeqtoolError(f"predict() options {unknown} do not apply to a seq2seq model (it takes max_length, beam_size)")
        if isinstance(data, (list, tuple)):
            return [outputs[0][1] for outputs in self.translate(model, list(data), options)]
        if data is None:
            raise SeqtoolError("predict() of a seq2seq model needs data: a list of source texts or a CSV/TSV path")
        frame = self._read(str(data), need_target=False)
        best = [outputs[0][1] for outputs in self.translate(model, frame[self.data.source_column].tolist(), options)]
        return frame.assign(prediction=best)

    def serve_spec(self) -> ServeSpec:
        from seqtool.tasks.seq2seq.serve import spec

        return spec(self)

    @classmethod
    def starter(cls, path: Path, frame: Any | None) -> Starter:
        """Two columns of sequences: named as pairs (source/target, input/output, ...) or the
        first two string columns whose targets are mostly distinct (not labels)."""
        if frame is None:
            raise Unsuitable(f"{path} is not a CSV or TSV; seq2seq reads a table of source and target sequences")
        lower = {str(c).lower(): c for c in frame.columns}
        named = next(((lower[a], lower[b]) for a, b in PAIR_NAMES if a in lower and b in lower), None)
        strings = [c for c in frame.columns if sniff.is_strings(frame[c])]
        if named is None and len(strings) < 2:
            raise Unsuitable(f"{path}: fewer than two columns of text, and none named source/target")
        source, target = named or (strings[0], strings[1])
        distinct = frame[target].nunique() / len(frame)
        if named is None and distinct < 0.5:
            raise Unsuitable(f"{path}: column '{target}' repeats its values (labels, not sequences to write)")
        return starter_config(path, frame, source, target, fit=3 if named else 1)

    @classmethod
    def example(cls, folder: Path) -> Example:
        """Number words to digits, reversed: "three one four" -> "4 1 3"; the words are read as
        learned BPE pieces, so every check of the kit also runs a subword vocabulary."""
        words = "zero one two three four five six seven eight nine".split()
        rng = np.random.default_rng(0)
        rows = [rng.integers(0, 10, rng.integers(2, 6)) for _ in range(300)]
        frame = pd.DataFrame(
            {"source": [" ".join(words[d] for d in r) for r in rows], "target": [" ".join(str(d) for d in r[::-1]) for r in rows]}
        )
        frame.to_csv(folder / "pairs.csv", index=False)
        frame[["source"]].head(5).to_csv(folder / "new.csv", index=False)
        empty = frame.copy()
        empty.loc[4, "target"] = ""
        config = {
            "task": cls.name,
            "seed": 4,
            "data": {
                "path": str(folder / "pairs.csv"),
                "source_tokenizer": "bpe",
                "vocab_size": 50,
                "target_tokenizer": "whitespace",
            },
            "model": {"hidden_size": 16, "num_layers": 1, "embedding_size": 8, "dropout": 0.1},
            "training": {"batch_size": 16, "lr": 0.01},
        }
        bad = (
            BadInput(
                "missing column", "column 'answer' (data.target_column) not found", overrides=("data.target_column=answer",)
            ),
            BadInput("empty target cell", "row 6: empty cell in column 'target'", files={"pairs.csv": empty.to_csv(index=False)}),
            BadInput("empty file", "empty", files={"pairs.csv": ""}),
            BadInput("vocabulary larger than the text allows", "the largest that works is", overrides=("data.vocab_size=5000",)),
            BadInput(
                "tied embeddings of unequal sizes",
                "needs model.embedding_size == model.hidden_size",
                overrides=("model.tie_embeddings=true",),
            ),
        )
        serve = {"sources": ["three one four", "nine"]}
        return Example(config, ("--data", str(folder / "new.csv")), "three one four\nnine\n", bad, serve)


def _describe(spec: dict[str, Any]) -> str:
    """'source bpe, target bpe, 8000 pieces, shared' from a stored tokenizer spec."""
    parts = [f"source {spec['source']}", f"target {spec['target']}"]
    parts += [f"{spec['vocab_size']} pieces"] if spec.get("vocab_size") else []
    return ", ".join(parts + (["shared"] if spec.get("shared") else []))
