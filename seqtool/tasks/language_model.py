"""Language modelling on a continuous token stream with truncated BPTT.

The corpus is one long stream cut into `batch_size` parallel rows (see `data.text.batchify`).
Each training step reads the next `seq_len` columns; the hidden state left by one step is the
starting state of the next, detached so gradients stop at the batch boundary (truncated
backpropagation through time, as in char-rnn and PyTorch's word_language_model). The model thus
sees context far longer than `seq_len` while backpropagating through only `seq_len` steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtool.config import Config
from seqtool.data.corpus import load_corpus
from seqtool.data.text import (
    NEWLINE,
    Vocabulary,
    batchify,
    bptt_windows,
    detokenize_pieces,
)
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.models import CellStepper, RecurrentState, SequenceModel, adaptive_cutoffs, detach_state
from seqtool.sampling import TokenSampler
from seqtool.tasks import to_device


class LanguageModelTask:
    unit = "tok"
    baselines = ("unigram",)

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        self.config = config
        self.cluster = cluster or Cluster()  # which shard of each global batch this process trains on
        self.vocabulary = Vocabulary.from_dict(artifacts["vocabulary"]) if artifacts else None
        self.train_rows: np.ndarray | None = None  # (batch_size / processes, columns)
        self.val_ids: np.ndarray | None = None
        self.windows: list[tuple[int, int]] = []
        self.carried: RecurrentState | None = None
        self.epoch = 0
        self.cache_dir: Path | None = None  # where large corpora's token files go (beside the runs)

    # ---- data --------------------------------------------------------------------------------

    def _load(self, path: str, val_fraction: float = 0.0, test_fraction: float = 0.0) -> dict[str, np.ndarray]:
        """A file's split ids, building the vocabulary from its training part when there is none
        yet. Large files go through the token cache (see `seqtool.data.corpus`)."""
        data = self.config.data
        self.vocabulary, splits = load_corpus(
            path, data.tokenizer, data.min_freq, val_fraction, test_fraction, self.vocabulary, self.cache_dir
        )
        return splits

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
        kept = tuple(part * keep.to(part.device, part.dtype)[None, :, None] for part in parts)
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
            self.carried = tuple(carried) if len(carried) == 2 else carried[0]

    def move_state(self, device: torch.device) -> None:
        if self.carried is not None:
            self.carried = (
                tuple(s.to(device) for s in self.carried) if isinstance(self.carried, tuple) else self.carried.to(device)
            )

    # ---- evaluation --------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, model: SequenceModel, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
        """Mean loss over (nearly) every token of the split, state carried through it.

        The split is cut into at most batch_size rows; only the remainder of that cut (fewer than
        batch_size tokens) goes unscored.
        """
        ids = self.eval_ids(split, data_path)
        training = self.config.training
        streams = max(1, min(training.batch_size, len(ids) // 2))
        rows = batchify(ids, streams)
        was_training = model.training
        model.eval()
        total_nats, total_tokens, state = 0.0, 0, None
        for start, length in bptt_windows(rows.shape[1], training.seq_len, full_only=False):
            block = to_device(torch.from_numpy(rows[:, start : start + length + 1].astype(np.int64)), device)
            loss, state = model(block[:, :-1], state, targets=block[:, 1:])
            total_nats += loss.item() * block[:, 1:].numel()
            total_tokens += block[:, 1:].numel()
        model.train(was_training)
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
    ) -> Iterator[str]:
        """Text pieces continuing `prompt`, one token at a time (for streaming output). The prompt
        is checked and read in one fused call before anything is yielded; then the state is
        carried through the per-layer cells, never re-reading the prompt."""
        ids = self._sample_ids(model, prompt, length, 1, TokenSampler(1, len(self.vocabulary), temperature, top_k, generator))
        tokens = self.vocabulary.tokens
        pieces = (tokens[int(step)] for step in ids)  # a one-element tensor converts without indexing
        return detokenize_pieces(pieces, self.vocabulary.tokenizer, _continues_line(prompt))

    @torch.no_grad()
    def generate_many(
        self,
        model: SequenceModel,
        prompt: str,
        length: int,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator,
        num_samples: int,
    ) -> list[str]:
        """`num_samples` independent continuations of `prompt`, generated as one batch: a step of
        a small recurrent net costs about the same for a few streams as for one."""
        sampler = TokenSampler(num_samples, len(self.vocabulary), temperature, top_k, generator)
        steps = list(self._sample_ids(model, prompt, length, num_samples, sampler))
        ids = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(num_samples)]  # (samples, length)
        tokens, continues_line = self.vocabulary.tokens, _continues_line(prompt)
        return ["".join(detokenize_pieces((tokens[i] for i in row), self.vocabulary.tokenizer, continues_line)) for row in ids]

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
        if len(prompt_ids) == 0:
            start = NEWLINE if NEWLINE in vocab.tokens else vocab.tokens[1]
            prompt_ids = np.array([vocab.tokens.index(start)])
        model.eval()
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


def _continues_line(prompt: str) -> bool:
    """Generated words continue the prompt's last line (and need a space before the first)."""
    return bool(prompt) and not prompt.endswith(NEWLINE)
