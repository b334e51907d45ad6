"""The language model's config sections, and the starter config `seqtool init` proposes for a text corpus."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seqtool.errors import SeqtoolError
from seqtool.schema import FileSplitData, TokenModelConfig, TrainingConfig, option
from seqtool.tasks import Starter

# Measured in benchmarks/fresh_state.py (docs/benchmarks.md): without resets a char LSTM meets a
# zero state once an epoch and generates garbage from a fresh prompt.
STATE_RESET_DEFAULT = 0.3


@dataclass
class LanguageModelData(FileSplitData):
    """Text split by position: validation (then test) is the tail of `path`."""

    tokenizer: Literal["char", "word"] = option("char", "char: one token per character; word: words and punctuation")
    min_freq: int = option(1, "word tokenizer: rarer words become `<unk>`", ge=1)


@dataclass
class LanguageModelModel(TokenModelConfig):
    tie_weights: bool = option(False, "share the embedding and output matrices (needs embedding_size == hidden_size)")
    output: Literal["full", "adaptive"] = option(
        "full", "full softmax, or adaptive softmax (faster for vocabularies of 10k+ words)"
    )
    direction: Literal["forward", "backward"] = option(
        "forward",
        "forward predicts each token from those before it; backward reads the text from its end and predicts each "
        "token from those after it (it seeds the reverse half of a bidirectional classifier)",
    )


@dataclass
class LanguageModelTraining(TrainingConfig):
    seq_len: int = option(128, "time steps per batch (truncated BPTT length)", ge=1)
    state_reset: float = option(
        STATE_RESET_DEFAULT,
        "chance per row and batch that the carried hidden state restarts from zero, "
        "so that the model also learns to read from a fresh state (a prompt)",
        ge=0.0,
        le=1.0,
    )


MIN_CORPUS_CHARS = 1_000  # less is too little text to learn anything from
TEST_PART_CHARS = 50_000  # from here a tenth of the text is a test part worth scoring


_SAMPLE_BYTES = 1 << 20


def _corpus_characters(path: Path) -> int:
    """Characters in a text corpus (estimated from its size beyond the first MiB); an empty,
    blank, binary or too short file is refused here, before any config is written."""
    with path.open("rb") as handle:
        head = handle.read(_SAMPLE_BYTES)
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        text = decoder.decode(head, final=len(head) < _SAMPLE_BYTES)  # a cut character at the end is fine
    except UnicodeDecodeError as exc:
        raise SeqtoolError(
            f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); init reads text corpora and CSV files"
        ) from None
    if not text.strip():
        raise SeqtoolError(f"{path}: the file is empty" + (" (only whitespace)" if head else ""))
    characters = len(text) if len(head) < _SAMPLE_BYTES else path.stat().st_size
    if characters < MIN_CORPUS_CHARS:
        raise SeqtoolError(
            f"{path}: only {characters:,} characters, too little text to train a language model on "
            f"(at least {MIN_CORPUS_CHARS:,})"
        )
    return characters


def starter_config(path: Path) -> Starter:
    """A character-level model sized by the corpus."""
    characters = _corpus_characters(path)
    size = path.stat().st_size
    hidden = 128 if size < 200_000 else 256 if size < 2_000_000 else 384
    test = 0.1 if characters >= TEST_PART_CHARS else 0.0  # a test part only where it can hold a fair sample
    batch_size = min(32, int(characters * (0.9 - test)) // 129)  # the training part fills the batch's rows
    reasons = [
        f"{path.name} is not a CSV: a text corpus for a character-level language model",
        f"{size:,} bytes: hidden_size {hidden}" + (f", batch_size {batch_size} (a short text)" if batch_size < 32 else ""),
        "a test part (the last 10%) that chooses nothing, for evaluate" if test else "too short a text for a test part",
    ]
    text = f"""# Starter config written by `seqtool init {path}`; edit freely. Reference: docs/config.md
task: language_model
seed: 1234
data:
  path: {path}
  tokenizer: char          # or word (words, punctuation and line breaks)
  val_fraction: 0.1        # held out before the end of the text: it chooses the checkpoint
{f"  test_fraction: {test}       # the last 10%: it chooses nothing, so evaluate's figures are fair{chr(10)}" if test else ""}model:
  type: lstm               # rnn | lstm | gru
  hidden_size: {hidden}
  num_layers: 2
  dropout: 0.0
  embedding_size: 64
training:
  batch_size: {batch_size}
  seq_len: 128             # truncated-BPTT length
  epochs: 20
  max_time: 10m            # the first budget reached stops training
  lr: 3e-3
  warmup_steps: 50
  eval_every: 200
"""
    return Starter(2, text, reasons)
