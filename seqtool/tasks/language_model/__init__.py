"""Language modelling on a continuous token stream with truncated BPTT.

The corpus is one long stream cut into `batch_size` parallel rows (see `data.text.batchify`).
Each training step reads the next `seq_len` columns; the hidden state left by one step is the
starting state of the next, detached so gradients stop at the batch boundary (truncated
backpropagation through time, as in char-rnn and PyTorch's word_language_model). The model thus
sees context far longer than `seq_len` while backpropagating through only `seq_len` steps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from seqtool.cells.registry import cell
from seqtool.data.text import (
    CLOSING_PUNCTUATION,
    NEWLINE,
    Vocabulary,
    batchify,
    bptt_windows,
    detokenize,
    detokenize_pieces,
    vocabulary_metadata,
)
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.models import RecurrentState, SequenceModel, adaptive_cutoffs, detach_state
from seqtool.schema import Config, Where
from seqtool.signature import Signature, tensor_spec
from seqtool.tasks import BadInput, Example, MainMetric, PredictOption, ServeSpec, Starter, Task, Unsuitable, to_device
from seqtool.tasks.language_model.config import LanguageModelData, LanguageModelModel, LanguageModelTraining, starter_config
from seqtool.tasks.language_model.corpus import load_corpus
from seqtool.tasks.language_model.export import LanguageModelGraph
from seqtool.tasks.language_model.sampling import CellStepper, TokenSampler


class LanguageModelTask(Task):
    name = "language_model"
    description = "next-token prediction on a text corpus (char or word), then generation from a prompt"
    data_schema = LanguageModelData
    model_schema = LanguageModelModel
    training_schema = LanguageModelTraining
    reads = "it reads a token stream in BPTT windows"
    main_metric = MainMetric("perplexity", "ppl")
    unit = "tok"
    baselines = ("unigram",)
    predict_hint = '--prompt "..."'
    predict_options = (
        PredictOption("--prompt", str, "text to continue", "none: start after a line break"),
        PredictOption("--length", int, "tokens to generate", "500", min=1),
        PredictOption("--temperature", float, "sampling temperature, 0 = greedy", "1.0", min=0.0),
        PredictOption("--top-k", int, "sample among the k likeliest tokens only", "all tokens", min=1),
        PredictOption("--seed", int, "seed for sampling: the same seed, the same text; without one, each call differs", "random"),
        PredictOption("--num-samples", int, "independent samples to draw", "1", min=1),
    )

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        super().__init__(config, artifacts, cluster)
        self.vocabulary = Vocabulary.from_dict(artifacts["vocabulary"]) if artifacts else None
        self.train_rows: np.ndarray | None = None  # (batch_size / processes, columns)
        self.val_ids: np.ndarray | None = None
        self.windows: list[tuple[int, int]] = []
        self.carried: RecurrentState | None = None
        self.epoch = 0
        self.cache_dir: Path | None = None  # where large corpora's token files go (beside the runs)

    # ---- config ------------------------------------------------------------------------------

    @classmethod
    def check_config(cls, config: Config, where: Where) -> None:
        config.data.check(where)
        model = config.model
        if model.output == "adaptive" and model.tie_weights:
            raise SeqtoolError(
                f"{where('model.tie_weights')} needs model.output: full (the adaptive softmax splits the output matrix in clusters)"
            )
        if model.tie_weights and model.embedding_size != model.hidden_size:
            raise SeqtoolError(
                f"{where('model.tie_weights')} needs model.embedding_size == model.hidden_size "
                f"(got {model.embedding_size} and {model.hidden_size})"
            )

    @classmethod
    def migrate_stored(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Before `training.state_reset` existed, language models never reset their carried state."""
        training = config.get("training")
        if isinstance(training, dict) and "state_reset" not in training:
            return {**config, "training": {**training, "state_reset": 0.0}}
        return config

    @classmethod
    def starter(cls, path: Path, frame: Any | None) -> Starter:
        if frame is not None:
            raise Unsuitable(f"{path} is a table (CSV/TSV); a language model reads a plain text file")
        return starter_config(path)

    @classmethod
    def example(cls, folder: Path) -> Example:
        """A play-like text from a small grammar: speaker lines and short sentences."""
        rng = np.random.default_rng(0)
        words = (
            ["ROMEO:", "JULIET:", "NURSE:"],
            ["the cat", "my lord", "a rose"],
            ["sees", "loves", "keeps"],
            ["the moon.", "a kiss."],
        )
        lines = [
            f"{rng.choice(words[0])}\n{rng.choice(words[1])} {rng.choice(words[2])} {rng.choice(words[3])}" for _ in range(300)
        ]
        (folder / "play.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = {
            "task": cls.name,
            "seed": 3,
            "data": {"path": str(folder / "play.txt"), "val_fraction": 0.1},
            "model": {"hidden_size": 32, "embedding_size": 16, "dropout": 0.1},
            "training": {"batch_size": 8, "seq_len": 32, "lr": 0.01},
        }
        bad = (
            BadInput("missing text file", "data file not found", overrides=(f"data.path={folder / 'none.txt'}",)),
            BadInput("empty text file", "empty", files={"play.txt": ""}),
            BadInput("text shorter than a batch", "fewer than training.batch_size x", overrides=("training.seq_len=2000",)),
            BadInput(
                "tied weights of unequal sizes",
                "needs model.embedding_size == model.hidden_size",
                overrides=("model.tie_weights=true",),
            ),
        )
        serve = {"prompt": "ROMEO:", "length": 40, "seed": 1}
        return Example(config, ("--prompt", "ROMEO:", "--length", "40", "--seed", "1"), None, bad, serve)

    # ---- data --------------------------------------------------------------------------------

    def _load(self, path: str, val_fraction: float = 0.0, test_fraction: float = 0.0) -> dict[str, np.ndarray]:
        """A file's split ids, building the vocabulary from its training part when there is none
        yet. Large files go through the token cache (see `seqtool.tasks.language_model.corpus`)."""
        data = self.config.data
        self.vocabulary, splits = load_corpus(
            path, data.tokenizer, data.min_freq, val_fraction, test_fraction, self.vocabulary, self.cache_dir
        )
        if self.backward:  # the same network, reading each part from its end
            splits = {name: ids[::-1].copy() for name, ids in splits.items()}
        return splits

    @property
    def backward(self) -> bool:
        return self.config.model.direction == "backward"

    def _split_ids(self) -> dict[str, tuple[str, np.ndarray]]:
        """split name -> (where it comes from, token ids) for the configured data."""
        data = self.config.data
        if data.path:
            parts = self._load(data.path, data.val_fraction, data.test_fraction)
            splits = {"train": (data.path, parts["train"]), "val": (data.path, parts["val"])}
            if data.test_fraction > 0:
                splits["test"] = (data.path, parts["test"])
            return splits
        splits = {"train": (data.train, self._load(data.train)["train"]), "val": (data.val, self._load(data.val)["train"])}
        if data.test:
            splits["test"] = (data.test, self._load(data.test)["train"])
        return splits

    def load_training_data(self) -> None:
        training = self.config.training
        # Under torchrun rank 0 fills the token cache first; the other ranks then read it.
        if not self.cluster.is_main:
            self.cluster.barrier()
        splits = self._split_ids()
        if self.cluster.is_main:
            self.cluster.barrier()
        source, train_ids = splits["train"]
        needed = training.batch_size * (training.seq_len + 1)
        if len(train_ids) < needed:
            raise SeqtoolError(
                f"{source}: the training text has {len(train_ids)} tokens, fewer than "
                f"training.batch_size x (training.seq_len + 1) = {needed}; lower them or give more text"
            )
        # Each process trains on its own contiguous block of the stream's rows (all of them in a
        # single process), carrying its own hidden state across batches.
        self.cluster.check_divides(training.batch_size)
        per_rank = training.batch_size // self.cluster.world_size
        rows = batchify(train_ids, training.batch_size)
        self.train_rows = rows[self.cluster.rank * per_rank : (self.cluster.rank + 1) * per_rank]
        self.windows = bptt_windows(self.train_rows.shape[1], training.seq_len, full_only=True)
        val_source, val_ids = splits["val"]
        self.val_ids = self._checked_eval_ids(val_ids, val_source)

    def _checked_eval_ids(self, ids: np.ndarray, source: str) -> np.ndarray:
        if len(ids) < 2:
            raise SeqtoolError(f"{source}: the evaluation text needs at least 2 tokens, has {len(ids)}")
        return ids

    def eval_ids(self, split: str, data_path: str | None) -> np.ndarray:
        if data_path:
            return self._checked_eval_ids(self._load(data_path)["train"], data_path)
        if split == "val" and self.val_ids is not None:
            return self.val_ids
        try:
            splits = self._split_ids()
        except SeqtoolError as exc:
            raise SeqtoolError(f"{exc} (the run's data; pass --data FILE to evaluate on another file)") from None
        if split not in splits:
            raise SeqtoolError(f"no {split} split in this run's data (set data.test_fraction or data.test, or pass --data FILE)")
        source, ids = splits[split]
        return self._checked_eval_ids(ids, source)

    def artifacts(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary.to_dict()}

    # ---- model and training ------------------------------------------------------------------

    def build_model(self) -> SequenceModel:
        size = len(self.vocabulary)
        cutoffs = adaptive_cutoffs(self.vocabulary.counts) if self.config.model.output == "adaptive" else None
        return SequenceModel(self.config.model, output_size=size, vocab_size=size, cutoffs=cutoffs)

    def steps_per_epoch(self) -> int:
        return len(self.windows)

    def units_per_step(self) -> int:
        return self.config.training.batch_size * self.config.training.seq_len

    def start_epoch(self, epoch: int) -> None:
        self.carried = None  # each epoch replays the stream from its start
        self.epoch = epoch

    def training_loss(self, model: SequenceModel, batch_index: int, device: torch.device) -> torch.Tensor:
        start, length = self.windows[batch_index]
        block = to_device(torch.from_numpy(self.train_rows[:, start : start + length + 1].astype(np.int64)), device)
        inputs, targets = block[:, :-1], block[:, 1:]  # (batch, seq_len) each; targets shifted by one
        loss, state = model(inputs, self._reset_some_rows(batch_index), targets=targets)
        self.carried = detach_state(state)
        return loss

    def _reset_some_rows(self, batch_index: int) -> RecurrentState | None:
        """The carried state with the rows chosen for a fresh start set to zero.

        Carried across every batch, the state would be zero once an epoch only, and a model that
        has hardly ever read from a zero state writes garbage after a fresh prompt. The rows are
        drawn from (seed, epoch, batch) over the global batch, and each process keeps its own
        slice: a resumed run and any number of processes reset exactly the same rows.
        """
        chance = self.config.training.state_reset
        if self.carried is None or chance == 0:
            return self.carried
        draw = np.random.default_rng((self.config.seed, self.epoch, batch_index)).random(self.config.training.batch_size)
        rows = len(self.train_rows)
        keep = torch.from_numpy(draw[self.cluster.rank * rows : (self.cluster.rank + 1) * rows] >= chance)
        parts = self.carried if isinstance(self.carried, tuple) else (self.carried,)
        kept = tuple(part * keep.to(part.device, part.dtype).reshape(1, -1, *[1] * (part.dim() - 2)) for part in parts)
        return kept if isinstance(self.carried, tuple) else kept[0]

    def state_dict(self) -> dict[str, Any]:
        carried = self.carried
        if carried is None:
            return {"carried": None}
        return {"carried": list(carried) if isinstance(carried, tuple) else [carried]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        carried = state.get("carried")
        if carried is None:
            self.carried = None
        else:
            self.carried = tuple(carried) if len(carried) > 1 else carried[0]

    def move_state(self, device: torch.device) -> None:
        if self.carried is not None:
            self.carried = (
                tuple(s.to(device) for s in self.carried) if isinstance(self.carried, tuple) else self.carried.to(device)
            )

    # ---- evaluation --------------------------------------------------------------------------

    def evaluate(self, model: SequenceModel, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
        """Mean loss over (nearly) every token of the split, state carried through it.

        The split is cut into at most batch_size rows; only the remainder of that cut (fewer than
        batch_size tokens) goes unscored.
        """
        ids = self.eval_ids(split, data_path)
        training = self.config.training
        streams = max(1, min(training.batch_size, len(ids) // 2))
        rows = batchify(ids, streams)
        total_nats, total_tokens, state = 0.0, 0, None
        for start, length in bptt_windows(rows.shape[1], training.seq_len, full_only=False):
            block = to_device(torch.from_numpy(rows[:, start : start + length + 1].astype(np.int64)), device)
            loss, state = model(block[:, :-1], state, targets=block[:, 1:])
            total_nats += loss.item() * block[:, 1:].numel()
            total_tokens += block[:, 1:].numel()
        metrics = self._loss_metrics(total_nats / total_tokens)
        metrics.update({f"unigram_{k}": v for k, v in self._loss_metrics(self._unigram_loss(rows)).items()})
        metrics["tokens"] = total_tokens
        return metrics

    def _loss_metrics(self, loss: float) -> dict[str, float]:
        metrics = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bits_per_token": loss / math.log(2)}
        if self.vocabulary.tokenizer == "char":
            metrics["bits_per_char"] = metrics["bits_per_token"]
        return metrics

    def _unigram_loss(self, rows: np.ndarray) -> float:
        """Cross-entropy of the training token frequencies (add-one smoothed) on the scored
        tokens (every column but the first of `rows`), from counts: no per-token float copy."""
        counts = np.asarray(self.vocabulary.counts, dtype=np.float64) + 1.0
        log_probs = np.log(counts / counts.sum())
        seen = sum(np.bincount(row[1:], minlength=len(log_probs)) for row in rows)
        return float(-(seen * log_probs).sum() / seen.sum())

    # ---- generation --------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        model: SequenceModel,
        prompt: str,
        length: int,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator,
        num_samples: int = 1,
    ) -> list[Iterator[str]]:
        """`num_samples` continuations of `prompt`, generated as one batch (a step of a small
        recurrent net costs about the same for a few streams as for one): for each, its text
        pieces as they come, one token at a time, for streaming. The prompt is checked and read in
        one fused call before this returns; then the state is carried through the per-layer cells,
        never re-reading the prompt. The samples may be read in any order (steps are kept until
        every sample has read them)."""
        sampler = TokenSampler(num_samples, len(self.vocabulary), temperature, top_k, generator)
        steps = (step.tolist() for step in self._sample_ids(model, prompt, length, num_samples, sampler))
        if self.backward:
            return self._leading_texts(list(steps), prompt, num_samples)
        tokens, continues_line = self.vocabulary.tokens, _continues_line(prompt)

        def sample(index: int, steps: Iterator[list[int]]) -> Iterator[str]:
            pieces = (tokens[ids[index]] for ids in steps)
            return detokenize_pieces(pieces, self.vocabulary.tokenizer, continues_line)

        return [sample(index, copy) for index, copy in enumerate(itertools.tee(steps, num_samples))]

    def _leading_texts(self, steps: list[list[int]], prompt: str, streams: int) -> list[Iterator[str]]:
        """A backward model's samples: the text that leads up to the prompt. It is generated from
        the prompt backwards, so it comes whole, as one piece (it cannot stream in reading order)."""
        tokens, tokenizer = self.vocabulary.tokens, self.vocabulary.tokenizer
        texts = []
        for index in range(streams):
            text = detokenize([tokens[ids[index]] for ids in reversed(steps)], tokenizer)
            texts.append(iter([text + _space_before(prompt, text, tokenizer)]))
        return texts

    def whole_text(self, prompt: str, generated: str) -> str:
        """The prompt and what was generated, in reading order: a backward model's text comes first."""
        return generated + prompt if self.backward else prompt + generated

    def _sample_ids(
        self, model: SequenceModel, prompt: str, length: int, streams: int, sampler: TokenSampler
    ) -> Iterator[torch.Tensor]:
        """(streams,) token ids per generated step. Checks the prompt before the first step."""
        vocab = self.vocabulary
        if vocab.tokenizer == "char":
            unknown = vocab.unknown_tokens(prompt)
            if unknown:
                raise SeqtoolError(f"--prompt has characters the model never saw in training: {''.join(unknown)!r}")
        prompt_ids = vocab.encode(prompt) if prompt else np.array([], dtype=np.int64)
        if self.backward:
            prompt_ids = prompt_ids[::-1].copy()
        if len(prompt_ids) == 0:
            start = NEWLINE if NEWLINE in vocab.tokens else vocab.tokens[1]
            prompt_ids = np.array([vocab.tokens.index(start)])
        scores, state = model(torch.from_numpy(prompt_ids.astype(np.int64))[None, :], last_only=True)
        stepper = CellStepper(model)
        layer_states = stepper.split_state(state, streams)
        scores = scores.float().expand(streams, -1)
        return self._steps(stepper, layer_states, scores, length, sampler)

    @staticmethod
    @torch.no_grad()  # on a generator function, it holds at every resumption, not only at creation
    def _steps(
        stepper: CellStepper, layer_states: list, scores: torch.Tensor, length: int, sampler: TokenSampler
    ) -> Iterator[torch.Tensor]:
        """The generation loop. The callers' own no_grad has ended by the time a caller iterates
        (`generate` returns this generator unstarted), so it needs its own: without it each step
        records an autograd graph through the weights, a quarter of a char model's step time."""
        for _ in range(length):
            token = sampler(scores)
            yield token
            scores = stepper.step(token, layer_states).float()

    # ---- predict and export ------------------------------------------------------------------

    def predict(self, model: SequenceModel, options: dict[str, Any], out: TextIO) -> None:
        """Stream one sample as it is generated, or print `--num-samples` generated as a batch."""
        prompt, num_samples = options["prompt"] or "", options["num_samples"] or 1
        generator = _sampling_generator(options["seed"])
        sampling = (
            options["length"] or 500,
            1.0 if options["temperature"] is None else options["temperature"],
            options["top_k"],
            generator,
        )
        if num_samples == 1:
            (pieces,) = self.generate(model, prompt, *sampling)  # checks the prompt first
            if self.backward:
                out.write(self.whole_text(prompt, "".join(pieces)) + "\n")
                out.flush()
                return
            out.write(prompt)
            for piece in pieces:
                out.write(piece)
                out.flush()
            out.write("\n")
            out.flush()
            return
        for sample, pieces in enumerate(self.generate(model, prompt, *sampling, num_samples)):
            text = "".join(pieces)
            whole = self.whole_text(prompt, text)
            out.write(f"{'' if sample == 0 else chr(10)}--- sample {sample + 1} of {num_samples} ---\n{whole}\n")
        out.flush()

    def predict_api(self, model: SequenceModel, data: Any, options: dict[str, Any]) -> str | list[str]:
        """`predict(prompt=..., length=200, temperature=1.0, top_k=None, seed=None)` returns the
        text; with `num_samples=N`, a list of N texts generated as one batch. Without a seed each
        call differs, as on the command line."""
        unknown = sorted(set(options) - {"prompt", "length", "temperature", "top_k", "seed", "num_samples"})
        if data is not None or unknown:
            given = unknown or ["data"]
            raise SeqtoolError(f"predict() options {given} do not apply to a language model (it takes prompt, length, ...)")
        generator = _sampling_generator(options.get("seed"))
        prompt, num_samples = options.get("prompt") or "", options.get("num_samples")
        sampling = (options.get("length") or 200, options.get("temperature", 1.0), options.get("top_k"), generator)
        if num_samples is not None:
            return [self.whole_text(prompt, "".join(pieces)) for pieces in self.generate(model, prompt, *sampling, num_samples)]
        return self.whole_text(prompt, "".join(self.generate(model, prompt, *sampling)[0]))

    def serve_spec(self) -> ServeSpec:
        from seqtool.tasks.language_model.serve import spec

        return spec(self)

    def export_signature(self, model: SequenceModel, generator: torch.Generator) -> Signature:
        """(tokens, h_in[, c_in, ...]) -> (logits, h_out[, c_out, ...]), one input and one output per
        part of the cell's state: the state is part of the signature,
        so a deployed model steps token by token, or reads a prompt in one call and carries on."""
        config = model.config
        vocab, parts = len(self.vocabulary), cell(config.type).state
        layers = config.num_layers

        def batch(size: int, time: int) -> tuple[torch.Tensor, ...]:
            tokens = torch.randint(0, vocab, (size, time), generator=generator)
            states = [0.5 * torch.randn(layers, size, *part.shape(config), generator=generator) for part in parts]
            return (tokens, *states)

        example, check = batch(2, 5), batch(3, 17)
        with torch.no_grad():
            scores, state = model(check[0], tuple(check[1:]) if len(parts) > 1 else check[1])
        expected = (scores, *state) if isinstance(state, tuple) else (scores, state)
        scores_name = "log_probs" if config.output == "adaptive" else "logits"
        inputs = [tensor_spec("tokens", "int64", ["batch", "time"], "token ids (see vocabulary)")]
        meaning = "log-probabilities of the next token" if scores_name == "log_probs" else "next-token logits"
        outputs = [tensor_spec(scores_name, "float32", ["batch", "time", "vocabulary"], f"{meaning} at each step")]
        axes = {"tokens": {0: "batch", 1: "time"}, scores_name: {0: "batch", 1: "time"}}
        for part in parts:
            shape = ["num_layers", "batch", *map(str, part.shape(config))]
            inputs.append(
                tensor_spec(f"{part.name}_in", "float32", shape, f"{part.meaning} before the first token (zeros to start)")
            )
            outputs.append(
                tensor_spec(f"{part.name}_out", "float32", shape, f"{part.meaning} after the last token (feed back in)")
            )
            axes[f"{part.name}_in"] = axes[f"{part.name}_out"] = {1: "batch"}
        return Signature(LanguageModelGraph(model), example, check, expected, inputs, outputs, axes)

    def export_metadata(self) -> dict[str, Any]:
        """The vocabulary, and the reading direction: a backward model reads token ids last to first."""
        return {
            "vocabulary": vocabulary_metadata(self.vocabulary, self.config.data.tokenizer, lowercase=False),
            "direction": self.config.model.direction,
        }


def _sampling_generator(seed: int | None) -> torch.Generator:
    """A generator of sampling's own, seeded by `seed`, or from the operating system's entropy
    when there is none: the process's global generator is neither read nor reseeded."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _space_before(prompt: str, text: str, tokenizer: str) -> str:
    """The space between a backward model's words and the prompt they lead up to."""
    if tokenizer == "char" or not text or not prompt or text.endswith(NEWLINE) or prompt[0].isspace():
        return ""
    return "" if prompt[0] in CLOSING_PUNCTUATION else " "


def _continues_line(prompt: str) -> bool:
    """Generated words continue the prompt's last line (and need a space before the first)."""
    return bool(prompt) and not prompt.endswith(NEWLINE)
